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
            say("batch \(batch) paused: no new job starts; running ones finish. muse-coordinator resume \(batch) undoes it")
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

    @Flag(help: "Requeue the dead-lettered jobs (required: says what is requeued).")
    var failed = false

    @OptionGroup var redisOptions: RedisOptions

    func validate() throws {
        guard failed else { throw ValidationError("say what to requeue: --failed") }
    }

    func run() throws {
        try guarded {
            let queue = try BatchQueue(client: try redisOptions.connect(), batchID: batch)
            let jobs = try queue.requeueDead()
            say("batch \(batch): \(jobs.count) failed job(s) requeued with their attempts reset")
            return 0
        }
    }
}
