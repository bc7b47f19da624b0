import Foundation
import RedisQueue
import XCTest

/// One damaged job or batch in Redis must fail on its own, with a clear error, and never
/// stall the rest; the take script checks every number before it writes anything.
final class DamagedRecordsTests: XCTestCase {
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

    func testADamagedJobIsDeadLetteredAndTheNextOneRuns() throws {
        let q = try BatchQueue(client: client, batchID: "jobs")
        try q.create(spec: Data("{}".utf8), maxAttempts: 3, leaseMs: 30_000)
        try q.submit(jobID: "bad", payload: Data("{}".utf8))
        try q.submit(jobID: "good", payload: Data("{}".utf8))
        try client.command(["HSET", q.keys.job("bad"), "attempts", "many"])
        let lease = try XCTUnwrap(try q.take(worker: "w"), "the damaged job is skipped, the good one handed out")
        XCTAssertEqual(lease.jobID, "good")
        let dead = try XCTUnwrap(try q.deadLetters().first)
        XCTAssertEqual(dead.string("job"), "bad")
        XCTAssertEqual(dead.string("error"), "damaged job record: attempts many, epoch 0")
        XCTAssertEqual(try client.command(["HGET", q.keys.job("bad"), "epoch"]).string, "0", "nothing half-written")
        XCTAssertEqual(try q.counters()?.failed, 1)
    }

    func testADamagedBatchIsReportedAndOthersGoOn() throws {
        let broken = try BatchQueue(client: client, batchID: "broken")
        try broken.create(spec: Data("{}".utf8), maxAttempts: 3, leaseMs: 30_000)
        try broken.submit(jobID: "j", payload: Data("{}".utf8))
        try client.command(["HSET", broken.keys.meta, "max_attempts", "x"])
        XCTAssertThrowsError(try broken.take(worker: "w")) { error in
            XCTAssertEqual(error as? QueueError, .damagedBatch("broken", "max_attempts x, lease_ms 30000"))
        }
        XCTAssertEqual(try client.command(["HGET", broken.keys.job("j"), "attempts"]).string, "0")
        try client.command(["HSET", broken.keys.meta, "max_attempts", "3", "lease_ms", "soon"])
        XCTAssertThrowsError(try broken.take(worker: "w")) { error in
            guard case .damagedBatch = error as? QueueError else { return XCTFail("\(error)") }
        }

        let fine = try BatchQueue(client: client, batchID: "fine")
        try fine.create(spec: Data("{}".utf8), maxAttempts: 3, leaseMs: 30_000)
        try fine.submit(jobID: "k", payload: Data("{}".utf8))
        XCTAssertEqual(try fine.take(worker: "w")?.jobID, "k")
    }
}
