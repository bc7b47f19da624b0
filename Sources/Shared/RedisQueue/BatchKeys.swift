import Foundation
import Support

/// Key layout of one batch. Every key starts with the hash tag `{batch:<id>}`, so a whole
/// batch lives in one cluster slot and every Lua script may touch any of its keys.
/// See manifests/QUEUE.md for what each key holds.
public struct BatchKeys: Sendable {
    public let batchID: String
    public let tag: String

    /// Global index of batch ids (outside any batch's tag; only read by listings).
    public static let index = "muse:batches"
    public static let group = "workers"

    public init(batchID: String) throws {
        guard Self.isValidID(batchID) else {
            throw QueueError.invalidID("batch id '\(batchID)' must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        }
        self.batchID = batchID
        self.tag = "{batch:\(batchID)}"
    }

    public var meta: String { "\(tag):meta" }
    public var jobs: String { "\(tag):jobs" }
    public var results: String { "\(tag):results" }
    public var dead: String { "\(tag):dead" }
    public var running: String { "\(tag):running" }
    public var workers: String { "\(tag):workers" }
    public func job(_ id: String) -> String { "\(tag):job:\(id)" }
    public func lease(_ id: String) -> String { "\(tag):lease:\(id)" }
    public func checkpoint(_ id: String) -> String { "\(tag):ckpt:\(id)" }
    public func blob(_ name: String) -> String { "\(tag):blob:\(name)" }

    static func isValidID(_ s: String) -> Bool {
        guard (1...128).contains(s.utf8.count) else { return false }
        return s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == 0x2E || c == 0x5F || c == 0x3A || c == 0x2D
        }
    }
}

public enum QueueError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case invalidID(String)
    case noSuchBatch(String)
    /// A batch whose own records are damaged (non-numeric settings): skipped, others go on.
    case damagedBatch(String, String)
    case unexpected(String)

    public var description: String {
        switch self {
        case .invalidID(let m): return m
        case .noSuchBatch(let id): return "batch '\(id)' does not exist in Redis (submit it first)"
        case .damagedBatch(let id, let why): return "batch '\(id)' is damaged in Redis: \(why)"
        case .unexpected(let m): return "queue protocol error: \(m)"
        }
    }

    public var errorDescription: String? { description }
}
