import Foundation
import RedisQueue
import Support
import TestSupport
import XCTest

@testable import Jobs

/// `muse-worker run --supervise`: a worker that traps cannot say why; its supervisor can. The
/// job is retried at once (not after its lease), the child is restarted, and when every attempt
/// traps the dead letter carries the runtime's message instead of "lease lapsed".
final class SupervisorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = makeTempDir("supervisor") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testTrapIsRecordedOnTheJobAndTheWorkerIsRestarted() throws {
        let redis = try TestRedis()
        let spec = try writeSpec(
            tinyModels + """

                engine: {steps: 6}
                queue: {max_attempts: 2, lease_seconds: 600}
                generation: {prompts: [a lake], emotions: [awe], seeds: [1]}
                """, in: dir, name: "trap.yaml")
        let submitted = try runTool("muse-coordinator", ["submit", spec, "--redis", redis.url], dir: dir)
        XCTAssertEqual(submitted.code, 0, submitted.stderr)
        let batch = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let started = Date()
        let worker = try runTool(
            "muse-worker",
            [
                "run", "--supervise", "--redis", redis.url, "--name", "sup", "--exit-when-idle", "--engine", "fake",
                "--fake-trap-at-step", "3",
            ], dir: dir, timeout: 120)
        let seconds = Date().timeIntervalSince(started)
        XCTAssertEqual(worker.code, 0, "the last child finds nothing left and exits 0: \(worker.stderr)")
        XCTAssertLessThan(seconds, 60, "retried at once, not after the 600 s lease")
        XCTAssertTrue(worker.stderr.contains("Fatal error: fake engine: trap at step 3"), "passed through")
        XCTAssertEqual(
            worker.stderr.components(separatedBy: "worker process sup died: signal 4 (SIGILL)").count - 1, 2,
            worker.stderr)
        let queue = try BatchQueue(client: try redis.client(), batchID: batch)
        let dead = try queue.deadLetters()
        XCTAssertEqual(dead.count, 1)
        let error = dead.first?.string("error") ?? ""
        XCTAssertTrue(error.hasPrefix("worker sup died: signal 4 (SIGILL), a runtime trap or crash: "), error)
        XCTAssertTrue(error.contains("Fatal error: fake engine: trap at step 3"), error)
    }

    /// kill -9 of `run` takes its workers (and its private Redis) with it at once, so a
    /// restarted run never overlaps a leftover worker.
    func testWorkersDieWithTheirRunAtOnce() throws {
        let spec = try writeSpec(
            tinyModels + "\nengine: {steps: 200}\ngeneration: {prompts: [a lake], emotions: all, seeds: [1]}\n",
            in: dir, name: "long.yaml")
        let run = try RunningTool(
            "muse-coordinator",
            [
                "run", spec, "--local-workers", "2", "--worker-engine", "fake", "--output",
                dir.appendingPathComponent("o").path,
            ],
            dir: dir, label: "run-to-kill")
        defer { run.stop() }
        let pid = run.process.pid
        func workers() -> [String] {
            let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return all.filter { entry in
                guard Int32(entry) != nil,
                    let cmd = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8)
                else { return false }
                return cmd.contains("--parent-pid\u{0}\(pid)")
            }
        }
        XCTAssertTrue(waitUntil(30, "two workers") { workers().count == 2 })
        kill(pid, SIGKILL)
        let killed = Date()
        XCTAssertTrue(waitUntil(5, "the workers to exit with their parent") { workers().isEmpty })
        XCTAssertLessThan(Date().timeIntervalSince(killed), 5)
    }
}
