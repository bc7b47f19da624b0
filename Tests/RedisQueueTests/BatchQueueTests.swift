import Foundation
import Support
import XCTest

@testable import RedisQueue

final class BatchQueueTests: XCTestCase {
    var server: RedisServerFixture!
    var client: RedisClient!

    override func setUpWithError() throws {
        server = try RedisServerFixture()
        client = try server.client()
    }

    override func tearDown() {
        client = nil
        server = nil
    }

    private func makeQueue(_ id: String = "b1", maxAttempts: Int = 3, leaseMs: Int = 60_000) throws -> BatchQueue {
        let q = try BatchQueue(client: client, batchID: id)
        XCTAssertTrue(try q.create(spec: Data(#"{"name":"t"}"#.utf8), maxAttempts: maxAttempts, leaseMs: leaseMs))
        return q
    }

    /// Polls until `body` returns non-nil, for at most `seconds`.
    private func eventually<T>(_ seconds: TimeInterval = 5, _ body: () throws -> T?) throws -> T? {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if let v = try body() { return v }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        return nil
    }

    func testKeysShareOneHashTag() throws {
        let k = try BatchKeys(batchID: "abc")
        for key in [
            k.meta, k.jobs, k.results, k.dead, k.running, k.workers, k.job("j"), k.lease("j"), k.checkpoint("j"),
            k.blob("x"),
        ] {
            XCTAssertTrue(key.hasPrefix("{batch:abc}:"), key)
        }
        XCTAssertThrowsError(try BatchKeys(batchID: "a}b"))
        XCTAssertThrowsError(try BatchKeys(batchID: ""))
    }

    func testCreateAndSubmitAreIdempotent() throws {
        let q = try makeQueue()
        XCTAssertFalse(try q.create(spec: Data("other".utf8)), "second create is a no-op")
        XCTAssertEqual(try q.metadata()?.spec, Data(#"{"name":"t"}"#.utf8))
        let payload = Data([0, 1, 2, 0, 255])
        XCTAssertTrue(try q.submit(jobID: "job-1", payload: payload))
        XCTAssertFalse(try q.submit(jobID: "job-1", payload: Data("changed".utf8)))
        XCTAssertTrue(try q.submit(jobID: "job-2", payload: payload))
        XCTAssertEqual(try q.status().total, 2)
        XCTAssertEqual(try client.command("XLEN", q.keys.jobs), .integer(2), "no duplicate stream entry")
        XCTAssertEqual(try q.take(worker: "w")?.payload, payload, "the first payload is kept")
        XCTAssertEqual(try BatchQueue.list(client: client), ["b1"])
        XCTAssertThrowsError(try BatchQueue(client: client, batchID: "nope").submit(jobID: "j", payload: Data())) {
            error in
            XCTAssertEqual(error as? QueueError, .noSuchBatch("nope"))
        }
    }

    func testBlobsAreContentAddressed() throws {
        let q = try makeQueue()
        let png = Data((0..<300).map { UInt8($0 & 0xFF) })
        let name = try q.putBlob(png)
        XCTAssertEqual(name, Hashing.sha256Hex(png))
        XCTAssertEqual(try q.putBlob(png), name)
        XCTAssertEqual(try q.blob(name: name), png)
        XCTAssertNil(try q.blob(name: "missing"))
    }

    func testTakeReleaseIncrementsEpochAndKeepsCheckpoint() throws {
        let q = try makeQueue()
        try q.submit(jobID: "j", payload: Data("p".utf8))
        let first = try XCTUnwrap(try q.take(worker: "w1"))
        XCTAssertEqual(first.epoch, 1)
        XCTAssertEqual(first.attempt, 1)
        XCTAssertNil(first.checkpoint)
        XCTAssertNil(try q.take(worker: "w2"), "nothing else to take")
        XCTAssertTrue(try q.writeCheckpoint(first, step: 10, data: Data("ck1".utf8)))
        XCTAssertTrue(try q.release(first))
        XCTAssertFalse(try q.release(first), "a released lease is no longer current")
        let second = try XCTUnwrap(try q.take(worker: "w2"))
        XCTAssertEqual(second.epoch, 2)
        XCTAssertEqual(second.attempt, 1, "release refunds the attempt")
        XCTAssertEqual(second.checkpoint, Data("ck1".utf8), "resume from the released checkpoint")
        XCTAssertEqual(try q.job("j")?.checkpointStep, 10)
    }

    func testStaleEpochCannotWriteRenewOrPublish() throws {
        let q = try makeQueue(leaseMs: 200)
        try q.submit(jobID: "j", payload: Data("p".utf8))
        let a = try XCTUnwrap(try q.take(worker: "A"))
        XCTAssertFalse(a.reclaimed)
        XCTAssertTrue(try q.writeCheckpoint(a, step: 5, data: Data("from A".utf8)))
        // A stalls; its lease lapses and B reclaims the entry.
        let b = try XCTUnwrap(try eventually { try q.take(worker: "B") })
        XCTAssertTrue(b.reclaimed, "taken over from a lapsed lease (worker metric leases_reclaimed)")
        XCTAssertEqual(b.epoch, a.epoch + 1)
        XCTAssertEqual(b.attempt, 2)
        XCTAssertEqual(b.checkpoint, Data("from A".utf8))
        XCTAssertFalse(try q.writeCheckpoint(a, step: 6, data: Data("stale".utf8)), "stale epoch must be refused")
        XCTAssertEqual(try q.checkpoint(jobID: "j"), Data("from A".utf8))
        XCTAssertFalse(try q.renew(a))
        XCTAssertEqual(try q.publish(a, fields: [("png", Data("A".utf8))]), .stale)
        XCTAssertEqual(try q.fail(a, error: "late"), .stale)
        XCTAssertTrue(try q.writeCheckpoint(b, step: 6, data: Data("from B".utf8)))
        XCTAssertEqual(try q.publish(b, fields: [("png", Data([0, 1])), ("metrics", Data("{}".utf8))]), .published)
        let results = try q.results()
        XCTAssertEqual(results.count, 1)
        XCTAssertEqual(results[0].string("job"), "j")
        XCTAssertEqual(results[0].string("worker"), "B")
        XCTAssertEqual(results[0].string("epoch"), "\(b.epoch)")
        XCTAssertEqual(results[0].fields["png"], Data([0, 1]))
        XCTAssertNil(try q.checkpoint(jobID: "j"), "checkpoint freed once the result is in")
        let s = try q.status()
        XCTAssertEqual([s.total, s.done, s.failed, s.running, s.stalled], [1, 1, 0, 0, 0])
        XCTAssertTrue(s.finished)
        XCTAssertEqual(try client.command("XPENDING", q.keys.jobs, BatchKeys.group).array?.first, .integer(0))
    }

    func testRenewByNonOwnerIsRefused() throws {
        let q = try makeQueue()
        try q.submit(jobID: "j", payload: Data())
        let a = try XCTUnwrap(try q.take(worker: "A"))
        let impostor = JobLease(
            batchID: a.batchID, jobID: a.jobID, worker: "B", epoch: a.epoch, attempt: 1,
            payload: a.payload, checkpoint: nil)
        XCTAssertFalse(try q.renew(impostor))
        XCTAssertFalse(try q.writeCheckpoint(impostor, step: 1, data: Data()))
        XCTAssertEqual(try q.publish(impostor, fields: []), .stale)
        let wrongEpoch = JobLease(
            batchID: a.batchID, jobID: a.jobID, worker: "A", epoch: a.epoch + 1, attempt: 1,
            payload: a.payload, checkpoint: nil)
        XCTAssertFalse(try q.renew(wrongEpoch))
        XCTAssertTrue(try q.renew(a))
        XCTAssertEqual(try client.command("GET", q.keys.lease("j")).string, "A|\(a.epoch)")
    }

    func testRenewKeepsLiveJobFromBeingReclaimed() throws {
        let q = try makeQueue(leaseMs: 1000)
        try q.submit(jobID: "j", payload: Data())
        let a = try XCTUnwrap(try q.take(worker: "A"))
        for _ in 0..<8 {  // 1.6 s > lease, renewing every 0.2 s
            Thread.sleep(forTimeInterval: 0.2)
            XCTAssertTrue(try q.renew(a))
            XCTAssertNil(try q.take(worker: "B"))
        }
        XCTAssertEqual(try q.status().running, 1)
    }

    func testLapsedLeaseIsReclaimedByXAutoclaim() throws {
        let q = try makeQueue(leaseMs: 500)
        try q.submit(jobID: "j", payload: Data("payload".utf8))
        let a = try XCTUnwrap(try q.take(worker: "A"))
        XCTAssertNil(try q.take(worker: "B"), "a live lease is not reclaimed")
        Thread.sleep(forTimeInterval: 0.7)
        XCTAssertEqual(try q.status().stalled, 1, "lapsed but not yet reclaimed")
        let b = try XCTUnwrap(try eventually { try q.take(worker: "B") })
        XCTAssertEqual(b.jobID, "j")
        XCTAssertEqual(b.payload, Data("payload".utf8))
        XCTAssertGreaterThan(b.epoch, a.epoch)
        XCTAssertEqual(try q.job("j")?.owner, "B")
    }

    func testDeadLetterAfterMaxAttempts() throws {
        let q = try makeQueue(maxAttempts: 2)
        try q.submit(jobID: "j", payload: Data())
        let t1 = try XCTUnwrap(try q.take(worker: "w"))
        XCTAssertTrue(try q.writeCheckpoint(t1, step: 3, data: Data("x".utf8)))
        XCTAssertEqual(try q.fail(t1, error: "boom 1", backoff: 0), .requeued)
        let t2 = try XCTUnwrap(try q.take(worker: "w"), "re-queued at once (no back-off asked for)")
        XCTAssertEqual(t2.attempt, 2)
        XCTAssertNil(t2.checkpoint, "a failed attempt's checkpoint is not resumed")
        XCTAssertEqual(try q.fail(t2, error: "boom 2"), .deadLettered)
        XCTAssertNil(try q.take(worker: "w"))
        let dead = try q.deadLetters()
        XCTAssertEqual(dead.count, 1)
        XCTAssertEqual(dead[0].string("job"), "j")
        XCTAssertEqual(dead[0].string("error"), "boom 2")
        XCTAssertEqual(dead[0].string("attempts"), "2")
        let s = try q.status()
        XCTAssertEqual([s.total, s.done, s.failed, s.running], [1, 0, 1, 0])
        XCTAssertEqual(try q.job("j")?.state, "dead")
        XCTAssertEqual(try client.command("XPENDING", q.keys.jobs, BatchKeys.group).array?.first, .integer(0))
    }

    func testPermanentFailureSkipsRetries() throws {
        let q = try makeQueue(maxAttempts: 5)
        try q.submit(jobID: "j", payload: Data())
        let t = try XCTUnwrap(try q.take(worker: "w"))
        XCTAssertEqual(try q.fail(t, error: "bad input image", permanent: true), .deadLettered)
        XCTAssertEqual(try q.deadLetters().first?.string("error"), "bad input image")
    }

    func testAbandonedJobIsDeadLetteredWhenAttemptsRunOut() throws {
        let q = try makeQueue(maxAttempts: 1, leaseMs: 150)
        try q.submit(jobID: "j", payload: Data())
        _ = try XCTUnwrap(try q.take(worker: "crashes"))
        let dead = try eventually { () -> [StreamEntry]? in
            XCTAssertNil(try q.take(worker: "B"))
            let d = try q.deadLetters()
            return d.isEmpty ? nil : d
        }
        XCTAssertEqual(dead?.first?.string("job"), "j")
        XCTAssertTrue(dead?.first?.string("error")?.contains("lease lapsed") ?? false)
        XCTAssertEqual(try q.status().failed, 1)
    }

    func testCrashedWorkersJobIsRetriedAtOnceAndTheDeadLetterSaysWhy() throws {
        let q = try makeQueue(maxAttempts: 2, leaseMs: 60_000)
        try q.submit(jobID: "j", payload: Data())
        let t1 = try XCTUnwrap(try q.take(worker: "w1"))
        XCTAssertTrue(try q.writeCheckpoint(t1, step: 2, data: Data("x".utf8)))
        XCTAssertTrue(try q.setProgress(t1, step: 3, total: 10))
        let cause = "signal 4 (SIGILL), a runtime trap or crash: Fatal error: Index out of range"
        XCTAssertEqual(try q.recordCrash(worker: "w1", cause: cause, retryNow: true), ["j"])
        XCTAssertEqual(try q.recordCrash(worker: "w1", cause: cause, retryNow: true), [], "reported once")
        // retried after the first back-off (2 s ± 25 %), not after the 60 s lease; clean, since
        // the checkpoint may be what trapped
        let t2 = try XCTUnwrap(try eventually { try q.take(worker: "w2") })
        XCTAssertNil(t2.checkpoint)
        XCTAssertEqual(try q.recordCrash(worker: "w1", cause: cause, retryNow: true), [], "w1 no longer holds it")
        XCTAssertEqual(try q.job("j")?.owner, "w2")
        XCTAssertEqual(try q.recordCrash(worker: "w2", cause: cause, retryNow: true), ["j"])
        let dead = try q.deadLetters()
        XCTAssertEqual(dead.count, 1)
        XCTAssertEqual(dead.first?.string("error"), "worker w2 died: \(cause)")
    }

    func testKilledWorkersJobWaitsForItsLeaseAndTheDeadLetterSaysWhy() throws {
        let q = try makeQueue(maxAttempts: 1, leaseMs: 300)
        try q.submit(jobID: "j", payload: Data())
        let t = try XCTUnwrap(try q.take(worker: "w1"))
        XCTAssertTrue(try q.setProgress(t, step: 7, total: 20))
        let cause = "killed by signal 9 (SIGKILL) (the OOM killer or an operator)"
        XCTAssertEqual(try q.recordCrash(worker: "w1", cause: cause, retryNow: false), ["j"])
        XCTAssertEqual(
            try q.job("j")?.state, "running", "a kill from outside keeps the job (and its checkpoint) for the lease")
        let dead = try eventually { () -> [StreamEntry]? in
            XCTAssertNil(try q.take(worker: "w2"))
            let d = try q.deadLetters()
            return d.isEmpty ? nil : d
        }
        XCTAssertEqual(dead?.first?.string("error"), "worker w1 died: \(cause) (last heard of at step 7/20)")
    }

    /// A failed job waits before its retry (exponential, jittered), at the tail of the queue,
    /// so the worker that failed it does not retake it at once and the jobs behind go first.
    func testFailedJobBacksOffBeforeItsRetry() throws {
        let q = try makeQueue(maxAttempts: 5)
        try q.submit(jobID: "a", payload: Data())
        try q.submit(jobID: "b", payload: Data())
        let a = try XCTUnwrap(try q.take(worker: "w"))
        XCTAssertEqual(a.jobID, "a")
        XCTAssertEqual(try q.fail(a, error: "transient", backoff: 1.0), .requeued)
        let b = try XCTUnwrap(try q.take(worker: "w"), "the job behind it goes first")
        XCTAssertEqual(b.jobID, "b")
        let start = Date()
        XCTAssertNil(try q.take(worker: "w"), "a is backing off")
        let again = try XCTUnwrap(try eventually { try q.take(worker: "w") })
        XCTAssertEqual(again.jobID, "a")
        XCTAssertEqual(again.attempt, 2)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.8)
        // The default schedule: 2 s, 4 s, 8 s … capped at 60 s, each ±25 %.
        for (attempt, mid) in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)] {
            let b = BatchQueue.retryBackoff(attempt: attempt)
            XCTAssertTrue((mid * 0.75...mid * 1.25).contains(b), "attempt \(attempt): \(b)")
        }
    }

    func testPausedBatchHandsOutNothingUntilResumed() throws {
        let q = try makeQueue(leaseMs: 60_000)
        try q.submit(jobID: "a", payload: Data())
        try q.submit(jobID: "b", payload: Data())
        let running = try XCTUnwrap(try q.take(worker: "w1"))
        try q.setPaused(true)
        XCTAssertEqual(try q.counters()?.paused, true)
        XCTAssertNil(try q.take(worker: "w2"), "paused: nothing is taken")
        XCTAssertNil(try q.take(worker: "w2", wait: 0.2))
        XCTAssertEqual(try q.job("b")?.state, "queued")
        XCTAssertEqual(try q.publish(running, fields: [("png", Data())]), .published, "running jobs finish")
        try q.setPaused(false)
        // At once, not after the 60 s lease: the entry was handed back, not left pending.
        let b = try XCTUnwrap(try q.take(worker: "w2"))
        XCTAssertEqual(b.jobID, "b")
        XCTAssertEqual(b.attempt, 1, "a paused look is not an attempt")
        XCTAssertThrowsError(try BatchQueue(client: client, batchID: "nope").setPaused(true))
    }

    func testPublishReplayIsRecognised() throws {
        let q = try makeQueue()
        try q.submit(jobID: "j", payload: Data())
        let t = try XCTUnwrap(try q.take(worker: "w"))
        XCTAssertEqual(try q.publish(t, fields: [("png", Data([1]))]), .published)
        XCTAssertEqual(try q.publish(t, fields: [("png", Data([1]))]), .alreadyPublished)
        XCTAssertEqual(try q.results().count, 1)
        XCTAssertEqual(try q.status().done, 1)
        // Result cursor and cleanup.
        let r = try q.results()
        XCTAssertTrue(try q.results(after: r[0].id).isEmpty)
        try q.deleteResult(id: r[0].id)
        XCTAssertTrue(try q.results().isEmpty)
    }

    func testBlockingTakeWakesOnSubmit() throws {
        let q = try makeQueue()
        let other = try server.client()
        let producer = try BatchQueue(client: other, batchID: "b1")
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) {
            _ = try? producer.submit(jobID: "late", payload: Data())
        }
        let start = Date()
        let t = try q.take(worker: "w", wait: 5)
        XCTAssertEqual(t?.jobID, "late")
        XCTAssertLessThan(Date().timeIntervalSince(start), 4)
        XCTAssertNil(try q.take(worker: "w", wait: 0.2), "times out when empty")
    }

    func testHeartbeatsAndStatus() throws {
        let q = try makeQueue()
        for i in 0..<3 { try q.submit(jobID: "j\(i)", payload: Data()) }
        let t = try XCTUnwrap(try q.take(worker: "w1"))
        try q.heartbeat(worker: "w1", jobID: t.jobID)
        try q.heartbeat(worker: "w2", jobID: nil)
        var s = try q.status()
        XCTAssertEqual([s.total, s.done, s.failed, s.running, s.queued], [3, 0, 0, 1, 2])
        XCTAssertEqual(s.workers.map(\.name), ["w1", "w2"])
        XCTAssertEqual(s.workers[0].jobID, t.jobID)
        XCTAssertNil(s.workers[1].jobID)
        XCTAssertTrue(s.workers.allSatisfy(\.alive))
        let ttl = try client.command("PTTL", q.keys.workers).int ?? -1
        XCTAssertGreaterThan(ttl, 0, "the heartbeat hash expires")
        Thread.sleep(forTimeInterval: 0.1)
        s = try q.status(workerTTLMs: 50)
        XCTAssertFalse(s.workers.contains(where: \.alive), "silent workers are reported dead")
        try q.removeWorker("w2")
        XCTAssertEqual(try q.status().workers.map(\.name), ["w1"])
    }

    func testQueueSurvivesServerRestart() throws {
        let q = try makeQueue()
        try q.submit(jobID: "j", payload: Data([9, 0, 9]))
        let t = try XCTUnwrap(try q.take(worker: "w"))
        try server.restart()
        XCTAssertTrue(try q.renew(t), "lease state persisted in the AOF")
        XCTAssertEqual(try q.publish(t, fields: [("png", Data([1]))]), .published)
        XCTAssertEqual(try q.status().done, 1)
    }

    func testDestroyRemovesEveryBatchKey() throws {
        let q = try makeQueue()
        try q.submit(jobID: "j", payload: Data())
        _ = try q.putBlob(Data([1]))
        let other = try makeQueue("b2")
        try other.submit(jobID: "k", payload: Data())
        try q.destroy()
        let left = try client.command("KEYS", "*").array?.compactMap(\.string) ?? []
        XCTAssertFalse(left.contains { $0.hasPrefix("{batch:b1}") }, "\(left)")
        XCTAssertTrue(left.contains { $0.hasPrefix("{batch:b2}") })
        XCTAssertEqual(try BatchQueue.list(client: client), ["b2"])
    }
}
