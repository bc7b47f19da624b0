import Foundation

/// One entry of a batch's dead letters (manifests/QUEUE.md): a job that failed its last
/// attempt, was abandoned, or was cancelled. The queue's scripts write them (RedisQueue knows
/// no job types, so it spells these names itself); the collector and `status` read them.
public struct DeadLetter: Equatable, Sendable {
    /// The entry's field names, in the order the scripts write them.
    public enum Field: String, CaseIterable, Sendable {
        case job, error
        /// "1" on a cancel's letter; absent otherwise.
        case cancelled
        case attempts, worker, epoch
    }

    public var jobID: String
    public var error: String
    /// Attempts used; nil when the letter's is not a number (the job's record was damaged: the
    /// scripts copy its text as they found it).
    public var attempts: Int?
    /// The last owner ("" for a job cancelled before anyone took it).
    public var worker: String
    /// The last owner's epoch; nil as for `attempts`.
    public var epoch: UInt64?
    /// Ended by `cancel` rather than by failing.
    public var cancelled: Bool

    public init(jobID: String, error: String, attempts: Int?, worker: String, epoch: UInt64?, cancelled: Bool = false) {
        self.jobID = jobID
        self.error = error
        self.attempts = attempts
        self.worker = worker
        self.epoch = epoch
        self.cancelled = cancelled
    }

    /// The manifest status of the job it ends.
    public var status: JobStatus { cancelled ? .cancelled : .failed }

    /// The fields as the queue's scripts write them (nil numbers left out).
    public func fields() -> [(String, Data)] {
        var out: [(String, Data)] = [
            (Field.job.rawValue, streamBytes(jobID)), (Field.error.rawValue, streamBytes(error)),
        ]
        if cancelled { out.append((Field.cancelled.rawValue, streamBytes(1))) }
        if let attempts { out.append((Field.attempts.rawValue, streamBytes(attempts))) }
        out.append((Field.worker.rawValue, streamBytes(worker)))
        if let epoch { out.append((Field.epoch.rawValue, streamBytes(epoch))) }
        return out
    }

    /// Reads a dead letter's fields; a missing `job`, `error` or `worker`, or a `cancelled`
    /// other than "1", is a `StreamRecordError` that names it.
    public init(fields: [String: Data]) throws {
        let f = StreamFields<Field>(record: "dead letter", fields: fields)
        jobID = try f.string(.job)
        error = try f.string(.error)
        worker = try f.string(.worker)
        attempts = f.optionalNumber(.attempts)
        epoch = f.optionalNumber(.epoch)
        switch f.optionalString(.cancelled) {
        case nil: cancelled = false
        case "1": cancelled = true
        case let other?:
            throw StreamRecordError(
                record: "dead letter", field: Field.cancelled.rawValue, problem: .invalid("is '\(other)', not '1'"))
        }
    }
}
