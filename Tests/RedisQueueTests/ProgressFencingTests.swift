import Foundation
import RedisQueue
import XCTest

/// Progress writes are fenced like every other write: a stale owner can never show a
/// phantom step, and a job abandoned by a worker that died says where it was.
final class ProgressFencingTests: XCTestCase {
    var server: RedisServerFixture!

    override func setUpWithError() throws { server = try RedisServerFixture() }
    override func tearDown() { server = nil }

    func testStaleOwnersProgressIsRefused() throws {
        let q = try BatchQueue(client: try server.client(), batchID: "prog")
        try q.create(spec: Data("{}".utf8), maxAttempts: 2, leaseMs: 200)
        try q.submit(jobID: "j", payload: Data("{}".utf8))
        let a = try XCTUnwrap(try q.take(worker: "A"))
        XCTAssertTrue(try q.setProgress(a, step: 3, total: 10))
        let shown = try XCTUnwrap(try q.progress()["j"])
        XCTAssertEqual([shown.worker, "\(shown.step)/\(shown.total)"], ["A", "3/10"])
        usleep(300_000)  // A's lease lapses; B takes the job over
        let b = try XCTUnwrap(try q.take(worker: "B"))
        XCTAssertFalse(try q.setProgress(a, step: 4, total: 10), "A is stale")
        XCTAssertTrue(try q.setProgress(b, step: 1, total: 10))
        XCTAssertEqual(try q.progress()["j"]?.worker, "B")
        XCTAssertEqual(try q.publish(b, fields: [("png", Data([1]))]), .published)
        try q.clearProgress(jobID: "j")
        XCTAssertFalse(try q.setProgress(b, step: 10, total: 10), "a finished job takes no more progress")
        XCTAssertNil(try q.progress()["j"])
    }

    func testAbandonedJobsDeadLetterSaysWhereTheWorkerWas() throws {
        let q = try BatchQueue(client: try server.client(), batchID: "died")
        try q.create(spec: Data("{}".utf8), maxAttempts: 1, leaseMs: 200)
        try q.submit(jobID: "j", payload: Data("{}".utf8))
        let a = try XCTUnwrap(try q.take(worker: "w1"))
        XCTAssertTrue(try q.setProgress(a, step: 7, total: 20))
        usleep(300_000)  // w1 died without a word; its lease lapses
        XCTAssertNil(try q.take(worker: "w2"), "the last attempt is used up: dead-lettered, not handed out")
        let dead = try XCTUnwrap(try q.deadLetters().first)
        XCTAssertEqual(
            dead.string("error"), "abandoned: lease lapsed on all 1 attempts; last heard of on w1 at step 7/20")
    }

    func testDeadWorkersAreMarkedThenDropped() throws {
        let client = try server.client()
        let q = try BatchQueue(client: client, batchID: "live")
        try q.create(spec: Data("{}".utf8))
        let time = try XCTUnwrap(client.command("TIME").array)
        let nowMs = (time[0].int ?? 0) * 1000 + (time[1].int ?? 0) / 1000
        try client.command(["HSET", q.keys.workers, "killed", "\(nowMs - 40_000)|", "gone", "\(nowMs - 700_000)|"])
        try q.heartbeat(worker: "alive", jobID: nil)
        let workers = try q.status().workers
        XCTAssertEqual(workers.map(\.name), ["alive", "killed"], "a worker silent past the retention is dropped")
        XCTAssertEqual(workers.map(\.alive), [true, false], "one silent past the heartbeat timeout is dead")
    }
}
