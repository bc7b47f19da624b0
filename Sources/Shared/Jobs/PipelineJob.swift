import Foundation
import Imaging
import RedisQueue
import Support
import Vocabulary

/// What a `ModelSet` names its models by: `ModelSetKinds.Locations` or `.Fingerprints`.
public protocol ModelSetKind: Sendable {}

public enum ModelSetKinds {
    /// Where workers find the files: `bundled:NAME` or an absolute path (see `ModelLocation`).
    public enum Locations: ModelSetKind {}
    /// What the files hold (`ModelFingerprint`).
    public enum Fingerprints: ModelSetKind {}
}

/// A job's model files, named the same way twice: as locations (where workers find
/// them; not part of the job's identity) and as fingerprints of their contents (part of it).
/// `Kind` keeps the two apart: one is never passed for the other. Both encode alike (`Kind`
/// is not stored).
public struct ModelSet<Kind: ModelSetKind>: Codable, Equatable, Sendable, Hashable {
    public var model: String
    public var tower: String
    public var head: String?
    public var text: String
    /// The vision half of `text`'s CLIP pair, which scores images against prompts (s_t, CLIP
    /// score, CLIP-I) when the guide's `tower` is another model (nil: `tower` does).
    public var promptTower: String?
    /// The AutoencoderTiny folder for `guidance_decoder: tiny` (nil: none).
    public var tinyDecoder: String?
    /// The spec's `evaluation:` classifier, which only scores finished images: a CLIP vision
    /// tower with a linear head, or zero-shot with a CLIP text model (nil: no evaluator).
    public var evaluatorTower: String?
    public var evaluatorHead: String?
    public var evaluatorText: String?
    /// The spec's `evaluation.clip_tower`/`clip_text`: the CLIP pair that measures CLIP score,
    /// CLIP-I and Sem-D (nil: the prompt tower, or `tower`, with `text`). Absent from the JSON
    /// when nil, so jobs without it keep their ids.
    public var evaluationCLIPTower: String?
    public var evaluationCLIPText: String?

    public init(
        model: String, tower: String, head: String?, text: String, promptTower: String? = nil,
        tinyDecoder: String? = nil, evaluatorTower: String? = nil, evaluatorHead: String? = nil,
        evaluatorText: String? = nil, evaluationCLIPTower: String? = nil, evaluationCLIPText: String? = nil
    ) {
        self.model = model
        self.tower = tower
        self.head = head
        self.text = text
        self.promptTower = promptTower
        self.tinyDecoder = tinyDecoder
        self.evaluatorTower = evaluatorTower
        self.evaluatorHead = evaluatorHead
        self.evaluatorText = evaluatorText
        self.evaluationCLIPTower = evaluationCLIPTower
        self.evaluationCLIPText = evaluationCLIPText
    }

    /// The vision tower CLIP score, CLIP-I and Sem-D are measured with.
    public var measuringCLIPTower: String { evaluationCLIPTower ?? promptTower ?? tower }

    enum CodingKeys: String, CodingKey {
        case model, tower, head, text
        case promptTower = "prompt_tower"
        case tinyDecoder = "tiny_decoder"
        case evaluatorTower = "evaluator_tower"
        case evaluatorHead = "evaluator_head"
        case evaluatorText = "evaluator_text"
        case evaluationCLIPTower = "evaluation_clip_tower"
        case evaluationCLIPText = "evaluation_clip_text"
    }
}

public typealias ModelLocations = ModelSet<ModelSetKinds.Locations>
public typealias ModelFingerprints = ModelSet<ModelSetKinds.Fingerprints>

