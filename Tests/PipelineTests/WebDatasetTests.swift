import Foundation
import TestSupport
import XCTest

/// `run --webdataset N`: tar shards a WebDataset loader reads — checked with GNU tar, which
/// verifies every header's checksum — holding each done job's PNG (byte for byte) and its
/// metadata row, reproducible and rewritten only when their samples change.
final class WebDatasetTests: XCTestCase {
    func tar(_ args: [String], in dir: URL) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/tar")
        p.arguments = args
        p.currentDirectoryURL = dir
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "tar \(args)")
        return data
    }

    func testShardsHoldEveryDoneImageAndItsRow() throws {
        let dir = makeTempDir("webdataset")
        defer { try? FileManager.default.removeItem(at: dir) }
        let spec = try writeSpec(
            tinyModels
                + "\nengine: {steps: 2}\ngeneration: {prompts: [a lake, a road], emotions: [awe, fear], seeds: [3]}\n"
                + "output: out\n",
            in: dir, name: "w.yaml")
        let run = try runTool(
            "muse-coordinator", ["run", spec, "--local-workers", "1", "--worker-engine", "fake", "--webdataset", "3"],
            dir: dir, timeout: 240)
        XCTAssertEqual(run.code, 0, run.stderr + run.stdout)
        XCTAssertTrue(
            (run.stdout + run.stderr).contains("webdataset: 4 samples in 2 shard(s)"), run.stdout + run.stderr)
        let out = dir.appendingPathComponent("out")
        let shards = out.appendingPathComponent("webdataset")
        let rows = try String(contentsOf: out.appendingPathComponent("metadata.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(rows.count, 4)
        let byFile = rows.sorted { ($0["file_name"] as! String) < ($1["file_name"] as! String) }

        // Shard 0 holds the first three by file name, shard 1 the last; PNG then JSON per sample.
        var names: [String] = []
        for shard in ["shard-000000.tar", "shard-000001.tar"] {
            let listing = String(decoding: try tar(["-tf", shard], in: shards), as: UTF8.self)
            names += listing.split(separator: "\n").map(String.init)
        }
        let ids = byFile.map { $0["job_id"] as! String }
        XCTAssertEqual(names, ids.flatMap { [$0 + ".png", $0 + ".json"] })
        for (i, row) in byFile.enumerated() {
            let shard = i < 3 ? "shard-000000.tar" : "shard-000001.tar"
            let id = row["job_id"] as! String
            let png = try tar(["-xOf", shard, id + ".png"], in: shards)
            let file = try Data(contentsOf: out.appendingPathComponent(row["file_name"] as! String))
            XCTAssertEqual(png, file, "the shard carries the collected PNG")
            let json = try JSONSerialization.jsonObject(with: try tar(["-xOf", shard, id + ".json"], in: shards))
            XCTAssertEqual((json as! [String: Any])["prompt"] as? String, row["prompt"] as? String)
            XCTAssertEqual((json as! [String: Any])["emotion"] as? String, row["emotion"] as? String)
        }

        // Again: nothing to do, both shards kept as they are.
        let before = try Data(contentsOf: shards.appendingPathComponent("shard-000000.tar"))
        let again = try runTool(
            "muse-coordinator", ["run", spec, "--worker-engine", "fake", "--webdataset", "3"], dir: dir)
        XCTAssertEqual(again.code, 0, again.stderr)
        XCTAssertTrue((again.stdout + again.stderr).contains("(0 written, 2 unchanged)"), again.stdout + again.stderr)
        XCTAssertEqual(try Data(contentsOf: shards.appendingPathComponent("shard-000000.tar")), before)

        // Another shard size: one shard, the old second one removed.
        let one = try runTool(
            "muse-coordinator", ["run", spec, "--worker-engine", "fake", "--webdataset", "10"], dir: dir)
        XCTAssertEqual(one.code, 0, one.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: shards.path).sorted()
        XCTAssertEqual(files, ["index.json", "shard-000000.tar"])
        XCTAssertEqual(
            String(decoding: try tar(["-tf", "shard-000000.tar"], in: shards), as: UTF8.self)
                .split(separator: "\n").count, 8)

        let bad = try runTool("muse-coordinator", ["run", spec, "--webdataset", "0"], dir: dir)
        XCTAssertNotEqual(bad.code, 0)
        XCTAssertTrue(bad.stderr.contains("--webdataset must be in 1...100000"), bad.stderr)
    }
}
