import Foundation
import XCTest

@testable import RedisQueue

/// The binaries warn at start when the Redis they share would lose batches.
final class ServerSettingsCheckTests: XCTestCase {
    func testWarnsAboutNoPersistenceAndEviction() throws {
        let server = try RedisServer.temporary()
        let client = try server.client()
        XCTAssertEqual(ServerSettingsCheck.warnings(client), [], "AOF on, noeviction: nothing to say")
        try client.command(["CONFIG", "SET", "appendonly", "no"])
        try client.command(["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        let warnings = ServerSettingsCheck.warnings(client)
        XCTAssertEqual(warnings.count, 2, "\(warnings)")
        XCTAssertTrue(warnings[0].contains("does not persist (appendonly no, no save points)"), warnings[0])
        XCTAssertTrue(warnings[1].contains("evicts keys when full (maxmemory-policy allkeys-lru)"), warnings[1])
        try client.command(["CONFIG", "SET", "save", "3600 1"])
        XCTAssertEqual(ServerSettingsCheck.warnings(client).count, 1, "RDB save points persist too")
    }
}
