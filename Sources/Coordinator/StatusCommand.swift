import ArgumentParser
import Checkpoints
import CoordinatorCore
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show one batch's counts, workers and failures, or list all batches.")

    @Argument(help: "Batch id; omit to list every batch.")
    var batch: String?

    @Flag(help: "Machine-readable JSON on stdout.")
    var json = false

    @Flag(help: "List every worker (default: a summary and the busiest, slowest and dead above 12).")
    var workers = false

    @OptionGroup var redisOptions: RedisOptions

    struct WorkerJSON: Encodable {
        var name: String
        var alive: Bool
        var lastSeenMsAgo: Int64
        var job: String?
        var step: Int?
        var totalSteps: Int?
        var done: Int

        enum CodingKeys: String, CodingKey {
            case name, alive, job, step, done
            case lastSeenMsAgo = "last_seen_ms_ago"
            case totalSteps = "total_steps"
        }
    }

    struct FailureJSON: Encodable {
        var jobID: String
        var error: String
        var attempts: Int
        var worker: String?

        enum CodingKeys: String, CodingKey {
            case error, attempts, worker
            case jobID = "job_id"
        }
    }

    struct StatusJSON: Encodable {
        var batchID: String
        var name: String?
        var output: String?
        var total: Int
        var done: Int
        var failed: Int
        var running: Int
        var stalled: Int
        var queued: Int
        var finished: Bool
        var paused: Bool
        var redisBytes: Int?
        var redisKeys: Int?
        var maxAttempts: Int?
        var leaseMs: Int?
        /// Problems of the batch's stored record (`BatchMetadata.damage`); empty when sound.
        var damage: [String]
        var workers: [WorkerJSON]
        var failures: [FailureJSON]

        enum CodingKeys: String, CodingKey {
            case name, output, total, done, failed, running, stalled, queued, finished, paused, workers, failures
            case redisBytes = "redis_bytes"
            case redisKeys = "redis_keys"
            case batchID = "batch_id"
            case maxAttempts = "max_attempts"
            case leaseMs = "lease_ms"
            case damage
        }
    }

    func run() throws {
        try guarded {
            let client = try redisOptions.connect()
            guard let batch else {
                let ids = try BatchQueue.list(client: client)
                var rows: [StatusJSON] = []
                for id in ids {
                    rows.append(try describe(try BatchQueue(client: client, batchID: id), failuresLimit: 0))
                }
                if json {
                    print(String(decoding: try CanonicalJSON.encode(rows), as: UTF8.self))
                } else if rows.isEmpty {
                    say("no batches on \(client.endpoint)")
                } else {
                    for r in rows {
                        print(
                            "\(r.batchID)  \(r.done + r.failed)/\(r.total) finished (\(r.done) done, \(r.failed) failed, \(r.running) running, \(r.queued) queued)\(!r.damage.isEmpty ? "  [DAMAGED: muse-coordinator status \(r.batchID)]" : r.finished ? "" : r.paused ? "  [paused]" : "  [in progress]")"
                        )
                    }
                }
                return 0
            }
            let q = try openBatch(client, batch)
            let s = try describe(q, failuresLimit: 1000, withMemory: true)
            if json {
                let e = JSONEncoder()
                e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try e.encode(s), as: UTF8.self))
                return 0
            }
            print("batch \(s.batchID)\(s.name.map { " (\($0))" } ?? "")")
            if let o = s.output { print("  output     \(o)") }
            print(
                "  jobs       \(s.total) total: \(s.done) done, \(s.failed) failed, \(s.running) running, \(s.stalled) stalled, \(s.queued) queued\(s.finished ? " — finished" : s.paused ? " — paused (muse-coordinator resume \(s.batchID))" : "")"
            )
            if s.damage.isEmpty, let m = s.maxAttempts, let l = s.leaseMs {
                print("  queue      max attempts \(m), lease \(Double(l) / 1000) s")
            }
            for problem in s.damage { print("  DAMAGED    \(problem)") }
            if let bytes = s.redisBytes, let keys = s.redisKeys {
                print(
                    String(format: "  redis      %.2f MiB in %d keys (MEMORY USAGE)", Double(bytes) / 1_048_576, keys))
            }
            if s.workers.isEmpty { print("  workers    none seen") }
            let snapshot = try BatchSnapshot.take(try BatchQueue(client: client, batchID: batch))
            for line in snapshot.workerLines(limit: workers ? nil : BatchSnapshot.workerLineLimit) {
                print("  worker     \(line)")
            }
            for f in s.failures.prefix(20) {
                print("  failed     \(f.jobID.prefix(8)) after \(f.attempts) attempt(s): \(f.error)")
            }
            if s.failures.count > 20 { print("  ... \(s.failures.count - 20) more failures (--json lists all)") }
            return 0
        }
    }

    /// `withMemory`: also the batch's Redis footprint (one MEMORY USAGE per key: the one-batch
    /// view only, so listing many batches stays quick).
    func describe(_ q: BatchQueue, failuresLimit: Int, withMemory: Bool = false) throws -> StatusJSON {
        let memory = withMemory ? try q.memoryUsage() : nil
        let snap = try BatchSnapshot.take(q)
        let st = snap.status
        let meta = try q.metadata()
        let info = try q.batchInfo()
        var names = Set(st.workers.map(\.name))
        names.formUnion(snap.totals.keys)
        let workers = names.sorted().map { name -> WorkerJSON in
            let w = st.workers.first { $0.name == name }
            let p = w?.jobID.flatMap { snap.progress[$0] }
            return WorkerJSON(
                name: name, alive: w?.alive ?? false, lastSeenMsAgo: w?.lastSeenMsAgo ?? -1, job: w?.jobID,
                step: p?.step, totalSteps: p?.total, done: snap.totals[name]?.done ?? 0)
        }
        var failures: [FailureJSON] = []
        if failuresLimit > 0 {
            var cursor = "0-0"
            while failures.count < failuresLimit {
                let page = try q.deadLetters(after: cursor, count: 200)
                if page.isEmpty { break }
                for e in page {
                    do {
                        let letter = try DeadLetter(fields: e.fields)
                        failures.append(
                            FailureJSON(
                                jobID: letter.jobID, error: letter.error, attempts: letter.attempts ?? 0,
                                worker: letter.worker))
                    } catch {
                        failures.append(FailureJSON(jobID: "?", error: "\(error)", attempts: 0, worker: nil))
                    }
                }
                cursor = page.last!.id
            }
        }
        return StatusJSON(
            batchID: q.batchID, name: info?.name, output: info?.output, total: st.total, done: st.done,
            failed: st.failed, running: st.running, stalled: st.stalled, queued: st.queued, finished: st.finished,
            paused: try q.counters()?.paused ?? false, redisBytes: memory?.bytes, redisKeys: memory?.keys,
            maxAttempts: meta?.maxAttempts, leaseMs: meta?.leaseMs, damage: meta?.damage ?? [],
            workers: workers, failures: failures)
    }
}
