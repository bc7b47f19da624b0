import Foundation
import RedisQueue
import Support

/// One entry of a batch's results stream (manifests/QUEUE.md): a worker publishes `png` and
/// `metrics` through `BatchQueue.publish`, whose script stamps `job`, `epoch` and `worker` from
/// the publishing lease; the collector reads the whole entry back.
public struct JobResult: Equatable, Sendable {
    /// The entry's field names.
    public enum Field: String, CaseIterable, Sendable {
        /// Stamped by the queue from the lease (RedisQueue writes these names itself).
        case job, epoch, worker
        /// Published by the worker: the PNG's bytes, and `JobMetrics` as canonical JSON.
        case png, metrics
    }

    public var jobID: String
    /// The publishing lease's epoch and worker.
    public var epoch: UInt64
    public var worker: String
    public var png: Data
    public var metrics: JobMetrics

    public init(jobID: String, epoch: UInt64, worker: String, png: Data, metrics: JobMetrics) {
        self.jobID = jobID
        self.epoch = epoch
        self.worker = worker
        self.png = png
        self.metrics = metrics
    }

    /// The result `lease` publishes: the queue stamps it with the lease's job, epoch and worker.
    public init(lease: JobLease, png: Data, metrics: JobMetrics) {
        self.init(jobID: lease.jobID, epoch: lease.epoch, worker: lease.worker, png: png, metrics: metrics)
    }

    /// The fields `BatchQueue.publish` takes: `png`, then `metrics`. The stamp is not among
    /// them: the queue writes it from the lease (which must be this result's).
    public func fields() throws -> [(String, Data)] {
        [(Field.png.rawValue, png), (Field.metrics.rawValue, try CanonicalJSON.encode(metrics))]
    }

    /// Reads a results-stream entry's fields; a missing or unreadable field is a
    /// `StreamRecordError` that names it.
    public init(fields: [String: Data]) throws {
        let f = StreamFields<Field>(record: "result", fields: fields)
        jobID = try f.string(.job)
        epoch = try f.number(.epoch)
        worker = try f.string(.worker)
        png = try f.data(.png)
        let json = try f.data(.metrics)
        do { metrics = try JSONDecoder().decode(JobMetrics.self, from: json) } catch {
            throw StreamRecordError(
                record: "result", field: Field.metrics.rawValue, problem: .invalid("is not JobMetrics JSON: \(error)"))
        }
    }

    /// The stamp of an entry, read on its own: enough to judge an entry that does not decode
    /// (a damaged one, or one another writer added). nil when the entry names no job; `epoch`
    /// and `worker` nil when absent or unreadable.
    public struct Stamp: Equatable, Sendable {
        public var jobID: String
        public var epoch: UInt64?
        public var worker: String?

        public init?(fields: [String: Data]) {
            let f = StreamFields<Field>(record: "result", fields: fields)
            guard let job = f.optionalString(.job) else { return nil }
            jobID = job
            epoch = f.optionalNumber(.epoch)
            worker = f.optionalString(.worker)
        }
    }
}
