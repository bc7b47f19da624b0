import Foundation

/// The sampler a job denoises with. Edits always use DDIM: its inversion is what maps the
/// source image to the starting latent.
public enum SchedulerKind: String, Codable, Sendable, CaseIterable {
    case ddim
    /// DPM-Solver++(2M), diffusers' DPMSolverMultistepScheduler: fewer steps for the same image.
    case dpmpp2m = "dpmpp-2m"
}

/// How an edit maps its source image to the latent it denoises from. Plain DDIM inversion runs
/// the UNet without guidance, so denoising it again at CFG w > 1 does not come back to the
/// source; the other two make the denoising match the inversion.
public enum InversionKind: String, Codable, Sendable, CaseIterable {
    /// DDIM inversion conditioned on the source prompt (guidance 1); denoising uses the
    /// negative prompt as the unconditional branch, as a generation does.
    case ddim
    /// Negative-prompt inversion (Miyake et al. 2023): the same DDIM inversion, and the source
    /// prompt's embedding serves as the unconditional branch while denoising. No optimisation.
    case negativePrompt = "negative-prompt"
    /// Null-text inversion (Mokady et al. 2023): per step, the unconditional embedding is
    /// optimised so that the guided step from the reconstruction lands on the inversion's
    /// latent; the edit then denoises with those embeddings.
    case nullText = "null-text"
}

/// How the models' weights are stored while a job runs. bf16 halves their memory (SD 1.5 with
/// its ViT-L/14 towers: about 6 GB → 3 GB) and rounds them to 8 significant bits, which moves
/// outputs by about 1e-2 relative: a different model, not the same one faster. So it is a job
/// setting (in the job id and the manifest), never a worker's environment.
public enum WeightsDType: String, Codable, Sendable, CaseIterable {
    case f32
    case bf16
}

/// The settings of one synthesis besides what it is about (prompt, emotion, method, seed):
/// the one settings type a spec, a queued job, a checkpoint and a manifest line all carry,
/// with the same snake_case names everywhere.
public struct JobSettings: Codable, Equatable, Sendable {
    public static let stepsRange = 1...1000
    public static let guidanceRule = FloatRule.nonNegative(max: 100)
    /// Generation sizes; the model's size rules apply on top.
    public static let sideRange = 8...4096
    public static let strengthRule = FloatRule.positive(max: 1)
    public static let nullTextStepsRange = 1...100
    /// Chosen by measurement on the miniworld (manifests/SPEC.md, `editing.inversion`).
    public static let defaultInversion = InversionKind.negativePrompt

    /// Denoising steps (DDIM, eta 0). Project default 50; the tiny test models use fewer.
    public var steps: Int
    /// Classifier-free guidance scale w.
    public var guidance: Float
    public var negativePrompt: String
    /// Output size for generation; nil: the model's native size. Edits take the image's size.
    public var width: Int?
    public var height: Int?
    /// Set for an edit: how far to invert, 1 = to the first timestep (full), 0.3 = 30 % of the schedule.
    public var strength: Float?
    public var scheduler: SchedulerKind
    /// Edits only (not encoded for a generation, whose job id it would change for nothing).
    public var inversion: InversionKind
    /// Null-text inversion: at most this many Adam steps on the unconditional embedding per
    /// denoising step (fewer when the step already lands on the inversion's latent).
    public var nullTextSteps: Int
    /// Encoded only when bf16, so float32 jobs keep the ids they always had.
    public var weightsDType: WeightsDType
    public var muse: MUSESettings

    public init(
        steps: Int = 50, guidance: Float = 7.5, negativePrompt: String = "", width: Int? = nil,
        height: Int? = nil, strength: Float? = nil, scheduler: SchedulerKind = .ddim,
        inversion: InversionKind = JobSettings.defaultInversion, nullTextSteps: Int = 10,
        weightsDType: WeightsDType = .f32, muse: MUSESettings = MUSESettings()
    ) {
        self.steps = steps
        self.guidance = guidance
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.strength = strength
        self.scheduler = scheduler
        self.inversion = inversion
        self.nullTextSteps = nullTextSteps
        self.weightsDType = weightsDType
        self.muse = muse
    }

