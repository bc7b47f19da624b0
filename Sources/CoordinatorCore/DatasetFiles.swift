import Foundation
import Jobs
import Support

/// Files a training pipeline reads straight from the output folder, derived from the manifest
/// (the commit point) and rewritten whole, atomically, after every collect pass that added
/// lines: `metadata.jsonl` (Hugging Face `imagefolder`) and `stats.json` (img2dataset-style).
/// Formats: manifests/SPEC.md, "Dataset files".
public enum DatasetFiles {
    public static let metadataName = "metadata.jsonl"
    public static let statsName = "stats.json"
    /// stats.json lists at most this many failures (the manifest has them all).
    public static let maxFailures = 100

    /// One `imagefolder` row: every key on every line (null when unknown), so the column
    /// types pyarrow infers do not depend on which line comes first.
    struct MetadataRow: Encodable {
        var entry: ManifestEntry

        enum Key: String, CodingKey {
            case fileName = "file_name"
            case prompt, emotion, method, seed, kind
            case jobID = "job_id"
            case sourceID = "source_id"
            case targetProbability = "target_probability"
            case topEmotion = "top_emotion"
            case evaluatorTargetProbability = "evaluator_target_probability"
            case evaluatorTopEmotion = "evaluator_top_emotion"
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(entry.output, forKey: .fileName)
            try c.encode(entry.prompt, forKey: .prompt)
            try c.encode(entry.emotion, forKey: .emotion)
            try c.encode(entry.method, forKey: .method)
            try c.encode(entry.seed, forKey: .seed)
            try c.encode(entry.kind, forKey: .kind)
            try c.encode(entry.jobID, forKey: .jobID)
            try c.encode(entry.sourceID, forKey: .sourceID)
            try c.encode(entry.targetProbability, forKey: .targetProbability)
            try c.encode(entry.topEmotion, forKey: .topEmotion)
            // Only an independent evaluator's result counts: `evaluation` without
            // `probabilities` holds CLIP scores alone.
            let evaluator = entry.evaluation?["probabilities"] == nil ? nil : entry.evaluation
            try c.encode(evaluator?["target_probability"]?.doubleValue, forKey: .evaluatorTargetProbability)
            try c.encode(evaluator?["top_emotion"]?.stringValue, forKey: .evaluatorTopEmotion)
        }
    }

    /// metadata.jsonl: one line per done job with a PNG, in manifest order.
    public static func metadata(_ entries: [ManifestEntry]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var out = Data()
        for e in entries where e.status == .done && e.output != nil {
            out.append(try encoder.encode(MetadataRow(entry: e)))
            out.append(0x0A)
        }
        return out
    }

    public struct Stats: Codable, Equatable, Sendable {
        public struct Outcome: Codable, Equatable, Sendable {
            public var done = 0
            public var failed = 0
        }

        public struct Counts: Codable, Equatable, Sendable {
            public var total = 0
            public var done = 0
            public var failed = 0
            public var byMethod: [String: Outcome] = [:]
            public var byEmotion: [String: Outcome] = [:]
            public var byKind: [String: Outcome] = [:]

            enum CodingKeys: String, CodingKey {
                case total, done, failed
                case byMethod = "by_method"
                case byEmotion = "by_emotion"
                case byKind = "by_kind"
            }
        }

        public struct Throughput: Codable, Equatable, Sendable {
            public var firstCollectedAt: String?
            public var lastCollectedAt: String?
            /// Done jobs per hour between the first and last `collected_at` (nil: no span yet).
            public var imagesPerHour: Double?
            public var meanEngineSeconds: Double?

            enum CodingKeys: String, CodingKey {
                case firstCollectedAt = "first_collected_at"
                case lastCollectedAt = "last_collected_at"
                case imagesPerHour = "images_per_hour"
                case meanEngineSeconds = "mean_engine_seconds"
            }
        }

        /// The collecting batch; `batchIDs`: every batch in the manifest (more than one only
        /// in an `--allow-mixed` folder; the counts cover them all).
        public var batchID: String
        public var batchIDs: [String]
        public var counts = Counts()
        /// job id → its error, for the first `maxFailures` failed lines.
        public var failures: [String: String] = [:]
        public var failuresOmitted = 0
        public var throughput = Throughput()

        enum CodingKeys: String, CodingKey {
            case counts, failures, throughput
            case batchID = "batch_id"
            case batchIDs = "batch_ids"
            case failuresOmitted = "failures_omitted"
        }
    }

    public static func stats(_ entries: [ManifestEntry], batchID: String) -> Stats {
        var s = Stats(batchID: batchID, batchIDs: Set(entries.map(\.batchID)).sorted())
        var engineSeconds: [Double] = []
        var times: [(date: Date, text: String)] = []
        for e in entries {
            let done = e.status == .done
            s.counts.total += 1
            if done { s.counts.done += 1 } else { s.counts.failed += 1 }
            func tally(_ group: inout [String: Stats.Outcome], _ key: String) {
                if done { group[key, default: .init()].done += 1 } else { group[key, default: .init()].failed += 1 }
            }
            tally(&s.counts.byMethod, e.method)
            tally(&s.counts.byEmotion, e.emotion)
            tally(&s.counts.byKind, e.kind)
            if !done {
                if s.failures.count < maxFailures {
                    s.failures[e.jobID] = e.error ?? "unknown error"
                } else {
                    s.failuresOmitted += 1
                }
            }
            if done, let t = e.timings?.engineSeconds, t.isFinite { engineSeconds.append(t) }
            if let d = parseDate(e.collectedAt) { times.append((d, e.collectedAt)) }
        }
        if let first = times.min(by: { $0.date < $1.date }), let last = times.max(by: { $0.date < $1.date }) {
            s.throughput.firstCollectedAt = first.text
            s.throughput.lastCollectedAt = last.text
            let span = last.date.timeIntervalSince(first.date)
            if span > 0 { s.throughput.imagesPerHour = Double(s.counts.done) * 3600 / span }
        }
        if !engineSeconds.isEmpty {
            s.throughput.meanEngineSeconds = engineSeconds.reduce(0, +) / Double(engineSeconds.count)
        }
        return s
    }

    static func parseDate(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }

    /// Rewrites both files from the manifest in `output`.
    public static func write(output: URL, batchID: String) throws {
        let manifest = output.appendingPathComponent(Collector.manifestName)
        let entries = try ManifestWriter.readEntries(manifest, as: ManifestEntry.self)
        try Collector.writeDurably(try metadata(entries), to: output.appendingPathComponent(metadataName))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        var json = try encoder.encode(stats(entries, batchID: batchID))
        json.append(0x0A)
        try Collector.writeDurably(json, to: output.appendingPathComponent(statsName))
    }
}