/// What a job computes. Its canonical JSON hash is the job id, so equal content means
/// the same job (resubmission is a no-op) and any change — a setting, the seed, the
/// source image's bytes, the model's files — makes a different one.
public struct JobContent: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case generate, edit }

    public var kind: Kind
    /// What the engine runs: prompt (an edit's source prompt), emotion, method, seed and
    /// every setting, defaults included.
    public var synthesis: SynthesisJob
    /// Edit only: SHA-256 of the source PNG, which is also its blob name in Redis.
    public var imageSHA256: String?
    public var models: ModelFingerprints

    public init(kind: Kind, synthesis: SynthesisJob, imageSHA256: String?, models: ModelFingerprints) {
        self.kind = kind
        self.synthesis = synthesis
        self.imageSHA256 = imageSHA256
        self.models = models
    }

    enum CodingKeys: String, CodingKey {
        case kind, synthesis, models
        case imageSHA256 = "image_sha256"
    }

    public var prompt: String { synthesis.prompt }
    public var emotion: Emotion { synthesis.emotion }
    public var seed: UInt64 { synthesis.seed }
    public var settings: JobSettings { synthesis.settings }

    /// 24 hex digits of SHA-256 over the canonical JSON (96 bits: collisions are not a concern).
    public func jobID() throws -> String {
        var bytes = Array("muse-job-v2\n".utf8)
        bytes += try CanonicalJSON.encode(self)
        return String(Hashing.sha256Hex(bytes).prefix(24))
    }
}

/// One job as stored in Redis (the queue's payload) and handed to a worker.
public struct PipelineJob: Codable, Equatable, Sendable {
    public var id: String
    public var content: JobContent
    public var locations: ModelLocations
    /// Write a checkpoint every this many steps (0: never).
    public var checkpointEvery: Int
    /// Position in the spec's expansion order (manifest and contact sheet order).
    public var index: Int
    /// Result PNG path, relative to the output folder.
    public var output: String
    /// Edit only: the source image's path as the spec gave it (for the manifest).
    public var imagePath: String?
    /// The prompts file's `id` of the row this job came from: the user's label, carried into
    /// the manifest and metadata.jsonl. Not part of `content`, so not of the job id.
    public var sourceID: String?
    /// Contact-sheet cell: one row per (prompt, seed) or source image, one column per emotion.
    public var sheetRow: Int
    public var sheetColumn: Int
    /// Edit only: the folder holding the source as `<sha256>.png` (`editing.shared_sources`);
    /// nil: the source is a blob in Redis. A location, not part of the job's identity.
    public var sharedSources: String?

    public init(
        id: String, content: JobContent, locations: ModelLocations, checkpointEvery: Int, index: Int,
        output: String, imagePath: String?, sheetRow: Int, sheetColumn: Int
    ) {
        self.id = id
        self.content = content
        self.locations = locations
        self.checkpointEvery = checkpointEvery
        self.index = index
        self.output = output
        self.imagePath = imagePath
        self.sheetRow = sheetRow
        self.sheetColumn = sheetColumn
    }

    enum CodingKeys: String, CodingKey {
        case id, content, locations, index, output
        case checkpointEvery = "checkpoint_every"
        case imagePath = "image_path"
        case sourceID = "source_id"
        case sheetRow = "sheet_row"
        case sheetColumn = "sheet_column"
        case sharedSources = "shared_sources"
    }

    public func encoded() throws -> Data { try CanonicalJSON.encode(self) }

    public static func decode(_ data: Data) throws -> PipelineJob {
        try JSONDecoder().decode(PipelineJob.self, from: data)
    }
}

/// Per-item seeds from a batch seed: SHA-256 of ("muse-seed-v1", batch seed, prompt,
/// sample number), first 8 bytes, big-endian, kept to 53 bits (exact in every JSON
/// reader). The emotion is deliberately not an input: sample k of a prompt starts from the
/// same noise for every emotion, so the emotions of one row are directly comparable.
public enum SeedDerivation {
    public static let maxSeed: UInt64 = (1 << 53) - 1

    public static func seed(batchSeed: UInt64, prompt: String, sample: Int) -> UInt64 {
        let digest = Hashing.sha256(Array("muse-seed-v1\n\(batchSeed)\n\(prompt)\n\(sample)".utf8))
        var v: UInt64 = 0
        for b in digest.prefix(8) { v = v << 8 | UInt64(b) }
        return v & maxSeed
    }
}
