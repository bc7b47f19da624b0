import Foundation
import Support

/// Extras on top of the queue protocol: per-job progress and per-worker counters
/// for `watch`, and stored job payloads. All keys share the batch's hash tag,
/// so `destroy()` removes them too.
///
///     {batch:<id>}:progress  hash  jobID → "<worker>|<step>|<total>"
///     {batch:<id>}:stats     hash  "<worker>|done" → count, "<worker>|seconds" → busy seconds
extension BatchQueue {
    public var progressKey: String { "\(keys.tag):progress" }
    public var statsKey: String { "\(keys.tag):stats" }

    public struct JobProgress: Equatable, Sendable {
        public var worker: String
        public var step: Int
        public var total: Int
    }

    public struct WorkerTotals: Equatable, Sendable {
        public var done: Int
        public var seconds: Double
    }

    public struct Counters: Equatable, Sendable {
        public var total: Int
        public var done: Int
        public var failed: Int
        public var paused = false
        public var finished: Bool { total > 0 && done + failed >= total }
    }

    /// The stored payload of a job (nil if the job does not exist).
    public func payload(jobID: String) throws -> Data? {
        try client.withRetry { try client.command(["HGET", keys.job(jobID), "payload"]).data }
    }

    /// Cheap: one HMGET (workers poll it to skip finished batches).
    public func counters() throws -> Counters? {
        let a =
            try client.withRetry { try client.command(["HMGET", keys.meta, "total", "done", "failed", "paused"]) }
            .array ?? []
        guard a.count == 4, let total = a[0].int else { return nil }
        return Counters(
            total: Int(total), done: Int(a[1].int ?? 0), failed: Int(a[2].int ?? 0), paused: a[3].string == "1")
    }

    /// Fenced on the lease's epoch: false when `lease` is no longer the job's current one.
    @discardableResult
    public func setProgress(_ lease: JobLease, step: Int, total: Int) throws -> Bool {
        let r = try client.withRetry {
            try client.eval(
                QueueScripts.progress, keys: [keys.job(lease.jobID), progressKey],
                args: [lease.jobID, lease.worker, lease.epoch, "\(lease.worker)|\(step)|\(total)"])
        }
        return r.int == 1
    }

    public func clearProgress(jobID: String) throws {
        _ = try client.withRetry { try client.command(["HDEL", progressKey, jobID]) }
    }

    public func progress() throws -> [String: JobProgress] {
        let flat = try client.withRetry { try client.command(["HGETALL", progressKey]) }.array ?? []
        var out: [String: JobProgress] = [:]
        for i in stride(from: 0, to: flat.count - 1, by: 2) {
            guard let id = flat[i].string, let v = flat[i + 1].string else { continue }
            let parts = v.split(separator: "|", omittingEmptySubsequences: false)
            guard parts.count == 3, let step = Int(parts[1]), let total = Int(parts[2]) else { continue }
            out[id] = JobProgress(worker: String(parts[0]), step: step, total: total)
        }
        return out
    }

    /// Display counters only (not part of the protocol's guarantees).
    public func recordDone(worker: String, seconds: Double) throws {
        _ = try client.withRetry {
            try client.command(["HINCRBY", statsKey, "\(worker)|done", 1])
            return try client.command(["HINCRBYFLOAT", statsKey, "\(worker)|seconds", String(format: "%.3f", seconds)])
        }
    }

    public func workerTotals() throws -> [String: WorkerTotals] {
        let flat = try client.withRetry { try client.command(["HGETALL", statsKey]) }.array ?? []
        var out: [String: WorkerTotals] = [:]
        for i in stride(from: 0, to: flat.count - 1, by: 2) {
            guard let k = flat[i].string, let v = flat[i + 1].string, let bar = k.lastIndex(of: "|") else { continue }
            let worker = String(k[..<bar])
            let field = k[k.index(after: bar)...]
            var t = out[worker] ?? WorkerTotals(done: 0, seconds: 0)
            if field == "done" { t.done = Int(v) ?? 0 } else if field == "seconds" { t.seconds = Double(v) ?? 0 }
            out[worker] = t
        }
        return out
    }

    /// Whether a blob exists (tests and diagnostics).
    public func hasBlob(name: String) throws -> Bool {
        try client.withRetry { try client.command(["EXISTS", keys.blob(name)]).int == 1 }
    }
}
