import Foundation
import Vocabulary

/// Seconds spent per phase. `unet` includes backward passes through it, `decode` the
/// decoder's forward and backward, `classifier` the emotion classifier's, `preview` the
/// latent→RGB preview and `promptScore` the CLIP forward that scores it.
public struct PhaseTimings: Codable, Equatable, Sendable {
    public var unet = 0.0
    public var textEncoder = 0.0
    public var decode = 0.0
    /// Backward passes of the inner iterations (classifier, decoder, UNet and text encoder together).
    public var backward = 0.0
    public var classifier = 0.0
    public var preview = 0.0
    public var promptScore = 0.0
    public var inversion = 0.0
    /// Scoring the finished image (evaluator, CLIP embeddings).
    public var evaluation = 0.0
    public var total = 0.0
    public init() {}
}

/// One inner Adam iteration (or one universal-guidance gradient): the loss and the class
/// probabilities of the x̂0 it was computed on (before that iteration's update).
public struct InnerIterationTrace: Codable, Equatable, Sendable {
    public var loss: Float
    public var probabilities: [Float]
    /// Wall seconds of the iteration (forward, backward, update); absent in older checkpoints.
    public var seconds: Double?
}

public struct StepTrace: Codable, Equatable, Sendable {
    /// Schedule index (0-based) and the UNet timestep.
    public var index: Int
    public var timestep: Int
    /// s_t: CLIP similarity of the x̂0 preview (before any guidance at this step) with the prompt.
    public var promptScore: Float
    /// Inside the guidance window (the method's guidance ran here, if it has any).
    public var guided: Bool
    public var inner: [InnerIterationTrace]
    /// Class probabilities of the x̂0 the step finally used, when `classify_every_step` is
    /// set; nil otherwise (a guided step's probabilities per inner iteration are in `inner`).
    public var probabilities: [Float]?
    public var seconds: Double
    /// Of which the preview and its CLIP scoring.
    public var previewSeconds: Double
    /// ‖v − v₀‖ after the step (token-optimising methods).
    public var tokenDrift: Float? = nil
    /// Null-text inversion's optimisation at this step (null-text edits).
    public var nullText: NullTextStepTrace? = nil
}

/// Everything recorded about one job, JSON-encodable (docs/METHOD.md, traces).
public struct SynthesisTrace: Codable, Equatable, Sendable {
    public var method: SynthesisMethod
    public var emotion: Emotion
    public var prompt: String
    public var seed: UInt64
    public var steps: Int
    /// First schedule index denoised (0 for generation, later for a partial edit).
    public var firstStep: Int
    /// Which preview scored s_t, e.g. "decoded: x̂0 through the full VAE, CLIP preprocessing to 224×224".
    public var preview: String
    /// Edits: how the source was inverted.
    public var inversion: InversionKind?
    public var classifier: String
    public var stepTraces: [StepTrace] = []
    public var startStep: Int?
    public var startReason: GuidanceTiming.StartReason?
    /// Exclusive.
    public var stopStep: Int
    public var inherent: Emotion?
    public var similar: [Emotion] = []
    /// Class probabilities at the start step of the x̂0 the prompt alone predicts (no token):
    /// what chose e_inh.
    public var inherentProbabilities: [Float]?
    /// The same with the token at its start value in the prompt (before any update).
    public var startProbabilities: [Float]?
    /// ‖v₀‖, the scale `StepTrace.tokenDrift` compares with.
    public var tokenNorm: Float?
    public var finalProbabilities: [Float]?
    /// Edits: the source's CLIP image embedding, taken at start (for CLIP-I).
    public var sourceEmbedding: [Float]?
    /// Edits: the guide's and the evaluator's probabilities on the source, taken at start.
    public var sourceProbabilities: [Float]?
    public var sourceEvaluatorProbabilities: [Float]?
    /// The finished image scored apart from the guidance.
    public var evaluation: ImageEvaluation?
    public var timings = PhaseTimings()
    /// (preview + its CLIP scoring) / the rest of the time of unguided steps: what WHEN
    /// adds to a plain diffusion step. nil until finished or without unguided steps.
    public var previewCostRatio: Double?
    /// The same against all steps, guided ones included.
    public var previewCostRatioAllSteps: Double?

    public var promptScores: [Float] { stepTraces.map(\.promptScore) }
}
