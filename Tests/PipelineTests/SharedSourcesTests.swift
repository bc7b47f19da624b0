import Foundation
import Imaging
import RedisQueue
import Support
import TestSupport
import XCTest

/// `editing.shared_sources`: sources go to a folder all hosts mount instead of Redis; workers
/// read and check them there (or where MUSE_SHARED_SOURCES says), and a missing file fails
/// the job with its path.
final class SharedSourcesTests: XCTestCase {
    func testSourcesLiveInTheSharedFolderNotInRedis() throws {
        let dir = makeTempDir("shared")
        defer { try? FileManager.default.removeItem(at: dir) }
        let shared = dir.appendingPathComponent("mnt/sources")
        var pixels = [UInt8](repeating: 0, count: 32 * 32 * 3)
        for i in pixels.indices { pixels[i] = UInt8(truncatingIfNeeded: i * 7) }
        let png = try PNGCodec.encode(RGBImage(width: 32, height: 32, channels: 3, pixels: pixels))
        try png.write(to: dir.appendingPathComponent("a.png"))
        let sha = Hashing.sha256Hex(png)
        let spec = try writeSpec(
            tinyModels + """

                engine: {steps: 2}
                editing:
                  images: [a.png]
                  emotions: [awe, fear]
                  source_prompt: a pattern
                  shared_sources: \(shared.path)
                queue: {max_attempts: 1}
                """, in: dir)

        let dry = try runTool("muse-coordinator", ["submit", "--dry-run", spec], dir: dir)
        XCTAssertEqual(dry.code, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("source images: 0 blobs, 0 bytes"), dry.stdout)
        XCTAssertTrue(
            dry.stdout.contains("shared source images: 1 files, \(png.count) bytes, written to \(shared.path)"),
            dry.stdout)

        let redis = try TestRedis()
        let submitted = try runTool("muse-coordinator", ["submit", spec, "--redis", redis.url], dir: dir)
        XCTAssertEqual(submitted.code, 0, submitted.stderr)
        let batch = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let stored = shared.appendingPathComponent("\(sha).png")
        XCTAssertEqual(try Data(contentsOf: stored), png, "written once, content-addressed")
        let queue = try BatchQueue(client: try redis.client(), batchID: batch)
        XCTAssertFalse(try queue.hasBlob(name: sha), "no copy in Redis")

        // A worker that mounts the folder elsewhere says so with MUSE_SHARED_SOURCES.
        let elsewhere = dir.appendingPathComponent("elsewhere")
        try FileManager.default.moveItem(at: shared, to: elsewhere)
        let worker = try runTool(
            "muse-worker", ["run", "--redis", redis.url, "--exit-when-idle", "--engine", "fake"],
            env: toolEnvironment(["MUSE_SHARED_SOURCES": elsewhere.path]), dir: dir, timeout: 60)
        XCTAssertEqual(worker.code, 0, worker.stderr)
        XCTAssertEqual(try queue.counters()?.done, 2, worker.stderr)

        // The collector keeps the source beside the results when it can read the folder.
        try FileManager.default.moveItem(at: elsewhere, to: shared)
        let out = dir.appendingPathComponent("out")
        let collect = try runTool(
            "muse-coordinator", ["collect", batch, "--redis", redis.url, "--output", out.path], dir: dir)
        XCTAssertEqual(collect.code, 0, collect.stderr)
        XCTAssertEqual(
            try Data(contentsOf: out.appendingPathComponent("sources/\(sha.prefix(16)).png")), png)

        // Without the file, the job fails and says which path it looked at.
        try FileManager.default.removeItem(at: stored)
        let spec2 = try writeSpec(
            try String(contentsOfFile: spec, encoding: .utf8).replacingOccurrences(of: "[awe, fear]", with: "[anger]"),
            in: dir, name: "again.yaml")
        let resubmitted = try runTool("muse-coordinator", ["submit", spec2, "--redis", redis.url], dir: dir)
        XCTAssertEqual(resubmitted.code, 0, resubmitted.stderr)
        let batch2 = resubmitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.removeItem(at: stored)  // submit wrote it again: take it away
        let failing = try runTool(
            "muse-worker", ["run", "--redis", redis.url, "--exit-when-idle", "--engine", "fake"], dir: dir, timeout: 60)
        XCTAssertEqual(failing.code, 0, failing.stderr)
        let dead = try BatchQueue(client: try redis.client(), batchID: batch2).deadLetters(after: "0-0", count: 10)
        XCTAssertEqual(dead.count, 1)
        XCTAssertTrue(
            dead.first?.string("error")?.contains("cannot read the shared source image \(stored.path)") ?? false,
            dead.first?.string("error") ?? "no dead letter")

        let bad = try writeSpec(
            tinyModels + "\nediting: {images: [a.png], emotions: [awe], shared_sources: mnt/relative}\n", in: dir,
            name: "bad.yaml")
        let refused = try runTool("muse-coordinator", ["submit", "--dry-run", bad], dir: dir)
        XCTAssertEqual(refused.code, 2)
        XCTAssertTrue(refused.stderr.contains("editing.shared_sources: must be an absolute path"), refused.stderr)
    }
}
