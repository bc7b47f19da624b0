import Foundation
import RedisQueue
import XCTest

/// A Redis restart that loads a big AOF answers -LOADING for a while: that is "not now",
/// never a failure. Clients wait it out; the queue's reads go through once loading ends.
final class TransientErrorTests: XCTestCase {
    func testCommandsWaitOutAServerLoadingItsData() throws {
        let server = try RedisServer.temporary()
        defer { server.shutdown() }
        let writer = try server.client()
        try writer.command(["EVAL", "for i = 1, 20000 do redis.call('SET', 'k' .. i, i) end return 1", "0"])
        let queue = try BatchQueue(client: writer, batchID: "loading")
        try queue.create(spec: Data("{}".utf8))
        server.stop()
        // 20,000 keys × 100 µs: the restarted server spends about two seconds loading.
        server.options.extraArguments = ["--key-load-delay", "100"]
        try server.start()

        let impatient = try server.client(options: .init(connectTimeout: 2, commandTimeout: 5, retry: .none))
        do {
            _ = try impatient.command(["GET", "k5"])
        } catch let e as RedisError {
            XCTAssertTrue(e.isTransient, "\(e) must count as transient")
        }
        let patient = try server.client(
            options: .init(
                connectTimeout: 2, commandTimeout: 5,
                retry: .init(maxAttempts: 200, initialBackoff: 0.05, maxBackoff: 0.2)))
        XCTAssertEqual(try patient.withRetry { try patient.command(["GET", "k5"]) }.string, "5")
        XCTAssertEqual(try BatchQueue(client: patient, batchID: "loading").counters()?.total, 0)
    }

    func testTransientCodes() {
        for code in ["LOADING Redis is loading", "BUSY Redis is busy running a script", "MASTERDOWN Link down"] {
            XCTAssertTrue(RedisError.server(code).isTransient, code)
        }
        XCTAssertFalse(RedisError.server("WRONGTYPE Operation against a key").isTransient)
        XCTAssertFalse(RedisError.authenticationFailed("wrong password").isTransient)
        XCTAssertTrue(RedisError.connectionLost(endpoint: "x", reason: "reset").isTransient)
    }
}
