import ArgumentParser
import Checkpoints
import CoordinatorCore
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

struct WatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Show a batch's progress (done/failed/running, rate, ETA, per worker) until it finishes.",
        discussion: "Exit code 0 when every job is done, 3 when the batch finished with failed jobs.")

    @Argument(help: "Batch id (printed by submit; `status` lists them).")
    var batch: String

    @Option(help: "Seconds between updates.")
    var interval: Double = 1

    @Option(help: "Give up after this many seconds (exit code 1).")
    var timeout: Double?

    @Flag(help: "List every worker (default: a summary and the busiest, slowest and dead above 12).")
    var workers = false

    @OptionGroup var redisOptions: RedisOptions

    func validate() throws {
        guard (0.05...3600).contains(interval) else {
            throw ValidationError("--interval must be in 0.05...3600 seconds")
        }
        if let timeout, !(timeout >= 0 && timeout.isFinite) {
            throw ValidationError("--timeout must be a number of seconds ≥ 0")
        }
    }

    func run() throws {
        try guarded {
            let client = try redisOptions.connect()
            let q = try openBatch(client, batch)
            let reporter = ProgressReporter()
            if workers { reporter.workerLimit = nil }
            let began = Date()
            var outage = false
            while true {
                do {
                    let s = try BatchSnapshot.take(q)
                    if outage {
                        coordinatorLog("Redis is reachable again")
                        outage = false
                    }
                    reporter.update(s)
                    if s.status.finished {
                        reporter.finish()
                        say("batch \(batch) finished: \(s.status.done) done, \(s.status.failed) failed")
                        return s.status.failed > 0 ? ExitCodes.failedJobs : 0
                    }
                    if let damage = try q.metadata()?.damage, !damage.isEmpty {
                        reporter.finish()
                        throw InputError("batch \(batch) is damaged: " + damage.joined(separator: "; "))
                    }
                } catch let e as RedisError where e.isTransient {
                    if !outage {
                        reporter.finish()
                        coordinatorLog("Redis unavailable (\(e)); still watching")
                        outage = true
                    }
                }
                if let timeout, Date().timeIntervalSince(began) > timeout {
                    reporter.finish()
                    say("muse-coordinator: gave up watching after \(formatDuration(timeout)); the batch keeps running")
                    return ExitCodes.runtime
                }
                Thread.sleep(forTimeInterval: interval)
            }
        }
    }
}
