import Foundation
import Support

/// Ownership of one job, as returned by `BatchQueue.take`. Every fenced call carries the
/// epoch; once another worker has taken the job, calls with this lease are refused.
public struct JobLease: Sendable, Equatable {
    public let batchID: String
    public let jobID: String
    public let worker: String
    public let epoch: UInt64
    /// 1 for the first take; counts takes that did not end in release().
    public let attempt: Int
    public let payload: Data
    /// The last checkpoint written by any earlier owner, if any (validate before use).
    public let checkpoint: Data?
    /// Taken over from an owner whose lease lapsed (XAUTOCLAIM), not read fresh from the queue.
    public internal(set) var reclaimed = false
}

public enum PublishOutcome: Sendable, Equatable {
    case published
    /// A retried call whose first try had already gone through.
    case alreadyPublished
    /// This lease's epoch is no longer current: the result was dropped.
    case stale
}

public enum FailOutcome: Sendable, Equatable {
    case requeued
    case deadLettered
    case stale
}

public struct BatchMetadata: Sendable, Equatable {
    public var spec: Data
    public var maxAttempts: Int
    public var leaseMs: Int
    public var createdMs: Int64
    /// What is wrong with the stored record, each with its fix: workers skip a batch whose
    /// lease or attempts are not positive numbers, so it would otherwise wait in silence.
    public var damage: [String] = []
}

public struct StreamEntry: Sendable, Equatable {
    public let id: String
    public let fields: [String: Data]
    public func string(_ key: String) -> String? { fields[key].map { String(decoding: $0, as: UTF8.self) } }
}

public struct WorkerStatus: Sendable, Equatable {
    public let name: String
    public let lastSeenMsAgo: Int64
    /// Job in hand at the last heartbeat; nil when idle.
    public let jobID: String?
    public let alive: Bool
}

public struct JobRecord: Sendable, Equatable {
    public let jobID: String
    public let state: String
    public let attempts: Int
    public let epoch: UInt64
    public let owner: String?
    public let error: String?
    public let checkpointStep: Int?

    /// The publish script ran: the job's result is in the results stream (state `done`).
    public var isPublished: Bool { state == "done" }
}

public struct BatchStatus: Sendable, Equatable {
    public let total: Int
    public let done: Int
    public let failed: Int
    /// Jobs held under a live lease.
    public let running: Int
    /// Jobs whose owner stopped renewing; they are reclaimed once their entry is idle.
    public let stalled: Int
    public var queued: Int { max(0, total - done - failed - running - stalled) }
    public var finished: Bool { total > 0 && done + failed == total }
    public let workers: [WorkerStatus]
}
