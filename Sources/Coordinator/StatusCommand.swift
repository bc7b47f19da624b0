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

    func run() throws {
        try guarded {
            let client = try redisOptions.connect()
            guard let batch else {
                let ids = try BatchQueue.list(client: client)
                var rows: [BatchStatusReport] = []
                for id in ids {
                    rows.append(try BatchStatusReport(try BatchQueue(client: client, batchID: id), failuresLimit: 0))
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
            let s = try BatchStatusReport(q, failuresLimit: 1000, withMemory: true)
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
}
