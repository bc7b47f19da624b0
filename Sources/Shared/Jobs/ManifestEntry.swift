import Foundation
import Imaging
import RedisQueue
import Support
import Vocabulary

/// One stretch of work on a job by one owner: a job resumed from a checkpoint has several.
public struct JobSegment: Codable, Equatable, Sendable {
    public var worker: String
    public var epoch: UInt64
    public var fromStep: Int
    public var toStep: Int
    public var seconds: Double

    public init(worker: String, epoch: UInt64, fromStep: Int, toStep: Int, seconds: Double) {
        self.worker = worker
        self.epoch = epoch
        self.fromStep = fromStep
        self.toStep = toStep
        self.seconds = seconds
    }

    enum CodingKeys: String, CodingKey {
        case worker, epoch, seconds
        case fromStep = "from_step"
        case toStep = "to_step"
    }
}

public struct JobTimings: Codable, Equatable, Sendable {
    /// Wall time of the attempt that finished the job, from take to publish.
    public var attemptSeconds: Double
    /// Engine time over all attempts (what a resumed job really cost).
    public var engineSeconds: Double
    /// Loading models for this job (0 when the worker had them loaded already).
    public var modelLoadSeconds: Double
    /// The engine's own per-phase split (unet, decode, backward, classifier, ...).
    public var phases: [String: Double]?

    public init(attemptSeconds: Double, engineSeconds: Double, modelLoadSeconds: Double, phases: [String: Double]?) {
        self.attemptSeconds = attemptSeconds
        self.engineSeconds = engineSeconds
        self.modelLoadSeconds = modelLoadSeconds
        self.phases = phases
    }

    enum CodingKeys: String, CodingKey {
        case phases
        case attemptSeconds = "attempt_seconds"
        case engineSeconds = "engine_seconds"
        case modelLoadSeconds = "model_load_seconds"
    }
}

/// What a worker publishes with a result's PNG (the `metrics` field of a results entry).
public struct JobMetrics: Codable, Equatable, Sendable {
    public var engine: String
    public var width: Int
    public var height: Int
    public var pngSHA256: String
    /// Classifier probabilities of the final 8-bit image, by emotion name.
    public var probabilities: [String: Double]?
    public var targetProbability: Double?
    public var topEmotion: String?
    public var timings: JobTimings
    /// The checkpoint step this attempt resumed from; nil when it started from scratch.
    public var resumedFromStep: Int?
    public var checkpointsWritten: Int
    public var segments: [JobSegment]
    /// The engine's trace summary (guidance start/stop, e_inh, S, s_t per step, ...).
    public var trace: JSONValue?
    public var worker: String
    public var epoch: UInt64
    public var attempt: Int
    /// The evaluator's and CLIP's scores of the finished image (manifest `evaluation`).
    public var evaluation: JSONValue?
    /// The whole trace, written by the collector to the job's trace file.
    public var traceDocument: JSONValue?

    public init(
        engine: String, width: Int, height: Int, pngSHA256: String, probabilities: [String: Double]?,
        targetProbability: Double?, topEmotion: String?, timings: JobTimings, resumedFromStep: Int?,
        checkpointsWritten: Int, segments: [JobSegment], trace: JSONValue?, worker: String, epoch: UInt64, attempt: Int,
        evaluation: JSONValue? = nil, traceDocument: JSONValue? = nil
    ) {
        self.engine = engine
        self.width = width
        self.height = height
        self.pngSHA256 = pngSHA256
        self.probabilities = probabilities
        self.targetProbability = targetProbability
        self.topEmotion = topEmotion
        self.timings = timings
        self.resumedFromStep = resumedFromStep
        self.checkpointsWritten = checkpointsWritten
        self.segments = segments
        self.trace = trace
        self.worker = worker
        self.epoch = epoch
        self.attempt = attempt
        self.evaluation = evaluation
        self.traceDocument = traceDocument
    }

    enum CodingKeys: String, CodingKey {
        case engine, width, height, probabilities, timings, segments, trace, worker, epoch, attempt, evaluation
        case traceDocument = "trace_document"
        case pngSHA256 = "png_sha256"
        case targetProbability = "target_probability"
        case topEmotion = "top_emotion"
        case resumedFromStep = "resumed_from_step"
        case checkpointsWritten = "checkpoints_written"
    }
}

/// One line of manifest.jsonl (format: manifests/SPEC.md).
public struct ManifestEntry: Codable, Equatable, Sendable {
    public struct Image: Codable, Equatable, Sendable {
        public var path: String
        public var sha256: String
    }

    public struct Models: Codable, Equatable, Sendable {
        public var locations: ModelLocations
        public var fingerprints: ModelFingerprints
    }

    public struct Cell: Codable, Equatable, Sendable {
        public var row: Int
        public var column: Int
    }

    public var jobID: String
    public var batchID: String
    public var status: JobStatus
    public var index: Int
    public var kind: String
    /// Generation prompt, or an edit's source prompt.
    public var prompt: String
    public var emotion: String
    public var seed: UInt64
    public var method: String
    public var image: Image?
    /// The prompts file's `id` of the job's row (generation from a prompts file with ids).
    public var sourceID: String?
    public var settings: JobSettings
    public var checkpointEvery: Int
    public var models: Models
    /// PNG path relative to the manifest's folder (done jobs).
    public var output: String?
    public var sha256: String?
    public var width: Int?
    public var height: Int?
    public var probabilities: [String: Double]?
    public var targetProbability: Double?
    public var topEmotion: String?
    public var timings: JobTimings?
    public var worker: String?
    public var attempts: Int
    public var epoch: UInt64?
    public var resumedFromStep: Int?
    public var segments: [JobSegment]?
    public var trace: JSONValue?
    /// The evaluator's probabilities and CLIP scores of the image (see manifests/SPEC.md).
    public var evaluation: JSONValue?
    /// The job's whole trace (JSON), relative to the manifest's folder.
    public var traceFile: String?
    /// Edits: the source image, relative to the manifest's folder.
    public var sourceOutput: String?
    /// Failed jobs: the last error.
    public var error: String?
    public var sheet: Cell
    public var collectedAt: String

    enum CodingKeys: String, CodingKey {
        case status, index, kind, prompt, emotion, seed, method, image, settings, models, output, sha256, width, height
        case probabilities, timings, worker, attempts, epoch, segments, trace, error, sheet, evaluation
        case jobID = "job_id"
        case sourceID = "source_id"
        case traceFile = "trace_file"
        case sourceOutput = "source_output"
        case checkpointEvery = "checkpoint_every"
        case batchID = "batch_id"
        case targetProbability = "target_probability"
        case topEmotion = "top_emotion"
        case resumedFromStep = "resumed_from_step"
        case collectedAt = "collected_at"
    }

    /// The job's inputs; result fields are filled in by the caller.
    public init(job: PipelineJob, batchID: String, status: JobStatus, attempts: Int) {
        let c = job.content
        jobID = job.id
        self.batchID = batchID
        self.status = status
        index = job.index
        kind = c.kind.rawValue
        prompt = c.prompt
        emotion = c.emotion.rawValue
        seed = c.seed
        method = c.synthesis.method.rawValue
        image = job.imagePath.map { Image(path: $0, sha256: c.imageSHA256 ?? "") }
        sourceID = job.sourceID
        settings = c.settings
        checkpointEvery = job.checkpointEvery
        models = Models(locations: job.locations, fingerprints: c.models)
        self.attempts = attempts
        sheet = Cell(row: job.sheetRow, column: job.sheetColumn)
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        collectedAt = f.string(from: Date())
    }
}
