import ArgumentParser
import Foundation
import Shared

struct RunCommand: ParsableCommand {
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

    @Option(help: ArgumentHelp("Worker engine (muse, or fake for pipeline tests).", visibility: .hidden))
    var workerEngine = "muse"

    func validate() throws {
        guard (1...64).contains(localWorkers) else { throw ValidationError("--local-workers must be in 1...64") }
    }

    func run() throws {
        try guarded { try runBatch() }
    }

    func runBatch() throws -> Int32 {
        let log = coordinatorLog
        var loaded = try JobSpec.load(path: spec, outputOverride: output)
        if loaded.output == nil {
            // Neither --output nor the spec's `output`: out/<name> in the current folder.
            let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            loaded.output = cwd.appendingPathComponent("out").appendingPathComponent(Slug.make(loaded.name, fallback: "batch"))
            loaded.info.output = loaded.output?.path
            say("no output folder given: using \(loaded.output!.path)")
        }
        let out = loaded.output!
        do { try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true) } catch {
            throw InputError("cannot create the output folder \(out.path): \(error.localizedDescription)")
        }
        let lock = try OutputLock(folder: out)
        defer { withExtendedLifetime(lock) {} }
        let manifestURL = out.appendingPathComponent(Collector.manifestName)
        let existing = try ManifestWriter.readEntries(manifestURL, as: ManifestEntry.self)
        let collected = Set(existing.map(\.jobID))
        let remaining = loaded.jobs.filter { !collected.contains($0.id) }
        let cells = loaded.jobs.map { (id: $0.id, row: $0.sheetRow, column: $0.sheetColumn, source: $0.content.imageSHA256) }
        let columns = loaded.info.sheetColumns

        if remaining.isEmpty {
            let sheet = try Collector.writeContactSheet(output: out, jobs: cells, columns: columns)
            let ids = Set(loaded.jobs.map(\.id))
            let failed = existing.filter { ids.contains($0.jobID) && $0.status != "done" }.count
            say("all \(loaded.jobs.count) jobs of batch \(loaded.batchID) are already in \(manifestURL.path) (\(failed) failed); nothing to do\(sheet.map { "; contact sheet \($0.path)" } ?? "")")
            return failed > 0 ? ExitCodes.failedJobs : 0
        }

        let workerBinary = try LocalWorkers.findWorkerBinary()
        let stop = StopSignal()
        stop.install(onFirst: { _ in say("\nstopping: workers checkpoint and hand back their jobs (Ctrl-C again to quit at once)") },
                     onSecond: { sig in say("quitting at once; run the same command again to resume"); Foundation.exit(128 + sig) })

        let redisDir = out.appendingPathComponent(".redis")
        let redis = try LocalRedis.start(dataDir: redisDir, log: { log($0) })
        var workers: LocalWorkers?
        var clean = false
        defer {
            if !clean {
                workers?.stopAll(grace: 120)
                redis.shutdown()
            }
        }
        let client = try RedisClient(endpoint: redis.endpoint, options: .init(connectTimeout: 5, commandTimeout: 30))
        let r = try submitSpec(loaded, client: client, skipping: collected)
        let q = try BatchQueue(client: client, batchID: loaded.batchID)
        let resumed = r.existing > 0 ? ", \(r.existing) carried over from an interrupted run" : ""
        let skipped = r.skipped > 0 ? ", \(r.skipped) already collected" : ""
        say("batch \(loaded.batchID): \(loaded.jobs.count) jobs (\(r.added) new\(resumed)\(skipped)); \(localWorkers) local workers, logs in \(out.appendingPathComponent("logs").path)")

        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "REDIS_URL")
        env.removeValue(forKey: "REDIS_PASSWORD")
        env.removeValue(forKey: "REDIS_PASSWORD_FILE")
        if env["OPENBLAS_NUM_THREADS"] == nil {
            env["OPENBLAS_NUM_THREADS"] = String(max(1, ProcessInfo.processInfo.activeProcessorCount / localWorkers))
        }
        let pool = LocalWorkers(count: localWorkers, binary: workerBinary,
                                arguments: ["run", "--redis", "unix://\(redis.socketPath)", "--batch", loaded.batchID,
                                            "--engine", workerEngine],
                                logDir: out.appendingPathComponent("logs"), environment: env)
        workers = pool
        try pool.startAll()

        let collector = try Collector(queue: q, output: out, log: { log($0) })
        let reporter = ProgressReporter()
        var finished = false
        while !stop.requested {
            try collector.collectNew()
            let snap = try BatchSnapshot.take(q)
            let inManifest = collector.manifest.jobIDs
            reporter.update(snap, collected: loaded.jobs.filter { inManifest.contains($0.id) }.count)
            if snap.status.finished {
                try collector.collectNew()
                finished = true
                break
            }
            guard try pool.check(log: { reporter.finish(); log($0) }) else {
                reporter.finish()
                throw InputError("local workers keep failing (see \(out.appendingPathComponent("logs").path)); stopped. Progress is kept: run the same command again to resume")
            }
            stop.sleep(0.5)
        }
        reporter.finish()
        if !finished {
            pool.stopAll(grace: 120)
            _ = try? collector.collectNew()  // best effort: keep what finished before the interrupt
            redis.shutdown()
            clean = true
            let have = collector.manifest.jobIDs
            let done = loaded.jobs.filter { have.contains($0.id) }.count
            say("interrupted: \(done) of \(loaded.jobs.count) jobs collected in \(manifestURL.path); run the same command again to resume")
            return 128 + (stop.signalNumber ?? SIGINT)
        }
        pool.stopAll(grace: 30)
        let sheet = try Collector.writeContactSheet(output: out, jobs: cells, columns: columns)
        redis.shutdown()
        clean = true
        let have = collector.manifest.jobIDs
        let missing = loaded.jobs.filter { !have.contains($0.id) }.count
        if missing == 0 && !keepRedis { try? FileManager.default.removeItem(at: redisDir) }
        let lines = try ManifestWriter.readEntries(manifestURL, as: ManifestEntry.self)
        let ids = Set(loaded.jobs.map(\.id))
        let failed = lines.filter { ids.contains($0.jobID) && $0.status != "done" }
        var summary = "batch \(loaded.batchID) finished: \(loaded.jobs.count - failed.count - missing) done, \(failed.count) failed"
        if missing > 0 { summary += ", \(missing) not collected" }
        if let outcome = Self.emotionOutcome(lines.filter { ids.contains($0.jobID) }) { summary += "\n  " + outcome }
        summary += "\n  manifest      \(manifestURL.path)"
        if let sheet { summary += "\n  contact sheet \(sheet.path)" }
        for f in failed.prefix(10) { summary += "\n  failed \(f.jobID.prefix(8)) (\(f.emotion), \(f.kind)): \(f.error ?? "?")" }
        say(summary)
        return failed.isEmpty && missing == 0 ? 0 : ExitCodes.failedJobs
    }

    /// How the batch did at its purpose: jobs whose image the classifier ranks first for the
    /// target emotion, and the mean probability of the target.
    static func emotionOutcome(_ lines: [ManifestEntry]) -> String? {
        let scored = lines.filter { $0.status == "done" && $0.targetProbability != nil }
        guard !scored.isEmpty else { return nil }
        let hits = scored.filter { $0.topEmotion == $0.emotion }.count
        let mean = scored.compactMap(\.targetProbability).reduce(0, +) / Double(scored.count)
        return String(format: "target emotion ranked first in %d of %d images; mean p(target) %.3f", hits, scored.count, mean)
    }
}
