import Foundation
import Jobs
import Support

/// One manifest line as the report reads it. Everything but the id is optional: manifests
/// written before `evaluation`, `trace_file` and `source_output` existed (and hand-made ones)
/// still load, and the report says what is missing instead of failing.
public struct ReportLine: Decodable, Sendable {
    /// The independent evaluation a worker adds (manifests/SPEC.md, "Report").
    public struct Evaluation: Decodable, Sendable {
        public var classifier: String?
        /// The evaluator classifier's probabilities; absent when the batch has no evaluator.
        public var probabilities: [String: Double]?
        public var targetProbability: Double?
        public var topEmotion: String?
        /// 100·max(cos(CLIP image, CLIP text of the prompt), 0).
        public var clipScore: Double?
        /// Edits: cos(CLIP image of the source, CLIP image of the edit).
        public var clipI: Double?
        /// Edits: the evaluator's probabilities on the source image (Emo-S).
        public var sourceProbabilities: [String: Double]?

        enum CodingKeys: String, CodingKey {
            case classifier, probabilities
            case targetProbability = "target_probability"
            case topEmotion = "top_emotion"
            case clipScore = "clip_score"
            case clipI = "clip_i"
            case sourceProbabilities = "source_probabilities"
        }
    }

    /// `models.fingerprints`: the content hashes of the job's model files. The evaluator is the
    /// guide classifier when `evaluator_tower` = `tower` and `evaluator_head` = `head`.
    public struct Fingerprints: Decodable, Sendable {
        public var tower: String?
        public var head: String?
        public var evaluatorTower: String?
        public var evaluatorHead: String?
        public var promptTower: String?
        public var evaluationCLIPTower: String?

        /// The tower CLIP score, CLIP-I and Sem-D were measured with (as the worker chooses it).
        public var measuringCLIPTower: String? { evaluationCLIPTower ?? promptTower ?? tower }

        enum CodingKeys: String, CodingKey {
            case tower, head
            case evaluatorTower = "evaluator_tower"
            case evaluatorHead = "evaluator_head"
            case promptTower = "prompt_tower"
            case evaluationCLIPTower = "evaluation_clip_tower"
        }
    }

    public struct Models: Decodable, Sendable {
        public var fingerprints: Fingerprints?
    }

    public struct Image: Decodable, Sendable {
        public var path: String?
        public var sha256: String?
    }

    public struct Cell: Decodable, Sendable {
        public var row: Int?
        public var column: Int?
    }

    public var jobID: String
    public var batchID: String?
    public var status: JobStatus?
    public var index: Int?
    public var kind: String?
    public var prompt: String?
    public var emotion: String?
    public var method: String?
    public var seed: UInt64?
    public var image: Image?
    public var output: String?
    /// The guide classifier's (the one the token was optimised against).
    public var probabilities: [String: Double]?
    public var targetProbability: Double?
    public var topEmotion: String?
    /// Edits: the guide classifier's probabilities on the source image (Emo-S's fallback).
    public var sourceProbabilities: [String: Double]?
    public var models: Models?
    /// The summary the collector has always written (start/stop, e_inh, S, s_t per step).
    public var trace: JSONValue?
    public var traceFile: String?
    public var sourceOutput: String?
    public var evaluation: Evaluation?
    public var error: String?
    public var sheet: Cell?

    enum CodingKeys: String, CodingKey {
        case status, index, kind, prompt, emotion, method, seed, image, output, probabilities, trace, evaluation
        case error, sheet, models
        case jobID = "job_id"
        case batchID = "batch_id"
        case targetProbability = "target_probability"
        case topEmotion = "top_emotion"
        case traceFile = "trace_file"
        case sourceOutput = "source_output"
        case sourceProbabilities = "source_probabilities"
    }
}

/// A per-job trace file (`trace_file`): the whole MUSE trace, per step and per inner iteration.
public struct TraceFile: Decodable, Sendable {
    public struct Inner: Decodable, Sendable {
        public var loss: Double?
        public var probabilities: [Double]?
    }

