import Checkpoints
import Foundation
import RedisQueue
import XCTest

@testable import WorkerCore

final class LeasedJobTests: XCTestCase {
    func testStaleOwnersCheckpointAndResultAreRefused() throws {
        let redis = try RedisServer.temporary()
        let q = try BatchQueue(client: try redis.client(), batchID: "stale")
        let side = try BatchQueue(client: try redis.client(), batchID: "stale")
        try q.create(spec: Data("{}".utf8), maxAttempts: 3, leaseMs: 300)
        try q.submit(jobID: "job1", payload: Data("{}".utf8))
        func state(_ step: Int) -> CheckpointPayload {
            CheckpointPayload(
                metadata: Data("{\"step\":\(step)}".utf8),
                arrays: [.init(name: "latent", values: [Float](repeating: Float(step), count: 256))])
        }
        let a = LeasedJob(lease: try XCTUnwrap(try q.take(worker: "A")), queue: q, renewQueue: side, leaseMs: 300)
        XCTAssertNotNil(try a.writeCheckpoint(state(2), step: 2))
        // A stalls (no renewals); its lease lapses and B takes the job over.
        usleep(450_000)
        let leaseB = try XCTUnwrap(try q.take(worker: "B"))
        XCTAssertEqual(leaseB.epoch, 2)
        let b = LeasedJob(lease: leaseB, queue: q, renewQueue: side, leaseMs: 300)
        let inherited = try XCTUnwrap(try b.storedCheckpoint())
        XCTAssertEqual(inherited.header.step, 2)
        XCTAssertEqual(inherited.header.epoch, 1)

        // A wakes up: every write is refused and it learns it lost the job.
        XCTAssertNil(try a.writeCheckpoint(state(4), step: 4))
        XCTAssertTrue(a.isLost)
        let stored = try CheckpointCodec.decode(try XCTUnwrap(try q.checkpoint(jobID: "job1")), jobID: "job1")
        XCTAssertEqual(stored.header.step, 2, "the stale write must not replace the checkpoint")
        XCTAssertEqual(try a.publish(fields: [("png", Data([1]))]), .stale)
        XCTAssertFalse(try a.release())
        XCTAssertEqual(try a.fail(error: "boom", permanent: true), .stale)

        // B's writes go through.
        XCTAssertNotNil(try b.writeCheckpoint(state(6), step: 6))
        XCTAssertEqual(
            try CheckpointCodec.decode(try XCTUnwrap(try q.checkpoint(jobID: "job1")), jobID: "job1").header.epoch, 2)
        XCTAssertEqual(try b.publish(fields: [("png", Data([2]))]), .published)
        XCTAssertEqual(try q.results().count, 1)
        XCTAssertEqual(try q.results().first?.string("worker"), "B")

        // The renewal timer notices a takeover by itself.
        try q.submit(jobID: "job2", payload: Data("{}".utf8))
        let c = LeasedJob(lease: try XCTUnwrap(try q.take(worker: "C")), queue: q, renewQueue: side, leaseMs: 300)
        usleep(450_000)
        _ = try XCTUnwrap(try q.take(worker: "D"))
        c.startRenewing()
        XCTAssertTrue(waitUntil(5, "C's renewal to report the loss") { c.isLost })
        XCTAssertTrue(c.lostBecause?.contains("another worker") ?? false)
    }

    /// A renewal that runs after the owner published (an in-flight timer tick) is refused by
    /// the queue, since the job is done: that is the job ending here, not a takeover.
    func testRenewalAfterPublishIsNotALoss() throws {
        let redis = try RedisServer.temporary()
        let q = try BatchQueue(client: try redis.client(), batchID: "ending")
        let side = try BatchQueue(client: try redis.client(), batchID: "ending")
        try q.create(spec: Data("{}".utf8), maxAttempts: 3, leaseMs: 30_000)
        try q.submit(jobID: "job1", payload: Data("{}".utf8))
        let a = LeasedJob(lease: try XCTUnwrap(try q.take(worker: "A")), queue: q, renewQueue: side, leaseMs: 30_000)
        XCTAssertEqual(try a.publish(fields: [("png", Data([1]))]), .published)
        a.renewOnce()  // the tick that lost the race with publish
        XCTAssertFalse(a.isLost, a.lostBecause ?? "")
    }
}

/// Polls `condition` until it holds or `timeout` seconds pass.
func waitUntil(
    _ timeout: TimeInterval, _ what: String, file: StaticString = #filePath, line: UInt = #line,
    _ condition: () throws -> Bool
) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    XCTFail("timed out after \(timeout) s waiting for \(what)", file: file, line: line)
    return false
}
