import Foundation
import Support
import XCTest

@testable import RedisQueue

final class RedisClientTests: XCTestCase {
    var server: RedisServerFixture!

    override func setUpWithError() throws {
        server = try RedisServerFixture()
    }

    override func tearDown() {
        server = nil  // deinit stops the server and removes its directory
    }

    func testBinarySafeRoundTripIncludingNULs() throws {
        let c = try server.client()
        let value = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) } + [0, 0, 0, 255, 0])
        let key = Data([0x6B, 0x00, 0x01, 0xFF, 0x00])
        XCTAssertEqual(try c.command(["SET", key, value]), .status("OK"))
        XCTAssertEqual(try c.command(["GET", key]), .string(value))
        XCTAssertEqual(try c.command(["STRLEN", key]), .integer(Int64(value.count)))
        // Empty arguments and values survive too.
        try c.command(["SET", "empty", Data()])
        XCTAssertEqual(try c.command(["GET", "empty"]), .string(Data()))
        XCTAssertEqual(try c.command(["HSET", "h", Data([0, 1]), Data([2, 0])]), .integer(1))
        XCTAssertEqual(try c.command(["HGETALL", "h"]), .array([.string(Data([0, 1])), .string(Data([2, 0]))]))
    }

    func testReplyTypesAndServerErrors() throws {
        let c = try server.client()
        XCTAssertEqual(try c.command("PING"), .status("PONG"))
        XCTAssertEqual(try c.command("INCRBY", "n", 41), .integer(41))
        XCTAssertEqual(try c.command("GET", "missing"), .null)
        XCTAssertEqual(try c.command("GET", "n").int, 41)
        try c.command("SET", "s", "x")
        XCTAssertThrowsError(try c.command("INCR", "s")) { error in
            guard case .server(let message) = error as? RedisError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("ERR"), message)
        }
        if case .error = try c.rawCommand(["INCR", "s"]) {
        } else {
            XCTFail("rawCommand should return the error reply")
        }
        XCTAssertTrue(c.isConnected, "a server error must not drop the connection")
    }

    func testUnreachableServerGivesClearError() {
        let opts = RedisClient.Options(connectTimeout: 2, commandTimeout: 2, retry: .none)
        XCTAssertThrowsError(try RedisClient(endpoint: .tcp("127.0.0.1", port: 1), options: opts)) { error in
            XCTAssertEqual("\(error)", "cannot connect to Redis at redis://127.0.0.1:1: connection refused")
            XCTAssertEqual((error as? RedisError)?.isTransient, true)
        }
        XCTAssertThrowsError(try RedisClient(endpoint: .unix(server.dir.path + "/nope.sock"), options: opts)) { error in
            XCTAssertEqual(
                "\(error)", "cannot connect to Redis at unix://\(server.dir.path)/nope.sock: no such file or directory")
        }
    }

    func testCommandTimeoutIsReportedAndConnectionRecovers() throws {
        let c = try server.client(options: .init(connectTimeout: 2, commandTimeout: 0.2, retry: .none))
        let start = Date()
        XCTAssertThrowsError(try c.command("BLPOP", "never", 5)) { error in
            XCTAssertEqual(error as? RedisError, .timeout(endpoint: server.endpoint().description))
            XCTAssertTrue("\(error)".contains("timed out"))
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
        // The broken context was dropped; the next command reconnects.
        XCTAssertEqual(try c.command("PING"), .status("PONG"))
        // A per-call timeout longer than the block lets a blocking command finish.
        XCTAssertEqual(try c.command(["BLPOP", "never", "0.3"], timeout: 2), .null)
    }

    func testEvalShaFallsBackToEvalOnNoScript() throws {
        let c = try server.client()
        let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        XCTAssertEqual(
            script.sha1, try c.command("SCRIPT", "LOAD", script.source).string, "local SHA-1 must match Redis")
        try c.command("SCRIPT", "FLUSH")
        XCTAssertEqual(try c.eval(script, keys: ["k"], args: [5]), .integer(5))  // NOSCRIPT -> EVAL
        XCTAssertEqual(try c.command("SCRIPT", "EXISTS", script.sha1), .array([.integer(1)]))
        XCTAssertEqual(try c.eval(script, keys: ["k"], args: [2]), .integer(7))  // EVALSHA
        XCTAssertThrowsError(try c.eval(RedisScript("return redis.error_reply('NOPE bad')"), keys: [], args: [])) {
            error in
            XCTAssertEqual((error as? RedisError)?.serverCode, "NOPE")
        }
    }

    func testReconnectAfterServerRestartKeepsData() throws {
        let c = try server.client(db: 3)
        let blob = Data((0..<1000).map { UInt8($0 % 251) })
        try c.command("SET", "persist", blob)
        server.stop()
        XCTAssertThrowsError(try c.command("GET", "persist")) { error in
            XCTAssertEqual((error as? RedisError)?.isTransient, true, "\(error)")
        }
        // The server comes back while the caller is retrying.
        let restarted = expectation(description: "restarted")
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) {
            do { try self.server.start() } catch { XCTFail("restart failed: \(error)") }
            restarted.fulfill()
        }
        let value = try c.withRetry { try c.command("GET", "persist") }
        wait(for: [restarted], timeout: 15)
        XCTAssertEqual(value, .string(blob), "AOF must bring the data back, and SELECT 3 must be redone")
        XCTAssertEqual(try c.command("CLIENT", "INFO").string?.contains("db=3"), true)
    }
}

