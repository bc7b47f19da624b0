import DiffusersLayout
import Foundation
import Tensor

/// A step count the DDIM schedule cannot run.
public struct DDIMError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// The fields of diffusers' scheduler_config.json that DDIM uses. Defaults are diffusers'
/// DDIMScheduler defaults (not SD 1.5's: use `stableDiffusion` or read the model's config).
public struct DDIMConfig: Equatable, Sendable {
    public enum BetaSchedule: String, Sendable {
        case linear
        case scaledLinear = "scaled_linear"
        case squaredCosCapV2 = "squaredcos_cap_v2"
    }
    public typealias Spacing = TimestepSpacing
    public enum Prediction: String, Sendable {
        case epsilon
        case vPrediction = "v_prediction"
        case sample
    }

    public var numTrainTimesteps = 1000
    public var betaStart = 0.0001
    public var betaEnd = 0.02
    public var betaSchedule = BetaSchedule.linear
    public var trainedBetas: [Float]? = nil
    public var setAlphaToOne = true
    public var stepsOffset = 0
    public var predictionType = Prediction.epsilon
    public var timestepSpacing = Spacing.leading
    public var clipSample = true
    public var clipSampleRange: Float = 1
    /// Rescale the betas so ᾱ at the last training step is exactly 0 (Lin et al. 2024, "Common
    /// diffusion noise schedules and sample steps are flawed"): the model starts from pure noise.
    public var rescaleBetasZeroSnr = false

    public init() {}

    /// runwayml/stable-diffusion-v1-5's scheduler/scheduler_config.json.
    public static var stableDiffusion: DDIMConfig {
        var c = DDIMConfig()
        c.betaStart = 0.00085
        c.betaEnd = 0.012
        c.betaSchedule = .scaledLinear
        c.setAlphaToOne = false
        c.stepsOffset = 1
        c.clipSample = false
        return c
    }

    /// Reads a diffusers scheduler_config.json; options this port cannot honour and values
    /// out of range are errors naming the key.
    public init(path: String) throws {
        try self.init(ModelConfig(path: path), defaultSpacing: .leading)
    }

    /// Training steps a config may have: real ones have 1000; fewer than 100 leave too few
    /// timesteps for a usual step count, more than 100,000 are absurd.
    public static let trainTimestepRange = 100...100_000
    /// The range betas (configured or trained) must lie in: below 1, so every ᾱ_t is positive.
    public static let betaRange = 0...0.999

    /// The schedule keys of `c`, as DDIMScheduler reads them (and DPMSolverMultistepScheduler,
    /// with its own default spacing): absent keys take diffusers' defaults, every value is
    /// type- and range-checked.
    init(_ c: ModelConfig, defaultSpacing: Spacing) throws {
        func choice<T: RawRepresentable>(_ key: String, _ fallback: T) throws -> T where T.RawValue == String {
            let raw = try c.string(key, default: fallback.rawValue)
            guard let v = T(rawValue: raw) else { throw c.fail(key, "= '\(raw)' is not supported") }
            return v
        }
        self.init()
        numTrainTimesteps = try c.int("num_train_timesteps", default: 1000, in: Self.trainTimestepRange)
        betaStart = try c.double("beta_start", default: 0.0001, in: Self.betaRange)
        betaEnd = try c.double("beta_end", default: 0.02, in: Self.betaRange)
        betaSchedule = try choice("beta_schedule", BetaSchedule.linear)
        if c.has("trained_betas") {
            let range = Float(Self.betaRange.lowerBound)...Float(Self.betaRange.upperBound)
            trainedBetas = try c.floats("trained_betas", count: numTrainTimesteps...numTrainTimesteps, in: range)
        }
        setAlphaToOne = try c.bool("set_alpha_to_one", default: true)
        // Timestep `steps_offset` is the first one "leading" spacing gives: it must exist.
        stepsOffset = try c.int("steps_offset", default: 0, in: 0...(numTrainTimesteps - 1))
        predictionType = try choice("prediction_type", Prediction.epsilon)
        timestepSpacing = try choice("timestep_spacing", defaultSpacing)
        clipSample = try c.bool("clip_sample", default: true)
        clipSampleRange = try c.float("clip_sample_range", default: 1, "a finite number > 0") { $0.isFinite && $0 > 0 }
        if try c.bool("thresholding", default: false) { throw c.fail("thresholding", "= true is not supported") }
        rescaleBetasZeroSnr = try c.bool("rescale_betas_zero_snr", default: false)
        if let (key, why) = zeroSNRProblem() { throw c.fail(key, why) }
    }