    public struct Step: Decodable, Sendable {
        public var index: Int
        public var timestep: Int?
        public var sT: Double?
        public var guided: Bool?
        public var inner: [Inner]?
        public var probabilities: [Double]?
        public var seconds: Double?

        enum CodingKeys: String, CodingKey {
            case index, timestep, guided, inner, probabilities, seconds
            case sT = "s_t"
        }
    }

    public struct Embeddings: Decodable, Sendable {
        public var image: [Double]?
        public var source: [Double]?
    }

    public var jobID: String?
    public var method: String?
    public var emotion: String?
    public var prompt: String?
    public var steps: Int?
    public var firstStep: Int?
    public var startStep: Int?
    public var startReason: String?
    public var stopStep: Int?
    public var inherent: String?
    public var similar: [String]?
    /// The order of every probability array in the file.
    public var emotions: [String]?
    public var inherentProbabilities: [Double]?
    public var startProbabilities: [Double]?
    public var finalProbabilities: [Double]?
    public var stepsTrace: [Step]?
    public var tokenDrift: [Double]?
    public var embeddings: Embeddings?

    enum CodingKeys: String, CodingKey {
        case method, emotion, prompt, steps, inherent, similar, emotions, embeddings
        case jobID = "job_id"
        case firstStep = "first_step"
        case startStep = "start_step"
        case startReason = "start_reason"
        case stopStep = "stop_step"
        case inherentProbabilities = "inherent_probabilities"
        case startProbabilities = "start_probabilities"
        case finalProbabilities = "final_probabilities"
        case stepsTrace = "steps_trace"
        case tokenDrift = "token_drift"
    }
}

/// What the report reads from an output folder: the manifest's lines and, per job, its trace
/// file when there is one; plus a note for everything that could not be read.
public struct ReportInput {
    public var folder: URL
    public var lines: [ReportLine]
    public var traces: [String: TraceFile]
    public var notes: [String]

    public init(folder: URL, lines: [ReportLine], traces: [String: TraceFile], notes: [String]) {
        self.folder = folder
        self.lines = lines
        self.traces = traces
        self.notes = notes
    }

    /// Reads OUTPUT_DIR/manifest.jsonl and the trace files it names. Only a missing or
    /// unreadable manifest throws; a bad line or trace file becomes a note.
    public static func load(folder: URL) throws -> ReportInput {
        let url = folder.appendingPathComponent(Collector.manifestName)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw InputError("no \(Collector.manifestName) in \(folder.path): nothing to report")
        }
        let raw: [Data]
        do { raw = try ManifestWriter.readLines(url) } catch { throw InputError("cannot read \(url.path): \(error)") }
        var notes: [String] = []
        var lines: [ReportLine] = []
        var seen = Set<String>()
        let decoder = JSONDecoder()
        for (n, data) in raw.enumerated() {
            do {
                let line = try decoder.decode(ReportLine.self, from: data)
                // The collector writes each job once; a hand-merged manifest might not.
                if seen.insert(line.jobID).inserted {
                    lines.append(line)
                } else {
                    notes.append("job \(line.jobID) has several lines; the first is used")
                }
            } catch {
                notes.append("manifest line \(n + 1) is unreadable (\(Self.describe(error))); skipped")
            }
        }
        var traces: [String: TraceFile] = [:]
        var unreadable: [String] = []
        for line in lines {
            guard let rel = line.traceFile else { continue }
            do {
                let file = try PathConfinement.resolve(rel, under: folder)
                traces[line.jobID] = try decoder.decode(TraceFile.self, from: try Data(contentsOf: file))
            } catch {
                unreadable.append("\(rel) (\(Self.describe(error)))")
            }
        }
        if !unreadable.isEmpty {
            notes.append(
                "\(unreadable.count) trace file(s) could not be read: "
                    + unreadable.prefix(5).joined(separator: "; ") + (unreadable.count > 5 ? "; …" : ""))
        }
        return ReportInput(folder: folder, lines: lines, traces: traces, notes: notes)
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "no \(key.stringValue)"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c),
            DecodingError.dataCorrupted(let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
        case let e as CocoaError where e.code == .fileReadNoSuchFile: return "no such file"
        default: return "\(error)"
        }
    }
}
