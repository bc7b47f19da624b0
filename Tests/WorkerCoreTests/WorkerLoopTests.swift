import Foundation
import Imaging
import Jobs
import RedisQueue
import Support
import Vocabulary
import XCTest

@testable import WorkerCore

/// The worker loop with the fake engine against a private redis-server: taking, running,
/// publishing, stopping mid-job and resuming, and refusing unreadable payloads.
final class WorkerLoopTests: XCTestCase {
    var redis: RedisServer!
    var queue: BatchQueue!

    override func setUpWithError() throws {
        redis = try RedisServer.temporary()
        queue = try BatchQueue(client: try redis.client(), batchID: "loop")
        try queue.create(spec: Data("{}".utf8), maxAttempts: 2, leaseMs: 30_000)
    }

    /// XCTest keeps test case objects alive to the end of the run: stop the server here.
    override func tearDown() {
        redis?.shutdown()
        redis = nil
        queue = nil
    }

    @discardableResult
    func submit(seed: UInt64, steps: Int = 4, checkpointEvery: Int = 2) throws -> PipelineJob {
        let synthesis = SynthesisJob(prompt: "p", emotion: .awe, seed: seed, settings: JobSettings(steps: steps))
        let models = ModelFingerprints(model: "m", tower: "t", head: nil, text: "x")
        let content = JobContent(kind: .generate, synthesis: synthesis, imageSHA256: nil, models: models)
        let id = try content.jobID()
        let job = PipelineJob(
            id: id, content: content, locations: ModelLocations(model: "m", tower: "t", head: nil, text: "x"),
            checkpointEvery: checkpointEvery, index: 0,
            output: "awe/\(id.prefix(8)).png", imagePath: nil, sheetRow: 0, sheetColumn: 0)
        XCTAssertTrue(try queue.submit(jobID: id, payload: try job.encoded()))
        return job
    }

    func loop(_ name: String) throws -> WorkerLoop {
        WorkerLoop(
            name: name, client: try redis.client(), side: try redis.client(), engine: FakePipelineEngine(stepDelay: 0),
            batches: ["loop"], exitWhenIdle: true, heartbeatInterval: 1, parentPID: nil, log: Log.logger("test"))
    }

    func metrics(_ entry: StreamEntry) throws -> JobMetrics {
        try JSONDecoder().decode(JobMetrics.self, from: try XCTUnwrap(entry.fields["metrics"]))
    }

    func testRunsEveryJobAndStopsWhenIdle() throws {
        for seed in 1...3 { try submit(seed: UInt64(seed)) }
        let worker = try loop("w1")
        var turns = 0
        while try worker.workOnce() != .done {
            turns += 1
            XCTAssertLessThan(turns, 10, "the loop must finish three jobs and then report done")
        }
        let results = try queue.results()
        XCTAssertEqual(results.count, 3)
        for entry in results {
            let png = try XCTUnwrap(entry.fields["png"])
            let m = try metrics(entry)
            XCTAssertEqual(m.pngSHA256, Hashing.sha256Hex(png))
            XCTAssertEqual(try PNGCodec.decode(png).width, 8)
            XCTAssertEqual(m.checkpointsWritten, 1, "4 steps, every 2: one checkpoint before the end")
            XCTAssertNil(m.resumedFromStep)
        }
        XCTAssertEqual(try queue.counters()?.done, 3)
    }

    func testStoppedWorkerHandsBackItsJobAndTheNextResumesFromTheCheckpoint() throws {
        let job = try submit(seed: 9, steps: 6)
        let first = try loop("first")
        first.stop.request("test stop")
        XCTAssertEqual(try first.workOnce(), .worked)
        XCTAssertTrue(try queue.results().isEmpty, "a stopped worker publishes nothing")
        XCTAssertNotNil(try queue.checkpoint(jobID: job.id), "it leaves a checkpoint behind")

        let second = try loop("second")
        XCTAssertEqual(try second.workOnce(), .worked)
        let entry = try XCTUnwrap(try queue.results().first)
        let m = try metrics(entry)
        XCTAssertEqual(m.resumedFromStep, 0)
        XCTAssertEqual(m.segments.map(\.worker), ["first", "second"])
        XCTAssertEqual(m.attempt, 1, "a job handed back on a stop does not use up an attempt")

        // The same job run without interruption gives the same image.
        let fresh = try FakePipelineEngine(stepDelay: 0).begin(job, image: nil)
        while !fresh.isFinished { try fresh.advance() }
        let out = try fresh.finish()
        let png = try PNGCodec.encode(RGBImage(width: out.width, height: out.height, channels: 3, pixels: out.rgb))
        XCTAssertEqual(entry.fields["png"], png)
    }

    func testJunkInTheBatchIndexDoesNotStopTheWorker() throws {
        let client = try redis.client()
        try client.command(["ZADD", BatchKeys.index, 0, "../not a batch"])
        try submit(seed: 3)
        let worker = WorkerLoop(
            name: "w", client: client, side: try redis.client(), engine: FakePipelineEngine(stepDelay: 0), batches: [],
            exitWhenIdle: true, heartbeatInterval: 1, parentPID: nil, log: Log.logger("test"))
        var turns = 0
        while try worker.workOnce() != .done {
            turns += 1
            XCTAssertLessThan(turns, 5)
        }
        XCTAssertEqual(try queue.results().count, 1)
    }

    func testPausedBatchIsNotWorkedOnUntilResumed() throws {
        try submit(seed: 1)
        try queue.setPaused(true)
        XCTAssertEqual(try loop("w").workOnce(), .done, "a paused batch has no work to give")
        XCTAssertEqual(try queue.results().count, 0)
        try queue.setPaused(false)
        let worker = try loop("w")
        while try worker.workOnce() != .done {}
        XCTAssertEqual(try queue.results().count, 1)
    }

    func testUnreadablePayloadIsDeadLetteredAndTheLoopGoesOn() throws {
        XCTAssertTrue(try queue.submit(jobID: "broken", payload: Data("not json".utf8)))
        try submit(seed: 5)
        let worker = try loop("w")
        while try worker.workOnce() != .done {}
        let dead = try queue.deadLetters()
        XCTAssertEqual(dead.count, 1)
        XCTAssertTrue(dead[0].string("error")?.contains("invalid job payload") ?? false, "\(dead[0].fields)")
        XCTAssertEqual(try queue.results().count, 1)
    }
}