    /// Why this schedule cannot be rescaled to zero terminal SNR, when asked to: epsilon
    /// prediction cannot give x̂0 = (z − √(1−ᾱ)·ε)/√ᾱ at ᾱ = 0, and a last beta of 0 leaves
    /// ᾱ flat at the end, where the rescaling divides 0 by 0.
    func zeroSNRProblem() -> (key: String, why: String)? {
        guard rescaleBetasZeroSnr else { return nil }
        if predictionType == .epsilon {
            return (
                "rescale_betas_zero_snr",
                "= true needs prediction_type v_prediction or sample (epsilon gives no x̂0 where ᾱ = 0)"
            )
        }
        if (trainedBetas ?? DDIMScheduler.betas(self)).last ?? 0 <= 0 {
            return ("rescale_betas_zero_snr", "= true needs a last beta above 0 (ᾱ must still fall at the end)")
        }
        return nil
    }

    /// The first value out of range in a config built in code, as (key, problem); nil when
    /// all are in the ranges `init(path:)` enforces.
    public func problem() -> (key: String, why: String)? {
        let t = numTrainTimesteps
        if !Self.trainTimestepRange.contains(t) {
            return ("num_train_timesteps", "= \(t) is not in \(Self.trainTimestepRange)")
        }
        for (key, value) in [("beta_start", betaStart), ("beta_end", betaEnd)] where !Self.betaRange.contains(value) {
            return (key, "= \(value) is not in \(ModelConfig.text(Self.betaRange))")
        }
        if let betas = trainedBetas {
            guard betas.count == t else { return ("trained_betas", "has \(betas.count) values, expected \(t)") }
            if let bad = betas.first(where: { !Self.betaRange.contains(Double($0)) }) {
                return ("trained_betas", "holds \(bad), not in \(ModelConfig.text(Self.betaRange))")
            }
        }
        if !(0..<t).contains(stepsOffset) { return ("steps_offset", "= \(stepsOffset) is not in 0...\(t - 1)") }
        if !(clipSampleRange.isFinite && clipSampleRange > 0) {
            return ("clip_sample_range", "= \(clipSampleRange) is not a finite number > 0")
        }
        return zeroSNRProblem()
    }
}

/// diffusers' DDIMScheduler with eta = 0 (deterministic), plus the DDIMInverseScheduler step.
/// ᾱ is computed as torch does (float32 linspace with FMA, cumulative product accumulated in
/// double), so `alphaCumprod` equals diffusers' `alphas_cumprod` bit for bit.
public struct DDIMScheduler: Sendable {
    public let config: DDIMConfig
    /// ᾱ_t for t in 0..<numTrainTimesteps.
    public let alphasCumprod: [Float]
    /// ᾱ used before the first training step (prev timestep < 0): 1 or ᾱ_0 per set_alpha_to_one.
    /// DDIMInverseScheduler's initial_alpha_cumprod is the same value.
    public let finalAlphaCumprod: Float

    public init(configPath: String) throws { self.init(config: try DDIMConfig(path: configPath)) }

    public init(config: DDIMConfig) {
        self.config = config
        let configured = config.trainedBetas ?? Self.betas(config)
        let betas = config.rescaleBetasZeroSnr ? Self.zeroTerminalSNR(configured) : configured
        alphasCumprod = Self.cumulativeAlphas(betas)
        finalAlphaCumprod = config.setAlphaToOne ? 1 : alphasCumprod[0]
    }

    /// ᾱ_t = ∏(1 − β) as torch computes it: alphas = 1 − betas in float32, the cumulative
    /// product accumulated in double.
    static func cumulativeAlphas(_ betas: [Float]) -> [Float] {
        var product = 1.0
        return betas.map { b in
            product *= Double(1 - b)
            return Float(product)
        }
    }

