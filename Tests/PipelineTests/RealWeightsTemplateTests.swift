import Foundation
import TestSupport
import XCTest

/// manifests/sd15-emogen.yaml, the real-weights template, passes `submit --dry-run` once its
/// /srv/muse/models paths point at tiny stand-ins in the same layouts (a diffusers SD folder,
/// a whole CLIPModel folder with its tokenizer and processor, a linear head): a broken
/// template fails here, not on a user's fleet.
final class RealWeightsTemplateTests: XCTestCase {
    func testTemplateDryRunsOnStandIns() throws {
        let dir = makeTempDir("template")
        defer { try? FileManager.default.removeItem(at: dir) }
        let models = packageRoot.appendingPathComponent("models").path
        var text = try String(
            contentsOf: packageRoot.appendingPathComponent("manifests/sd15-emogen.yaml"), encoding: .utf8)
        for (real, standIn) in [
            ("/srv/muse/models/stable-diffusion-v1-5", models + "/tiny-sd"),
            ("/srv/muse/models/clip-vit-large-patch14", models + "/hub-layouts/clip-full"),
            ("/srv/muse/models/emogen-head.safetensors", models + "/tiny-emotion-head.safetensors"),
        ] {
            XCTAssertTrue(text.contains(real), "the template no longer names \(real)")
            text = text.replacingOccurrences(of: real, with: standIn)
        }
        XCTAssertFalse(text.contains("/srv/muse/models/stable"), text)
        let spec = try writeSpec(text, in: dir)
        let r = try runTool("muse-coordinator", ["submit", "--dry-run", spec], dir: dir, timeout: 60)
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("jobs: 16"), r.stdout)  // 2 prompts × 8 emotions × 1 seed
        // The engine loads the stand-ins in those layouts (the whole CLIPModel as tower and text).
        let image = dir.appendingPathComponent("one.png").path
        let one = try runTool(
            "muse",
            [
                "generate", "--prompt", "a quiet lake", "--emotion", "awe", "--steps", "2", "--out", image,
                "--model", models + "/tiny-sd", "--classifier-tower", models + "/hub-layouts/clip-full",
                "--clip-text", models + "/hub-layouts/clip-full",
                "--classifier-head", models + "/tiny-emotion-head.safetensors",
            ], dir: dir, timeout: 120)
        XCTAssertEqual(one.code, 0, one.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: image))
    }
}
