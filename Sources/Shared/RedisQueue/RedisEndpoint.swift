import Foundation
import Support

/// Where a Redis server lives and how to log in to it.
///
/// URL forms: `redis://[[user]:password@]host[:port][/db]` and `unix:///path/to.sock[?db=N]`.
/// Passwords are secrets: `description` never shows them.
public struct RedisEndpoint: Equatable, Sendable, CustomStringConvertible {
    public enum Address: Equatable, Sendable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var address: Address
    public var db: Int
    public var username: String?
    public var password: String?

    /// Loopback by default: a pipeline must be pointed at a remote server deliberately.
    public static let defaultURL = "redis://127.0.0.1:6379"

    public init(address: Address, db: Int = 0, username: String? = nil, password: String? = nil) {
        self.address = address
        self.db = db
        self.username = username
        self.password = password
    }

    public static func tcp(_ host: String = "127.0.0.1", port: Int = 6379, db: Int = 0) -> RedisEndpoint {
        RedisEndpoint(address: .tcp(host: host, port: port), db: db)
    }

    public static func unix(_ path: String, db: Int = 0) -> RedisEndpoint {
        RedisEndpoint(address: .unix(path: path), db: db)
    }

    /// Where to connect, without credentials (safe for logs and error messages).
    public var description: String {
        let dbSuffix = db == 0 ? "" : "/\(db)"
        switch address {
        case .tcp(let host, let port):
            let h = host.contains(":") ? "[\(host)]" : host
            return "redis://\(h):\(port)\(dbSuffix)"
        case .unix(let path):
            return "unix://\(path)" + (db == 0 ? "" : "?db=\(db)")
        }
    }

    /// Parses a URL. A password inside it is refused unless `allowPassword`, because URLs
    /// given as arguments end up in `ps`, shell history and logs.
    public static func parse(_ url: String, allowPassword: Bool = false) throws -> RedisEndpoint {
        if url.hasPrefix("unix://") { return try parseUnix(String(url.dropFirst("unix://".count))) }
        guard url.hasPrefix("redis://") else {
            throw invalid("scheme must be redis:// or unix:// (TLS rediss:// is not supported)")
        }
        var rest = Substring(url.dropFirst("redis://".count))
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            (username, password) = try credentials(rest[..<at], allowPassword: allowPassword)
            rest = rest[rest.index(after: at)...]
        }
        var db = 0
        if let slash = rest.firstIndex(of: "/") {
            let dbText = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !dbText.isEmpty {
                guard let n = Int(dbText), n >= 0 else { throw invalid("database '\(dbText)' is not a number") }
                db = n
            }
        }
        let (host, port) = try hostAndPort(rest)
        return RedisEndpoint(address: .tcp(host: host, port: port), db: db, username: username, password: password)
    }

    static func invalid(_ why: String) -> RedisError { .invalidURL("invalid Redis URL: \(why)") }

    /// `/path/to.sock[?db=N]`
    static func parseUnix(_ text: String) throws -> RedisEndpoint {
        var rest = text
        var db = 0
        if let q = rest.firstIndex(of: "?") {
            let query = rest[rest.index(after: q)...]
            rest = String(rest[..<q])
            for item in query.split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2, kv[0] == "db", let n = Int(kv[1]), n >= 0 else {
                    throw invalid("unsupported query '\(item)' (only db=N)")
                }
                db = n
            }
        }
        guard rest.hasPrefix("/") else { throw invalid("unix socket path must be absolute (unix:///path/to.sock)") }
        return RedisEndpoint(address: .unix(path: rest), db: db)
    }

    /// `user:password` or `password` (the whole userinfo) from a URL.
    static func credentials(_ userinfo: Substring, allowPassword: Bool) throws -> (String?, String?) {
        let parts = userinfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let user = parts[0].removingPercentEncoding ?? String(parts[0])
        let username = parts.count == 2 && !user.isEmpty ? user : nil
        // redis://secret@host: the whole userinfo is the password
        let password = parts.count == 2 ? (parts[1].removingPercentEncoding ?? String(parts[1])) : user
        if !allowPassword {
            throw RedisError.invalidURL(
                "a password inside a Redis URL is accepted only from the REDIS_URL environment variable; "
                    + "use REDIS_PASSWORD or REDIS_PASSWORD_FILE instead")
        }
        return (username, password)
    }

    /// `host[:port]` or `[v6]:port`; loopback and 6379 when left out.
    static func hostAndPort(_ rest: Substring) throws -> (String, Int) {
        var host: String
        var portText: Substring?
        if rest.hasPrefix("[") {  // IPv6 literal
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unterminated IPv6 address") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw invalid("junk after host")
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            portText = rest[rest.index(after: colon)...]
        } else {
            host = String(rest)
        }
        if host.isEmpty { host = "127.0.0.1" }
        guard let p = portText else { return (host, 6379) }
        guard let n = Int(p), (1...65535).contains(n) else { throw invalid("port '\(p)' is not in 1...65535") }
        return (host, n)
    }

    /// The policy hook for credentials:
    /// - the URL comes from `url` (e.g. a `--redis` option) or else `REDIS_URL`, else loopback;
    /// - a password inside the URL is honoured only when the URL came from `REDIS_URL`;
    /// - otherwise the password comes from `REDIS_PASSWORD`, or from the file named by
    ///   `REDIS_PASSWORD_FILE` (trailing newline stripped). Never from the command line.
    /// `REDIS_USERNAME` selects an ACL user.
    public static func resolve(
        url: String? = nil,
        environment env: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> RedisEndpoint {
        var endpoint: RedisEndpoint
        if let url {
            endpoint = try parse(url, allowPassword: false)
        } else if let envURL = env["REDIS_URL"], !envURL.isEmpty {
            endpoint = try parse(envURL, allowPassword: true)
        } else {
            endpoint = try parse(defaultURL)
        }
        if endpoint.password == nil {
            endpoint.password = try passwordFromEnvironment(env)
        }
        if endpoint.username == nil, let user = env["REDIS_USERNAME"], !user.isEmpty {
            endpoint.username = user
        }
        return endpoint
    }

    static func passwordFromEnvironment(_ env: [String: String]) throws -> String? {
        if let pw = env["REDIS_PASSWORD"], !pw.isEmpty { return pw }
        guard let path = env["REDIS_PASSWORD_FILE"], !path.isEmpty else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RedisError.invalidURL("cannot read REDIS_PASSWORD_FILE '\(path)'")
        }
        var text = String(decoding: data, as: UTF8.self)
        while let last = text.last, last == "\n" || last == "\r" { text.removeLast() }
        if text.isEmpty { throw RedisError.invalidURL("REDIS_PASSWORD_FILE '\(path)' is empty") }
        return text
    }
}
