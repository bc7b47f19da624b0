import Foundation

/// The names the engine understands, duplicated here so the coordinator can validate a
/// spec without linking the engine (PipelineTests checks they match the MUSE module).
public enum EngineVocabulary {
    /// Mikels' eight, in EmoSet's label order.
    public static let emotions = ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"]
    public static let methods = ["muse", "prompt-only", "universal-guidance", "muse-no-inh", "muse-no-sim",
                                 "muse-fixed-timing", "muse-no-token-opt", "none"]
    public static let previews = ["latent-rgb", "vae-decode"]

    /// MUSE hyperparameters: spec key (snake_case) → engine key (MUSESettings' coding key)
    /// and kind. Ranges are checked in `JobSpec`.
    public enum Kind: Sendable { case int, float, bool, preview, similarity }
    public static let museSettings: [(spec: String, engine: String, kind: Kind)] = [
        ("inner_iterations", "innerIterations", .int),
        ("learning_rate", "learningRate", .float),
        ("adam_beta1", "adamBeta1", .float),
        ("adam_beta2", "adamBeta2", .float),
        ("adam_epsilon", "adamEpsilon", .float),
        ("lambda_inherent", "lambdaInherent", .float),
        ("lambda_similar", "lambdaSimilar", .float),
        ("similarity", "similarity", .similarity),
        ("settle_delta", "settleDelta", .float),
        ("settle_steps", "settleSteps", .int),
        ("min_start_fraction", "minStartFraction", .float),
        ("latest_start_fraction", "latestStartFraction", .float),
        ("stop_fraction", "stopFraction", .float),
        ("fixed_start_fraction", "fixedStartFraction", .float),
        ("preview", "preview", .preview),
        ("universal_scale", "universalScale", .float),
        ("universal_iterations", "universalIterations", .int),
        ("classify_every_step", "classifyEveryStep", .bool),
    ]
}

/// A job's four model files, named the same way twice: as locations (where workers find
/// them: `bundled:NAME` or an absolute path, see `ModelLocation`; not part of the job's
/// identity) and as fingerprints of their contents (part of it).
public struct ModelSet: Codable, Equatable, Sendable, Hashable {
    public var model: String
    public var tower: String
    public var head: String?
    public var text: String

    public init(model: String, tower: String, head: String?, text: String) {
        self.model = model
        self.tower = tower
        self.head = head
        self.text = text
    }
}

public typealias ModelLocations = ModelSet
public typealias ModelFingerprints = ModelSet

/// What a job computes. Its canonical JSON hash is the job id, so equal content means
/// the same job (resubmission is a no-op) and any change — a setting, the seed, the
/// source image's bytes, the model's files — makes a different one.
public struct JobContent: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case generate, edit }

    public var kind: Kind
    /// The generation prompt, or for an edit the source prompt (may be empty).
    public var prompt: String
    public var emotion: String
    public var method: String
    public var seed: UInt64
    public var steps: Int
    public var guidance: Double
    public var negativePrompt: String
    /// Generation only; nil = the model's native size.
    public var width: Int?
    public var height: Int?
    /// Edit only: how far to invert (1 = the whole schedule).
    public var strength: Double?
    /// Edit only: SHA-256 of the source PNG, which is also its blob name in Redis.
    public var imageSHA256: String?
    /// MUSE hyperparameters with the engine's key names; missing ones take engine defaults.
    public var muse: [String: JSONValue]
    public var models: ModelFingerprints

    public init(kind: Kind, prompt: String, emotion: String, method: String, seed: UInt64, steps: Int, guidance: Double,
                negativePrompt: String, width: Int?, height: Int?, strength: Double?, imageSHA256: String?,
                muse: [String: JSONValue], models: ModelFingerprints) {
        self.kind = kind
        self.prompt = prompt
        self.emotion = emotion
        self.method = method
        self.seed = seed
        self.steps = steps
        self.guidance = guidance
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.strength = strength
        self.imageSHA256 = imageSHA256
        self.muse = muse
        self.models = models
    }

    enum CodingKeys: String, CodingKey {
        case kind, prompt, emotion, method, seed, steps, guidance, width, height, strength, muse, models
        case negativePrompt = "negative_prompt"
        case imageSHA256 = "image_sha256"
    }

    /// 24 hex digits of SHA-256 over the canonical JSON (96 bits: collisions are not a concern).
    public func jobID() throws -> String {
        var bytes = Array("muse-job-v1\n".utf8)
        bytes += try CanonicalJSON.encode(self)
        return String(SHA256.hexDigest(bytes).prefix(24))
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
    /// Contact-sheet cell: one row per (prompt, seed) or source image, one column per emotion.
    public var sheetRow: Int
    public var sheetColumn: Int

    public init(id: String, content: JobContent, locations: ModelLocations, checkpointEvery: Int, index: Int,
                output: String, imagePath: String?, sheetRow: Int, sheetColumn: Int) {
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
        case sheetRow = "sheet_row"
        case sheetColumn = "sheet_column"
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
        let digest = SHA256.hash(Array("muse-seed-v1\n\(batchSeed)\n\(prompt)\n\(sample)".utf8))
        var v: UInt64 = 0
        for b in digest.prefix(8) { v = v << 8 | UInt64(b) }
        return v & maxSeed
    }
}
