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
