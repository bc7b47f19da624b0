import Foundation
import Jobs
import RedisQueue
import Support
import Vocabulary

/// `muse-coordinator run`: one spec from start to finish on this machine — a private
/// redis-server, N local workers, progress, and the collected results. Interrupted runs
/// resume when started again: Redis keeps its AOF in OUTPUT/.redis and jobs already in the
/// manifest are never redone.
public final class LocalBatchRun {
    public struct Options {
        public var spec: String
        public var output: String?
        public var localWorkers: Int
        public var keepRedis: Bool
        public var workerEngine: String
        /// Add the batch to an output folder whose manifest holds other batches.
        public var allowMixed: Bool
        /// Collector and queue metrics (`--metrics-port`).
        public var metrics: CoordinatorMetrics?
        /// Samples per WebDataset shard written at the end (nil: no shards).
        public var webdatasetSamples: Int?

        public init(
            spec: String, output: String?, localWorkers: Int, keepRedis: Bool, workerEngine: String,
            allowMixed: Bool = false, metrics: CoordinatorMetrics? = nil, webdatasetSamples: Int? = nil
        ) {
            self.metrics = metrics
            self.webdatasetSamples = webdatasetSamples
            self.spec = spec
            self.output = output
            self.localWorkers = localWorkers
            self.keepRedis = keepRedis
            self.workerEngine = workerEngine
            self.allowMixed = allowMixed
        }
    }

    let options: Options
    let log = coordinatorLog
    private var loaded: LoadedSpec
    private let out: URL
    private var manifestURL: URL { out.appendingPathComponent(Collector.manifestName) }
    private var redisDir: URL { out.appendingPathComponent(".redis") }
    private var logDir: URL { out.appendingPathComponent("logs") }
    /// contact-sheet.png, or a per-batch name in a folder shared with other batches.
    private var sheetName = Collector.sheetName

    /// Loads and validates the spec; nothing is started yet.
    public init(_ options: Options) throws {
        self.options = options
        loaded = try JobSpec.load(path: options.spec, outputOverride: options.output)
        if loaded.output == nil {
            // Neither --output nor the spec's `output`: out/<name> in the current folder.
            let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            loaded.output = cwd.appendingPathComponent("out").appendingPathComponent(
                Slug.make(loaded.name, fallback: "batch"))
            loaded.info.output = loaded.output?.path
            say("no output folder given: using \(loaded.output!.path)")
        }
        out = loaded.output!
    }

    private var cells: [(id: String, row: Int, column: Int, source: String?)] {
        loaded.jobs.map { (id: $0.id, row: $0.sheetRow, column: $0.sheetColumn, source: $0.content.imageSHA256) }
    }

    /// Runs the batch; returns the process exit code.
    public func run() throws -> Int32 {
        do { try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true) } catch {
            throw InputError("cannot create the output folder \(out.path): \(error.localizedDescription)")
        }
        let lock = try OutputLock(folder: out)
        defer { withExtendedLifetime(lock) {} }
        // One batch per folder unless asked: another spec's jobs would share this manifest and
        // its contact sheet would replace the other batch's.
        if !options.allowMixed { try Collector.refuseMixing(manifest: manifestURL, batchID: loaded.batchID) }
        let others = try Collector.otherBatches(manifest: manifestURL, than: loaded.batchID)
        sheetName = Collector.sheetName(batchID: loaded.batchID, mixed: !others.isEmpty)
        let existing = try ManifestWriter.readEntries(manifestURL, as: ManifestEntry.self)
        let collected = Set(existing.map(\.jobID))
        if loaded.jobs.allSatisfy({ collected.contains($0.id) }) { return try reportNothingToDo(existing) }

