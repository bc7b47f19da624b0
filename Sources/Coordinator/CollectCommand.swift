import ArgumentParser
import Checkpoints
import CoordinatorCore
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

struct CollectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collect",
        abstract: "Write a batch's results: PNG files, manifest.jsonl (one fsynced line per job) and a contact sheet.",
        discussion: """
            Safe to run again at any time, also after a crash: jobs already in the manifest are skipped, \
            so every job gets exactly one line. Results are removed from Redis once their line is on disk. \
            With --follow, keeps collecting until the batch has finished (exit code 3 if jobs failed).
            """)

    @Argument(help: "Batch id.")
    var batch: String

    @Option(help: "Output folder (default: the one recorded when the batch was submitted).")
    var output: String?

    @Flag(help: "Keep collecting until every job has finished.")
    var follow = false

    @Option(help: "With --follow: seconds between polls.")
    var interval: Double = 1

    @Option(
        help: ArgumentHelp(
            "Once every job of the batch is collected, its Redis keys (job records, source images, "
                + "checkpoints) expire after this many hours; 0 keeps them.",
            valueName: "hours"))
    var retainHours: Double = 168

    @Flag(
        help: ArgumentHelp(
            "Collect into an output folder whose manifest already holds other batches "
                + "(this batch's contact sheet is then contact-sheet-BATCH.png)."))
    var allowMixed = false

    @OptionGroup var redisOptions: RedisOptions
    @OptionGroup var metricsOptions: MetricsOptions
    @OptionGroup var datasetOptions: DatasetOptions

    func validate() throws {
        guard (0.05...3600).contains(interval) else {
            throw ValidationError("--interval must be in 0.05...3600 seconds")
        }
        guard retainHours.isFinite, (0...87_600).contains(retainHours) else {
            throw ValidationError("--retain-hours must be in 0...87600 (0: keep), got \(retainHours)")
        }
    }

    func run() throws {
        try guarded {
            let served = try metricsOptions.start()
            defer { withExtendedLifetime(served?.server) {} }
            let client = try redisOptions.connect()
            let q = try openBatch(client, batch)
            let info = try q.batchInfo()
            let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            guard
                let folder = output.map({ PathConfinement.absolute($0, base: cwd) })
                    ?? info?.output.map({ URL(fileURLWithPath: $0) })
            else {
                throw InputError("batch \(batch) was submitted without an output folder: pass --output DIR")
            }
            // Holds the output folder's lock (as `run` does) until the contact sheet is written:
            // a second collect on the same folder is refused instead of appending the same jobs.
            let collector = try Collector(
                queue: q, output: folder, allowMixed: allowMixed, log: { coordinatorLog($0) })
            defer { withExtendedLifetime(collector) {} }
            collector.metrics = served?.metrics
            let others = try Collector.otherBatches(manifest: collector.manifestURL, than: q.batchID)
            let mixed = !others.isEmpty
            let reporter = ProgressReporter()
            var outage = false
            var finished = false
            repeat {
                do {
                    try collector.collectNew()
                    let snap = try BatchSnapshot.take(q)
                    finished = snap.status.finished
                    served?.metrics.observe(batch: q.batchID, status: snap.status)
                    if finished { try collector.collectNew() }  // anything published since
                    if follow { reporter.update(snap, collected: collector.manifest.jobIDs.count) }
                    if outage {
                        coordinatorLog("Redis is reachable again")
                        outage = false
                    }
                    if !follow || finished { break }
                    // A damaged record stalls the batch for good: say so and stop following.
                    if let damage = try q.metadata()?.damage, !damage.isEmpty {
                        reporter.finish()
                        throw InputError("batch \(q.batchID) is damaged: " + damage.joined(separator: "; "))
                    }
                } catch let e as RedisError where e.isTransient && follow {
                    served?.metrics.redisError()
                    if !outage {
                        reporter.finish()
                        coordinatorLog("Redis unavailable (\(e)); waiting")
                        outage = true
                    }
                }
                Thread.sleep(forTimeInterval: interval)
            } while true
            reporter.finish()
            let jobs = batchJobs(q, folder: folder)
            let sheet = try Collector.writeContactSheet(
                output: folder, jobs: jobs, columns: max(1, info?.sheetColumns ?? 1),
                name: Collector.sheetName(batchID: q.batchID, mixed: mixed))
            if let n = datasetOptions.webdataset {
                say(
                    WebDatasetShards.summary(
                        try WebDatasetShards.write(output: folder, samplesPerShard: n), output: folder))
            }
            let st = try q.status()
            var retention = ""
            // Finished and every result written here (collected results leave Redis).
            if st.finished, retainHours > 0, try q.results().isEmpty {
                let keys = try q.expire(afterMs: Int(retainHours * 3_600_000))
                retention = String(format: "; its %d Redis keys expire in %g h (--retain-hours)", keys, retainHours)
            }
            say(
                "collected \(collector.written) new line(s) into \(collector.manifestURL.path) (\(collector.manifest.jobIDs.count) in total); batch: \(st.done) done, \(st.failed) failed of \(st.total)\(sheet.map { "; contact sheet \($0.path)" } ?? "")\(retention)"
            )
            if follow && st.failed > 0 { return ExitCodes.failedJobs }
            return 0
        }
    }

    /// The batch's jobs with their contact-sheet cells, from the manifest (the spec is not needed).
    func batchJobs(_ q: BatchQueue, folder: URL) -> [(id: String, row: Int, column: Int, source: String?)] {
        let lines =
            (try? ManifestWriter.readEntries(
                folder.appendingPathComponent(Collector.manifestName), as: ManifestEntry.self)) ?? []
        return lines.filter { $0.batchID == q.batchID }.map {
            ($0.jobID, $0.sheet.row, $0.sheet.column, $0.image?.sha256)
        }
    }
}
