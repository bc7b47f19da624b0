import Foundation
import TestSupport
import XCTest

/// `muse generate` without an emotion (plain text-to-image) runs the sampler it is given:
/// `--scheduler dpmpp-2m` once fell through to DDIM there.
final class PlainGenerateTests: XCTestCase {
    func testPlainGenerateHonoursTheScheduler() throws {
        let dir = makeTempDir("plain")
        defer { try? FileManager.default.removeItem(at: dir) }
        func generate(_ name: String, _ extra: [String]) throws -> Data {
            let out = dir.appendingPathComponent("\(name).png").path
            let trace = dir.appendingPathComponent("\(name).json").path
            let r = try runTool(
                "muse",
                [
                    "generate", "--prompt", "a red house by a lake", "--steps", "20", "--seed", "3", "--out", out,
                    "--trace", trace,
                ] + extra, dir: dir, timeout: 60)
            XCTAssertEqual(r.code, 0, r.stderr)
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: trace)))
            XCTAssertEqual((summary as? [String: Any])?["scheduler"] as? String, extra.last ?? "ddim")
            return try Data(contentsOf: URL(fileURLWithPath: out))
        }
        let ddim = try generate("ddim", [])
        let dpm = try generate("dpm", ["--scheduler", "dpmpp-2m"])
        XCTAssertNotEqual(ddim, dpm, "DPM-Solver++ and DDIM give different images")
        XCTAssertEqual(try generate("dpm-again", ["--scheduler", "dpmpp-2m"]), dpm, "deterministic")
    }

    /// `--model` takes a single-file checkpoint: a pickle is refused before anything loads,
    /// with the conversion command; a .safetensors file gets SD 1.5's configs (or --model-config's)
    /// and is refused when its tensors are not an LDM-layout SD 1.x.
    func testSingleFileModelsAreCheckedBeforeAnyModelLoads() throws {
        let dir = makeTempDir("single")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out.png").path
        func generate(_ model: String, _ extra: [String] = []) throws -> (code: Int32, stderr: String) {
            let r = try runTool(
                "muse", ["generate", "--prompt", "a lake", "--steps", "2", "--model", model, "--out", out] + extra,
                dir: dir, timeout: 60)
            return (r.code, r.stderr)
        }
        let ckpt = dir.appendingPathComponent("v1-5-pruned-emaonly.ckpt").path
        XCTAssertTrue(FileManager.default.createFile(atPath: ckpt, contents: Data("PK".utf8)))
        let pickle = try generate(ckpt)
        XCTAssertEqual(pickle.code, 1, pickle.stderr)
        XCTAssertTrue(pickle.stderr.contains("never opens them"), pickle.stderr)
        XCTAssertTrue(pickle.stderr.contains("from_single_file(\"\(ckpt)\")"), pickle.stderr)
        // A diffusers UNet file is no whole checkpoint.
        let unet = packageRoot.appendingPathComponent("models/tiny-sd/unet/diffusion_pytorch_model.safetensors").path
        let notLDM = try generate(unet, ["--model-config", packageRoot.appendingPathComponent("models/tiny-sd").path])
        XCTAssertEqual(notLDM.code, 1, notLDM.stderr)
        XCTAssertTrue(
            notLDM.stderr.contains("not a Stable Diffusion checkpoint in the original (LDM) layout"), notLDM.stderr)
        let folderWithConfig = try generate(
            packageRoot.appendingPathComponent("models/tiny-sd").path, ["--model-config", dir.path])
        XCTAssertEqual(folderWithConfig.code, 1, folderWithConfig.stderr)
        XCTAssertTrue(
            folderWithConfig.stderr.contains("goes only with a single-file checkpoint"), folderWithConfig.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
