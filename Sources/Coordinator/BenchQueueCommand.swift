import ArgumentParser
import Checkpoints
import CoordinatorCore
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support
import Vocabulary

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
        try guarded { try bench() }
    }

    func bench() throws -> Int32 {
        var template = Array("/tmp/muse-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw InputError("cannot create a temporary folder") }
        let tmp = URL(fileURLWithPath: String(cString: made))
        defer { try? FileManager.default.removeItem(at: tmp) }
        let redis = try RedisServer(.init(dataDir: tmp.appendingPathComponent("redis")))
        defer { redis.shutdown() }
        let client = try RedisClient(endpoint: redis.endpoint)
        let batchID = "bench-\(Int(Date().timeIntervalSince1970 * 1000))"
        let q = try BatchQueue(client: client, batchID: batchID)
        let info = BatchInfo(
            name: "bench", specFile: "", output: nil, jobs: jobs, sheetColumns: 1, submittedBy: "bench-queue")
        try q.create(spec: try CanonicalJSON.encode(info), maxAttempts: 3, leaseMs: 30_000)

        let models = ModelFingerprints(model: "fake", tower: "fake", head: nil, text: "fake")
        let locations = ModelLocations(model: "fake", tower: "fake", head: nil, text: "fake")
        var payloads: [(String, Data)] = []
        for i in 0..<jobs {
            let synthesis = SynthesisJob(
                prompt: "bench \(i)", emotion: .awe, seed: UInt64(i), settings: JobSettings(steps: 1))
            let content = JobContent(kind: .generate, synthesis: synthesis, imageSHA256: nil, models: models)
            let id = try content.jobID()
            let job = PipelineJob(
                id: id, content: content, locations: locations, checkpointEvery: 0, index: i,
                output: "awe/bench-\(i)-\(id.prefix(8)).png", imagePath: nil, sheetRow: i, sheetColumn: 0)
            payloads.append((id, try job.encoded()))
        }
        let t0 = Date()
        for (id, p) in payloads { try q.submit(jobID: id, payload: p) }
        let submitSeconds = Date().timeIntervalSince(t0)

        let binary = try LocalWorkers.findWorkerBinary()
        let pool = LocalWorkers(
            count: workers, binary: binary,
            arguments: [
                "run", "--redis", "unix://\(redis.socketPath)", "--batch", batchID, "--engine", "fake",
                "--exit-when-idle",
            ],
            logDir: tmp.appendingPathComponent("logs"), environment: ProcessInfo.processInfo.environment,
            maxRestarts: 0)
        let t1 = Date()
        try pool.startAll()
        while true {
            guard let c = try q.counters() else { throw InputError("bench batch vanished") }
            if c.finished { break }
            if Date().timeIntervalSince(t1) > 600 {
                pool.stopAll(grace: 5)
                throw InputError("no-op jobs did not finish within 10 minutes")
            }
            _ = try pool.check(log: { coordinatorLog($0) })
            usleep(10_000)
        }
        let processSeconds = Date().timeIntervalSince(t1)
        pool.stopAll(grace: 10)
        // Steady-state throughput from the results' stream ids (publish times in ms).
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
        let steadySeconds = (ms(last) - ms(first)) / 1000

        let out = tmp.appendingPathComponent("out")
        let collector = try Collector(queue: q, output: out, log: { coordinatorLog($0) })
        let t2 = Date()
        try collector.collectNew()
        let collectSeconds = Date().timeIntervalSince(t2)

        print(
            "queue overhead: \(jobs) no-op jobs (1 step, no checkpoints), \(workers) workers, private redis-server on a unix socket (AOF, fsync every second)"
        )
        print(
            String(
                format: "  submit            %8.3f ms/job  (%.0f jobs/s, one client)",
                submitSeconds * 1000 / Double(jobs), Double(jobs) / submitSeconds))
        print(
            String(
                format: "  process, wall     %8.3f ms/job  (%.0f jobs/s; %.2f s incl. worker start-up)",
                processSeconds * 1000 / Double(jobs),
                Double(jobs) / processSeconds, processSeconds))
        if steadySeconds > 0 {
            print(
                String(
                    format:
                        "  process, steady   %8.3f ms/job  (%.0f jobs/s, first to last result) = %.3f ms per job per worker",
                    steadySeconds * 1000 / Double(jobs - 1), Double(jobs - 1) / steadySeconds,
                    steadySeconds * 1000 * Double(workers) / Double(jobs - 1)))
        }
        print(
            String(
                format: "  collect           %8.3f ms/job  (PNG file + fsynced manifest line + XDEL)",
                collectSeconds * 1000 / Double(jobs)))

        for line in try CheckpointBenchmark.run(levels: [1, 3, 9], iterations: iterations) { print(line) }

        // A fenced checkpoint write through Redis at the default level.
        let cq = try BatchQueue(client: client, batchID: batchID + "-ckpt")
        try cq.create(spec: Data("{}".utf8), maxAttempts: 3, leaseMs: 60_000)
        try cq.submit(jobID: "ckpt", payload: Data("{}".utf8))
        guard let lease = try cq.take(worker: "bench") else {
            throw InputError("could not take the checkpoint bench job")
        }
        let payload = CheckpointBenchmark.samplePayload()
        var best = Double.infinity
        var size = 0
        for step in 1...max(5, iterations * 4) {
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
                best * 1000,
                max(5, iterations * 4)))
        return 0
    }
}
