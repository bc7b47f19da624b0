import Foundation
import Support
import TestSupport
import XCTest

@testable import Jobs

/// `evaluation.clip_tower`/`clip_text` through a real worker: the same image, scored by the
/// CLIP the spec names instead of the guide's own tower; the manifest carries its
/// fingerprint and the report stops warning that CLIP was measured in the guide's tower.
final class EvaluationCLIPTests: XCTestCase {
    func testTheNamedCLIPMeasuresTheFinishedImage() throws {
        let dir = makeTempDir("evalclip")
        defer { try? FileManager.default.removeItem(at: dir) }
        func run(_ name: String, evaluation: String) throws -> (ManifestEntry, [String: Any]) {
            let spec = try writeSpec(
                tinyModels + "\n" + evaluation
                    + "engine: {method: none, steps: 10}\ngeneration: {prompts: [a red house by a lake], "
                    + "emotions: [awe], seeds: [4]}\n",
                in: dir, name: "\(name).yaml")
            let out = dir.appendingPathComponent(name)
            let r = try runTool(
                "muse-coordinator", ["run", spec, "--local-workers", "1", "--output", out.path], dir: dir, timeout: 240)
            XCTAssertEqual(r.code, 0, r.stderr)
            let report = try runTool("muse-coordinator", ["report", out.path], dir: dir, timeout: 60)
            XCTAssertEqual(report.code, 0, report.stderr)
            let json = try JSONSerialization.jsonObject(
                with: Data(contentsOf: out.appendingPathComponent("report.json")))
            let lines = try manifestLines(out)
            XCTAssertEqual(lines.count, 1)
            return (
                try XCTUnwrap(lines.first), try XCTUnwrap((json as? [String: Any])?["evaluation"] as? [String: Any])
            )
        }
        let (plain, plainReport) = try run("plain", evaluation: "")
        let (named, namedReport) = try run(
            "named",
            evaluation:
                "evaluation: {clip_tower: bundled:miniworld/clip-vision, clip_text: bundled:miniworld/clip-text}\n")
        XCTAssertEqual(plain.sha256, named.sha256, "the evaluation CLIP does not touch the image")
        XCTAssertNil(plain.models.fingerprints.evaluationCLIPTower)
        XCTAssertEqual(named.models.locations.evaluationCLIPTower, "bundled:miniworld/clip-vision")
        XCTAssertNotEqual(named.models.fingerprints.evaluationCLIPTower, named.models.fingerprints.tower)
        let plainScore = try XCTUnwrap(plain.evaluation?["clip_score"]?.doubleValue)
        let namedScore = try XCTUnwrap(named.evaluation?["clip_score"]?.doubleValue)
        XCTAssertNotEqual(plainScore, namedScore, "scored in another CLIP's space")
        XCTAssertEqual(plainReport["clip_is_guide_tower_jobs"] as? Int, 1, "the tiny guide's own tower measured")
        XCTAssertEqual(namedReport["clip_is_guide_tower_jobs"] as? Int, 0)
    }
}
