import Foundation
import TestSupport
import XCTest

@testable import Jobs

/// A temporary folder with spec files over the bundled tiny models (no Redis).
class SpecFixture: XCTestCase {
    static let packageRoot = TestSupport.packageRoot
    static let tinyModels = TestSupport.tinyModels

    var dir: URL!
    let env = ["MUSE_MODELS_DIR": SpecFixture.packageRoot.appendingPathComponent("models").path]

    override func setUpWithError() throws {
        dir = makeTempDir("jobs-spec")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func write(_ name: String, _ text: String) throws {
        try write(name, Data(text.utf8))
    }

    func write(_ name: String, _ data: Data) throws {
        let url = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(
            at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
    }

    func load(_ body: String) throws -> LoadedSpec {
        try write("spec.yaml", Self.tinyModels + "\n" + body)
        return try JobSpec.load(path: dir.appendingPathComponent("spec.yaml").path, environment: env)
    }

    /// The error text of a spec that must be invalid.
    func problems(_ body: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        do {
            _ = try load(body)
            XCTFail("spec was accepted", file: file, line: line)
            return ""
        } catch let e as SpecError {
            return e.description
        }
    }

    func assertMentions(_ text: String, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) {
        for e in expected where !text.contains(e) {
            XCTFail("missing '\(e)' in:\n\(text)", file: file, line: line)
        }
    }
}
