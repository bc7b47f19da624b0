import Foundation
import Support

/// The queue protocol of one batch (manifests/QUEUE.md). Key layout and scripts are there too.
///
/// Every operation is safe to repeat, so each runs under `RedisClient.withRetry` and a
/// server restart mid-batch costs callers nothing but latency.
public final class BatchQueue: @unchecked Sendable {
    public let client: RedisClient
    public let keys: BatchKeys
    public var batchID: String { keys.batchID }

    public init(client: RedisClient, batchID: String) throws {
        self.client = client
        self.keys = try BatchKeys(batchID: batchID)
    }

    // MARK: Batch setup (coordinator)

    /// Creates the batch if it does not exist. Returns false when it already did, in which
    /// case the stored spec and settings are kept (resubmission is a no-op).
    @discardableResult
    public func create(spec: Data, maxAttempts: Int = 3, leaseMs: Int = 60_000) throws -> Bool {
        precondition(maxAttempts >= 1 && leaseMs >= 1)
        return try client.withRetry {
            let now = try serverTimeMs()
            let created = try client.command(["HSETNX", keys.meta, "spec", spec]).int == 1
            if created {
                try client.command([
                    "HSET", keys.meta, "max_attempts", maxAttempts, "lease_ms", leaseMs,
                    "created_ms", now, "total", 0, "done", 0, "failed", 0,
                ])
                try client.command(["ZADD", BatchKeys.index, now, batchID])
            }
            do {
                try client.command(["XGROUP", "CREATE", keys.jobs, BatchKeys.group, "0", "MKSTREAM"])
            } catch let e as RedisError where e.serverCode == "BUSYGROUP" {}
            return created
        }
    }

    public func metadata() throws -> BatchMetadata? {
        let r = try client.withRetry {
            try client.command(["HMGET", keys.meta, "spec", "max_attempts", "lease_ms", "created_ms"])
        }
        guard let a = r.array, a.count == 4, let spec = a[0].data else { return nil }
        var damage: [String] = []
        for (field, reply, meaning) in [
            ("max_attempts", a[1], "a positive number of attempts"),
            ("lease_ms", a[2], "a positive number of milliseconds"),
        ] {
            guard let n = reply.int, n > 0 else {
                let shown = reply.data.map { "'" + String(decoding: $0.prefix(40), as: UTF8.self) + "'" } ?? "missing"
                damage.append(
                    "\(field) is \(shown), not \(meaning); workers skip this batch until it is mended "
                        + "(redis-cli HSET \(keys.meta) \(field) \(field == "lease_ms" ? "60000" : "3"))")
                continue
            }
        }
        return BatchMetadata(
            spec: spec, maxAttempts: Int(a[1].int.flatMap { $0 > 0 ? $0 : nil } ?? 3),
            leaseMs: Int(a[2].int.flatMap { $0 > 0 ? $0 : nil } ?? 60_000), createdMs: a[3].int ?? 0, damage: damage)
    }

    /// Adds a job. Ids are content-derived by the caller, so an existing id is a no-op (false).
    @discardableResult
    public func submit(jobID: String, payload: Data) throws -> Bool {
        try validateJobID(jobID)
        let r = try client.withRetry {
            try evalMapped(QueueScripts.submit, keys: [keys.meta, keys.jobs, keys.job(jobID)], args: [jobID, payload])
        }
        return r.int == 1
    }

    /// Stores an input blob (e.g. a source image) under its SHA-256 and returns that name,
    /// so workers need no shared filesystem and identical uploads are stored once.
    @discardableResult
    public func putBlob(_ data: Data) throws -> String {
        let name = Hashing.sha256Hex(data)
        try putBlob(name: name, data: data)
        return name
    }

    public func putBlob(name: String, data: Data) throws {
        try validateJobID(name)
        _ = try client.withRetry { try client.command(["SET", keys.blob(name), data, "NX"]) }
    }

    public func blob(name: String) throws -> Data? {
        try client.withRetry { try client.command(["GET", keys.blob(name)]).data }
    }

    // MARK: Worker side

