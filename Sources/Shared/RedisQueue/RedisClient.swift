import CHiredis
import Foundation
import Support

/// A synchronous Redis connection over hiredis.
///
/// - Binary safe: every command goes through `redisCommandArgv` with explicit lengths.
/// - Thread safe: one command at a time (a lock), so a lease-renewal thread may share it.
/// - After any I/O error the hiredis context is unusable, so it is dropped; the next
///   command reconnects (re-AUTH, re-SELECT). `withRetry` adds bounded retries with backoff
///   for operations that are safe to repeat — that is how callers survive a server restart.
public final class RedisClient: @unchecked Sendable {
    public struct RetryPolicy: Sendable {
        public var maxAttempts: Int
        public var initialBackoff: TimeInterval
        public var maxBackoff: TimeInterval
        public init(maxAttempts: Int = 8, initialBackoff: TimeInterval = 0.05, maxBackoff: TimeInterval = 1.0) {
            self.maxAttempts = maxAttempts
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
        }
        public static let none = RetryPolicy(maxAttempts: 1)
    }

    public struct Options: Sendable {
        public var connectTimeout: TimeInterval
        /// nil waits forever. Blocking reads get their own, longer timeout per call.
        public var commandTimeout: TimeInterval?
        public var retry: RetryPolicy
        public init(
            connectTimeout: TimeInterval = 5, commandTimeout: TimeInterval? = 30,
            retry: RetryPolicy = RetryPolicy()
        ) {
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.retry = retry
        }
    }

    public let endpoint: RedisEndpoint
    public let options: Options
    private var context: UnsafeMutablePointer<redisContext>?
    private let lock = NSLock()

    /// Connects once, immediately, so a wrong address or password fails at start-up with a
    /// clear message rather than on the first job.
    public init(endpoint: RedisEndpoint, options: Options = Options()) throws {
        _ = Self.ignoreSIGPIPE
        self.endpoint = endpoint
        self.options = options
        lock.lock()
        defer { lock.unlock() }
        // Connect now so a wrong address or password is reported at once; a server that is
        // up but still loading its data is no reason to fail: the first command reconnects.
        do { try connectLocked() } catch let e as RedisError where e.serverCode != nil && e.isTransient {}
    }

    deinit {
        if let c = context { redisFree(c) }
    }

    /// hiredis writes with write(2): a server that went away would otherwise kill the whole
    /// process with SIGPIPE instead of giving us EPIPE to reconnect on.
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    public var isConnected: Bool {
        lock.lock()
        defer { lock.unlock() }
        return context != nil
    }

    public func close() {
        lock.lock()
        defer { lock.unlock() }
        dropLocked()
    }

    // MARK: Commands

    /// Runs a command; an error reply is thrown as `RedisError.server`.
    @discardableResult
    public func command(_ args: RedisArgument...) throws -> RedisReply {
        try command(args)
    }

    @discardableResult
    public func command(_ args: [RedisArgument], timeout: TimeInterval? = nil) throws -> RedisReply {
        let reply = try rawCommand(args, timeout: timeout)
        if case .error(let message) = reply { throw Self.classify(message) }
        return reply
    }

    /// Runs a command and returns error replies as `.error` values instead of throwing.
    public func rawCommand(_ args: [RedisArgument], timeout: TimeInterval? = nil) throws -> RedisReply {
        precondition(!args.isEmpty, "empty Redis command")
        lock.lock()
        defer { lock.unlock() }
        if context == nil { try connectLocked() }
        if let timeout { applyTimeoutLocked(timeout) }
        defer { if timeout != nil { applyTimeoutLocked(options.commandTimeout) } }
        return try sendLocked(args.map { $0.redisBytes })
    }

