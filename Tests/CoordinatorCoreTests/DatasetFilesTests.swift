import Foundation
import Imaging
import Jobs
import RedisQueue
import Support
import Vocabulary
import XCTest

@testable import CoordinatorCore

final class DatasetFilesTests: XCTestCase {
    /// After a collect pass with two done jobs (one scored by an evaluator) and one dead
    /// letter, metadata.jsonl holds the two done images and stats.json counts all three.
    func testCollectWritesMetadataAndStats() throws {
        let redis = try RedisServer.temporary()
        let q = try BatchQueue(client: try redis.client(), batchID: "dataset")
        try q.create(spec: Data("{}".utf8), maxAttempts: 1, leaseMs: 30_000)
        let models = ModelFingerprints(model: "m", tower: "t", head: nil, text: "x")
        var jobs: [String: PipelineJob] = [:]
        for (i, emotion) in [Emotion.awe, .fear, .sadness].enumerated() {
            let synthesis = SynthesisJob(
                prompt: "a lake", emotion: emotion, method: i == 2 ? .promptOnly : .muse, seed: 7,
                settings: JobSettings(steps: 2))
            let content = JobContent(kind: .generate, synthesis: synthesis, imageSHA256: nil, models: models)
            let id = try content.jobID()
            var job = PipelineJob(
                id: id, content: content, locations: ModelLocations(model: "m", tower: "t", head: nil, text: "x"),
                checkpointEvery: 0, index: i,
                output: "\(emotion.rawValue)/\(id.prefix(8)).png", imagePath: nil, sheetRow: 0, sheetColumn: i)
            // A prompts-file row's id reaches the manifest and metadata.jsonl.
            if emotion == .awe { job.sourceID = "lake-7" }
            jobs[id] = job
            XCTAssertTrue(try q.submit(jobID: id, payload: try job.encoded()))
        }
        let png = try PNGCodec.encode(
            RGBImage(width: 2, height: 2, channels: 3, pixels: [UInt8](repeating: 90, count: 12)))
        let evaluation = JSONValue.object([
            "probabilities": .object(["awe": .double(0.6), "fear": .double(0.4)]),
            "target_probability": .double(0.6), "top_emotion": .string("awe"), "clip_score": .double(21),
        ])
        var doneIDs: [String] = []
        for (n, engineSeconds) in [2.0, 4.0].enumerated() {
            let lease = try XCTUnwrap(try q.take(worker: "w"))
            let metrics = JobMetrics(
                engine: "fake", width: 2, height: 2, pngSHA256: Hashing.sha256Hex(png),
                probabilities: ["awe": 0.7, "fear": 0.3], targetProbability: 0.25, topEmotion: "awe",
                timings: JobTimings(
                    attemptSeconds: engineSeconds, engineSeconds: engineSeconds, modelLoadSeconds: 0, phases: nil),
                resumedFromStep: nil, checkpointsWritten: 0, segments: [], trace: nil, worker: "w",
                epoch: lease.epoch, attempt: lease.attempt,
                evaluation: n == 0 ? evaluation : .object(["clip_score": .double(20)]))
            let fields = [("png", png), ("metrics", try CanonicalJSON.encode(metrics))]
            XCTAssertEqual(try q.publish(lease, fields: fields), .published)
            doneIDs.append(lease.jobID)
        }
        let failed = try XCTUnwrap(try q.take(worker: "w"))
        XCTAssertEqual(try q.fail(failed, error: "out of memory", permanent: true), .deadLettered)

        let out = FileManager.default.temporaryDirectory.appendingPathComponent("dataset-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        XCTAssertEqual(try Collector(queue: q, output: out, log: { _ in }).collectNew(), 3)

        // metadata.jsonl: the done jobs, each PNG path relative to the folder and present.
        let metadata = try String(contentsOf: out.appendingPathComponent("metadata.jsonl"), encoding: .utf8)
        let rows = try metadata.split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(Set(rows.compactMap { $0["job_id"] as? String }), Set(doneIDs))
        for row in rows {
            let id = try XCTUnwrap(row["job_id"] as? String)
            let job = try XCTUnwrap(jobs[id])
            XCTAssertEqual(row["file_name"] as? String, job.output)
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(job.output).path))
            XCTAssertEqual(row["prompt"] as? String, "a lake")
            XCTAssertEqual(row["emotion"] as? String, job.content.emotion.rawValue)
            XCTAssertEqual(row["method"] as? String, job.content.synthesis.method.rawValue)
            XCTAssertEqual(row["seed"] as? Int, 7)
            XCTAssertEqual(row["kind"] as? String, "generate")
            XCTAssertEqual(row["target_probability"] as? Double, 0.25)
            XCTAssertEqual(row["top_emotion"] as? String, "awe")
            XCTAssertEqual(row.keys.count, 12, "every key on every line")
            if job.sourceID != nil {
                XCTAssertEqual(row["source_id"] as? String, "lake-7")
            } else {
                XCTAssertTrue(row["source_id"] is NSNull)
            }
            if id == doneIDs[0] {
                XCTAssertEqual(row["evaluator_target_probability"] as? Double, 0.6)
                XCTAssertEqual(row["evaluator_top_emotion"] as? String, "awe")
            } else {
                XCTAssertTrue(row["evaluator_target_probability"] is NSNull, "no evaluator probabilities")
                XCTAssertTrue(row["evaluator_top_emotion"] is NSNull)
            }
        }

