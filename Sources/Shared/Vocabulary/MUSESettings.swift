import Foundation

/// Which image of the predicted x̂0 is scored for s_t (WHEN).
public enum PreviewKind: String, Codable, Sendable, CaseIterable {
    /// x̂0 decoded: through the tiny decoder when the job's models include one, else the
    /// full VAE. What the method scores.
    case decoded
    /// The full VAE decode, even where a tiny decoder is loaded.
    case vaeDecode = "vae-decode"
    /// A fixed linear map latent → RGB at latent resolution, resized to the CLIP tower's input:
    /// no decoder at all. Its factors were fit to SD 1.x's latent space, so it is refused for
    /// any other VAE (`latentRGBProblem`).
    case latentRGB = "latent-rgb"

    /// nil when the latent→RGB factors fit a VAE of this shape (SD 1.x's: 4 latent channels at
    /// factor 8, scaling_factor 0.18215), else why the preview would be meaningless there.
    public static func latentRGBProblem(latentChannels: Int, vaeFactor: Int, scalingFactor: Double) -> String? {
        if latentChannels == 4 && vaeFactor == 8 && abs(scalingFactor - 0.18215) < 1e-6 { return nil }
        return "latent-rgb applies SD 1.x's latent→RGB factors, which fit only SD 1.x's VAE (4 latent channels, "
            + "factor 8, scaling_factor 0.18215); this VAE has \(latentChannels) channels, factor \(vaeFactor), "
            + "scaling_factor \(scalingFactor): use preview decoded"
    }
}

/// Which decoder turns x̂0 into pixels inside guidance: the inner iterations, the WHICH
/// read-out and the decoded preview. The final image always comes from the full VAE.
public enum GuidanceDecoder: String, Codable, Sendable, CaseIterable {
    case vae
    /// diffusers' AutoencoderTiny (TAESD): a fraction of the full VAE's cost.
    case tiny
}

/// Every MUSE hyperparameter, with the defaults used when a job leaves one out.
/// Step positions are fractions of the part of the schedule a job denoises (rounded to a
/// step index; `GuidanceWindow`): all of it for generation, the last `strength` of it for an
/// edit, so the same settings work for 20 or 50 steps and for any strength. The defaults are meant for full SD 1.5 (DDIM 50,
/// w 7.5); the tiny random-weight models cannot validate them (see MUSE.swift).
///
/// - K = 3, Adam lr 0.002: the default window (start between 10 % and 50 %, stop at 80 %)
///   guides 15–35 of 50 steps, i.e. 45–105 Adam steps. Adam moves each element by up to ≈ lr
///   per step, so the token's drift grows with lr × steps. Measured ‖v − v₀‖ / ‖v₀‖ after a
///   default 50-step run on the tiny models (105 Adam steps; 2 emotions × 2 seeds; the trace
///   records it per step): lr 0.01 → 9.6–11.7, 0.003 → 4.8–5.5, 0.002 → 4.1–4.3,
///   0.001 → 2.5–2.8. We fixed the default at 0.002 (was 0.01): the token stays within a
///   few of its own norms of the word it started from, while on the tiny models p(target)
///   keeps most of lr 0.01's gain (0.078 vs 0.092, 0.062 vs 0.072 for the seeds with mass).
///   Each iteration costs a UNet + decoder forward and backward, so K stays small. Since
///   7 December an edit's drift is bounded (`editTokenDriftBound`): ‖v − v₀‖ ≤ 0.7·‖v₀‖.
/// - λ_inh = 0.5, λ_sim = 0.25 per similar emotion: the target term leads; the inherent
///   emotion (one term) weighs more than each of the (up to three) similar ones.
/// - δ = 0.005 on m = 2 consecutive steps, no start before 10 % of the schedule, at the
///   latest at 50 %: CLIP cosine similarities change by a few hundredths per step while
///   the layout forms and by thousandths once it is fixed; the latest start guarantees a
///   guided window when s_t never settles.
/// - stop at 80 %: the last steps refine detail; guided steps cost ~10× a plain one.
/// - universal guidance: scale 20, k = 3 self-recurrence, every step guided (the paper's
///   forward guidance; tune the scale for a real classifier).
///
/// Every setting is described once, in `fields`: its snake_case name (the same in specs,
/// jobs, checkpoints and manifests), its kind and range. Coding and validation read that
/// table, so adding a setting is a property plus one entry.
public struct MUSESettings: Equatable, Sendable {
    // HOW
    /// K: Adam iterations on the token at each guided step.
    public var innerIterations = 3
    public var learningRate: Float = 0.002
    public var adamBeta1: Float = 0.9
    public var adamBeta2: Float = 0.999
    public var adamEpsilon: Float = 1e-8
    /// ρ: after each Adam step v is projected back into ‖v − v₀‖ ≤ ρ·‖v₀‖ (0: no bound), for
    /// generation (`tokenDriftBound`) and for edits (`editTokenDriftBound`): an edit must keep
    /// its source, a generation only its caption. Chosen on the miniworld tuning set
    /// (manifests/miniworld-heldout/tuning; docs/MINIWORLD.md has the fronts). Edits (8 images ×
    /// 8 emotions, strength 0.75, negative-prompt inversion): unbounded, MUSE raised the
    /// evaluator's p(target) by +0.22 over the unoptimised token at 5.2 dB below the
    /// reconstruction's PSNR; ρ = 0.7, the largest bound within 3 dB of it there, keeps +0.14 at
    /// 3.0 dB below (0.6: +0.10 at 2.5 dB; 0.75: +0.15 at 3.2 dB). Once the token reaches its
    /// bound, lr, K, λ and the window move neither number (docs/MINIWORLD.md). Generation (8 captions × 8 emotions, seed 1): unbounded, evaluator
    /// Emo-A 0.266 against 0.109 unoptimised at a CLIP score 30 % below the unoptimised token's
    /// (32.1 vs 45.9); ρ = 1.0 keeps 0.203 at 13 % below (40.0); 2.0: 0.266 at 28 % below;
    /// 0.6: no effect (0.125).
    public var tokenDriftBound: Float = 1.0
    public var editTokenDriftBound: Float = 0.7

