import Foundation
import Support
import TestSupport
import XCTest

@testable import Checkpoints
@testable import Imaging
@testable import Jobs
@testable import RedisQueue

/// End-to-end: the built muse-coordinator and muse-worker against private redis-servers,
/// on the bundled tiny model with the real MUSE engine.
final class PipelineTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = makeTempDir("pipe")
        try copyDemoImages(to: dir)
        XCTAssertTrue(
            FileManager.default.isExecutableFile(atPath: binary("muse-coordinator")), "build first: \(binDir.path)")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: binary("muse-worker")))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: helpers

    func submit(
        _ spec: String, _ redis: TestRedis, env: [String: String] = toolEnvironment(),
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        let r = try runTool(
            "muse-coordinator", ["submit", spec, "--redis", redis.url], env: env, dir: dir, file: file, line: line)
        XCTAssertEqual(r.code, 0, r.stderr, file: file, line: line)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func worker(_ redis: TestRedis, _ name: String, _ extra: [String] = []) throws -> RunningTool {
        try RunningTool(
            "muse-worker", ["run", "--redis", redis.url, "--name", name, "--heartbeat", "1"] + extra, dir: dir,
            label: name)
    }

    func collect(_ batch: String, _ redis: TestRedis, to out: URL, follow: Bool = false) throws -> ToolResult {
        try runTool(
            "muse-coordinator",
            ["collect", batch, "--redis", redis.url, "--output", out.path] + (follow ? ["--follow"] : []),
            dir: dir, timeout: 180)
    }

    func onlyJob(_ spec: String) throws -> PipelineJob {
        let loaded = try JobSpec.load(path: spec, environment: toolEnvironment())
        XCTAssertEqual(loaded.jobs.count, 1)
        return loaded.jobs[0]
    }

    /// One slow-ish job: guided steps with 3 inner iterations take a few tenths of a second each.
    func longJobSpec(lease: Double, checkpointEvery: Int, seed: Int = 11) throws -> String {
        try writeSpec(
            tinyModels + """

                engine: {steps: 30, checkpoint_every: \(checkpointEvery), muse: {inner_iterations: 3}}
                queue: {lease_seconds: \(lease), max_attempts: 3}
                generation: {prompts: [a lighthouse in a storm], emotions: [fear], seeds: [\(seed)]}
                """, in: dir, name: "long-\(seed).yaml")
    }

    // MARK: resume after a crash

    func testKilledWorkerIsResumedFromItsCheckpointWithIdenticalBytes() throws {
        let spec = try longJobSpec(lease: 2, checkpointEvery: 2)
        let job = try onlyJob(spec)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let q = try BatchQueue(client: try redis.client(), batchID: batch)

        let w1 = try worker(redis, "w1")
        XCTAssertTrue(
            try waitUntil(90, "a checkpoint inside the guided steps") { (try q.job(job.id)?.checkpointStep ?? 0) >= 10 }
        )
        kill(w1.process.pid, SIGKILL)
        XCTAssertEqual(w1.process.wait(timeout: 10), .signaled(SIGKILL))
        let record = try XCTUnwrap(try q.job(job.id))
        XCTAssertEqual(record.state, "running", "killed mid-job")
        let killedAt = try XCTUnwrap(record.checkpointStep)
        XCTAssertLessThan(killedAt, 30)

        let w2 = try worker(redis, "w2")
        XCTAssertTrue(try waitUntil(90, "the job to finish on w2") { try q.counters()?.done == 1 })
        w2.stop()
        let out = dir.appendingPathComponent("resumed")
        XCTAssertEqual(try collect(batch, redis, to: out).code, 0)
        let line = try XCTUnwrap(try manifestLines(out).first)
        XCTAssertEqual(line.status, .done)
        let resumedAt = try XCTUnwrap(line.resumedFromStep, "w2 must have resumed, not restarted")
        XCTAssertGreaterThanOrEqual(resumedAt, killedAt)
        XCTAssertEqual(line.worker, "w2")
        XCTAssertEqual(line.attempts, 2)
        XCTAssertEqual(line.segments?.map(\.worker), ["w1", "w2"])
        XCTAssertEqual(line.segments?.first?.toStep, resumedAt)
        XCTAssertTrue(w2.stderr.contains("resuming from the checkpoint at step \(resumedAt)/30"), w2.stderr)
        // The whole trace went to its file; the manifest holds the scores of the finished image.
        let traceFile = try XCTUnwrap(line.traceFile)
        let trace = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(traceFile)))
        let steps = try XCTUnwrap((trace as? [String: Any])?["steps_trace"] as? [Any])
        XCTAssertEqual(steps.count, 30, "the resumed job's trace covers every step")
        XCTAssertNotNil(line.evaluation?["clip_score"])

        // The same job, never interrupted, on a fresh server: the same bytes.
        let fresh = try TestRedis()
        XCTAssertEqual(try submit(spec, fresh), batch, "content-derived batch id")
        let qf = try BatchQueue(client: try fresh.client(), batchID: batch)
        let w3 = try worker(fresh, "w3")
        XCTAssertTrue(try waitUntil(90, "the reference run") { try qf.counters()?.done == 1 })
        w3.stop()
        let refOut = dir.appendingPathComponent("reference")
        XCTAssertEqual(try collect(batch, fresh, to: refOut).code, 0)
        let ref = try XCTUnwrap(try manifestLines(refOut).first)
        XCTAssertNil(ref.resumedFromStep)
        XCTAssertEqual(ref.sha256, line.sha256)
        let a = try Data(contentsOf: out.appendingPathComponent(line.output!))
        let b = try Data(contentsOf: refOut.appendingPathComponent(ref.output!))
        XCTAssertEqual(a, b, "resumed PNG differs from the uninterrupted one")
        XCTAssertEqual(Hashing.sha256Hex(a), line.sha256)
    }

    func testSIGTERMCheckpointsAndReleasesTheJob() throws {
        // No periodic checkpoints and a long lease: only the shutdown checkpoint and the
        // release let the next worker continue at once.
        let spec = try longJobSpec(lease: 60, checkpointEvery: 0, seed: 12)
        let job = try onlyJob(spec)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let q = try BatchQueue(client: try redis.client(), batchID: batch)
        let w1 = try worker(redis, "w1")
        XCTAssertTrue(try waitUntil(90, "w1 past step 5") { (try q.progress()[job.id]?.step ?? 0) >= 5 })
        w1.process.signal(SIGTERM)
        let r = w1.finish(timeout: 30)
        XCTAssertEqual(r.status, .exited(0), r.stderr)
        let record = try XCTUnwrap(try q.job(job.id))
        XCTAssertEqual(record.state, "queued")
        XCTAssertEqual(record.attempts, 0, "a graceful stop is not the job's fault")
        let step = try XCTUnwrap(record.checkpointStep)
        XCTAssertTrue(r.stderr.contains("released at step \(step)/30"), r.stderr)

        let began = Date()
        let w2 = try worker(redis, "w2")
        XCTAssertTrue(try waitUntil(90, "w2 to finish") { try q.counters()?.done == 1 })
        XCTAssertLessThan(Date().timeIntervalSince(began), 45, "w2 must not wait for the 60 s lease")
        w2.stop()
        let out = dir.appendingPathComponent("out")
        XCTAssertEqual(try collect(batch, redis, to: out).code, 0)
        let line = try XCTUnwrap(try manifestLines(out).first)
        XCTAssertEqual(line.resumedFromStep, step)
        XCTAssertEqual(line.attempts, 1)
    }

    func testCorruptOrForeignCheckpointRestartsFromScratch() throws {
        let spec = try writeSpec(
            tinyModels + """

                engine: {steps: 6, checkpoint_every: 2, muse: {inner_iterations: 1}}
                generation: {prompts: [a windmill], emotions: [awe, fear], seeds: [4]}
                """, in: dir)
        let jobs = try JobSpec.load(path: spec, environment: toolEnvironment()).jobs
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let client = try redis.client()
        let q = try BatchQueue(client: client, batchID: batch)
        // Job 0: garbage where its checkpoint should be; job 1: a valid checkpoint of another job.
        try client.command(["SET", q.keys.checkpoint(jobs[0].id), Data("definitely not a checkpoint".utf8)])
        let foreign = try CheckpointCodec.encode(CheckpointPayload(), jobID: "some-other-job", epoch: 1, step: 4)
        try client.command(["SET", q.keys.checkpoint(jobs[1].id), foreign])
        let w = try worker(redis, "w1")
        XCTAssertTrue(try waitUntil(90, "both jobs done") { try q.counters()?.done == 2 })
        w.stop()
        XCTAssertTrue(
            w.stderr.contains("stored checkpoint unusable (not a checkpoint (bad magic)); starting from scratch"),
            w.stderr)
        XCTAssertTrue(
            w.stderr.contains(
                "stored checkpoint unusable (checkpoint belongs to a different job); starting from scratch"), w.stderr)
        let out = dir.appendingPathComponent("out")
        XCTAssertEqual(try collect(batch, redis, to: out).code, 0)
        let lines = try manifestLines(out)
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines.allSatisfy { $0.status == .done && $0.resumedFromStep == nil })
    }

    // MARK: fencing

    func testStalledWorkerIsFencedOutWhenItWakes() throws {
        let spec = try longJobSpec(lease: 1.5, checkpointEvery: 2, seed: 13)
        let job = try onlyJob(spec)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let q = try BatchQueue(client: try redis.client(), batchID: batch)
        let w1 = try worker(redis, "w1")
        XCTAssertTrue(try waitUntil(90, "w1's checkpoint at step 4") { (try q.job(job.id)?.checkpointStep ?? 0) >= 4 })
        kill(w1.process.pid, SIGSTOP)
        let w2 = try worker(redis, "w2")
        XCTAssertTrue(try waitUntil(90, "w2 to take over and finish") { try q.counters()?.done == 1 })
        kill(w1.process.pid, SIGCONT)
        XCTAssertTrue(waitUntil(30, "w1 to notice it lost the job") { w1.stderr.contains("no longer its owner") })
        let results = try q.results()
        XCTAssertEqual(results.count, 1)
        XCTAssertEqual(results.first?.string("worker"), "w2")
        XCTAssertEqual(try q.job(job.id)?.epoch, 2)
        w1.stop()
        w2.stop()
        XCTAssertEqual(w1.process.poll(), .exited(0))
    }

    // MARK: coordinator and Redis restarts

    func testCoordinatorKilledMidBatchResumesWithEveryJobOnce() throws {
        let spec = try writeSpec(
            tinyModels + """

                output: out
                engine: {steps: 12, checkpoint_every: 2, muse: {inner_iterations: 2}}
                queue: {lease_seconds: 3}
                generation: {prompts: [a red barn, a glass tower], emotions: [awe, fear, contentment, anger, excitement, disgust], seeds: [5]}
                editing: {images: [images/sunset.png], emotions: [awe, sadness], strength: 0.5, source_prompt: a sunset}
                """, in: dir)
        let total = 14
        let out = dir.appendingPathComponent("out")
        let run1 = try RunningTool("muse-coordinator", ["run", spec, "--local-workers", "2"], dir: dir, label: "run1")
        XCTAssertTrue(waitUntil(120, "a first manifest line") { ((try? manifestLines(out))?.count ?? 0) >= 1 })
        XCTAssertLessThan(
            try manifestLines(out).count, total, "the batch finished before the coordinator could be killed")
        let pidText = try String(contentsOf: out.appendingPathComponent(".redis/redis.pid"), encoding: .utf8)
        let cmdline = try String(
            contentsOfFile: "/proc/\(pidText.trimmingCharacters(in: .whitespacesAndNewlines))/cmdline", encoding: .utf8)
        let socket = try XCTUnwrap(cmdline.split(separator: "\0").first { $0.hasSuffix("redis.sock") }).description
        kill(run1.process.pid, SIGKILL)
        XCTAssertEqual(run1.process.wait(timeout: 10), .signaled(SIGKILL))
        XCTAssertTrue(
            waitUntil(60, "the killed run's redis-server and workers to exit") { processesMentioning(socket).isEmpty })

        let run2 = try runTool("muse-coordinator", ["run", spec, "--local-workers", "2"], dir: dir, timeout: 240)
        XCTAssertEqual(run2.code, 0, run2.stderr)
        XCTAssertTrue(run2.stderr.contains("already collected"), run2.stderr)
        XCTAssertTrue(run2.stderr.contains("carried over from an interrupted run"), run2.stderr)
        let lines = try manifestLines(out)
        XCTAssertEqual(lines.count, total)
        XCTAssertEqual(Set(lines.map(\.jobID)).count, total, "a job appears twice in the manifest")
        for line in lines {
            XCTAssertEqual(line.status, .done, line.error ?? "")
            let png = try Data(contentsOf: out.appendingPathComponent(try XCTUnwrap(line.output)))
            XCTAssertEqual(Hashing.sha256Hex(png), line.sha256)
            XCTAssertNotNil(line.probabilities?["awe"])
        }
        let sheet = try PNGCodec.decode(try Data(contentsOf: out.appendingPathComponent("contact-sheet.png")))
        XCTAssertGreaterThan(sheet.width, 3 * 128)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(".redis").path))

        // A third run has nothing to do and changes nothing.
        let run3 = try runTool("muse-coordinator", ["run", spec, "--local-workers", "2"], dir: dir, timeout: 60)
        XCTAssertEqual(run3.code, 0, run3.stderr)
        XCTAssertTrue(run3.stderr.contains("nothing to do"), run3.stderr)
        XCTAssertEqual(try manifestLines(out).count, total)
    }

    func testBatchSurvivesARedisRestart() throws {
        let spec = try writeSpec(
            tinyModels + """

                engine: {steps: 12, checkpoint_every: 2, muse: {inner_iterations: 2}}
                queue: {lease_seconds: 5}
                generation: {prompts: [a harbour at night, a field of wheat], emotions: [amusement, anger, awe, disgust], seeds: [9]}
                """, in: dir)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let q = try BatchQueue(client: try redis.client(), batchID: batch)
        let workers = [try worker(redis, "w1"), try worker(redis, "w2")]
        let out = dir.appendingPathComponent("out")
        let collector = try RunningTool(
            "muse-coordinator", ["collect", batch, "--redis", redis.url, "--output", out.path, "--follow"],
            dir: dir, label: "collect")
        XCTAssertTrue(try waitUntil(120, "two jobs done") { (try q.counters()?.done ?? 0) >= 2 })
        XCTAssertLessThan(try q.counters()?.done ?? 8, 8, "the batch finished before Redis could be restarted")
        try redis.restart()
        let r = collector.finish(timeout: 180)
        XCTAssertEqual(r.code, 0, r.stderr)
        let lines = try manifestLines(out)
        XCTAssertEqual(lines.count, 8)
        XCTAssertEqual(Set(lines.map(\.jobID)).count, 8)
        XCTAssertTrue(lines.allSatisfy { $0.status == .done })
        for w in workers {
            w.stop()
            XCTAssertEqual(w.process.poll(), .exited(0), w.stderr)
        }
    }

    // MARK: failures

    func testAlwaysFailingJobIsDeadLetteredAndTheRestCompletes() throws {
        let spec = try writeSpec(
            tinyModels + """

                engine: {steps: 6, muse: {inner_iterations: 1}}
                queue: {lease_seconds: 5, max_attempts: 2}
                generation: {prompts: [a mountain lake], emotions: [awe, excitement], seeds: [3]}
                editing: {images: [images/house.png], emotions: [sadness], source_prompt: a house}
                """, in: dir)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let client = try redis.client()
        let q = try BatchQueue(client: client, batchID: batch)
        // The edit's source image vanishes from Redis: that job can never run.
        let sha = Hashing.sha256Hex(try Data(contentsOf: dir.appendingPathComponent("images/house.png")))
        XCTAssertEqual(try client.command(["DEL", q.keys.blob(sha)]).int, 1)
        let workers = [try worker(redis, "w1"), try worker(redis, "w2")]
        let out = dir.appendingPathComponent("out")
        let r = try collect(batch, redis, to: out, follow: true)
        XCTAssertEqual(r.code, 3, "finished with failures: \(r.stderr)")
        let lines = try manifestLines(out)
        XCTAssertEqual(lines.count, 3)
        let failed = lines.filter { $0.status == .failed }
        XCTAssertEqual(failed.count, 1)
        XCTAssertEqual(failed.first?.kind, "edit")
        XCTAssertEqual(failed.first?.attempts, 2)
        XCTAssertTrue(failed.first?.error?.contains("missing from Redis") ?? false, failed.first?.error ?? "")
        XCTAssertEqual(lines.filter { $0.status == .done }.count, 2)
        XCTAssertEqual(try q.deadLetters().count, 1)
        let status = try runTool("muse-coordinator", ["status", batch, "--json", "--redis", redis.url], dir: dir)
        XCTAssertEqual(status.code, 0)
        XCTAssertTrue(status.stdout.contains("\"failed\" : 1"), status.stdout)
        XCTAssertTrue(status.stdout.contains("missing from Redis"), status.stdout)
        // Collecting again adds nothing.
        XCTAssertEqual(try collect(batch, redis, to: out).code, 0)
        XCTAssertEqual(try manifestLines(out).count, 3)
        for w in workers { w.stop() }
    }

    /// A model folder whose loader fails (its text encoder's config is not JSON, which submit
    /// does not read) is the same on every worker: each job is dead-lettered on its first
    /// attempt with the loader's message, and the worker reads the folder once, not once per job.
    func testUnloadableModelFailsEachJobOnceNotMaxAttempts() throws {
        let broken = dir.appendingPathComponent("broken-sd")
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("models/tiny-sd"), to: broken)
        try Data("{not json".utf8).write(to: broken.appendingPathComponent("text_encoder/config.json"))
        let spec = try writeSpec(
            tinyModels.replacingOccurrences(of: "bundled:tiny-sd", with: broken.path) + """

                engine: {steps: 4}
                queue: {lease_seconds: 5, max_attempts: 3}
                generation: {prompts: [a mountain lake], emotions: [awe, excitement], seeds: [3]}
                """, in: dir)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let w = try worker(redis, "w1")
        let out = dir.appendingPathComponent("out")
        let r = try collect(batch, redis, to: out, follow: true)
        w.stop()
        XCTAssertEqual(r.code, 3, "finished with failures: \(r.stderr)")
        let lines = try manifestLines(out)
        XCTAssertEqual(lines.count, 2)
        for line in lines {
            XCTAssertEqual(line.status, .failed)
            XCTAssertEqual(line.attempts, 1, "a load failure is permanent")
            XCTAssertTrue(line.error?.contains("text_encoder/config.json") ?? false, line.error ?? "")
        }
        let loads = w.stderr.components(separatedBy: "\n").filter { $0.contains("cannot load the models") }
        XCTAssertEqual(loads.count, 2, "one line per job: \(loads)")
        XCTAssertEqual(w.stderr.components(separatedBy: "BLAS:").count - 1, 1, "models read once:\n\(w.stderr)")
    }

    /// A coordinator without the weights submits by fingerprint (`muse fingerprint` prints
    /// them); the workers, which have the files, load and check them and run the batch.
    func testCoordinatorWithoutWeightsSubmitsByFingerprint() throws {
        let names = ["tiny-sd", "tiny-clip-vision", "tiny-emotion-head.safetensors", "tiny-clip-text"]
        let printed = try runTool(
            "muse", ["fingerprint"] + names.map { packageRoot.appendingPathComponent("models/" + $0).path }, dir: dir)
        XCTAssertEqual(printed.code, 0, printed.stderr)
        let fingerprints = printed.stdout.split(separator: "\n").map { String($0.prefix(32)) }
        XCTAssertEqual(fingerprints.count, 4)
        let store = dir.appendingPathComponent("fleet-models")  // not there yet when submitting
        func entry(_ i: Int) -> String { "{path: \(store.path)/\(names[i]), fingerprint: \(fingerprints[i])}" }
        let spec = try writeSpec(
            """
            model: \(entry(0))
            classifier: {tower: \(entry(1)), head: \(entry(2)), text: \(entry(3))}
            engine: {steps: 4}
            generation: {prompts: [a mountain lake], emotions: [awe], seeds: [3]}
            """, in: dir)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        for name in names {
            try FileManager.default.copyItem(
                at: packageRoot.appendingPathComponent("models/" + name), to: store.appendingPathComponent(name))
        }
        let w = try worker(redis, "w1")
        let out = dir.appendingPathComponent("out")
        let r = try collect(batch, redis, to: out, follow: true)
        w.stop()
        XCTAssertEqual(r.code, 0, r.stderr)
        let lines = try manifestLines(out)
        XCTAssertEqual(lines.map(\.status), [.done], w.stderr)
        XCTAssertEqual(lines.first?.models.fingerprints.model, fingerprints[0])
    }

    /// A bf16 batch is loaded with bf16 weights by its worker, whatever the worker's environment says.
    func testWeightsDTypeComesFromTheJobNotTheWorkersEnvironment() throws {
        let spec = try writeSpec(
            tinyModels + """

                engine: {steps: 2, weights_dtype: bf16}
                generation: {prompts: [a cat], emotions: [awe], seeds: [1]}
                """, in: dir)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let w = try RunningTool(
            "muse-worker", ["run", "--redis", redis.url, "--name", "w1", "--heartbeat", "1"],
            env: toolEnvironment(["MUSE_WEIGHTS_DTYPE": "f32"]), dir: dir, label: "w1")
        let out = dir.appendingPathComponent("out")
        let r = try collect(batch, redis, to: out, follow: true)
        w.stop()
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try manifestLines(out).first?.settings.weightsDType, .bf16)
        XCTAssertTrue(w.stderr.contains("(bf16 weights)"), w.stderr)
        XCTAssertTrue(w.stderr.contains("MUSE_WEIGHTS_DTYPE=f32 is ignored here"), w.stderr)
    }

    /// A batch whose stored record is damaged (workers skip it) is shown as damaged with the
    /// field and the fix, and `collect --follow` and `watch` stop with that instead of waiting forever.
    func testDamagedBatchRecordIsNamedAndFollowingStops() throws {
        let spec = try writeSpec(
            tinyModels + "\nengine: {steps: 2}\ngeneration: {prompts: [a cat], emotions: [awe], seeds: [1]}\n", in: dir)
        let redis = try TestRedis()
        let batch = try submit(spec, redis)
        let client = try redis.client()
        let q = try BatchQueue(client: client, batchID: batch)
        _ = try client.command(["HSET", q.keys.meta, "lease_ms", "abc"])
        let status = try runTool("muse-coordinator", ["status", batch, "--redis", redis.url], dir: dir)
        XCTAssertTrue(
            status.stdout.contains("DAMAGED    lease_ms is 'abc'") && status.stdout.contains("HSET"), status.stdout)
        let out = dir.appendingPathComponent("out")
        let collect = try runTool(
            "muse-coordinator",
            ["collect", batch, "--redis", redis.url, "--output", out.path, "--follow", "--interval", "0.2"],
            dir: dir, timeout: 30)
        XCTAssertNotEqual(collect.code, 0)
        XCTAssertTrue(collect.stderr.contains("is damaged: lease_ms is 'abc'"), collect.stderr)
        let watch = try runTool(
            "muse-coordinator", ["watch", batch, "--redis", redis.url, "--interval", "0.2"], dir: dir, timeout: 30)
        XCTAssertNotEqual(watch.code, 0)
        XCTAssertTrue(watch.stderr.contains("lease_ms"), watch.stderr)
    }

    /// `run --local-workers N` adds up N workers' estimated peaks before starting anything.
    func testRunRefusesMoreLocalWorkersThanMemoryHolds() throws {
        let spec = try writeSpec(
            tinyModels + """

                engine: {steps: 2}
                generation: {prompts: [a cat], emotions: [awe], seeds: [1], width: 1024, height: 1024}
                """, in: dir)
        let out = dir.appendingPathComponent("out")
        let r = try runTool(
            "muse-coordinator", ["run", spec, "--local-workers", "2", "--output", out.path],
            env: toolEnvironment(["MUSE_MAX_MEMORY_GB": "5"]), dir: dir)
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(
            r.stderr.contains("2 local workers would need about") && r.stderr.contains("use --local-workers 1"),
            r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("manifest.jsonl").path))
    }

    // MARK: clear errors that lose nothing

    func testBadSpecsAreRejectedBeforeAnythingIsSubmitted() throws {
        let redis = try TestRedis()
        let good = try writeSpec(
            tinyModels + "\nengine: {steps: 4}\ngeneration: {prompts: [a cat], emotions: [awe], seeds: [1]}\n",
            in: dir, name: "good.yaml")
        let batch = try submit(good, redis)
        let q = try BatchQueue(client: try redis.client(), batchID: batch)
        let before = try q.counters()
        try Data("not a png at all".utf8).write(to: dir.appendingPathComponent("images/corrupt.png"))
        let cases: [(String, String)] = [
            ("generation: {prompts: [a cat], emotions: [awe\n", "not valid YAML"),
            (
                "generation: {prompts: [a cat], emotions: [awe, joy], seeds: [1]}\n",
                "generation.emotions[1]: unknown emotion 'joy'; valid emotions: amusement, awe, contentment, excitement, anger, disgust, fear, sadness"
            ),
            (
                "editing: {images: [images/missing.png], emotions: [awe]}\n",
                "editing.images[0]: cannot read 'images/missing.png' (no such file"
            ),
            (
                "editing: {images: [images/corrupt.png], emotions: [awe]}\n",
                "editing.images[0]: 'images/corrupt.png' is not a readable PNG image"
            ),
        ]
        for (i, (body, message)) in cases.enumerated() {
            let spec = try writeSpec(tinyModels + "\n" + body, in: dir, name: "bad\(i).yaml")
            let r = try runTool("muse-coordinator", ["submit", spec, "--redis", redis.url], dir: dir)
            XCTAssertEqual(r.code, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains(message), "expected '\(message)' in:\n\(r.stderr)")
            XCTAssertTrue(r.stderr.contains("bad\(i).yaml"), r.stderr)
            XCTAssertEqual(r.stdout, "")
            // `run` refuses it before touching the output folder.
            let out = dir.appendingPathComponent("out\(i)")
            let run = try runTool("muse-coordinator", ["run", spec, "--output", out.path], dir: dir)
            XCTAssertEqual(run.code, 2, run.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        }
        XCTAssertEqual(try BatchQueue.list(client: try redis.client()), [batch], "nothing else was created")
        XCTAssertEqual(try q.counters(), before)
    }

    func testUnreachableRedisAndWrongPasswordAreClearErrors() throws {
        let spec = try writeSpec(
            tinyModels + "\nengine: {steps: 4}\ngeneration: {prompts: [a cat], emotions: [awe], seeds: [1]}\n", in: dir)
        let unreachable = try runTool("muse-coordinator", ["submit", spec, "--redis", "redis://127.0.0.1:1"], dir: dir)
        XCTAssertEqual(unreachable.code, 1)
        XCTAssertTrue(unreachable.stderr.contains("cannot connect to Redis at redis://127.0.0.1:1"), unreachable.stderr)
        let w = try runTool("muse-worker", ["run", "--redis", "redis://127.0.0.1:1"], dir: dir, timeout: 30)
        XCTAssertEqual(w.code, 1)
        XCTAssertTrue(w.stderr.contains("cannot connect to Redis at redis://127.0.0.1:1"), w.stderr)
        let inURL = try runTool("muse-coordinator", ["status", "--redis", "redis://:hunter2@127.0.0.1:1"], dir: dir)
        XCTAssertEqual(inURL.code, 2)
        XCTAssertTrue(inURL.stderr.contains("use REDIS_PASSWORD or REDIS_PASSWORD_FILE"), inURL.stderr)
        XCTAssertFalse(inURL.stderr.contains("hunter2"))

        let redis = try TestRedis(password: "s3cret")
        let wrong = try runTool(
            "muse-coordinator", ["submit", spec, "--redis", redis.url],
            env: toolEnvironment(["REDIS_PASSWORD": "nope"]), dir: dir)
        XCTAssertEqual(wrong.code, 1)
        XCTAssertTrue(wrong.stderr.contains("Redis authentication failed: wrong password"), wrong.stderr)
        XCTAssertFalse(wrong.stderr.contains("nope"))
        let none = try runTool("muse-coordinator", ["submit", spec, "--redis", redis.url], dir: dir)
        XCTAssertEqual(none.code, 1)
        XCTAssertTrue(none.stderr.contains("requires a password"), none.stderr)
        let ww = try runTool(
            "muse-worker", ["run", "--redis", redis.url], env: toolEnvironment(["REDIS_PASSWORD": "nope"]), dir: dir,
            timeout: 30)
        XCTAssertEqual(ww.code, 1)
        XCTAssertTrue(ww.stderr.contains("Redis authentication failed"), ww.stderr)
        XCTAssertEqual(try BatchQueue.list(client: try redis.client()), [], "nothing was submitted")

        // The password from a file works; a later collect with a wrong one leaves the output alone.
        let pwFile = dir.appendingPathComponent("pw")
        try "s3cret\n".write(to: pwFile, atomically: true, encoding: .utf8)
        let ok = try runTool(
            "muse-coordinator", ["submit", spec, "--redis", redis.url],
            env: toolEnvironment(["REDIS_PASSWORD_FILE": pwFile.path]), dir: dir)
        XCTAssertEqual(ok.code, 0, ok.stderr)
        let batch = ok.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let out = dir.appendingPathComponent("out")
        let badCollect = try runTool(
            "muse-coordinator", ["collect", batch, "--redis", redis.url, "--output", out.path],
            env: toolEnvironment(["REDIS_PASSWORD": "nope"]), dir: dir)
        XCTAssertEqual(badCollect.code, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        let missing = try runTool(
            "muse-coordinator", ["watch", "no-such-batch", "--redis", redis.url],
            env: toolEnvironment(["REDIS_PASSWORD": "s3cret"]), dir: dir)
        XCTAssertEqual(missing.code, 2)
        XCTAssertTrue(missing.stderr.contains("batch 'no-such-batch' does not exist"), missing.stderr)
    }

    // MARK: benchmark command

    func testQueueBenchmarkRuns() throws {
        let r = try runTool(
            "muse-coordinator", ["bench-queue", "--jobs", "40", "--workers", "2", "--iterations", "1"], dir: dir,
            timeout: 120)
        XCTAssertEqual(r.code, 0, r.stderr)
        for needle in ["ms/job", "zstd level  3", "fenced checkpoint write"] {
            XCTAssertTrue(r.stdout.contains(needle), r.stdout)
        }
    }
}
