import Foundation
import RedisQueue
import Support
import Vocabulary
import XCTest

@testable import Jobs

/// The bytes the pipeline writes — queued payloads and job ids, manifest lines, the results
/// stream and dead letters — pinned, so that typing them changes nothing on the wire or on disk.
/// A change of a default setting changes the pins on purpose (7 December: the decoded preview
/// and the token drift bounds, which every job's settings carry; 8 December: the edit bound 0.7).
final class WireFormatTests: XCTestCase {
    static let fingerprints = ModelFingerprints(
        model: "fp-model", tower: "fp-tower", head: "fp-head", text: "fp-text", evaluatorTower: "fp-eval")
    static let locations = ModelLocations(
        model: "bundled:tiny-sd", tower: "/models/tower", head: nil, text: "bundled:clip", tinyDecoder: "/m/taesd")

    static func job() throws -> PipelineJob {
        let synthesis = SynthesisJob(prompt: "a quiet lake", emotion: .awe, seed: 7, settings: JobSettings(steps: 2))
        let content = JobContent(kind: .generate, synthesis: synthesis, imageSHA256: nil, models: fingerprints)
        var job = PipelineJob(
            id: try content.jobID(), content: content, locations: locations, checkpointEvery: 1, index: 3,
            output: "awe/lake.png", imagePath: nil, sheetRow: 1, sheetColumn: 2)
        job.sourceID = "row-9"
        return job
    }

    static func metrics(png: Data) -> JobMetrics {
        JobMetrics(
            engine: "fake", width: 2, height: 1, pngSHA256: Hashing.sha256Hex(png), probabilities: ["awe": 0.75],
            targetProbability: 0.75, topEmotion: "awe",
            timings: JobTimings(attemptSeconds: 1.5, engineSeconds: 1.25, modelLoadSeconds: 0, phases: nil),
            resumedFromStep: nil, checkpointsWritten: 1,
            segments: [JobSegment(worker: "w", epoch: 1, fromStep: 0, toStep: 2, seconds: 1.25)], trace: nil,
            worker: "w", epoch: 1, attempt: 1)
    }

    static let metricsJSON =
        #"{"attempt":1,"checkpoints_written":1,"engine":"fake","epoch":1,"height":1,"#
        + #""png_sha256":"a9c74dcaf10fa87b290d88c7e48b779a33e9c987926b209d24ddaa8d99dc8c69","#
        + #""probabilities":{"awe":0.75},"segments":[{"epoch":1,"from_step":0,"seconds":1.25,"to_step":2,"worker":"w"}],"#
        + #""target_probability":0.75,"timings":{"attempt_seconds":1.5,"engine_seconds":1.25,"model_load_seconds":0},"#
        + #""top_emotion":"awe","width":2,"worker":"w"}"#