    /// Takes the next job: first an entry abandoned by a dead worker (idle past the lease,
    /// via XAUTOCLAIM), else a new one (XREADGROUP), waiting up to `wait` seconds for one.
    /// Returns nil when there is nothing to do.
    public func take(worker: String, wait: TimeInterval = 0) throws -> JobLease? {
        precondition(!worker.isEmpty, "worker name must not be empty")
        let leaseReply = try client.withRetry { try client.command(["HGET", keys.meta, "lease_ms"]) }
        if leaseReply == .null { throw QueueError.noSuchBatch(batchID) }
        guard let leaseMs = leaseReply.int, leaseMs > 0 else {
            throw QueueError.damagedBatch(batchID, "lease_ms is \(leaseReply), not a positive number of milliseconds")
        }
        if let lease = try reclaim(worker: worker, minIdleMs: Int(leaseMs)) { return lease }
        let deadline = Date().addingTimeInterval(wait)
        // Entries of finished or superseded jobs are acked and skipped by the take script.
        while true {
            let remainingMs = Int(deadline.timeIntervalSinceNow * 1000)
            var args: [RedisArgument] = ["XREADGROUP", "GROUP", BatchKeys.group, worker, "COUNT", 1]
            if remainingMs > 0 { args += ["BLOCK", remainingMs] }  // BLOCK 0 would wait forever
            args += ["STREAMS", keys.jobs, ">"]
            let timeout = remainingMs > 0 ? Double(remainingMs) / 1000 + (client.options.commandTimeout ?? 30) : nil
            let reply = try client.withRetry { try client.command(args, timeout: timeout) }
            guard let entry = Self.parseXRead(reply).first else { return nil }
            if let answer = try tryTake(entry: entry, worker: worker).answer { return answer }
        }
    }

    private func reclaim(worker: String, minIdleMs: Int) throws -> JobLease? {
        var cursor = "0-0"
        for _ in 0..<64 {  // bounded scan of the pending list
            let reply = try client.withRetry {
                try client.command(["XAUTOCLAIM", keys.jobs, BatchKeys.group, worker, minIdleMs, cursor, "COUNT", 16])
            }
            guard let parts = reply.array, parts.count >= 2, let next = parts[0].string else {
                throw QueueError.unexpected("XAUTOCLAIM reply \(reply)")
            }
            for entry in Self.parseEntries(parts[1]) {
                if let answer = try tryTake(entry: entry, worker: worker).answer {
                    guard var lease = answer else { return nil }
                    lease.reclaimed = true
                    return lease
                }
            }
            cursor = next
            if cursor == "0-0" { return nil }
        }
        return nil
    }

    private enum TakeOutcome {
        case taken(JobLease)
        /// The batch is paused: stop looking.
        case paused
        /// The job backs off after a failure (moved to the tail): stop this look, so a batch
        /// holding only such jobs is not spun on.
        case later
        /// This entry is not a job to run (finished, superseded, held): look at the next.
        case skipped

        /// What `take` answers: the lease, or nil to stop looking; no answer: keep looking.
        var answer: JobLease?? {
            switch self {
            case .taken(let lease): return .some(lease)
            case .paused, .later: return .some(nil)
            case .skipped: return nil
            }
        }
    }

    private func tryTake(entry: StreamEntry, worker: String) throws -> TakeOutcome {
        guard let jobID = entry.string("job") else {
            // Not one of ours: ack it so it never comes back.
            _ = try client.withRetry { try client.command(["XACK", keys.jobs, BatchKeys.group, entry.id]) }
            return .skipped
        }
        let r = try client.withRetry {
            try evalMapped(
                QueueScripts.take,
                keys: [
                    keys.meta, keys.jobs, keys.job(jobID), keys.lease(jobID), keys.dead,
                    keys.running, keys.checkpoint(jobID),
                ],
                args: [jobID, entry.id, worker])
        }
        guard let a = r.array, let tag = a.first?.string else { throw QueueError.unexpected("take reply \(r)") }
        if tag == "badbatch" { throw QueueError.damagedBatch(batchID, a.count > 1 ? a[1].string ?? "" : "") }
        if tag == "paused" { return .paused }
        if tag == "later" { return .later }
        guard tag == "ok" else { return .skipped }
        guard a.count >= 4, let epoch = a[1].int, let attempts = a[2].int, let payload = a[3].data else {
            throw QueueError.unexpected("take reply \(r)")
        }
        return .taken(
            JobLease(
                batchID: batchID, jobID: jobID, worker: worker, epoch: UInt64(epoch), attempt: Int(attempts),
                payload: payload, checkpoint: a.count > 4 ? a[4].data : nil))
    }

