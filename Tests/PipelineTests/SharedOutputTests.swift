import Foundation
import Support
import TestSupport
import XCTest

@testable import Jobs

/// One output folder, one collector and one batch: two `collect`s, or a second spec's `run`,
/// on a folder in use are refused with a clear message.
final class SharedOutputTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = makeTempDir("shared")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func submit(_ spec: String, _ redis: TestRedis) throws -> String {
        let r = try runTool("muse-coordinator", ["submit", spec, "--redis", redis.url], dir: dir)
        XCTAssertEqual(r.code, 0, r.stderr)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Two `collect`s on one folder each appended the same results; the second one now finds
    /// the folder locked (as `run` locks it) and says who holds it.
    func testSecondCollectOnOneFolderIsRefused() throws {
        let redis = try TestRedis()
        let spec = try writeSpec(
            tinyModels + "\ngeneration: {prompts: [a lake], emotions: [awe], seeds: [1]}\n", in: dir, name: "one.yaml")
        let batch = try submit(spec, redis)
        let out = dir.appendingPathComponent("collected")
        let first = try RunningTool(
            "muse-coordinator",
            ["collect", batch, "--redis", redis.url, "--output", out.path, "--follow", "--interval", "0.1"], dir: dir,
            label: "collect1")
        defer { first.stop() }
        XCTAssertTrue(
            waitUntil(30, "the first collect to open the manifest") {
                FileManager.default.fileExists(atPath: out.appendingPathComponent("manifest.jsonl").path)
            })
        let second = try runTool(
            "muse-coordinator", ["collect", batch, "--redis", redis.url, "--output", out.path], dir: dir, timeout: 60)
        XCTAssertEqual(second.code, 2, second.stderr)
        XCTAssertTrue(
            second.stderr.contains("another muse-coordinator (pid \(first.process.pid)) is running on \(out.path)"),
            second.stderr)
        first.stop()
        let third = try runTool(
            "muse-coordinator", ["collect", batch, "--redis", redis.url, "--output", out.path], dir: dir, timeout: 60)
        XCTAssertEqual(third.code, 0, "the lock goes with its process: \(third.stderr)")
        let interval = try runTool(
            "muse-coordinator", ["collect", batch, "--interval", "nan", "--redis", redis.url], dir: dir, timeout: 30)
        XCTAssertEqual(interval.code, 64, interval.stderr)
    }

    /// `run` with another spec into a used output folder mixed two batches in one manifest
    /// and replaced the first one's contact sheet. Now it is refused, naming both batches,
    /// unless --allow-mixed, which keeps contact-sheet.png and writes contact-sheet-BATCH.png.
    func testRunRefusesAnotherBatchsOutputFolderUnlessAllowed() throws {
        func spec(_ prompt: String, _ name: String) throws -> String {
            try writeSpec(
                tinyModels + "\nengine: {steps: 2}\ngeneration: {prompts: [\(prompt)], emotions: [awe], seeds: [1]}\n",
                in: dir, name: name)
        }
        let a = try spec("a lake", "a.yaml")
        let b = try spec("a street", "b.yaml")
        let batchA = try JobSpec.load(path: a, environment: toolEnvironment()).batchID
        let batchB = try JobSpec.load(path: b, environment: toolEnvironment()).batchID
        let out = dir.appendingPathComponent("shared")
        let run = ["--output", out.path, "--local-workers", "1", "--worker-engine", "fake"]
        let first = try runTool("muse-coordinator", ["run", a] + run, dir: dir, timeout: 120)
        XCTAssertEqual(first.code, 0, first.stderr)
        let sheet = out.appendingPathComponent("contact-sheet.png")
        let sheetBytes = try Data(contentsOf: sheet)

        let refused = try runTool("muse-coordinator", ["run", b] + run, dir: dir, timeout: 120)
        XCTAssertEqual(refused.code, 2, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("already holds batch \(batchA) (1 jobs)"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("this is batch \(batchB)"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--allow-mixed"), refused.stderr)
        XCTAssertEqual(try manifestLines(out).map(\.batchID), [batchA])

        let mixed = try runTool("muse-coordinator", ["run", b, "--allow-mixed"] + run, dir: dir, timeout: 120)
        XCTAssertEqual(mixed.code, 0, mixed.stderr)
        XCTAssertEqual(try manifestLines(out).map(\.batchID), [batchA, batchB])
        XCTAssertEqual(try Data(contentsOf: sheet), sheetBytes, "the first batch's contact sheet is kept")
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: out.appendingPathComponent("contact-sheet-\(batchB).png").path))
    }
}
