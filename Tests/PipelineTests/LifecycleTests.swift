import Foundation
import RedisQueue
import Support
import TestSupport
import XCTest

@testable import Jobs

/// A batch's life after submit, through the commands: pause/resume, cancel (running jobs stop
/// at their next step), requeue --failed (the manifest keeps one line per job, the latest
/// outcome) and delete.
final class LifecycleTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = makeTempDir("lifecycle") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func coordinator(_ args: [String], _ redis: TestRedis) throws -> ToolResult {
        try runTool("muse-coordinator", args + ["--redis", redis.url], dir: dir, timeout: 60)
    }

    func manifest(_ out: URL) throws -> [String: JobStatus] {
        let lines = try ManifestWriter.readEntries(out.appendingPathComponent("manifest.jsonl"), as: ManifestEntry.self)
        XCTAssertEqual(Set(lines.map(\.jobID)).count, lines.count, "one line per job")
        return Dictionary(uniqueKeysWithValues: lines.map { ($0.jobID, $0.status) })
    }

    func testCancelRequeueAndDelete() throws {
        let redis = try TestRedis()
        let spec = try writeSpec(
            tinyModels + """

                engine: {steps: 40}
                generation: {prompts: [a lake], emotions: [awe, fear, sadness], seeds: [1]}
                """, in: dir, name: "life.yaml")
        let submitted = try coordinator(["submit", spec], redis)
        XCTAssertEqual(submitted.code, 0, submitted.stderr)
        let batch = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let queue = try BatchQueue(client: try redis.client(), batchID: batch)

        // Paused: a worker finds nothing to do.
        XCTAssertEqual(try coordinator(["pause", batch], redis).code, 0)
        XCTAssertTrue(try coordinator(["status", batch], redis).stdout.contains("— paused"))
        let idle = try runTool(
            "muse-worker", ["run", "--redis", redis.url, "--exit-when-idle", "--engine", "fake"], dir: dir, timeout: 60)
        XCTAssertEqual(idle.code, 0, idle.stderr)
        XCTAssertEqual(try queue.counters()?.done, 0)
        XCTAssertEqual(try coordinator(["resume", batch], redis).code, 0)

        // A slow worker starts a job; cancel stops it at its next step.
        let worker = try RunningTool(
            "muse-worker",
            ["run", "--redis", redis.url, "--name", "slow", "--engine", "fake", "--fake-step-ms", "100"],
            dir: dir, label: "slow-worker")
        defer { worker.stop() }
        XCTAssertTrue(try waitUntil(30, "a job to start") { (try queue.status().running) == 1 })
        let cancelled = try coordinator(["cancel", batch], redis)
        XCTAssertEqual(cancelled.code, 0, cancelled.stderr)
        XCTAssertTrue(cancelled.stderr.contains("3 job(s) cancelled"), cancelled.stderr)
        XCTAssertTrue(
            waitUntil(10, "the worker to drop the cancelled job") {
                (try? String(contentsOfFile: worker.stderrPath, encoding: .utf8))?.contains("dropping it") ?? false
            })
        XCTAssertTrue(try waitUntil(5, "no phantom progress of the dropped job") { try queue.progress().isEmpty })
        let out = dir.appendingPathComponent("out")
        XCTAssertEqual(try coordinator(["collect", batch, "--output", out.path], redis).code, 0)
        XCTAssertEqual(Set(try manifest(out).values), [.cancelled])

        // requeue --failed: they run again and their lines become "done".
        XCTAssertGreaterThan(try redis.client().command(["PTTL", queue.keys.meta]).int ?? -1, 0, "collected: retained")
        let requeued = try coordinator(["requeue", batch, "--failed"], redis)
        XCTAssertEqual(try redis.client().command(["PTTL", queue.keys.meta]).int, -1, "running again: no TTL")
        XCTAssertTrue(requeued.stderr.contains("3 failed job(s) requeued"), requeued.stderr)
        XCTAssertTrue(try waitUntil(60, "the requeued jobs to finish") { (try queue.counters()?.done) == 3 })
        XCTAssertTrue(try waitUntil(5, "no progress left after the last publish") { try queue.progress().isEmpty })
        let collected = try coordinator(["collect", batch, "--output", out.path, "--retain-hours", "2"], redis)
        XCTAssertEqual(collected.code, 0, collected.stderr)
        XCTAssertTrue(collected.stderr.contains("Redis keys expire in 2 h (--retain-hours)"), collected.stderr)
        let ttl = try redis.client().command(["PTTL", queue.keys.meta]).int ?? -1
        XCTAssertTrue((7_000_000...7_200_000).contains(ttl), "retention TTL \(ttl) ms")
        let status = try coordinator(["status", batch], redis)
        XCTAssertTrue(
            status.stdout.range(of: #"redis      [0-9.]+ MiB in [0-9]+ keys"#, options: .regularExpression) != nil,
            status.stdout)
        let now = try manifest(out)
        XCTAssertEqual(now.count, 3)
        XCTAssertEqual(Set(now.values), [.done])

        // delete: every key of the finished batch is gone.
        XCTAssertEqual(try coordinator(["delete", batch], redis).code, 0)
        let keys = try redis.client().command(["KEYS", "{batch:\(batch)}*"]).array ?? []
        XCTAssertEqual(keys.count, 0, "\(keys)")
        XCTAssertEqual(try coordinator(["status", batch], redis).code, 2)
    }
}