final class RedisAuthTests: XCTestCase {
    var server: RedisServerFixture!

    override func setUpWithError() throws {
        server = try RedisServerFixture(password: "s3cret pass")
    }

    override func tearDown() {
        server = nil
    }

    func testWrongPasswordGivesClearError() {
        XCTAssertThrowsError(try server.client(auth: .password("wrong"))) { error in
            XCTAssertEqual(error as? RedisError, .authenticationFailed("wrong password"))
            XCTAssertEqual("\(error)", "Redis authentication failed: wrong password")
        }
    }

    func testMissingPasswordGivesClearError() {
        XCTAssertThrowsError(try server.client(auth: .none)) { error in
            guard case .authenticationFailed(let message) = error as? RedisError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("NOAUTH") && message.contains("REDIS_PASSWORD"), message)
        }
    }

    func testRightPasswordAndReauthAfterRestart() throws {
        let c = try server.client()
        try c.command("SET", "a", "1")
        try server.restart()
        XCTAssertEqual(try c.withRetry { try c.command("GET", "a") }, .string(Data("1".utf8)))
    }
}

final class RedisEndpointTests: XCTestCase {
    func testParsesURLForms() throws {
        XCTAssertEqual(try RedisEndpoint.parse(RedisEndpoint.defaultURL), .tcp("127.0.0.1", port: 6379))
        XCTAssertEqual(try RedisEndpoint.parse("redis://cache.local:6380/2"), .tcp("cache.local", port: 6380, db: 2))
        XCTAssertEqual(try RedisEndpoint.parse("redis://[::1]:7000"), .tcp("::1", port: 7000))
        XCTAssertEqual(try RedisEndpoint.parse("redis://host"), .tcp("host", port: 6379))
        XCTAssertEqual(try RedisEndpoint.parse("unix:///run/redis.sock"), .unix("/run/redis.sock"))
        XCTAssertEqual(try RedisEndpoint.parse("unix:///run/redis.sock?db=4"), .unix("/run/redis.sock", db: 4))
        for bad in [
            "http://x", "redis://h:0", "redis://h:99999", "redis://h/x", "unix://relative.sock", "redis://[::1",
        ] {
            XCTAssertThrowsError(try RedisEndpoint.parse(bad), bad)
        }
    }

    func testPasswordInURLOnlyFromEnvironment() throws {
        XCTAssertThrowsError(try RedisEndpoint.parse("redis://:pw@h:1")) { error in
            XCTAssertTrue("\(error)".contains("only from the REDIS_URL environment variable"), "\(error)")
        }
        XCTAssertThrowsError(try RedisEndpoint.resolve(url: "redis://:pw@h:1", environment: [:]))
        let e = try RedisEndpoint.resolve(environment: ["REDIS_URL": "redis://user:p%40ss@h:1/1"])
        XCTAssertEqual(e.password, "p@ss")
        XCTAssertEqual(e.username, "user")
        XCTAssertEqual(e.description, "redis://h:1/1", "the password must never be printed")
    }

    func testCredentialsFromEnvironmentAndFile() throws {
        XCTAssertEqual(try RedisEndpoint.resolve(environment: [:]), .tcp("127.0.0.1", port: 6379))
        XCTAssertEqual(
            try RedisEndpoint.resolve(url: "redis://h:2", environment: ["REDIS_PASSWORD": "x"]).password, "x")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString)")
        try Data("from-file\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        XCTAssertEqual(try RedisEndpoint.resolve(environment: ["REDIS_PASSWORD_FILE": file.path]).password, "from-file")
        XCTAssertThrowsError(try RedisEndpoint.resolve(environment: ["REDIS_PASSWORD_FILE": "/nonexistent/pw"]))
    }
}
