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
}