    /// Cancels the batch: paused first (nothing new starts), then every queued and running
    /// job ends as a dead letter marked `cancelled`; running owners are fenced off and stop at
    /// their next step. Returns the jobs cancelled. `requeue --failed` brings them back.
    @discardableResult
    public func cancel() throws -> [String] {
        try setPaused(true)
        var cancelled: [String] = []
        var cursor = "-"
        while true {
            let reply = try client.withRetry { try client.command(["XRANGE", keys.jobs, cursor, "+", "COUNT", 200]) }
            let page = Self.parseEntries(reply)
            if page.isEmpty { break }
            for entry in page {
                guard let jobID = entry.string("job") else { continue }
                if try cancelJob(jobID, entryID: entry.id) { cancelled.append(jobID) }
            }
            cursor = "(" + page.last!.id
        }
        // Running jobs whose entry was already gone from the stream (reclaimed mid-flight).
        let running = try client.withRetry { try client.command(["SMEMBERS", keys.running]) }
        for jobID in (running.array ?? []).compactMap(\.string) where try cancelJob(jobID, entryID: "") {
            cancelled.append(jobID)
        }
        try setPaused(false)  // nothing is left to take; requeue --failed may bring jobs back
        return cancelled
    }

    /// The cancel script for one job (and its stream entry, if given); true if it was cancelled.
    private func cancelJob(_ jobID: String, entryID: String) throws -> Bool {
        let r = try client.withRetry {
            try evalMapped(
                QueueScripts.cancel,
                keys: [
                    keys.meta, keys.jobs, keys.job(jobID), keys.dead, keys.lease(jobID), keys.running,
                    keys.checkpoint(jobID),
                ],
                args: [jobID, entryID])
        }
        guard r.int == 1 else { return false }
        try clearProgress(jobID: jobID)
        return true
    }

    /// Puts every dead-lettered job (or only those in `only`) back into the queue with its
    /// attempts reset (their dead letters are removed); returns the jobs re-queued.
    @discardableResult
    public func requeueDead(only: Set<String>? = nil) throws -> [String] {
        guard try counters() != nil else { throw QueueError.noSuchBatch(batchID) }
        var requeued: [String] = []
        var cursor = "0-0"
        while true {
            let page = try deadLetters(after: cursor, count: 100)
            guard let last = page.last else { break }
            // Entries left in place (not asked for) are passed over; requeued ones are gone.
            cursor = only == nil ? "0-0" : last.id
            for entry in page {
                let jobID = entry.string("job") ?? ""
                if let only, !only.contains(jobID) { continue }
                let r = try client.withRetry {
                    try evalMapped(
                        QueueScripts.requeue, keys: [keys.meta, keys.jobs, keys.job(jobID), keys.dead],
                        args: [jobID, entry.id])
                }
                if r.int == 1 { requeued.append(jobID) }
            }
        }
        if !requeued.isEmpty {
            // A collected batch may carry a retention TTL: it is running again.
            try eachKeyPage { page in
                for key in page { _ = try client.withRetry { try client.command(["PERSIST", key]) } }
            }
        }
        return requeued
    }

    /// Pause: no job of this batch is taken until `setPaused(false)`; running jobs finish.
    public func setPaused(_ paused: Bool) throws {
        guard try counters() != nil else { throw QueueError.noSuchBatch(batchID) }
        _ = try client.withRetry {
            try client.command(paused ? ["HSET", keys.meta, "paused", "1"] : ["HDEL", keys.meta, "paused"])
        }
    }

    /// Extends the lease; false means the job now belongs to someone else (stop working on it).
    public func renew(_ lease: JobLease) throws -> Bool {
        let r = try client.withRetry {
            try evalMapped(
                QueueScripts.renew, keys: [keys.meta, keys.jobs, keys.job(lease.jobID), keys.lease(lease.jobID)],
                args: [lease.worker, lease.epoch])
        }
        return r.int == 1
    }

    /// Stores a checkpoint only if the lease's epoch is still current; false = fenced off.
    public func writeCheckpoint(_ lease: JobLease, step: Int, data: Data) throws -> Bool {
        let r = try client.withRetry {
            try evalMapped(
                QueueScripts.checkpoint, keys: [keys.job(lease.jobID), keys.checkpoint(lease.jobID)],
                args: [lease.worker, lease.epoch, step, data])
        }
        return r.int == 1
    }

    public func checkpoint(jobID: String) throws -> Data? {
        try client.withRetry { try client.command(["GET", keys.checkpoint(jobID)]).data }
    }

