import ArgumentParser
import CoordinatorCore
import Foundation
import Support

struct BenchQueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-queue",
        abstract:
            "Measure the pipeline's own cost: queue overhead per job with a no-op engine, and checkpoint size/time.",
        discussion: """
            Starts a private redis-server (AOF on, fsync every second) and local workers running the \
            no-op engine, submits --jobs one-step jobs, and reports submit, processing and collect \
            cost per job; then the checkpoint codec on an SD 1.x state (4×64×64 latent + Adam moments + \
            768-d token) and a fenced checkpoint write through Redis. Prints figures; asserts nothing.
            """)

    @Option(help: "Number of no-op jobs.")
    var jobs = 1000

    @Option(help: "Number of local workers.")
    var workers = 2

    @Option(help: "Repetitions for the checkpoint measurements (best is reported).")
    var iterations = 5

    func validate() throws {
        guard jobs >= 2, workers >= 1, iterations >= 1 else {
            throw ValidationError("need --jobs ≥ 2, --workers ≥ 1, --iterations ≥ 1")
        }
    }

    func run() throws {
        try guarded {
            try QueueBenchmark(jobs: jobs, workers: workers, iterations: iterations).run()
            return 0
        }
    }
}
