import Foundation

/// Which cheap image stands in for the predicted x0 when measuring s_t (WHEN).
public enum PreviewKind: String, Codable, Sendable, CaseIterable {
    /// A fixed linear map latent → RGB (SD 1.5's latent-RGB factors) at latent
    /// resolution, resized to the CLIP tower's input: no decoder at all.
    case latentRGB = "latent-rgb"
    /// The full VAE decode: exact but costs about a UNet call (DESIGN §6); for comparison.
    case vaeDecode = "vae-decode"
}

/// Every MUSE hyperparameter, with the defaults used when a job leaves one out.
/// Step positions are fractions of the schedule (rounded to a step index) so the same
/// settings work for 20 or 50 steps. The defaults are meant for full SD 1.5 (DDIM 50,
/// w 7.5); the tiny random-weight models cannot validate them (see MUSE.swift).
///
/// - K = 3, Adam lr 0.01: v starts as a word embedding with per-element scale ~0.015
///   (SD's CLIP; 0.02 tiny). Adam moves each element by ≈ lr per iteration, so ~30
///   iterations over a window can move v well past its start while staying on the
///   embedding scale's order. Each iteration costs a UNet + decoder forward and backward
///   (the method's dominant cost; the decoder dominates, DESIGN §6), so K stays small.
///   On the tiny models lr 0.02 gains a little more than 0.01, 0.05 no more than 0.02.
/// - λ_inh = 0.5, λ_sim = 0.25 per similar emotion: the target term leads; the inherent
///   emotion (one term) weighs more than each of the (up to three) similar ones.
/// - δ = 0.005 on m = 2 consecutive steps, no start before 10 % of the schedule, at the
///   latest at 50 %: CLIP cosine similarities change by a few hundredths per step while
///   the layout forms and by thousandths once it is fixed; the latest start guarantees a
///   guided window when s_t never settles.
/// - stop at 80 %: the last steps refine detail; guided steps cost ~10× a plain one.
/// - universal guidance: scale 20, 3 gradient evaluations per guided step (tuned on the
///   tiny models, where it moves p(awe) 0.07 → 0.6; tune it for a real classifier).
public struct MUSESettings: Codable, Equatable, Sendable {
    // HOW
    /// K: Adam iterations on the token at each guided step.
    public var innerIterations = 3
    public var learningRate: Float = 0.01
    public var adamBeta1: Float = 0.9
    public var adamBeta2: Float = 0.999
    public var adamEpsilon: Float = 1e-8

    // WHICH
    public var lambdaInherent: Float = 0.5
    /// Weight of each similar emotion's term.
    public var lambdaSimilar: Float = 0.25
    public var similarity = SimilarityMap.samePolarity

    // WHEN
    /// δ: s_t has settled when |s_t − s_{t−1}| < δ ...
    public var settleDelta: Float = 0.005
    /// ... on m consecutive steps.
    public var settleSteps = 2
    /// No guidance before this fraction of the schedule.
    public var minStartFraction: Float = 0.1
    /// Guidance starts here at the latest even if s_t has not settled.
    public var latestStartFraction: Float = 0.5
    /// Guidance stops (exclusive) at this fraction of the schedule.
    public var stopFraction: Float = 0.8
    /// muse-fixed-timing starts here instead of using the rule.
    public var fixedStartFraction: Float = 0
    public var preview = PreviewKind.latentRGB

    // universal-guidance baseline
    /// eps ← eps + scale·√(1−ᾱ_t)·∇_{z_t} L_emo, as classifier guidance does with −∇log p.
    public var universalScale: Float = 20
    /// Gradient evaluations per guided step (eps updated between them; the UNet is not re-run).
    public var universalIterations = 3

    // traces
    /// Also decode and classify every step's x̂0 (costs a decode per step; off for full-size models).
    public var classifyEveryStep = false

    public init() {}

    /// Schedule index of a fraction of `steps`.
    public static func stepIndex(_ fraction: Float, steps: Int) -> Int {
        min(steps, max(0, Int((Float(steps) * fraction).rounded())))
    }

    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw SettingsError(message) } }
        try check(innerIterations >= 1, "innerIterations must be at least 1")
        try check(learningRate > 0 && learningRate.isFinite, "learningRate must be positive")
        try check((0..<1).contains(adamBeta1) && (0..<1).contains(adamBeta2), "Adam betas must be in [0, 1)")
        try check(lambdaInherent >= 0 && lambdaSimilar >= 0, "λ_inh and λ_sim must not be negative")
        try check(settleDelta > 0, "settleDelta must be positive")
        try check(settleSteps >= 1, "settleSteps must be at least 1")
        for (name, f) in [("minStartFraction", minStartFraction), ("latestStartFraction", latestStartFraction),
                          ("stopFraction", stopFraction), ("fixedStartFraction", fixedStartFraction)] {
            try check((0...1).contains(f), "\(name) must be in [0, 1]")
        }
        try check(minStartFraction <= latestStartFraction, "minStartFraction must not exceed latestStartFraction")
        try check(universalIterations >= 1, "universalIterations must be at least 1")
    }

    // Missing keys take the defaults, so job specs name only what they change.
    enum CodingKeys: String, CodingKey, CaseIterable {
        case innerIterations, learningRate, adamBeta1, adamBeta2, adamEpsilon
        case lambdaInherent, lambdaSimilar, similarity
        case settleDelta, settleSteps, minStartFraction, latestStartFraction, stopFraction, fixedStartFraction, preview
        case universalScale, universalIterations, classifyEveryStep
    }

    /// The setting names JSON may use (camelCase).
    public static var settingNames: [String] { CodingKeys.allCases.map(\.rawValue) }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var s = MUSESettings()
        func take<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let v = try c.decodeIfPresent(T.self, forKey: key) { value = v }
        }
        try take(.innerIterations, &s.innerIterations)
        try take(.learningRate, &s.learningRate)
        try take(.adamBeta1, &s.adamBeta1)
        try take(.adamBeta2, &s.adamBeta2)
        try take(.adamEpsilon, &s.adamEpsilon)
        try take(.lambdaInherent, &s.lambdaInherent)
        try take(.lambdaSimilar, &s.lambdaSimilar)
        // Entries given replace those targets' defaults; other targets keep theirs.
        if let given = try c.decodeIfPresent(SimilarityMap.self, forKey: .similarity) {
            for (target, list) in given.neighbours { try s.similarity.set(target, list) }
        }
        try take(.settleDelta, &s.settleDelta)
        try take(.settleSteps, &s.settleSteps)
        try take(.minStartFraction, &s.minStartFraction)
        try take(.latestStartFraction, &s.latestStartFraction)
        try take(.stopFraction, &s.stopFraction)
        try take(.fixedStartFraction, &s.fixedStartFraction)
        try take(.preview, &s.preview)
        try take(.universalScale, &s.universalScale)
        try take(.universalIterations, &s.universalIterations)
        try take(.classifyEveryStep, &s.classifyEveryStep)
        self = s
    }
}

public struct SettingsError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "MUSE settings: \(message)" }
    public var errorDescription: String? { description }
}
