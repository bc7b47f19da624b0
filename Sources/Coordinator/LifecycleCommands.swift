import ArgumentParser
import CoordinatorCore
import Foundation
import RedisQueue

/// `pause BATCH`: workers take no job of the batch until `resume`; running jobs finish.
struct PauseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause",
        abstract: "Stop workers from starting jobs of a batch (running ones finish); undo with resume.")

    @Argument(help: "Batch id.")
    var batch: String

    @OptionGroup var redisOptions: RedisOptions

    func run() throws {
        try guarded {
            let queue = try BatchQueue(client: try redisOptions.connect(), batchID: batch)
            try queue.setPaused(true)
            say(
                "batch \(batch) paused: no new job starts; running ones finish. muse-coordinator resume \(batch) undoes it"
            )
            return 0
        }
    }
}

/// `resume BATCH`: undoes `pause`.
struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Let workers take a paused batch's jobs again.")

    @Argument(help: "Batch id.")
    var batch: String

    @OptionGroup var redisOptions: RedisOptions

    func run() throws {
        try guarded {
            let queue = try BatchQueue(client: try redisOptions.connect(), batchID: batch)
            try queue.setPaused(false)
            say("batch \(batch) resumed")
            return 0
        }
    }
}

/// `requeue BATCH --failed`: dead-lettered jobs run again; `collect`/`run` replace their lines.
struct RequeueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "requeue",
        abstract: "Put a batch's failed (dead-lettered) jobs back into its queue with their attempts reset.",
        discussion: """
            The next collect (or run) replaces each job's failure line in manifest.jsonl with its new \
            outcome: the manifest stays one line per job.
            """)

    @Argument(help: "Batch id.")
    var batch: String

    @Flag(help: "Requeue every dead-lettered job.")
    var failed = false

    @Option(help: "Requeue this failed job only (its id, as status and the manifest show it; repeatable).")
    var job: [String] = []

    @OptionGroup var redisOptions: RedisOptions

    func validate() throws {
        guard failed != !job.isEmpty else {
            throw ValidationError("say what to requeue: --failed (every failed job) or --job ID (one)")
        }
    }

    func run() throws {
        try guarded {
            let queue = try BatchQueue(client: try redisOptions.connect(), batchID: batch)
            let jobs = try queue.requeueDead(only: job.isEmpty ? nil : Set(job))
            say("batch \(batch): \(jobs.count) failed job(s) requeued with their attempts reset")
            let missing = Set(job).subtracting(jobs).sorted()
            guard missing.isEmpty else {
                throw InputError(
                    "not failed in batch \(batch), so not requeued: \(missing.joined(separator: ", ")) "
                        + "(muse-coordinator status \(batch) lists the failed jobs)")
            }
            return 0
        }
    }
}

/// `cancel BATCH`: queued jobs never run, running ones stop at their next step.
struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a batch: queued jobs never run, running ones stop at their next step.",
        discussion: """
            Cancelled jobs end as dead letters marked cancelled; collect writes them to manifest.jsonl \
            with status "cancelled". requeue --failed brings them back.
            """)

    @Argument(help: "Batch id.")
    var batch: String

    @OptionGroup var redisOptions: RedisOptions

    func run() throws {
        try guarded {
            let queue = try BatchQueue(client: try redisOptions.connect(), batchID: batch)
            let jobs = try queue.cancel()
            say("batch \(batch): \(jobs.count) job(s) cancelled; collect records them as cancelled")
            return 0
        }
    }
}

/// `delete BATCH`: every key and blob of a finished batch.
struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Remove every Redis key and blob of a finished (or cancelled) batch.",
        discussion: """
            Collect first: results still in Redis are deleted with the batch. A batch with jobs left \
            is refused unless --force (cancel it first to stop its workers cleanly).
            """)

    @Argument(help: "Batch id.")
    var batch: String

    @Flag(help: "Delete even though jobs are queued or running.")
    var force = false

    @OptionGroup var redisOptions: RedisOptions

    func run() throws {
        try guarded {
            let queue = try BatchQueue(client: try redisOptions.connect(), batchID: batch)
            guard let c = try queue.counters() else { throw QueueError.noSuchBatch(batch) }
            if !c.finished && !force {
                say(
                    "batch \(batch) is not finished (\(c.done + c.failed) of \(c.total) jobs); cancel it first, or pass --force"
                )
                return 2
            }
            let uncollected = try queue.results().count
            try queue.destroy()
            say(
                "batch \(batch) deleted\(uncollected > 0 ? " (with \(uncollected) uncollected result(s))" : "")")
            return 0
        }
    }
}
