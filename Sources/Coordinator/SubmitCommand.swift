import ArgumentParser
import Checkpoints
import CoordinatorCore
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

struct SubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Validate a job spec, upload its source images and queue its jobs; print the batch id.",
        discussion: """
            Job and batch ids are derived from the jobs' content (settings, seeds, image bytes, model \
            fingerprints), so submitting the same spec again changes nothing. The batch id is the only \
            thing printed on stdout.
            """)

    @Argument(help: "Job spec (YAML, or JSON if it ends in .json); format: manifests/SPEC.md.")
    var spec: String

    @Option(help: "Output folder recorded with the batch (default for collect), overriding the spec's output.")
    var output: String?

    @Flag(help: "Validate the spec and print its jobs and estimated Redis memory; touch nothing.")
    var dryRun = false

    @OptionGroup var redisOptions: RedisOptions

    func run() throws {
        try guarded {
            let loaded = try JobSpec.load(path: spec, outputOverride: output)
            if dryRun {
                print(try SubmitEstimate(loaded).report)
                return 0
            }
            let client = try redisOptions.connect()
            let r = try submitSpec(loaded, client: client)
            let note = r.existing > 0 ? ", \(r.existing) already submitted" : ""
            say(
                "batch \(loaded.batchID): \(loaded.jobs.count) jobs (\(r.added) new\(note)); max attempts \(loaded.maxAttempts), lease \(Double(loaded.leaseMs) / 1000) s"
            )
            print(loaded.batchID)
            return 0
        }
    }
}