    /// Publishes the result (fields such as "png" and "metrics"; "job", "epoch" and "worker"
    /// are added), marks the job done and acks its entry, atomically and only if current.
    public func publish(_ lease: JobLease, fields: [(String, Data)]) throws -> PublishOutcome {
        var args: [RedisArgument] = [lease.worker, lease.epoch, lease.jobID]
        for (k, v) in fields {
            precondition(!["job", "epoch", "worker"].contains(k), "result field '\(k)' is reserved")
            args += [k, v]
        }
        let r = try client.withRetry {
            try evalMapped(
                QueueScripts.publish,
                keys: [
                    keys.meta, keys.jobs, keys.job(lease.jobID), keys.lease(lease.jobID), keys.results,
                    keys.running, keys.checkpoint(lease.jobID),
                ], args: args)
        }
        switch r.int {
        case 1: return .published
        case 2: return .alreadyPublished
        default: return .stale
        }
    }

    /// Seconds a job waits before its retry after `attempt` failed takes: exponential, capped,
    /// with ±25 % jitter so jobs that failed together (a Redis blip, a bad model file being
    /// replaced) do not all come back at once.
    public static func retryBackoff(attempt: Int, base: Double = 2, cap: Double = 60) -> Double {
        let exponential = min(cap, base * pow(2, Double(min(max(attempt, 1), 30) - 1)))
        return exponential * Double.random(in: 0.75...1.25)
    }

    /// Records a failure. Re-queued while attempts remain (unless `permanent`), to be taken
    /// again after `backoff` seconds (default `retryBackoff`: so the worker that failed it does
    /// not retake it at once), else dead-lettered with `error` and acked.
    public func fail(_ lease: JobLease, error: String, permanent: Bool = false, backoff: Double? = nil) throws
        -> FailOutcome
    {
        let wait = backoff ?? Self.retryBackoff(attempt: lease.attempt)
        let r = try client.withRetry {
            try evalMapped(
                QueueScripts.fail,
                keys: [
                    keys.meta, keys.jobs, keys.job(lease.jobID), keys.lease(lease.jobID), keys.dead,
                    keys.running, keys.checkpoint(lease.jobID),
                ],
                args: [lease.worker, lease.epoch, lease.jobID, error, permanent ? 1 : 0, Int(wait * 1000)])
        }
        switch r.int {
        case 1: return .requeued
        case 2: return .deadLettered
        default: return .stale
        }
    }

    /// A supervisor's report that `worker` died: every job it still holds records `cause`
    /// (fenced on the lease's epoch, so a worker that already lost the job is never blamed for
    /// the next owner's run), and a dead letter then says why instead of "lease lapsed".
    /// `retryNow`: fail the job now (a trap: the retry, after the back-off, starts clean,
    /// without the checkpoint that may have caused it) instead of letting the lease lapse (a
    /// kill from outside: the next taker resumes from the checkpoint). Returns the jobs found.
    @discardableResult
    public func recordCrash(worker: String, cause: String, retryNow: Bool) throws -> [String] {
        let running = try client.withRetry { try client.command(["SMEMBERS", keys.running]) }
        var failed: [String] = []
        for jobID in (running.array ?? []).compactMap(\.string) {
            let lease = try client.withRetry { try client.command(["GET", keys.lease(jobID)]) }
            guard let value = lease.string, let bar = value.lastIndex(of: "|"),
                value[..<bar] == worker[...], let epoch = UInt64(value[value.index(after: bar)...])
            else { continue }
            let progress = try client.withRetry { try client.command(["HGET", keys.job(jobID), "last_progress"]) }
            var message = "worker \(worker) died: \(cause)"
            if let last = progress.string, let step = Self.stepOf(progress: last, worker: worker) {
                message += " (last heard of at step \(step))"
            }
            if retryNow {
                let held = JobLease(
                    batchID: batchID, jobID: jobID, worker: worker, epoch: epoch, attempt: 0, payload: Data(),
                    checkpoint: nil)
                if try fail(held, error: message) != .stale {
                    try clearProgress(jobID: jobID)  // or `watch` shows the dead worker on it
                    failed.append(jobID)
                }
            } else {
                let r = try client.withRetry {
                    try evalMapped(
                        QueueScripts.annotate, keys: [keys.job(jobID)], args: [worker, epoch, message])
                }
                if r.int == 1 { failed.append(jobID) }
            }
        }
        return failed
    }

