import Foundation

/// What to synthesize. For an edit, `prompt` is the source prompt (default empty) used
/// both to invert the image and to denoise it again; the image itself is given to
/// `SynthesisEngine.start` and is not part of the job or the saved state.
public struct SynthesisJob: Codable, Equatable, Sendable {
    public var prompt: String
    public var emotion: Emotion
    public var method: SynthesisMethod
    public var seed: UInt64
    /// DDIM steps (eta 0). Project default 50; the tiny test models use fewer.
    public var steps: Int
    /// Classifier-free guidance scale w.
    public var guidanceScale: Float
    public var negativePrompt: String
    /// Output size for generation; nil: the model's native size. Edits take the image's size.
    public var width: Int?
    public var height: Int?
    /// Set for an edit: how far to invert, 1 = to the first timestep (full), 0.3 = 30 % of the schedule.
    public var editStrength: Float?
    public var settings: MUSESettings

    public init(prompt: String, emotion: Emotion, method: SynthesisMethod = .muse, seed: UInt64 = 0,
                steps: Int = 50, guidanceScale: Float = 7.5, negativePrompt: String = "",
                width: Int? = nil, height: Int? = nil, editStrength: Float? = nil,
                settings: MUSESettings = MUSESettings()) {
        self.prompt = prompt
        self.emotion = emotion
        self.method = method
        self.seed = seed
        self.steps = steps
        self.guidanceScale = guidanceScale
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.editStrength = editStrength
        self.settings = settings
    }

    public var isEdit: Bool { editStrength != nil }
}
