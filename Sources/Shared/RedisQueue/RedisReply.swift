import Foundation
import Support

/// One decoded RESP2 reply. Bulk strings stay bytes, because job payloads, images and
/// checkpoints travel through Redis unchanged.
public enum RedisReply: Equatable, Sendable {
    case string(Data)
    case integer(Int64)
    case array([RedisReply])
    case null
    case status(String)
    case error(String)

    public var data: Data? {
        switch self {
        case .string(let d): return d
        case .status(let s): return Data(s.utf8)
        default: return nil
        }
    }

    public var string: String? { data.map { String(decoding: $0, as: UTF8.self) } }

    /// Integers, or bulk strings holding a decimal integer (HGET of a counter).
    public var int: Int64? {
        switch self {
        case .integer(let n): return n
        case .string, .status: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    public var array: [RedisReply]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var isNull: Bool { self == .null }
}

public enum RedisError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case invalidURL(String)
    /// The server could not be reached at all (refused, no such socket, DNS, connect timeout).
    case connectFailed(endpoint: String, reason: String)
    case authenticationFailed(String)
    /// An established connection broke (server restart, network); the command may or may not
    /// have run. Callers retry only operations that are safe to repeat.
    case connectionLost(endpoint: String, reason: String)
    case timeout(endpoint: String)
    /// The server answered with an error reply (e.g. "WRONGTYPE ...").
    case server(String)
    case protocolError(String)
    case unexpectedReply(String)

    public var description: String {
        switch self {
        case .invalidURL(let m): return m
        case .connectFailed(let e, let r): return "cannot connect to Redis at \(e): \(r)"
        case .authenticationFailed(let m): return "Redis authentication failed: \(m)"
        case .connectionLost(let e, let r): return "lost connection to Redis at \(e): \(r)"
        case .timeout(let e): return "Redis command timed out at \(e)"
        case .server(let m): return "Redis error: \(m)"
        case .protocolError(let m): return "Redis protocol error: \(m)"
        case .unexpectedReply(let m): return "unexpected Redis reply: \(m)"
        }
    }

    public var errorDescription: String? { description }

    /// Error replies that mean "not now" rather than "no": the server is loading its data
    /// set (LOADING), running a long script (BUSY), or has no master (MASTERDOWN, TRYAGAIN).
    /// The command did not run, so it is safe to repeat.
    public static let transientServerCodes: Set<String> = ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"]

    /// Errors after which waiting (and a fresh connection) may succeed: the server is
    /// unreachable, the connection broke, or it answered one of `transientServerCodes`.
    /// Everyone waits these out; none of them is a reason to fail a job.
    public var isTransient: Bool {
        switch self {
        case .connectFailed, .connectionLost, .timeout: return true
        case .server: return serverCode.map(Self.transientServerCodes.contains) ?? false
        default: return false
        }
    }

    /// Redis's error code: the first word of an error reply ("NOSCRIPT", "BUSYGROUP", ...).
    public var serverCode: String? {
        if case .server(let m) = self { return m.split(separator: " ").first.map(String.init) }
        return nil
    }
}

/// Anything that can be one argument of a Redis command, as raw bytes.
public protocol RedisArgument {
    var redisBytes: [UInt8] { get }
}

extension String: RedisArgument { public var redisBytes: [UInt8] { Array(utf8) } }
extension Substring: RedisArgument { public var redisBytes: [UInt8] { Array(utf8) } }
extension Data: RedisArgument { public var redisBytes: [UInt8] { [UInt8](self) } }
extension Array: RedisArgument where Element == UInt8 { public var redisBytes: [UInt8] { self } }
extension Int: RedisArgument { public var redisBytes: [UInt8] { Array(String(self).utf8) } }
extension Int64: RedisArgument { public var redisBytes: [UInt8] { Array(String(self).utf8) } }
extension UInt64: RedisArgument { public var redisBytes: [UInt8] { Array(String(self).utf8) } }
extension UInt32: RedisArgument { public var redisBytes: [UInt8] { Array(String(self).utf8) } }
extension Double: RedisArgument { public var redisBytes: [UInt8] { Array(String(self).utf8) } }
