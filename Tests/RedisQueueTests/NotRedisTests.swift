import Foundation
import XCTest

@testable import RedisQueue

/// An endpoint that answers but is not Redis (here a one-shot HTTP-like responder on
/// loopback) is named as such, with what to check, instead of hiredis' bare
/// "got 'H' as reply type byte".
final class NotRedisTests: XCTestCase {
    func testHTTPServerIsNamedNotRedis() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                guard bind(listener, $0, length) == 0, listen(listener, 4) == 0,
                    getsockname(listener, $0, &length) == 0
                else { throw POSIXError(.EADDRINUSE) }
            }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        // Answers each connection's first bytes with an HTTP error, as a web server on that port would.
        let responder = Thread {
            for _ in 0..<4 {
                let client = accept(listener, nil, nil)
                if client < 0 { return }
                var buffer = [UInt8](repeating: 0, count: 512)
                _ = read(client, &buffer, buffer.count)
                let reply = Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".utf8)
                _ = write(client, reply, reply.count)
                close(client)
            }
        }
        responder.start()
        let options = RedisClient.Options(connectTimeout: 2, commandTimeout: 2, retry: .none)
        XCTAssertThrowsError(
            try RedisClient(endpoint: .tcp("127.0.0.1", port: port), options: options).command(["PING"])
        ) {
            let message = "\($0)"
            XCTAssertTrue(message.contains("redis://127.0.0.1:\(port) does not speak the Redis protocol"), message)
            XCTAssertTrue(message.contains("HTTP server") && message.contains("REDIS_URL"), message)
        }
    }
}
