import Checkpoints
import Foundation
import Jobs
import RedisQueue
import Support
import Vocabulary

/// `muse-coordinator bench-queue`: the pipeline's own cost per job, measured with no-op
/// workers on a private redis-server, then the checkpoint codec and a fenced write.
/// Prints figures; asserts nothing.
public struct QueueBenchmark {
    public let jobs: Int
    public let workers: Int
    public let iterations: Int

    public init(jobs: Int, workers: Int, iterations: Int) {
        self.jobs = jobs
        self.workers = workers
        self.iterations = iterations
    }

    public func run() throws {
        let tmp = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let redis = try RedisServer(.init(dataDir: tmp.appendingPathComponent("redis")))
        defer { redis.shutdown() }
        let client = try RedisClient(endpoint: redis.endpoint)
        let batchID = "bench-\(Int(Date().timeIntervalSince1970 * 1000))"
        let q = try BatchQueue(client: client, batchID: batchID)
        let info = BatchInfo(
            name: "bench", specFile: "", output: nil, jobs: jobs, sheetColumns: 1, submittedBy: "bench-queue")
        try q.create(spec: try CanonicalJSON.encode(info), maxAttempts: 3, leaseMs: 30_000)

        let payloads = try noOpPayloads()
        let t0 = Date()
        for (id, p) in payloads { try q.submit(jobID: id, payload: p) }
        let submitSeconds = Date().timeIntervalSince(t0)
        let processSeconds = try process(q, redis: redis, logDir: tmp.appendingPathComponent("logs"))
        let steadySeconds = try steadyState(q, client: client)
        let collector = try Collector(queue: q, output: tmp.appendingPathComponent("out"), log: { coordinatorLog($0) })
        let t2 = Date()
        try collector.collectNew()
        let collectSeconds = Date().timeIntervalSince(t2)
        report(submit: submitSeconds, process: processSeconds, steady: steadySeconds, collect: collectSeconds)
        for line in try CheckpointBenchmark.run(levels: [1, 3, 9], iterations: iterations) { print(line) }
        try fencedCheckpointWrite(client: client, batchID: batchID + "-ckpt")
    }

    static func temporaryFolder() throws -> URL {
        var template = Array("/tmp/muse-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw InputError("cannot create a temporary folder") }
        return URL(fileURLWithPath: String(cString: made))
    }

    func noOpPayloads() throws -> [(String, Data)] {
        let models = ModelFingerprints(model: "fake", tower: "fake", head: nil, text: "fake")
        let locations = ModelLocations(model: "fake", tower: "fake", head: nil, text: "fake")
        return try (0..<jobs).map { i in
            let synthesis = SynthesisJob(
                prompt: "bench \(i)", emotion: .awe, seed: UInt64(i), settings: JobSettings(steps: 1))
            let content = JobContent(kind: .generate, synthesis: synthesis, imageSHA256: nil, models: models)
            let id = try content.jobID()
            let job = PipelineJob(
                id: id, content: content, locations: locations, checkpointEvery: 0, index: i,
                output: "awe/bench-\(i)-\(id.prefix(8)).png", imagePath: nil, sheetRow: i, sheetColumn: 0)
            return (id, try job.encoded())
        }
    }

    /// Wall time for the local no-op workers to finish every job, start-up included.
    func process(_ q: BatchQueue, redis: RedisServer, logDir: URL) throws -> Double {
        let pool = LocalWorkers(
            count: workers, binary: try LocalWorkers.findWorkerBinary(),
            arguments: ["run", "--redis", redis.url, "--batch", q.batchID, "--engine", "fake", "--exit-when-idle"],
            logDir: logDir, environment: ProcessInfo.processInfo.environment, maxRestarts: 0)
        let t1 = Date()
        try pool.startAll()
        defer { pool.stopAll(grace: 10) }
        while true {
            guard let c = try q.counters() else { throw InputError("bench batch vanished") }
            if c.finished { return Date().timeIntervalSince(t1) }
            if Date().timeIntervalSince(t1) > 600 { throw InputError("no-op jobs did not finish within 10 minutes") }
            _ = try pool.check(log: { coordinatorLog($0) })
            usleep(10_000)
        }
    }

    /// Steady-state throughput from the results' stream ids (publish times in ms).
    func steadyState(_ q: BatchQueue, client: RedisClient) throws -> Double {
        let first = try q.results(after: "0-0", count: 1).first?.id
        var last = first
        var cursor = "0-0"
        while true {
            let page = try client.command(["XRANGE", q.keys.results, "(" + cursor, "+", "COUNT", 500]).array ?? []
            guard let tail = page.last?.array?.first?.string else { break }
            last = tail
            cursor = tail
        }
        func ms(_ id: String?) -> Double { Double(id?.split(separator: "-").first ?? "0") ?? 0 }
        return (ms(last) - ms(first)) / 1000
    }

    func report(submit: Double, process: Double, steady: Double, collect: Double) {
        let n = Double(jobs)
        print(
            "queue overhead: \(jobs) no-op jobs (1 step, no checkpoints), \(workers) workers, "
                + "private redis-server on a unix socket (AOF, fsync every second)")
        print(
            String(format: "  submit            %8.3f ms/job  (%.0f jobs/s, one client)", submit * 1000 / n, n / submit)
        )
        print(
            String(
                format: "  process, wall     %8.3f ms/job  (%.0f jobs/s; %.2f s incl. worker start-up)",
                process * 1000 / n, n / process, process))
        if steady > 0 {
            print(
                String(
                    format: "  process, steady   %8.3f ms/job  (%.0f jobs/s, first to last result) "
                        + "= %.3f ms per job per worker",
                    steady * 1000 / (n - 1), (n - 1) / steady, steady * 1000 * Double(workers) / (n - 1)))
        }
        print(
            String(
                format: "  collect           %8.3f ms/job  (PNG file + fsynced manifest line + XDEL)",
                collect * 1000 / n))
    }

    /// A fenced checkpoint write through Redis at the default level.
    func fencedCheckpointWrite(client: RedisClient, batchID: String) throws {
        let cq = try BatchQueue(client: client, batchID: batchID)
        try cq.create(spec: Data("{}".utf8), maxAttempts: 3, leaseMs: 60_000)
        try cq.submit(jobID: "ckpt", payload: Data("{}".utf8))
        guard let lease = try cq.take(worker: "bench") else {
            throw InputError("could not take the checkpoint bench job")
        }
        let payload = CheckpointBenchmark.samplePayload()
        let rounds = max(5, iterations * 4)
        var best = Double.infinity
        var size = 0
        for step in 1...rounds {
            let t = Date()
            let data = try CheckpointCodec.encode(payload, jobID: "ckpt", epoch: lease.epoch, step: UInt32(step))
            guard try cq.writeCheckpoint(lease, step: step, data: data) else {
                throw InputError("checkpoint write refused")
            }
            best = min(best, Date().timeIntervalSince(t))
            size = data.count
        }
        print(
            String(
                format: "fenced checkpoint write (encode level 3 + EVALSHA SET of %d B): %.2f ms (best of %d)", size,
                best * 1000, rounds))
    }
}
