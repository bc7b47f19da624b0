import CoordinatorCore
import Foundation
import RedisQueue
import XCTest

/// `status`'s view of a batch, read from Redis without the command line: counts, queue
/// settings, a dead letter with its error, and a damaged record named with its fix.
final class BatchStatusReportTests: XCTestCase {
    func testCountsFailuresAndDamage() throws {
        let redis = try RedisServer.temporary()
        let client = try redis.client()
        let q = try BatchQueue(client: client, batchID: "status")
        try q.create(spec: Data("{}".utf8), maxAttempts: 1, leaseMs: 30_000)
        for id in ["a1", "b2"] { XCTAssertTrue(try q.submit(jobID: id, payload: Data("{}".utf8))) }
        let lease = try XCTUnwrap(try q.take(worker: "w"))
        XCTAssertEqual(try q.fail(lease, error: "boom", permanent: true), .deadLettered)
        var report = try BatchStatusReport(q, failuresLimit: 10)
        XCTAssertEqual([report.total, report.failed, report.queued], [2, 1, 1])
        XCTAssertEqual(report.failures.map(\.error), ["boom"])
        XCTAssertEqual(report.maxAttempts, 1)
        XCTAssertEqual(report.leaseMs, 30_000)
        XCTAssertEqual(report.damage, [])
        _ = try client.command(["HSET", q.keys.meta, "max_attempts", "0"])
        report = try BatchStatusReport(q, failuresLimit: 0)
        XCTAssertEqual(report.failures.count, 0)
        XCTAssertEqual(report.damage.count, 1)
        XCTAssertTrue(
            report.damage[0].hasPrefix("max_attempts is '0', not a positive number of attempts"), report.damage[0])
        XCTAssertTrue(report.damage[0].contains("HSET \(q.keys.meta) max_attempts 3"), report.damage[0])
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        XCTAssertTrue(json.contains("\"damage\":[\"max_attempts is"), json)
    }
}

/// `requeue BATCH --job ID`: one failed job back into the queue, the others left failed.
final class RequeueOneJobTests: XCTestCase {
    func testOnlyTheNamedDeadLetterIsRequeued() throws {
        let redis = try RedisServer.temporary()
        let q = try BatchQueue(client: try redis.client(), batchID: "requeue-one")
        try q.create(spec: Data("{}".utf8), maxAttempts: 1, leaseMs: 30_000)
        for id in ["a1", "b2", "c3"] { XCTAssertTrue(try q.submit(jobID: id, payload: Data("{}".utf8))) }
        for _ in 0..<3 {
            let lease = try XCTUnwrap(try q.take(worker: "w"))
            XCTAssertEqual(try q.fail(lease, error: "boom", permanent: true), .deadLettered)
        }
        XCTAssertEqual(try q.requeueDead(only: ["b2", "nope"]), ["b2"])
        XCTAssertEqual(Set(try q.deadLetters().compactMap { $0.string("job") }), ["a1", "c3"])
        XCTAssertEqual(try q.status().queued, 1)
        XCTAssertEqual(Set(try q.requeueDead()), ["a1", "c3"])
    }
}
