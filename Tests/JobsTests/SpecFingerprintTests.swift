import Foundation
import Support
import XCTest

@testable import Jobs

/// `model: {path: …, fingerprint: …}`: a spec may carry its models' fingerprints, so a machine
/// without the weights submits; where the files are, they must match.
final class SpecFingerprintTests: SpecFixture {
    var models: URL { Self.packageRoot.appendingPathComponent("models") }

    func fingerprint(_ name: String) throws -> String {
        try ModelFingerprint.compute(path: models.appendingPathComponent(name).path)
    }

    func spec(model: String) -> String {
        """
        model: \(model)
        classifier:
          tower: bundled:tiny-clip-vision
          head: bundled:tiny-emotion-head.safetensors
          text: bundled:tiny-clip-text
        engine: {steps: 4}
        generation: {prompts: [a cat], emotions: [awe], seeds: [1]}
        """
    }

    func loadSpec(_ text: String) throws -> LoadedSpec {
        try write("fp.yaml", text)
        return try JobSpec.load(path: dir.appendingPathComponent("fp.yaml").path, environment: env)
    }

    func testAbsentModelWithAFingerprintIsSubmittedUnderIt() throws {
        let given = try fingerprint("tiny-sd")
        let elsewhere = "/nonexistent-\(UUID().uuidString)/sd"
        let loaded = try loadSpec(spec(model: "{path: \(elsewhere), fingerprint: \(given)}"))
        XCTAssertEqual(loaded.jobs.first?.content.models.model, given)
        XCTAssertEqual(loaded.jobs.first?.locations.model, elsewhere)
        // The same model named by its files gives the same jobs: the batch id does not depend
        // on whether the weights were on the submitting machine.
        XCTAssertEqual(try loadSpec(spec(model: "bundled:tiny-sd")).jobs.map(\.id), loaded.jobs.map(\.id))
    }

    func testPresentModelMustMatchItsFingerprint() throws {
        let other = try fingerprint("miniworld/sd")
        do {
            _ = try loadSpec(spec(model: "{path: bundled:tiny-sd, fingerprint: \(other)}"))
            XCTFail("accepted a fingerprint of another model")
        } catch let e as SpecError {
            assertMentions(e.description, ["bundled:tiny-sd has fingerprint", "the spec says \(other)"])
        }
        XCTAssertNoThrow(
            try loadSpec(spec(model: "{path: bundled:tiny-sd, fingerprint: \(try fingerprint("tiny-sd"))}")))
    }

    func testMalformedLocationsAreRefusedByKey() throws {
        for (model, expected) in [
            ("{path: /x, fingerprint: ABC}", "model.fingerprint"),
            ("{fingerprint: \(String(repeating: "a", count: 32))}", "model.path"),
            ("{path: /x, hash: 1}", "hash"),
            ("{path: /nonexistent-model-folder}", "does not exist"),
        ] {
            do {
                _ = try loadSpec(spec(model: model))
                XCTFail("accepted \(model)")
            } catch let e as SpecError {
                assertMentions(e.description, [expected])
            }
        }
    }
}

/// An output that is an existing file is refused when the spec is read (submit and run alike).
final class OutputIsAFileTests: SpecFixture {
    func testExistingFileAsOutputIsRefused() throws {
        try write("taken", "not a folder")
        assertMentions(
            try problems("output: taken\ngeneration: {prompts: [a cat], emotions: [awe], seeds: [1]}"),
            ["output", "is an existing file; the output must be a folder"])
        XCTAssertNoThrow(try load("output: fresh\ngeneration: {prompts: [a cat], emotions: [awe], seeds: [1]}"))
    }
}

/// A key past libyaml's 1024-character limit is named as such, not as a misplaced ':'.
final class OverlongKeyTests: SpecFixture {
    func testOverlongKeyIsNamed() throws {
        let key = String(repeating: "k", count: 2000)
        try write("long.yaml", "name: x\n\(key): 1\n")
        XCTAssertThrowsError(try JobSpec.load(path: dir.appendingPathComponent("long.yaml").path, environment: env)) {
            XCTAssertTrue("\($0)".contains("a key of 2000 characters; YAML reads at most 1024"), "\($0)")
            XCTAssertTrue("\($0)".contains("line 2"), "\($0)")
        }
    }
}