    static func betas(_ c: DDIMConfig) -> [Float] {
        let n = c.numTrainTimesteps
        switch c.betaSchedule {
        case .linear: return torchLinspace(Float(c.betaStart), Float(c.betaEnd), n)
        case .scaledLinear:
            return torchLinspace(Float(c.betaStart.squareRoot()), Float(c.betaEnd.squareRoot()), n).map { $0 * $0 }
        case .squaredCosCapV2:
            func alphaBar(_ t: Double) -> Double {
                let c = cos((t + 0.008) / 1.008 * Double.pi / 2)
                return c * c
            }
            return (0..<n).map { i in
                Float(min(1 - alphaBar(Double(i + 1) / Double(n)) / alphaBar(Double(i) / Double(n)), 0.999))
            }
        }
    }

    /// diffusers' rescale_zero_terminal_snr in float32: √ᾱ shifted so its last value is 0 and
    /// scaled so its first is unchanged, then turned back into betas (the last one is 1).
    /// The schedule must have a last beta above 0 (`DDIMConfig.zeroSNRProblem`).
    static func zeroTerminalSNR(_ betas: [Float]) -> [Float] {
        let roots = cumulativeAlphas(betas).map { $0.squareRoot() }
        let first = roots[0]
        let last = roots[roots.count - 1]
        let scale = first / (first - last)
        let bars = roots.map { r -> Float in
            let shifted = (r - last) * scale
            return shifted * shifted
        }
        return bars.indices.map { i in 1 - (i == 0 ? bars[0] : bars[i] / bars[i - 1]) }
    }