    /// Repeats `body` after connection errors, with exponential backoff, up to the retry
    /// policy's attempt count. Only for work that is safe to run twice.
    public func withRetry<T>(_ body: () throws -> T) throws -> T {
        var delay = options.retry.initialBackoff
        var attempt = 1
        while true {
            do {
                return try body()
            } catch let error as RedisError where error.isTransient && attempt < options.retry.maxAttempts {
                attempt += 1
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, options.retry.maxBackoff)
            }
        }
    }

    /// EVALSHA first (scripts are cached server-side); EVAL when the server does not know the
    /// script yet, e.g. after a restart or SCRIPT FLUSH.
    @discardableResult
    public func eval(_ script: RedisScript, keys: [String], args: [RedisArgument]) throws -> RedisReply {
        var tail: [RedisArgument] = [keys.count]
        tail += keys as [RedisArgument]
        tail += args
        let reply = try rawCommand(["EVALSHA", script.sha1] + tail)
        if case .error(let message) = reply {
            guard message.hasPrefix("NOSCRIPT") else { throw Self.classify(message) }
            return try command(["EVAL", script.source] + tail)
        }
        return reply
    }

    // MARK: Connection management (lock held)

    private func connectLocked() throws {
        dropLocked()
        let tv = Self.makeTimeval(options.connectTimeout)
        let c: UnsafeMutablePointer<redisContext>?
        switch endpoint.address {
        case .tcp(let host, let port): c = redisConnectWithTimeout(host, Int32(port), tv)
        case .unix(let path): c = redisConnectUnixWithTimeout(path, tv)
        }
        guard let c else { throw RedisError.connectFailed(endpoint: endpoint.description, reason: "out of memory") }
        if c.pointee.err != 0 {
            let reason = Self.errorString(c)
            redisFree(c)
            throw RedisError.connectFailed(endpoint: endpoint.description, reason: Self.lowerFirst(reason))
        }
        context = c
        if case .tcp = endpoint.address { _ = redisEnableKeepAlive(c) }
        applyTimeoutLocked(options.commandTimeout)
        do {
            try handshakeLocked()
        } catch let RedisError.connectionLost(_, reason) {
            // Dropped during the handshake: to the caller this is a failed connect.
            throw RedisError.connectFailed(endpoint: endpoint.description, reason: reason)
        } catch {
            dropLocked()
            throw error
        }
    }

    private func handshakeLocked() throws {
        if let password = endpoint.password {
            var args: [[UInt8]] = [Array("AUTH".utf8)]
            if let user = endpoint.username { args.append(Array(user.utf8)) }
            args.append(Array(password.utf8))
            if case .error(let message) = try sendLocked(args) {
                // A password set for a server that has none is harmless.
                if !message.contains("without any password configured") {
                    throw Self.classify(message, usingUsername: endpoint.username != nil)
                }
            }
        }
        if endpoint.db != 0,
            case .error(let message) = try sendLocked([Array("SELECT".utf8), Array(String(endpoint.db).utf8)])
        {
            throw Self.classify(message)
        }
        // PING surfaces NOAUTH now rather than on the first real command.
        if case .error(let message) = try sendLocked([Array("PING".utf8)]) { throw Self.classify(message) }
    }

    private func dropLocked() {
        if let c = context { redisFree(c) }
        context = nil
    }

    private func applyTimeoutLocked(_ seconds: TimeInterval?) {
        guard let c = context else { return }
        // A zero timeval means "block forever" to hiredis.
        _ = redisSetTimeout(c, Self.makeTimeval(seconds ?? 0))
    }

    private func sendLocked(_ args: [[UInt8]]) throws -> RedisReply {
        guard let c = context else {
            throw RedisError.connectionLost(endpoint: endpoint.description, reason: "not connected")
        }
        var flat = [UInt8]()
        flat.reserveCapacity(args.reduce(1) { $0 + $1.count })
        var offsets = [Int]()
        var lengths = [Int]()
        for a in args {
            offsets.append(flat.count)
            lengths.append(a.count)
            flat.append(contentsOf: a)
        }
        flat.append(0)  // never hand hiredis a nil base pointer, even for empty arguments
        let raw: UnsafeMutableRawPointer? = flat.withUnsafeBufferPointer { buf in
            let base = UnsafeRawPointer(buf.baseAddress!).assumingMemoryBound(to: CChar.self)
            var ptrs: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return redisCommandArgv(c, Int32(args.count), &ptrs, lengths)
        }
        let savedErrno = errno
        guard let raw else {
            let error = classifyIOError(c, errno: savedErrno)
            dropLocked()  // hiredis contexts are unusable after an I/O error
            throw error
        }
        let replyPtr = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return Self.convert(replyPtr)
    }

    private func classifyIOError(_ c: UnsafeMutablePointer<redisContext>, errno code: Int32) -> RedisError {
        let text = Self.errorString(c)
        switch c.pointee.err {
        case REDIS_ERR_IO where code == EAGAIN || code == EWOULDBLOCK || text.contains("temporarily unavailable"):
            return .timeout(endpoint: endpoint.description)
        case REDIS_ERR_EOF:
            return .connectionLost(endpoint: endpoint.description, reason: "server closed the connection")
        case REDIS_ERR_PROTOCOL:
            // hiredis says only `got "H" as reply type byte`: whatever answered is not Redis.
            let guess = text.contains("\"H\"") ? " (it answered like an HTTP server)" : ""
            return .protocolError(
                "\(endpoint.description) does not speak the Redis protocol\(guess): \(text); "
                    + "check the host and port of --redis / REDIS_URL")
        default:
            return .connectionLost(endpoint: endpoint.description, reason: Self.lowerFirst(text))
        }
    }

    // MARK: Helpers

    static func classify(_ message: String, usingUsername: Bool = false) -> RedisError {
        if message.hasPrefix("WRONGPASS") || message.hasPrefix("ERR invalid password") {
            return .authenticationFailed(usingUsername ? "wrong username or password" : "wrong password")
        }
        if message.hasPrefix("NOAUTH") {
            return .authenticationFailed(
                "the server requires a password (NOAUTH); set REDIS_PASSWORD or REDIS_PASSWORD_FILE")
        }
        return .server(message)
    }

    private static func convert(_ r: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let reply = r.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            guard let s = reply.str, reply.len > 0 else { return .string(Data()) }
            return .string(Data(bytes: s, count: Int(reply.len)))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            var items = [RedisReply]()
            items.reserveCapacity(Int(reply.elements))
            for i in 0..<Int(reply.elements) {
                if let e = reply.element[i] { items.append(convert(e)) } else { items.append(.null) }
            }
            return .array(items)
        case REDIS_REPLY_STATUS:
            return .status(text(reply))
        case REDIS_REPLY_ERROR:
            return .error(text(reply))
        default:
            return .null
        }
    }

    private static func text(_ reply: redisReply) -> String {
        guard let s = reply.str else { return "" }
        let bytes = UnsafeRawBufferPointer(start: s, count: Int(reply.len))
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func errorString(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    private static func lowerFirst(_ s: String) -> String {
        guard let f = s.first else { return "unknown error" }
        return f.lowercased() + s.dropFirst()
    }

    private static func makeTimeval(_ seconds: TimeInterval) -> timeval {
        let whole = Int(seconds)
        return timeval(tv_sec: whole, tv_usec: Int((seconds - Double(whole)) * 1_000_000))
    }
}

/// A Lua script with its SHA-1, as EVALSHA needs.
public struct RedisScript: Sendable {
    public let source: String
    public let sha1: String
    public init(_ source: String) {
        self.source = source
        self.sha1 = Hashing.sha1Hex(source)
    }
}
