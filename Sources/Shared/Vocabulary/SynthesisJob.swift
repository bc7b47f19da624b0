import Foundation

/// The sampler a job denoises with. Edits always use DDIM: its inversion is what maps the
/// source image to the starting latent.
public enum SchedulerKind: String, Codable, Sendable, CaseIterable {
    case ddim
    /// DPM-Solver++(2M), diffusers' DPMSolverMultistepScheduler: fewer steps for the same image.
    case dpmpp2m = "dpmpp-2m"
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
    public var muse: MUSESettings

    public init(
        steps: Int = 50, guidance: Float = 7.5, negativePrompt: String = "", width: Int? = nil,
        height: Int? = nil, strength: Float? = nil, scheduler: SchedulerKind = .ddim,
        muse: MUSESettings = MUSESettings()
    ) {
        self.steps = steps
        self.guidance = guidance
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.strength = strength
        self.scheduler = scheduler
        self.muse = muse
    }

    enum CodingKeys: String, CodingKey {
        case steps, guidance, width, height, strength, scheduler, muse
        case negativePrompt = "negative_prompt"
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