        try checkMemory()
        let workerBinary = try LocalWorkers.findWorkerBinary()
        let stop = StopSignal()
        stop.install(
            onFirst: { _ in
                say("\nstopping: workers checkpoint and hand back their jobs (Ctrl-C again to quit at once)")
            },
            onSecond: { sig in
                say("quitting at once; run the same command again to resume")
                Foundation.exit(128 + sig)
            })
        var serverOptions = RedisServer.Options(dataDir: redisDir)
        serverOptions.dieWithParent = true
        let redis = try RedisServer(serverOptions)
        var pool: LocalWorkers?
        var clean = false
        defer {
            if !clean {
                pool?.stopAll(grace: 120)
                redis.shutdown()
            }
        }
        let client = try redis.client(options: .init(connectTimeout: 5, commandTimeout: 30))
        let queue = try submit(client: client, collected: collected)
        pool = try startWorkers(binary: workerBinary, redis: redis)
        let collector = try Collector(
            queue: queue, output: out, lock: lock, allowMixed: options.allowMixed, log: { [log] in log($0) })
        collector.metrics = options.metrics
        let finished = try follow(queue: queue, collector: collector, pool: pool!, stop: stop)
        if !finished {
            pool?.stopAll(grace: 120)
            _ = try? collector.collectNew()  // best effort: keep what finished before the interrupt
            redis.shutdown()
            clean = true
            let done = loaded.jobs.filter { collector.manifest.jobIDs.contains($0.id) }.count
            say(
                "interrupted: \(done) of \(loaded.jobs.count) jobs collected in \(manifestURL.path); run the same command again to resume"
            )
            return 128 + (stop.signalNumber ?? SIGINT)
        }
        pool?.stopAll(grace: 30)
        let sheet = try Collector.writeContactSheet(
            output: out, jobs: cells, columns: loaded.info.sheetColumns, name: sheetName)
        try writeShards()
        redis.shutdown()
        clean = true
        return try reportFinished(collector: collector, sheet: sheet)
    }

    /// N local workers each hold their own models and activations: refuse a count whose
    /// estimated peaks add up past the memory limit, saying how many fit.
    private func checkMemory() throws {
        let each = loaded.peakBytesPerWorker
        let limit = ImageSizeRules.memoryLimitBytes()
        guard each > 0, Double(options.localWorkers) * each > limit else { return }
        let fit = max(0, Int(limit / each))
        throw InputError(
            String(
                format: "%d local workers would need about %.1f GB at their peaks (%.1f GB each for this batch's "
                    + "largest job), over the limit of %.1f GB (MUSE_MAX_MEMORY_GB; default 80%% of this machine's "
                    + "memory): %@", options.localWorkers, Double(options.localWorkers) * each / 1e9, each / 1e9,
                limit / 1e9, fit > 0 ? "use --local-workers \(fit)" : "not even one fits"))
    }

    private func reportNothingToDo(_ existing: [ManifestEntry]) throws -> Int32 {
        let sheet = try Collector.writeContactSheet(
            output: out, jobs: cells, columns: loaded.info.sheetColumns, name: sheetName)
        try writeShards()
        let ids = Set(loaded.jobs.map(\.id))
        let failed = existing.filter { ids.contains($0.jobID) && $0.status != .done }.count
        say(
            "all \(loaded.jobs.count) jobs of batch \(loaded.batchID) are already in \(manifestURL.path) (\(failed) failed); "
                + "nothing to do\(sheet.map { "; contact sheet \($0.path)" } ?? "")")
        return failed > 0 ? ExitCodes.failedJobs : 0
    }

    private func writeShards() throws {
        guard let n = options.webdatasetSamples else { return }
        say(WebDatasetShards.summary(try WebDatasetShards.write(output: out, samplesPerShard: n), output: out))
    }

    private func submit(client: RedisClient, collected: Set<String>) throws -> BatchQueue {
        let r = try submitSpec(loaded, client: client, skipping: collected)
        let resumed = r.existing > 0 ? ", \(r.existing) carried over from an interrupted run" : ""
        let skipped = r.skipped > 0 ? ", \(r.skipped) already collected" : ""
        say(
            "batch \(loaded.batchID): \(loaded.jobs.count) jobs (\(r.added) new\(resumed)\(skipped)); "
                + "\(options.localWorkers) local workers, logs in \(logDir.path)")
        return try BatchQueue(client: client, batchID: loaded.batchID)
    }

    private func startWorkers(binary: String, redis: RedisServer) throws -> LocalWorkers {
        var env = ProcessInfo.processInfo.environment
        for key in ["REDIS_URL", "REDIS_PASSWORD", "REDIS_PASSWORD_FILE"] { env.removeValue(forKey: key) }
        env["MUSE_LOG_FORMAT"] = Log.format.rawValue  // workers log as --log-format says
        if env["OPENBLAS_NUM_THREADS"] == nil {
            env["OPENBLAS_NUM_THREADS"] = String(
                max(1, ProcessInfo.processInfo.activeProcessorCount / options.localWorkers))
        }
        let pool = LocalWorkers(
            count: options.localWorkers, binary: binary,
            arguments: ["run", "--redis", redis.url, "--batch", loaded.batchID, "--engine", options.workerEngine],
            logDir: logDir, environment: env)
        try pool.startAll()
        return pool
    }

    /// Collects and shows progress until the batch finishes (true) or a stop is requested (false).
    private func follow(queue: BatchQueue, collector: Collector, pool: LocalWorkers, stop: StopSignal) throws -> Bool {
        let reporter = ProgressReporter()
        defer { reporter.finish() }
        while !stop.requested {
            try collector.collectNew()
            let snap = try BatchSnapshot.take(queue)
            options.metrics?.observe(batch: queue.batchID, status: snap.status)
            let inManifest = collector.manifest.jobIDs
            reporter.update(snap, collected: loaded.jobs.filter { inManifest.contains($0.id) }.count)
            if snap.status.finished {
                try collector.collectNew()
                return true
            }
            guard
                try pool.check(
                    log: { [log] in
                        reporter.finish()
                        log($0)
                    },
                    exited: { [log] name, status, cause in
                        guard !status.succeeded else { return }
                        do {
                            let jobs = try queue.recordCrash(worker: name, cause: cause, retryNow: status.isCrash)
                            for job in jobs { log("job \(job.prefix(8)) held by \(name): \(cause)") }
                        } catch {
                            log("could not record why worker \(name) exited: \(error)")
                        }
                    })
            else {
                throw InputError(
                    "local workers keep failing (see \(logDir.path)); stopped. Progress is kept: run the same command again to resume"
                )
            }
            stop.sleep(0.5)
        }
        return false
    }

    private func reportFinished(collector: Collector, sheet: URL?) throws -> Int32 {
        let have = collector.manifest.jobIDs
        let missing = loaded.jobs.filter { !have.contains($0.id) }.count
        if missing == 0 && !options.keepRedis { try? FileManager.default.removeItem(at: redisDir) }
        let lines = try ManifestWriter.readEntries(manifestURL, as: ManifestEntry.self)
        let ids = Set(loaded.jobs.map(\.id))
        let failed = lines.filter { ids.contains($0.jobID) && $0.status != .done }
        var summary =
            "batch \(loaded.batchID) finished: \(loaded.jobs.count - failed.count - missing) done, \(failed.count) failed"
        if missing > 0 { summary += ", \(missing) not collected" }
        if let outcome = Self.emotionOutcome(lines.filter { ids.contains($0.jobID) }) { summary += "\n  " + outcome }
        summary += "\n  manifest      \(manifestURL.path)"
        if let sheet { summary += "\n  contact sheet \(sheet.path)" }
        for f in failed.prefix(10) {
            summary += "\n  failed \(f.jobID.prefix(8)) (\(f.emotion), \(f.kind)): \(f.error ?? "?")"
        }
        say(summary)
        return failed.isEmpty && missing == 0 ? 0 : ExitCodes.failedJobs
    }

    /// How the batch did at its purpose: jobs whose image ranks the target emotion first, and
    /// the mean probability of the target — by the evaluator when the spec has one (the guide
    /// classifier is what MUSE optimised against, so it flatters), then by the guide.
    public static func emotionOutcome(_ lines: [ManifestEntry]) -> String? {
        let done = lines.filter { $0.status == .done }
        let evaluated = done.compactMap { e -> (hit: Bool, p: Double)? in
            guard let p = e.evaluation?["target_probability"]?.doubleValue else { return nil }
            return (e.evaluation?["top_emotion"]?.stringValue == e.emotion, p)
        }
        let guided = done.compactMap { e in e.targetProbability.map { (hit: e.topEmotion == e.emotion, p: $0) } }
        func line(_ who: String, _ reads: [(hit: Bool, p: Double)]) -> String {
            String(
                format: "%@: target emotion ranked first in %d of %d images; mean p(target) %.3f", who,
                reads.filter(\.hit).count, reads.count, reads.map(\.p).reduce(0, +) / Double(reads.count))
        }
        if !evaluated.isEmpty {
            return line("evaluator", evaluated) + (guided.isEmpty ? "" : "\n  " + line("guide classifier", guided))
        }
        return guided.isEmpty ? nil : line("guide classifier (the spec has no evaluation:)", guided)
    }
}
