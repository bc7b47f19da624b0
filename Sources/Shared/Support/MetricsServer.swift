import Foundation

/// Serves one text document over HTTP — the Prometheus exposition text at `GET /metrics` —
/// on a plain socket with a thread of its own. Hand-written because the whole protocol needed
/// is one request line and one response: an HTTP framework (NIO, Hummingbird) would add
/// minutes to every clean build for it. Requests are read up to 8 KiB with a 2 s timeout, so a
/// slow or hostile client cannot hold it.
public final class MetricsServer: @unchecked Sendable {
    public let port: UInt16
    private let fd: Int32
    private let body: @Sendable () -> String

    /// Binds `address:port` (port 0: any free port; `port` says which). An IPv4 address
    /// (`127.0.0.1`, `0.0.0.0`) or an IPv6 one (`::1`; `::` listens on IPv6 and IPv4 alike).
    public init(address: String, port: UInt16, body: @escaping @Sendable () -> String) throws {
        self.body = body
        let ipv6 = address.contains(":")
        let s = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else {
            throw MetricsServerError("metrics: cannot create a socket: \(String(cString: strerror(errno)))")
        }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = sockaddr_storage()
        let length: socklen_t
        if ipv6 {
            // `::` takes IPv4 clients too (mapped addresses), whatever the system's default.
            var dual: Int32 = 0
            setsockopt(s, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &dual, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, address, &addr.sin6_addr) == 1 else {
                close(s)
                throw MetricsServerError("--metrics-address: '\(address)' is not an IPv4 or IPv6 address")
            }
            withUnsafeBytes(of: addr) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            guard inet_pton(AF_INET, address, &addr.sin_addr) == 1 else {
                close(s)
                throw MetricsServerError("--metrics-address: '\(address)' is not an IPv4 or IPv6 address")
            }
            withUnsafeBytes(of: addr) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) }
        }
        guard bound == 0, listen(s, 16) == 0 else {
            let e = String(cString: strerror(errno))
            close(s)
            throw MetricsServerError("metrics: cannot listen on \(address):\(port): \(e)")
        }
        var actual = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) }
        }
        // sin_port and sin6_port sit at the same offset, right after the family.
        self.port = withUnsafeBytes(of: actual) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
        fd = s
        Thread.detachNewThread { [self] in serve() }
    }

    private func serve() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return
            }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            respond(c)
            close(c)
        }
    }

    private func respond(_ c: Int32) {
        var request = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1024)
        while request.count < 8192, !request.suffix(4).elementsEqual([13, 10, 13, 10]) {
            let n = read(c, &chunk, chunk.count)
            if n <= 0 { break }
            request += chunk[0..<n]
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let (status, type, text): (String, String, String)
        if parts.count >= 2, parts[0] == "GET", parts[1] == "/metrics" || parts[1].hasPrefix("/metrics?") {
            (status, type, text) = ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body())
        } else {
            (status, type, text) = ("404 Not Found", "text/plain; charset=utf-8", "only GET /metrics is served\n")
        }
        let payload = Array(text.utf8)
        let head =
            "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n\r\n"
        let all = Array(head.utf8) + payload
        var sent = 0
        while sent < all.count {
            let n = all[sent...].withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            sent += n
        }
    }
}

public struct MetricsServerError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}
