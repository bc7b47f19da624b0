import Foundation
import XCTest

@testable import Support

/// The metrics endpoint on IPv4 and IPv6 loopback, `::` taking both, and a bad address named.
final class MetricsServerTests: XCTestCase {
    /// One GET over a socket of `family` to the loopback address; the response's text.
    func get(family: Int32, port: UInt16) throws -> String {
        let s = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(s, 0)
        defer { close(s) }
        var storage = sockaddr_storage()
        let length: socklen_t
        if family == AF_INET6 {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = port.bigEndian
            addr.sin6_addr = in6addr_loopback
            withUnsafeBytes(of: addr) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            withUnsafeBytes(of: addr) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        let connected = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, length) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let request = Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = write(s, request, request.count)
        var response = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(s, &chunk, chunk.count)
            if n <= 0 { break }
            response += chunk[0..<n]
        }
        return String(decoding: response, as: UTF8.self)
    }

    func testServesOnIPv4IPv6AndBoth() throws {
        let v4 = try MetricsServer(address: "127.0.0.1", port: 0) { "muse_up 1\n" }
        XCTAssertTrue(try get(family: AF_INET, port: v4.port).hasSuffix("muse_up 1\n"))
        let v6 = try MetricsServer(address: "::1", port: 0) { "muse_up 6\n" }
        XCTAssertTrue(try get(family: AF_INET6, port: v6.port).hasSuffix("muse_up 6\n"))
        let both = try MetricsServer(address: "::", port: 0) { "muse_up 2\n" }
        XCTAssertTrue(try get(family: AF_INET6, port: both.port).hasSuffix("muse_up 2\n"))
        XCTAssertTrue(try get(family: AF_INET, port: both.port).hasSuffix("muse_up 2\n"))
        XCTAssertThrowsError(try MetricsServer(address: "localhost", port: 0) { "" }) {
            XCTAssertTrue("\($0)".contains("'localhost' is not an IPv4 or IPv6 address"), "\($0)")
        }
    }
}