    /// The manifest writer's encoding of a line.
    static func line(_ entry: ManifestEntry) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(entry), as: UTF8.self)
    }

    func testQueuedPayloadAndJobIDAreUnchanged() throws {
        let job = try Self.job()
        XCTAssertEqual(job.id, "7ee492cc2e06e61f4d33f01f")
        XCTAssertEqual(
            Hashing.sha256Hex(try job.encoded()), "825523d086f01f8ecfcbfd9e7de14cbea8f406040be33f5d539cf4da83348dfd")
        XCTAssertEqual(try PipelineJob.decode(try job.encoded()), job)
    }

    func testManifestLinesAreUnchanged() throws {
        let job = try Self.job()
        var done = ManifestEntry(job: job, batchID: "b-1", status: .done, attempts: 1)
        done.collectedAt = "2024-01-02T03:04:05.678Z"
        done.output = job.output
        done.sha256 = "abc"
        done.epoch = 1
        done.worker = "w"
        var failed = ManifestEntry(job: job, batchID: "b-1", status: .failed, attempts: 3)
        failed.collectedAt = done.collectedAt
        failed.error = "boom"
        var cancelled = failed
        cancelled.status = .cancelled
        cancelled.error = "cancelled"
        let lines = try [done, failed, cancelled].map(Self.line)
        XCTAssertEqual(
            lines.map { Hashing.sha256Hex(Array($0.utf8)) },
            [
                "899a02ac5b71fe1c398ce829bd36f90b83290545cdeea20d24426b80cd9bcaa0",
                "feec2cfa0c91d95b1e89df7da980401bbf8be0f32eaeab78450f73911d83872a",
                "6a393c1229cf251f872c2162ff33e8fef1f653d4565f4067f15c6311a3ec11ab",
            ])
        // The parts around the settings (every MUSE setting, spelled by `MUSESettings.fields`), readable.
        XCTAssertTrue(
            lines[0].hasPrefix(
                #"{"attempts":1,"batch_id":"b-1","checkpoint_every":1,"collected_at":"2024-01-02T03:04:05.678Z","#
                    + #""emotion":"awe","epoch":1,"index":3,"job_id":"7ee492cc2e06e61f4d33f01f","kind":"generate","#
                    + #""method":"muse","models":{"fingerprints":{"evaluator_tower":"fp-eval","head":"fp-head","#
                    + #""model":"fp-model","text":"fp-text","tower":"fp-tower"},"locations":{"model":"bundled:tiny-sd","#
                    + #""text":"bundled:clip","tiny_decoder":"/m/taesd","tower":"/models/tower"}},"output":"awe/lake.png","#
                    + #""prompt":"a quiet lake","seed":7,"settings":{"guidance":7.5,"muse":{"#), lines[0])
        XCTAssertTrue(
            lines[0].hasSuffix(
                #""scheduler":"ddim","steps":2},"sha256":"abc","sheet":{"column":2,"row":1},"source_id":"row-9","#
                    + #""status":"done","worker":"w"}"#), lines[0])
        XCTAssertTrue(lines[1].hasSuffix(#""source_id":"row-9","status":"failed"}"#), lines[1])
        XCTAssertTrue(lines[2].hasSuffix(#""source_id":"row-9","status":"cancelled"}"#), lines[2])
        for (text, entry) in zip(lines, [done, failed, cancelled]) {
            XCTAssertEqual(try JSONDecoder().decode(ManifestEntry.self, from: Data(text.utf8)), entry)
        }
    }

    /// Published through `JobResult` and dead-lettered by the queue's scripts, the entries hold
    /// exactly today's fields, and `JobResult`/`DeadLetter` read them back and write them again.
    func testResultAndDeadLetterFieldsAreUnchanged() throws {
        let redis = try RedisServer.temporary()
        let q = try BatchQueue(client: try redis.client(), batchID: "wire")
        try q.create(spec: Data("{}".utf8), maxAttempts: 1, leaseMs: 30_000)
        for id in ["j1", "j2", "j3"] { XCTAssertTrue(try q.submit(jobID: id, payload: Data("{}".utf8))) }
        let png = Data([0x89, 0x50, 0x4E, 0x47, 0, 1, 2])
        let lease = try XCTUnwrap(try q.take(worker: "w"))
        let published = JobResult(lease: lease, png: png, metrics: Self.metrics(png: png))
        XCTAssertEqual(try q.publish(lease, fields: try published.fields()), .published)
        let failing = try XCTUnwrap(try q.take(worker: "w2"))
        XCTAssertEqual(try q.fail(failing, error: "boom", permanent: true), .deadLettered)
        XCTAssertEqual(try q.cancel(), ["j3"])

        let result = try XCTUnwrap(try q.results().first)
        XCTAssertEqual(
            result.fields.mapValues { String(decoding: $0, as: UTF8.self) },
            [
                "job": "j1", "epoch": "1", "worker": "w", "png": String(decoding: png, as: UTF8.self),
                "metrics": Self.metricsJSON,
            ])
        XCTAssertEqual(try JobResult(fields: result.fields), published)
        XCTAssertEqual(try published.fields().map(\.0), ["png", "metrics"])
        XCTAssertEqual(try published.fields().map(\.1), [png, Data(Self.metricsJSON.utf8)])

        let dead = try q.deadLetters()
        XCTAssertEqual(
            dead.map { $0.fields.mapValues { String(decoding: $0, as: UTF8.self) } },
            [
                ["job": "j2", "error": "boom", "attempts": "1", "worker": "w2", "epoch": "1"],
                ["job": "j3", "error": "cancelled", "cancelled": "1", "attempts": "0", "worker": "", "epoch": "0"],
            ])
        let letters = try dead.map { try DeadLetter(fields: $0.fields) }
        XCTAssertEqual(
            letters,
            [
                DeadLetter(jobID: "j2", error: "boom", attempts: 1, worker: "w2", epoch: 1),
                DeadLetter(jobID: "j3", error: "cancelled", attempts: 0, worker: "", epoch: 0, cancelled: true),
            ])
        XCTAssertEqual(letters.map(\.status), [.failed, .cancelled])
        // Written again: the same fields, in the order the scripts write them.
        XCTAssertEqual(letters[0].fields().map(\.0), ["job", "error", "attempts", "worker", "epoch"])
        XCTAssertEqual(letters[1].fields().map(\.0), ["job", "error", "cancelled", "attempts", "worker", "epoch"])
        for (letter, entry) in zip(letters, dead) {
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: letter.fields()), entry.fields)
        }
    }
}