    // WHICH
    public var lambdaInherent: Float = 0.5
    /// Weight of each similar emotion's term.
    public var lambdaSimilar: Float = 0.25
    /// S: the emotions L_sim pushes down, per target.
    public var similarEmotions = SimilarEmotions.samePolarity

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
    public var preview = PreviewKind.decoded
    public var guidanceDecoder = GuidanceDecoder.vae

    // universal-guidance baseline (Bansal et al. 2023, forward guidance with self-recurrence)
    /// s in ε̂ = ε + s·√(1−ᾱ_t)·∇_{z_t} ℓ, ℓ = −log p(target), the gradient taken through the
    /// UNet, the x̂0 formula and the decoder.
    public var universalScale: Float = 20
    /// k: each guided step is taken k times, re-noising z_{t−1} back to z_t between takes.
    public var universalRecurrence = 3
    /// UG's own window: it guides from this fraction of the denoised schedule ...
    public var universalStartFraction: Float = 0
    /// ... to this one (exclusive); the paper guides every step.
    public var universalStopFraction: Float = 1

    // traces
    /// Also decode and classify every step's x̂0 (costs a decode per step; off for full-size models).
    public var classifyEveryStep = false

    public init() {}

    /// Schedule index of a fraction of `steps`.
    public static func stepIndex(_ fraction: Float, steps: Int) -> Int {
        min(steps, max(0, Int((Float(steps) * fraction).rounded())))
    }

    /// Checks every field's range and the relations between fields.
    public func validate() throws {
        for field in Self.fields { try field.check(field.get(self)) }
        try validateRelations()
    }

    /// The checks that involve more than one field.
    public func validateRelations() throws {
        guard minStartFraction <= latestStartFraction else {
            throw SettingsError(
                key: "min_start_fraction",
                "\(minStartFraction) exceeds latest_start_fraction \(latestStartFraction)")
        }
        guard universalStartFraction < universalStopFraction else {
            throw SettingsError(
                key: "universal_start_fraction",
                "\(universalStartFraction) is not before universal_stop_fraction \(universalStopFraction)")
        }
    }

    /// The setting names specs and JSON use.
    public static var settingNames: [String] { fields.map(\.name) }

    public static func field(named name: String) -> SettingField<MUSESettings>? {
        fields.first { $0.name == name }
    }

    public static let fields: [SettingField<MUSESettings>] = [
        .int("inner_iterations", \.innerIterations, 1...1000),
        .float("learning_rate", \.learningRate, .positive(max: 10)),
        .float("adam_beta1", \.adamBeta1, .unitOpen),
        .float("adam_beta2", \.adamBeta2, .unitOpen),
        .float("adam_epsilon", \.adamEpsilon, .positive(max: 1)),
        .float("token_drift_bound", \.tokenDriftBound, .nonNegative(max: 1000)),
        .float("edit_token_drift_bound", \.editTokenDriftBound, .nonNegative(max: 1000)),
        .float("lambda_inherent", \.lambdaInherent, .nonNegative(max: 1000)),
        .float("lambda_similar", \.lambdaSimilar, .nonNegative(max: 1000)),
        .emotionLists("similar_emotions", \.similarEmotions),
        .float("settle_delta", \.settleDelta, .positive(max: 2)),
        .int("settle_steps", \.settleSteps, 1...1000),
        .float("min_start_fraction", \.minStartFraction, .fraction),
        .float("latest_start_fraction", \.latestStartFraction, .fraction),
        .float("stop_fraction", \.stopFraction, .fraction),
        .float("fixed_start_fraction", \.fixedStartFraction, .fraction),
        .choice("preview", \.preview),
        .choice("guidance_decoder", \.guidanceDecoder),
        .float("universal_scale", \.universalScale, .nonNegative(max: 10_000)),
        .int("universal_recurrence", \.universalRecurrence, 1...100),
        .float("universal_start_fraction", \.universalStartFraction, .fraction),
        .float("universal_stop_fraction", \.universalStopFraction, .fraction),
        .bool("classify_every_step", \.classifyEveryStep),
    ]
}

extension MUSESettings: Codable {
    /// Missing keys take the defaults (job specs name only what they change); unknown keys
    /// are errors, never silently ignored; every value is range-checked.
    public init(from decoder: Decoder) throws {
        self = try SettingField.decode(Self.fields, into: MUSESettings(), from: decoder)
        try validateRelations()
    }

    public func encode(to encoder: Encoder) throws {
        try SettingField.encode(Self.fields, of: self, to: encoder)
    }
}

public struct SettingsError: Error, CustomStringConvertible, LocalizedError {
    /// The setting's snake_case name, when one setting is at fault.
    public let key: String?
    public let message: String
    public init(key: String? = nil, _ message: String) {
        self.key = key
        self.message = message
    }
    public var description: String { key.map { "\($0): \(message)" } ?? message }
    public var errorDescription: String? { description }
}
