import Foundation
import Jobs
import RedisQueue

/// What `muse-coordinator status` shows of one batch — counts, queue settings, a damaged
/// record, workers and failures — gathered from Redis; its JSON form is `status --json`'s.
/// Here, not in the executable, so it is tested without a command line.
public struct BatchStatusReport: Encodable {
    public struct Worker: Encodable {
        public var name: String
        public var alive: Bool
        public var lastSeenMsAgo: Int64
        public var job: String?
        public var step: Int?
        public var totalSteps: Int?
        public var done: Int

        enum CodingKeys: String, CodingKey {
            case name, alive, job, step, done
            case lastSeenMsAgo = "last_seen_ms_ago"
            case totalSteps = "total_steps"
        }
    }

    public struct Failure: Encodable {
        public var jobID: String
        public var error: String
        public var attempts: Int
        public var worker: String?

        enum CodingKeys: String, CodingKey {
            case error, attempts, worker
            case jobID = "job_id"
        }
    }

    public var batchID: String
    public var name: String?
    public var output: String?
    public var total: Int
    public var done: Int
    public var failed: Int
    public var running: Int
    public var stalled: Int
    public var queued: Int
    public var finished: Bool
    public var paused: Bool
    public var redisBytes: Int?
    public var redisKeys: Int?
    public var maxAttempts: Int?
    public var leaseMs: Int?
    /// Problems of the batch's stored record (`BatchMetadata.damage`); empty when sound.
    public var damage: [String]
    public var workers: [Worker]
    public var failures: [Failure]

    enum CodingKeys: String, CodingKey {
        case name, output, total, done, failed, running, stalled, queued, finished, paused, workers, failures
        case redisBytes = "redis_bytes"
        case redisKeys = "redis_keys"
        case batchID = "batch_id"
        case maxAttempts = "max_attempts"
        case leaseMs = "lease_ms"
        case damage
    }

    /// Reads batch `q`: up to `failuresLimit` dead letters; `withMemory` adds the batch's Redis
    /// footprint (one MEMORY USAGE per key: the one-batch view only, so listing many batches
    /// stays quick).
    public init(_ q: BatchQueue, failuresLimit: Int, withMemory: Bool = false) throws {
        let memory = withMemory ? try q.memoryUsage() : nil
        let snap = try BatchSnapshot.take(q)
        let st = snap.status
        let meta = try q.metadata()
        let info = try q.batchInfo()
        var names = Set(st.workers.map(\.name))
        names.formUnion(snap.totals.keys)
        workers = names.sorted().map { name -> Worker in
            let w = st.workers.first { $0.name == name }
            let p = w?.jobID.flatMap { snap.progress[$0] }
            return Worker(
                name: name, alive: w?.alive ?? false, lastSeenMsAgo: w?.lastSeenMsAgo ?? -1, job: w?.jobID,
                step: p?.step, totalSteps: p?.total, done: snap.totals[name]?.done ?? 0)
        }
        failures = []
        var cursor = "0-0"
        while failuresLimit > 0 && failures.count < failuresLimit {
            let page = try q.deadLetters(after: cursor, count: 200)
            guard let last = page.last else { break }
            for e in page {
                do {
                    let letter = try DeadLetter(fields: e.fields)
                    failures.append(
                        Failure(
                            jobID: letter.jobID, error: letter.error, attempts: letter.attempts ?? 0,
                            worker: letter.worker))
                } catch {
                    failures.append(Failure(jobID: "?", error: "\(error)", attempts: 0, worker: nil))
                }
            }
            cursor = last.id
        }
        batchID = q.batchID
        name = info?.name
        output = info?.output
        total = st.total
        done = st.done
        failed = st.failed
        running = st.running
        stalled = st.stalled
        queued = st.queued
        finished = st.finished
        paused = try q.counters()?.paused ?? false
        redisBytes = memory?.bytes
        redisKeys = memory?.keys
        maxAttempts = meta?.maxAttempts
        leaseMs = meta?.leaseMs
        damage = meta?.damage ?? []
    }
}
