import ArgumentParser
import Checkpoints
import CoordinatorCore
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

struct RunBatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a spec locally from start to finish: private Redis, N workers, progress, collected results.",
        discussion: """
            Starts a private redis-server (unix socket, AOF in OUTPUT/.redis), submits the spec, starts \
            N muse-worker processes (worker logs in OUTPUT/logs/), shows progress, and collects PNGs, \
            manifest.jsonl and contact-sheet.png into the output folder. Ctrl-C stops cleanly (workers \
            checkpoint and hand back their jobs); running the same command again resumes without \
            redoing or duplicating anything. Jobs already in OUTPUT/manifest.jsonl are never redone.
            """)

    @Argument(help: "Job spec (YAML or JSON); format: manifests/SPEC.md.")
    var spec: String

    @Option(help: "Number of local muse-worker processes.")
    var localWorkers = 2

    @Option(help: "Output folder, overriding the spec's output (default if neither: out/<spec name> here).")
    var output: String?

    @Flag(help: "Keep OUTPUT/.redis after a complete run (it is removed once everything is collected).")
    var keepRedis = false

    @Flag(
        help: ArgumentHelp(
            "Add this batch to an output folder whose manifest already holds other batches "
                + "(its contact sheet is then contact-sheet-BATCH.png)."))
    var allowMixed = false

    @OptionGroup var metricsOptions: MetricsOptions
    @OptionGroup var datasetOptions: DatasetOptions

    @Option(help: ArgumentHelp("Worker engine (muse, or fake for pipeline tests).", visibility: .hidden))
    var workerEngine = "muse"

    func validate() throws {
        guard (1...64).contains(localWorkers) else { throw ValidationError("--local-workers must be in 1...64") }
    }

    func run() throws {
        try guarded {
            let served = try metricsOptions.start()
            return try withExtendedLifetime(served?.server) {
                try LocalBatchRun(
                    .init(
                        spec: spec, output: output, localWorkers: localWorkers, keepRedis: keepRedis,
                        workerEngine: workerEngine, allowMixed: allowMixed, metrics: served?.metrics,
                        webdatasetSamples: datasetOptions.webdataset)
                ).run()
            }
        }
    }
}
