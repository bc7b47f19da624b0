import Foundation
import Imaging
import Jobs
import RedisQueue
import Support
import Vocabulary
import XCTest

@testable import CoordinatorCore

final class CollectorTests: XCTestCase {
    /// A published result becomes one PNG and one manifest line, exactly once, and a dead
    /// letter a failure line; a later collector on the same folder adds nothing.
    func testResultsAndDeadLettersBecomeOneLineEach() throws {
        let redis = try RedisServer.temporary()
        let q = try BatchQueue(client: try redis.client(), batchID: "collect")
        try q.create(spec: Data("{}".utf8), maxAttempts: 1, leaseMs: 30_000)
        let models = ModelFingerprints(model: "m", tower: "t", head: nil, text: "x")
        let locations = ModelLocations(model: "m", tower: "t", head: nil, text: "x")
        var jobs: [PipelineJob] = []
        for (i, emotion) in [Emotion.awe, .fear].enumerated() {
            let synthesis = SynthesisJob(prompt: "p", emotion: emotion, seed: 1, settings: JobSettings(steps: 2))
            let content = JobContent(kind: .generate, synthesis: synthesis, imageSHA256: nil, models: models)
            let id = try content.jobID()
            jobs.append(
                PipelineJob(
                    id: id, content: content, locations: locations, checkpointEvery: 0, index: i,
                    output: "\(emotion.rawValue)/\(id.prefix(8)).png", imagePath: nil, sheetRow: 0,
                    sheetColumn: i))
            XCTAssertTrue(try q.submit(jobID: id, payload: try jobs[i].encoded()))
        }
        let png = try PNGCodec.encode(
            RGBImage(width: 2, height: 2, channels: 3, pixels: [UInt8](repeating: 200, count: 12)))
        let done = try XCTUnwrap(try q.take(worker: "w"))
        // A damaged entry naming a job that is still running is not its result: dropped, and
        // the real result that follows is collected.
        try redis.client().command(["XADD", q.keys.results, "*", "job", done.jobID, "png", "garbage"])
        let early = try Collector(
            queue: q, output: FileManager.default.temporaryDirectory.appendingPathComponent("early-\(UUID())"),
            log: { _ in })
        XCTAssertEqual(try early.collectNew(), 0)
        XCTAssertTrue(try q.results().isEmpty, "the damaged entry is gone")
        let metrics = JobMetrics(
            engine: "fake", width: 2, height: 2, pngSHA256: Hashing.sha256Hex(png), probabilities: nil,
            targetProbability: nil, topEmotion: nil,
            timings: JobTimings(attemptSeconds: 1, engineSeconds: 1, modelLoadSeconds: 0, phases: nil),
            resumedFromStep: nil, checkpointsWritten: 0, segments: [], trace: nil, worker: "w", epoch: done.epoch,
            attempt: done.attempt)
        XCTAssertEqual(
            try q.publish(done, fields: [("png", png), ("metrics", try CanonicalJSON.encode(metrics))]), .published)
        let failed = try XCTUnwrap(try q.take(worker: "w"))
        XCTAssertEqual(try q.fail(failed, error: "boom", permanent: true), .deadLettered)

        let out = FileManager.default.temporaryDirectory.appendingPathComponent("collect-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        var collector: Collector? = try Collector(queue: q, output: out, log: { _ in })
        XCTAssertEqual(try collector!.collectNew(), 2)
        XCTAssertEqual(try collector!.collectNew(), 0, "nothing twice")
        let manifestURL = collector!.manifestURL
        collector = nil  // releases the output folder's lock
        let lines = try ManifestWriter.readEntries(manifestURL, as: ManifestEntry.self)
        XCTAssertEqual(lines.count, 2)
        let doneLine = try XCTUnwrap(lines.first { $0.jobID == done.jobID })
        XCTAssertEqual(doneLine.status, .done)
        XCTAssertEqual(doneLine.settings, JobSettings(steps: 2), "the manifest carries the job's settings")
        let written = try Data(contentsOf: out.appendingPathComponent(try XCTUnwrap(doneLine.output)))
        XCTAssertEqual(written, png)
        let failedLine = try XCTUnwrap(lines.first { $0.jobID == failed.jobID })
        XCTAssertEqual(failedLine.status, .failed)
        XCTAssertTrue(failedLine.error?.contains("boom") ?? false)
        XCTAssertEqual(
            try Collector(queue: q, output: out, log: { _ in }).collectNew(), 0, "a second collector adds nothing")

        // requeue --failed: the job runs again; its failure line is replaced, first by its next
        // failure (another epoch), then by its result. Still one line per job.
        XCTAssertEqual(try q.requeueDead(), [failed.jobID])
        XCTAssertEqual(try q.counters()?.failed, 0)
        let again = try XCTUnwrap(try q.take(worker: "w2"))
        XCTAssertEqual(again.attempt, 1, "attempts reset")
        XCTAssertGreaterThan(again.epoch, failed.epoch, "epochs keep counting: old owners stay fenced")
        XCTAssertEqual(try q.fail(again, error: "boom again", permanent: true), .deadLettered)
        collector = try Collector(queue: q, output: out, log: { _ in })
        XCTAssertEqual(try collector!.collectNew(), 1)
        var now = try ManifestWriter.readEntries(manifestURL, as: ManifestEntry.self)
        XCTAssertEqual(now.count, 2)
        XCTAssertEqual(now.first { $0.jobID == failed.jobID }?.error, "boom again")
        XCTAssertEqual(try collector!.collectNew(), 0, "the same dead letter replaces nothing twice")
        XCTAssertEqual(try q.requeueDead(), [failed.jobID])
        let third = try XCTUnwrap(try q.take(worker: "w3"))
        var thirdMetrics = metrics
        thirdMetrics.epoch = third.epoch
        XCTAssertEqual(
            try q.publish(third, fields: [("png", png), ("metrics", try CanonicalJSON.encode(thirdMetrics))]),
            .published)
        XCTAssertEqual(try collector!.collectNew(), 1)
        collector = nil
        now = try ManifestWriter.readEntries(manifestURL, as: ManifestEntry.self)
        XCTAssertEqual(now.count, 2, "one line per job, the latest outcome")
        XCTAssertEqual(now.first { $0.jobID == failed.jobID }?.status, .done)
        XCTAssertEqual(now.first { $0.jobID == done.jobID }?.status, .done, "the other line is untouched")
        XCTAssertTrue(
            try FileManager.default.contentsOfDirectory(atPath: out.path).allSatisfy { !$0.contains(".tmp-") })
    }

    /// `run`'s closing line reads the evaluator first (the guide flatters what was optimised
    /// against it), the guide second; failed jobs do not count.
    func testEmotionOutcomeSummary() {
        XCTAssertNil(LocalBatchRun.emotionOutcome([]))
        let models = ModelFingerprints(model: "m", tower: "t", head: nil, text: "x")
        let job = PipelineJob(
            id: "j",
            content: JobContent(
                kind: .generate,
                synthesis: SynthesisJob(prompt: "p", emotion: .fear, seed: 1, settings: JobSettings(steps: 2)),
                imageSHA256: nil, models: models),
            locations: ModelLocations(model: "m", tower: "t", head: nil, text: "x"), checkpointEvery: 0, index: 0,
            output: "fear/j.png", imagePath: nil, sheetRow: 0,
            sheetColumn: 0)
        func entry(status: JobStatus = .done, guide: (String, Double), evaluator: (String, Double)?) -> ManifestEntry {
            var e = ManifestEntry(job: job, batchID: "b", status: status, attempts: 1)
            (e.topEmotion, e.targetProbability) = guide
            e.evaluation = evaluator.map {
                .object(["top_emotion": .string($0.0), "target_probability": .double($0.1)])
            }
            return e
        }
        let entries = [
            entry(guide: ("fear", 0.9), evaluator: ("fear", 0.6)),
            entry(guide: ("fear", 0.7), evaluator: ("sadness", 0.2)),
            entry(guide: ("awe", 0.2), evaluator: ("awe", 0.1)),
            entry(status: .failed, guide: ("fear", 1), evaluator: ("fear", 1)),
        ]
        XCTAssertEqual(
            LocalBatchRun.emotionOutcome(entries),
            "evaluator: target emotion ranked first in 1 of 3 images; mean p(target) 0.300\n"
                + "  guide classifier: target emotion ranked first in 2 of 3 images; mean p(target) 0.600")
        XCTAssertEqual(
            LocalBatchRun.emotionOutcome(
                entries.map {
                    var e = $0
                    e.evaluation = nil
                    return e
                }),
            "guide classifier (the spec has no evaluation:): target emotion ranked first in 2 of 3 images; "
                + "mean p(target) 0.600")
        XCTAssertEqual(formatDuration(3725), "1:02:05")
        XCTAssertEqual(formatDuration(.nan), "?")
    }
}