    /// torch.linspace(start, end, n, dtype=float32) on CPU: fused multiply-adds from both ends.
    static func torchLinspace(_ start: Float, _ end: Float, _ n: Int) -> [Float] {
        guard n > 1 else { return n == 1 ? [start] : [] }
        let step = (end - start) / Float(n - 1)
        return (0..<n).map { i in
            i < n / 2 ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(n - 1 - i))
        }
    }

    /// Throws unless `steps` is in 1...num_train_timesteps and every timestep it gives is a
    /// training step ("leading" spacing adds steps_offset, which can push the first one past
    /// the end: SD 1.5's offset 1 with 1000 steps gives timestep 1000). `timesteps`, `step`
    /// and `invertStep` stop on a precondition for counts this refuses.
    public func validate(steps: Int) throws {
        let trainSteps = config.numTrainTimesteps
        guard (1...trainSteps).contains(steps) else {
            throw DDIMError("DDIM steps must be in 1...\(trainSteps), got \(steps)")
        }
        if let bad = timesteps(steps: steps).first(where: { !(0..<trainSteps).contains($0) }) {
            throw DDIMError(
                "DDIM: \(steps) steps with '\(config.timestepSpacing.rawValue)' spacing and steps_offset "
                    + "\(config.stepsOffset) give timestep \(bad), outside 0...\(trainSteps - 1); use fewer steps")
        }
    }

    /// The inference timesteps, descending, as `set_timesteps(steps)` makes them.
    public func timesteps(steps: Int) -> [Int] {
        precondition(
            steps > 0 && steps <= config.numTrainTimesteps,
            "DDIM steps must be in 1...\(config.numTrainTimesteps), got \(steps)")
        return config.timestepSpacing.timesteps(
            steps: steps, trainSteps: config.numTrainTimesteps, stepsOffset: config.stepsOffset)
    }

    /// DDIMInverseScheduler's timesteps: the same set, ascending.
    public func inversionTimesteps(steps: Int) -> [Int] { timesteps(steps: steps).reversed() }

    /// ᾱ_t; for t < 0 (the step after the last one) `finalAlphaCumprod`.
    public func alphaCumprod(_ t: Int) -> Float {
        precondition(t < alphasCumprod.count, "timestep \(t) beyond the \(alphasCumprod.count) training steps")
        return t >= 0 ? alphasCumprod[t] : finalAlphaCumprod
    }

    /// The timestep a DDIM step from `t` lands on: t − T/steps (may be negative).
    public func previousTimestep(_ t: Int, steps: Int) -> Int { t - config.numTrainTimesteps / steps }

    /// x̂0 from the model output at `timestep` (eps, v or x0 per prediction_type; no clipping).
    /// Differentiable in `eps` and `sample`. For epsilon: (z − √(1−ᾱ)·eps)/√ᾱ.
    public func predictedOriginal(eps: Tensor, timestep: Int, sample: Tensor) -> Tensor {
        predictions(output: eps, alpha: alphaCumprod(timestep), sample: sample).x0
    }

    /// How much the model output moves per unit of ε at `timestep` when x̂0 and ε̂ move together
    /// as ε-guidance moves them (universal guidance shifts ε̂ by s·√(1−ᾱ)·∇ℓ): 1 for epsilon,
    /// 1/√ᾱ for v (ε = √ᾱ·v + √(1−ᾱ)·z), −√(1−ᾱ)/√ᾱ for sample (x̂0 = (z − √(1−ᾱ)·ε)/√ᾱ).
    /// Infinite for v and sample where ᾱ = 0 (a zero-terminal-SNR schedule's last step): there
    /// z is pure noise and no shift of ε moves x̂0.
    public func outputPerEpsilon(timestep: Int) -> Float {
        let alpha = alphaCumprod(timestep)
        switch config.predictionType {
        case .epsilon: return 1
        case .vPrediction: return 1 / alpha.squareRoot()
        case .sample: return -(1 - alpha).squareRoot() / alpha.squareRoot()
        }
    }

    /// One DDIM step (eta 0) from `timestep` to `previousTimestep(timestep, steps)`:
    /// prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev)·ε̂, in float32 exactly as diffusers orders it.
    public func step(eps: Tensor, timestep: Int, sample: Tensor, steps: Int) -> (
        prevSample: Tensor, predictedOriginal: Tensor
    ) {
        let p = predictions(output: eps, alpha: alphaCumprod(timestep), sample: sample)
        var x0 = p.x0
        let epsHat = p.eps
        if config.clipSample { x0 = x0.clamp(-config.clipSampleRange...config.clipSampleRange) }
        let alphaPrev = alphaCumprod(previousTimestep(timestep, steps: steps))
        return (x0 * alphaPrev.squareRoot() + epsHat * (1 - alphaPrev).squareRoot(), x0)
    }

    /// One DDIM inversion step (DDIMInverseScheduler.step): from the latent at `fromTimestep`
    /// to the noisier one at `toTimestep`, with the model evaluated at `toTimestep`:
    ///   x̂0 = (z − √(1−ᾱ_from)·eps)/√ᾱ_from,  z_to = √ᾱ_to·x̂0 + √(1−ᾱ_to)·eps.
    /// For inversionTimesteps t: from = previousTimestep(t, steps) (ᾱ of a negative one is
    /// `finalAlphaCumprod`), to = t — what tools/reference/make_fixtures.py stores.
    /// It undoes `step` exactly when eps is the same.
    public func invertStep(eps: Tensor, fromTimestep: Int, toTimestep: Int, sample: Tensor) -> Tensor {
        let p = predictions(output: eps, alpha: alphaCumprod(fromTimestep), sample: sample)
        var x0 = p.x0
        let epsHat = p.eps
        if config.clipSample { x0 = x0.clamp(-config.clipSampleRange...config.clipSampleRange) }
        let alphaTo = alphaCumprod(toTimestep)
        return x0 * alphaTo.squareRoot() + epsHat * (1 - alphaTo).squareRoot()
    }

    /// (x̂0, ε̂) from the model output, per prediction_type.
    func predictions(output: Tensor, alpha: Float, sample: Tensor) -> (x0: Tensor, eps: Tensor) {
        precondition(output.shape == sample.shape, "DDIM: model output \(output.shape) vs sample \(sample.shape)")
        let beta = 1 - alpha
        switch config.predictionType {
        case .epsilon:
            // Divide (not multiply by the reciprocal) to round as torch does.
            return ((sample - output * beta.squareRoot()) / Tensor(alpha.squareRoot()), output)
        case .vPrediction:
            return (
                sample * alpha.squareRoot() - output * beta.squareRoot(),
                output * alpha.squareRoot() + sample * beta.squareRoot()
            )
        case .sample:
            return (output, (sample - output * alpha.squareRoot()) / Tensor(beta.squareRoot()))
        }
    }
}