    enum CodingKeys: String, CodingKey {
        case steps, guidance, width, height, strength, scheduler, inversion, muse
        case negativePrompt = "negative_prompt"
        case nullTextSteps = "null_text_steps"
        case weightsDType = "weights_dtype"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        steps = try c.decode(Int.self, forKey: .steps)
        guidance = try c.decode(Float.self, forKey: .guidance)
        negativePrompt = try c.decode(String.self, forKey: .negativePrompt)
        width = try c.decodeIfPresent(Int.self, forKey: .width)
        height = try c.decodeIfPresent(Int.self, forKey: .height)
        strength = try c.decodeIfPresent(Float.self, forKey: .strength)
        scheduler = try c.decode(SchedulerKind.self, forKey: .scheduler)
        inversion = try c.decodeIfPresent(InversionKind.self, forKey: .inversion) ?? Self.defaultInversion
        nullTextSteps = try c.decodeIfPresent(Int.self, forKey: .nullTextSteps) ?? 10
        weightsDType = try c.decodeIfPresent(WeightsDType.self, forKey: .weightsDType) ?? .f32
        muse = try c.decode(MUSESettings.self, forKey: .muse)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(steps, forKey: .steps)
        try c.encode(guidance, forKey: .guidance)
        try c.encode(negativePrompt, forKey: .negativePrompt)
        try c.encodeIfPresent(width, forKey: .width)
        try c.encodeIfPresent(height, forKey: .height)
        try c.encodeIfPresent(strength, forKey: .strength)
        try c.encode(scheduler, forKey: .scheduler)
        if strength != nil {
            try c.encode(inversion, forKey: .inversion)
            if inversion == .nullText { try c.encode(nullTextSteps, forKey: .nullTextSteps) }
        }
        if weightsDType != .f32 { try c.encode(weightsDType, forKey: .weightsDType) }
        try c.encode(muse, forKey: .muse)
    }

    /// Range checks of every field; errors name the field (snake_case).
    public func validate() throws {
        guard Self.stepsRange.contains(steps) else {
            throw SettingsError(
                key: "steps", "\(steps) is outside \(Self.stepsRange.lowerBound)...\(Self.stepsRange.upperBound)")
        }
        if let p = Self.guidanceRule.problem(Double(guidance)) {
            throw SettingsError(key: "guidance", "\(guidance) \(p)")
        }
        for (key, side) in [("width", width), ("height", height)] {
            if let side, !Self.sideRange.contains(side) {
                throw SettingsError(
                    key: key, "\(side) is outside \(Self.sideRange.lowerBound)...\(Self.sideRange.upperBound)")
            }
        }
        if let strength, let p = Self.strengthRule.problem(Double(strength)) {
            throw SettingsError(key: "strength", "\(strength) \(p)")
        }
        if strength != nil && scheduler != .ddim {
            throw SettingsError(key: "scheduler", "edits use ddim (the source image is inverted with DDIM)")
        }
        guard Self.nullTextStepsRange.contains(nullTextSteps) else {
            throw SettingsError(
                key: "null_text_steps",
                "\(nullTextSteps) is outside \(Self.nullTextStepsRange.lowerBound)...\(Self.nullTextStepsRange.upperBound)"
            )
        }
        if strength != nil && inversion != .ddim && !negativePrompt.isEmpty {
            throw SettingsError(
                key: "negative_prompt",
                "an edit with \(inversion.rawValue) inversion denoises against the source prompt (or its optimised "
                    + "null text), so a negative prompt would be ignored: drop it or use inversion ddim")
        }
        try muse.validate()
    }
}

/// What to synthesize. For an edit (`settings.strength` set), `prompt` is the source prompt
/// used both to invert the image and to denoise it again; the image itself is given to the
/// engine separately and is not part of the job or the saved state.
public struct SynthesisJob: Codable, Equatable, Sendable {
    public var prompt: String
    public var emotion: Emotion
    public var method: SynthesisMethod
    public var seed: UInt64
    public var settings: JobSettings

    public init(
        prompt: String, emotion: Emotion, method: SynthesisMethod = .muse, seed: UInt64 = 0,
        settings: JobSettings = JobSettings()
    ) {
        self.prompt = prompt
        self.emotion = emotion
        self.method = method
        self.seed = seed
        self.settings = settings
    }

    public var isEdit: Bool { settings.strength != nil }
}
