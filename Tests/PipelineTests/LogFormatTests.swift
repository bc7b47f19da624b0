import Foundation
import TestSupport
import XCTest

/// `--log-format json` (or MUSE_LOG_FORMAT): every stderr line of both binaries is one JSON
/// object with time, level, program and message; a bad value is refused by name.
final class LogFormatTests: XCTestCase {
    func testJSONLinesFromBothBinaries() throws {
        let dir = makeTempDir("logs")
        defer { try? FileManager.default.removeItem(at: dir) }
        let unreachable = ["--redis", "redis://127.0.0.1:1"]
        for (tool, args) in [
            ("muse-worker", ["--log-format", "json", "run"] + unreachable),
            ("muse-coordinator", ["status", "--log-format=json"] + unreachable),
        ] {
            let r = try runTool(tool, args, dir: dir, timeout: 30)
            XCTAssertNotEqual(r.code, 0)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertFalse(lines.isEmpty, tool)
            for line in lines {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                XCTAssertEqual(object?["program"] as? String, tool, String(line))
                XCTAssertNotNil(object?["time"] as? String)
                XCTAssertTrue(
                    (object?["message"] as? String)?.contains("cannot connect to Redis") ?? false, String(line))
            }
        }
        var env = toolEnvironment()
        env["MUSE_LOG_FORMAT"] = "xml"
        let bad = try runTool("muse-worker", ["run"] + unreachable, env: env, dir: dir, timeout: 30)
        XCTAssertEqual(bad.code, 64)
        XCTAssertTrue(bad.stderr.contains("must be text or json, got 'xml'"), bad.stderr)
    }
}

/// A negative number after an option is that option's value, so it reaches the option's range
/// check instead of ArgumentParser's "Missing value" (it looks like an option to it).
final class NegativeOptionValueTests: XCTestCase {
    func testNegativeValuesReachTheRangeChecks() throws {
        let dir = makeTempDir("negative")
        defer { try? FileManager.default.removeItem(at: dir) }
        for (tool, args, expected) in [
            (
                "muse", ["generate", "--steps", "-3", "--prompt", "x", "--emotion", "awe", "--out", "x.png"],
                "-3 is outside 1...1000"
            ),
            (
                "muse", ["generate", "--guidance", "-0.5", "--prompt", "x", "--emotion", "awe", "--out", "x.png"],
                "-0.5"
            ),
            ("muse-worker", ["run", "--heartbeat", "-1"], "--heartbeat must be in"),
            ("muse-coordinator", ["run", "spec.yaml", "--local-workers", "-2"], "--local-workers must be in 1...64"),
        ] {
            let r = try runTool(tool, args, dir: dir, timeout: 30)
            XCTAssertNotEqual(r.code, 0)
            XCTAssertTrue(r.stderr.contains(expected), "\(tool) \(args): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Missing value"), r.stderr)
        }
    }
}