    /// "step/total" from a progress record "<owner>|<step>|<total>" written by `worker`.
    static func stepOf(progress: String, worker: String) -> String? {
        let parts = progress.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts.dropLast(2).joined(separator: "|") == worker else { return nil }
        return "\(parts[parts.count - 2])/\(parts[parts.count - 1])"
    }

    /// Graceful shutdown: gives the job back at once (re-queued, attempt refunded, checkpoint
    /// kept) instead of letting it wait out the lease. False if no longer the owner.
    @discardableResult
    public func release(_ lease: JobLease) throws -> Bool {
        let r = try client.withRetry {
            try evalMapped(
                QueueScripts.release,
                keys: [keys.jobs, keys.job(lease.jobID), keys.lease(lease.jobID), keys.running],
                args: [lease.worker, lease.epoch, lease.jobID])
        }
        return r.int == 1
    }

    /// Records that `worker` is alive (and what it holds). The hash expires `ttlMs` after the
    /// last heartbeat of any worker; status() treats entries older than `ttlMs` as dead.
    /// A worker silent this long (dead: killed, host gone) is dropped from the worker list.
    public static let workerRetentionMs = 600_000

    public func heartbeat(worker: String, jobID: String?, ttlMs: Int = 30_000) throws {
        _ = try client.withRetry {
            try evalMapped(
                QueueScripts.heartbeat, keys: [keys.workers],
                args: [worker, jobID ?? "", max(ttlMs, Self.workerRetentionMs), Self.workerRetentionMs])
        }
    }

    public func removeWorker(_ worker: String) throws {
        _ = try client.withRetry { try client.command(["HDEL", keys.workers, worker]) }
    }

    // MARK: Observation (coordinator)