        // stats.json
        let data = try Data(contentsOf: out.appendingPathComponent("stats.json"))
        let stats = try JSONDecoder().decode(DatasetFiles.Stats.self, from: data)
        XCTAssertEqual(stats.batchID, "dataset")
        XCTAssertEqual(stats.batchIDs, ["dataset"])
        XCTAssertEqual(stats.counts.total, 3)
        XCTAssertEqual(stats.counts.done, 2)
        XCTAssertEqual(stats.counts.failed, 1)
        let failedMethod = try XCTUnwrap(jobs[failed.jobID]).content.synthesis.method.rawValue
        XCTAssertEqual(stats.counts.byMethod.values.map(\.done).reduce(0, +), 2)
        XCTAssertEqual(stats.counts.byMethod[failedMethod]?.failed, 1)
        let failedEmotion = try XCTUnwrap(jobs[failed.jobID]).content.emotion.rawValue
        XCTAssertEqual(stats.counts.byEmotion[failedEmotion], .init(done: 0, failed: 1))
        XCTAssertEqual(stats.counts.byEmotion.count, 3)
        XCTAssertEqual(stats.counts.byKind["generate"], .init(done: 2, failed: 1))
        XCTAssertEqual(stats.failures.count, 1)
        XCTAssertTrue(stats.failures[failed.jobID]?.contains("out of memory") ?? false)
        XCTAssertEqual(stats.failuresOmitted, 0)
        XCTAssertEqual(stats.throughput.meanEngineSeconds, 3)
        XCTAssertNotNil(stats.throughput.firstCollectedAt)
        XCTAssertNotNil(stats.throughput.lastCollectedAt)
        let raw = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(
            Set(raw.keys), ["batch_id", "batch_ids", "counts", "failures", "failures_omitted", "throughput"])
    }

    /// Failures beyond the cap are counted, not listed; throughput spans first to last line.
    func testStatsCapFailuresAndMeasureThroughput() throws {
        let models = ModelFingerprints(model: "m", tower: "t", head: nil, text: "x")
        let synthesis = SynthesisJob(prompt: "p", emotion: .awe, seed: 1, settings: JobSettings(steps: 2))
        let content = JobContent(kind: .generate, synthesis: synthesis, imageSHA256: nil, models: models)
        let job = PipelineJob(
            id: "j", content: content, locations: ModelLocations(model: "m", tower: "t", head: nil, text: "x"),
            checkpointEvery: 0, index: 0, output: "awe/j.png",
            imagePath: nil, sheetRow: 0, sheetColumn: 0)
        var entries: [ManifestEntry] = []
        for i in 0..<(DatasetFiles.maxFailures + 5) {
            var e = ManifestEntry(job: job, batchID: "b", status: .failed, attempts: 1)
            e.jobID = "f\(i)"
            e.error = "e\(i)"
            e.collectedAt = "2026-01-01T00:00:00.000Z"
            entries.append(e)
        }
        for (i, at) in ["2026-01-01T00:30:00.000Z", "2026-01-01T01:00:00Z"].enumerated() {
            var e = ManifestEntry(job: job, batchID: "b", status: .done, attempts: 1)
            e.jobID = "d\(i)"
            e.collectedAt = at
            entries.append(e)
        }
        let s = DatasetFiles.stats(entries, batchID: "b")
        XCTAssertEqual(s.counts.failed, DatasetFiles.maxFailures + 5)
        XCTAssertEqual(s.failures.count, DatasetFiles.maxFailures)
        XCTAssertEqual(s.failuresOmitted, 5)
        XCTAssertEqual(s.throughput.firstCollectedAt, "2026-01-01T00:00:00.000Z")
        XCTAssertEqual(s.throughput.lastCollectedAt, "2026-01-01T01:00:00Z")
        XCTAssertEqual(s.throughput.imagesPerHour ?? 0, 2, accuracy: 1e-9)
        XCTAssertNil(s.throughput.meanEngineSeconds)
        XCTAssertEqual(try DatasetFiles.metadata(entries), Data(), "done lines without a PNG path are left out")
    }
}