    public func status(workerTTLMs: Int = 30_000) throws -> BatchStatus {
        try client.withRetry {
            let m = try client.command(["HMGET", keys.meta, "total", "done", "failed"]).array ?? []
            guard m.count == 3, let total = m[0].int else { throw QueueError.noSuchBatch(batchID) }
            let runningIDs = (try client.command(["SMEMBERS", keys.running]).array ?? []).compactMap(\.string)
            var live = 0
            for id in runningIDs where (try client.command(["EXISTS", keys.lease(id)]).int ?? 0) == 1 { live += 1 }
            let now = try serverTimeMs()
            let w = try client.command(["HGETALL", keys.workers]).array ?? []
            var workers: [WorkerStatus] = []
            for i in stride(from: 0, to: w.count - 1, by: 2) {
                guard let name = w[i].string, let value = w[i + 1].string else { continue }
                let parts = value.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false)
                let seen = Int64(parts[0]) ?? 0
                let job = parts.count > 1 && !parts[1].isEmpty ? String(parts[1]) : nil
                let ago = max(0, now - seen)
                workers.append(
                    WorkerStatus(name: name, lastSeenMsAgo: ago, jobID: job, alive: ago <= Int64(workerTTLMs)))
            }
            workers.sort { $0.name < $1.name }
            return BatchStatus(
                total: Int(total), done: Int(m[1].int ?? 0), failed: Int(m[2].int ?? 0),
                running: live, stalled: runningIDs.count - live, workers: workers)
        }
    }

    public func job(_ jobID: String) throws -> JobRecord? {
        let a =
            try client.withRetry {
                try client.command([
                    "HMGET", keys.job(jobID), "state", "attempts", "epoch", "owner", "error", "ckpt_step",
                ])
            }.array ?? []
        guard a.count == 6, let state = a[0].string else { return nil }
        let owner = a[3].string.flatMap { $0.isEmpty ? nil : $0 }
        return JobRecord(
            jobID: jobID, state: state, attempts: Int(a[1].int ?? 0), epoch: UInt64(a[2].int ?? 0),
            owner: owner, error: a[4].string, checkpointStep: a[5].int.map { Int($0) })
    }

    /// Results after stream id `after` (exclusive), oldest first. The coordinator keeps its
    /// own cursor (or re-reads from the start and skips ids already in its manifest).
    public func results(after: String = "0-0", count: Int = 100) throws -> [StreamEntry] {
        try range(keys.results, after: after, count: count)
    }

    /// Frees a result's bytes once they are safely on disk.
    public func deleteResult(id: String) throws {
        _ = try client.withRetry { try client.command(["XDEL", keys.results, id]) }
    }

    public func deadLetters(after: String = "0-0", count: Int = 100) throws -> [StreamEntry] {
        try range(keys.dead, after: after, count: count)
    }

    /// Deletes every key of the batch (SCAN on the hash tag) and its index entry.
    public func destroy() throws {
        try eachKeyPage { page in
            _ = try client.withRetry { try client.command(["UNLINK"] + page.map { $0 as RedisArgument }) }
        }
        _ = try client.withRetry { try client.command(["ZREM", BatchKeys.index, batchID]) }
    }

    /// Every key of the batch (SCAN of its hash tag), page by page.
    private func eachKeyPage(_ body: ([Data]) throws -> Void) throws {
        var cursor = "0"
        repeat {
            let r = try client.withRetry {
                try client.command(["SCAN", cursor, "MATCH", "\\{batch:\(batchID)\\}:*", "COUNT", 500]).array ?? []
            }
            guard r.count == 2, let next = r[0].string else { throw QueueError.unexpected("SCAN reply") }
            let found = (r[1].array ?? []).compactMap(\.data)
            if !found.isEmpty { try body(found) }
            cursor = next
        } while cursor != "0"
    }

    /// The batch's keys and the bytes Redis reports for them (`MEMORY USAGE`, which includes
    /// per-key overhead): what the batch costs the server now.
    public func memoryUsage() throws -> (keys: Int, bytes: Int) {
        var keys = 0
        var bytes = 0
        try eachKeyPage { page in
            for key in page {
                let r = try client.withRetry { try client.command(["MEMORY", "USAGE", key, "SAMPLES", "0"]) }
                keys += 1
                bytes += Int(r.int ?? 0)
            }
        }
        return (keys, bytes)
    }

    /// Retention: every key of the batch expires `ms` from now (and the index entry is
    /// dropped then by `list` readers that find no meta). Returns the keys given a TTL.
    @discardableResult
    public func expire(afterMs ms: Int) throws -> Int {
        var n = 0
        try eachKeyPage { page in
            for key in page {
                _ = try client.withRetry { try client.command(["PEXPIRE", key, ms]) }
                n += 1
            }
        }
        return n
    }

    /// Ids of all batches, oldest first.
    public static func list(client: RedisClient) throws -> [String] {
        try client.withRetry { try client.command(["ZRANGE", BatchKeys.index, 0, -1]).array ?? [] }.compactMap(\.string)
    }

    // MARK: Helpers

    private func range(_ key: String, after: String, count: Int) throws -> [StreamEntry] {
        let reply = try client.withRetry { try client.command(["XRANGE", key, "(" + after, "+", "COUNT", count]) }
        return Self.parseEntries(reply)
    }

    private func evalMapped(_ script: RedisScript, keys: [String], args: [RedisArgument]) throws -> RedisReply {
        do {
            return try client.eval(script, keys: keys, args: args)
        } catch let e as RedisError where e.serverCode == "NOBATCH" {
            throw QueueError.noSuchBatch(batchID)
        }
    }

    private func serverTimeMs() throws -> Int64 {
        let t = try client.command("TIME").array ?? []
        guard t.count == 2, let s = t[0].int, let us = t[1].int else { throw QueueError.unexpected("TIME reply") }
        return s * 1000 + us / 1000
    }

    private func validateJobID(_ id: String) throws {
        guard BatchKeys.isValidID(id) else {
            throw QueueError.invalidID("id '\(id)' must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        }
    }

    static func parseEntries(_ reply: RedisReply) -> [StreamEntry] {
        (reply.array ?? []).compactMap { item in
            guard let pair = item.array, pair.count == 2, let id = pair[0].string, let flat = pair[1].array else {
                return nil
            }
            var fields: [String: Data] = [:]
            for i in stride(from: 0, to: flat.count - 1, by: 2) {
                if let k = flat[i].string, let v = flat[i + 1].data { fields[k] = v }
            }
            return StreamEntry(id: id, fields: fields)
        }
    }

    /// XREAD/XREADGROUP reply: [[stream, [[id, [k, v, ...]], ...]]] or nil.
    static func parseXRead(_ reply: RedisReply) -> [StreamEntry] {
        guard let streams = reply.array else { return [] }
        return streams.flatMap { s -> [StreamEntry] in
            guard let pair = s.array, pair.count == 2 else { return [] }
            return parseEntries(pair[1])
        }
    }
}
