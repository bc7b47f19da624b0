import Foundation
import Tensor

/// An option or step count the DPM-Solver++ port cannot honour.
public struct DPMSolverError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// The scheduler_config.json fields diffusers' DPMSolverMultistepScheduler uses, for the
/// variants this port implements: algorithm_type "dpmsolver++" (deterministic), solver_order
/// 1 or 2, solver_type midpoint or heun, sigmas from the training schedule (no Karras,
/// exponential, beta, Lu or flow sigmas), final_sigmas_type zero or sigma_min.
/// Defaults are diffusers' DPMSolverMultistepScheduler defaults: DPM-Solver++(2M).
public struct DPMSolverConfig: Equatable, Sendable {
    public enum SolverType: String, Sendable { case midpoint, heun }
    public enum FinalSigmas: String, Sendable {
        case zero
        case sigmaMin = "sigma_min"
    }

    /// The noise schedule: betas, num_train_timesteps, steps_offset, prediction_type,
    /// timestep_spacing. DDIM-only fields (set_alpha_to_one, clip_sample) are not used.
    public var schedule: DDIMConfig
    public var solverOrder = 2
    public var solverType = SolverType.midpoint
    public var lowerOrderFinal = true
    public var eulerAtFinal = false
    public var finalSigmasType = FinalSigmas.zero
    /// Timesteps whose λ(t) = log(α_t/σ_t) is below this are cut from the schedule's top.
    public var lambdaMinClipped = -Double.infinity

    /// DPM-Solver++(2M) on `schedule`, every field of which counts as set explicitly (from a
    /// file, `init(path:)` applies DPMSolverMultistepScheduler's defaults to absent keys instead).
    public init(schedule: DDIMConfig) { self.schedule = schedule }

    /// diffusers' `DPMSolverMultistepScheduler()`: linear betas 1e-4…0.02, "linspace" spacing.
    public init() {
        var s = DDIMConfig()
        s.timestepSpacing = .linspace
        self.init(schedule: s)
    }

    /// DPM-Solver++(2M) on `DDIMConfig.stableDiffusion` (scaled_linear 0.00085…0.012, "leading",
    /// offset 1): what models/tiny-sd's config gives. SD 1.5's own file has no timestep_spacing
    /// and gives "linspace" through `init(path:)`, as in diffusers.
    public static var stableDiffusion: DPMSolverConfig { DPMSolverConfig(schedule: .stableDiffusion) }

    /// Reads a diffusers scheduler_config.json written for any scheduler class, as
    /// `DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)` (or from_pretrained)
    /// does: keys the file lacks take DPMSolverMultistepScheduler's defaults, whatever class
    /// wrote it (diffusers' from_config drops the keys the source scheduler filled with its own
    /// defaults). So a file without timestep_spacing — SD 1.5's PNDMScheduler config — gives
    /// "linspace" here, while DDIMConfig(path:) gives DDIM's "leading". Accepts the
    /// non-standard `-Infinity`/`NaN` that diffusers' save_config writes (ModelConfig reads
    /// them). Options this port cannot honour and values out of range are errors naming the key.
    public init(path: String) throws {
        try self.init(ModelConfig(path: path))
    }

    /// The same from an already parsed config dictionary (`source` names it in errors).
    public init(values: [String: Any], source: String = "scheduler config") throws {
        try self.init(ModelConfig(path: source, values: values))
    }

    init(_ c: ModelConfig) throws {
        func choice<T: RawRepresentable>(_ key: String, _ fallback: T, aliases: [String: T] = [:]) throws -> T
        where T.RawValue == String {
            let raw = try c.string(key, default: fallback.rawValue)
            if let v = T(rawValue: raw) ?? aliases[raw] { return v }
            throw c.fail(key, "= '\(raw)' is not supported")
        }

        // The noise schedule: the keys DDIMConfig(path:) reads, with DPMSolverMultistepScheduler's defaults.
        var result = DPMSolverConfig(schedule: try DDIMConfig(c, defaultSpacing: .linspace))
        // diffusers itself maps "deis" to dpmsolver++, and logrho/bh1/bh2 (UniPC/DEIS names) to midpoint.
        let algorithm = try c.string("algorithm_type", default: "dpmsolver++")
        guard algorithm == "dpmsolver++" || algorithm == "deis" else {
            throw c.fail("algorithm_type", "= '\(algorithm)' is not supported (only 'dpmsolver++')")
        }
        result.solverOrder = try c.int("solver_order", default: 2, in: 1...2)
        result.solverType = try choice(
            "solver_type", SolverType.midpoint,
            aliases: ["logrho": .midpoint, "bh1": .midpoint, "bh2": .midpoint])
        result.lowerOrderFinal = try c.bool("lower_order_final", default: true)
        result.eulerAtFinal = try c.bool("euler_at_final", default: false)
        result.finalSigmasType = try choice("final_sigmas_type", FinalSigmas.zero)
        result.lambdaMinClipped = try c.double("lambda_min_clipped", default: -.infinity, "a number or -Infinity") {
            !$0.isNaN
        }
        for key in [
            "thresholding", "use_karras_sigmas", "use_exponential_sigmas",
            "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting",
        ]
        where try c.bool(key, default: false) {
            throw c.fail(key, "= true is not supported")
        }
        if c.has("variance_type") {
            throw c.fail(
                "variance_type", "= \(ModelConfig.describe(c.values["variance_type"]!)) is not supported (only null)")
        }
        try result.check(source: c.path)
        self = result
    }

    /// Values a config built in code can still get wrong.
    func check(source: String) throws {
        func fail(_ key: String, _ why: String) -> DPMSolverError { DPMSolverError("\(source): '\(key)' \(why)") }
        guard (1...2).contains(solverOrder) else {
            throw fail("solver_order", "= \(solverOrder) is not supported (1 or 2)")
        }
        if let (key, why) = schedule.problem() { throw fail(key, why) }
        guard !lambdaMinClipped.isNaN else { throw fail("lambda_min_clipped", "is NaN") }
    }
}

/// What DPM-Solver++(2M) carries from one step to the next: the previous step's data
/// prediction x̂0 (diffusers' `model_outputs[-1]`) and where it was made. A plain value:
/// keep it with the latent to checkpoint and resume a run mid-schedule (Codable; the
/// floats round-trip exactly through JSONEncoder/JSONDecoder).
public struct DPMSolverHistory: Codable, Equatable, Sendable {
    /// Index into `timesteps(steps:)` of the step that produced `x0`.
    public var index: Int
    /// The step count of the schedule it belongs to.
    public var steps: Int
    public var shape: [Int]
    public var x0: [Float]

    public init(index: Int, steps: Int, shape: [Int], x0: [Float]) {
        precondition(shape.reduce(1, *) == x0.count, "DPMSolverHistory: shape \(shape) vs \(x0.count) values")
        self.index = index
        self.steps = steps
        self.shape = shape
        self.x0 = x0
    }

    public var tensor: Tensor { Tensor(shape: shape, data: x0) }
}

/// diffusers' DPMSolverMultistepScheduler as DPM-Solver++ (algorithm_type "dpmsolver++"),
/// by default DPM-Solver++(2M): order 2 (midpoint), first order on the first step and on the
/// last (lower_order_final / final_sigmas_type "zero"). Stateless: the multistep memory is
/// the `DPMSolverHistory` value `step` takes and returns.
///
/// Numerics follow diffusers in float32: σ_i = √((1−ᾱ_t)/ᾱ_t) per training step (ᾱ bit-exact
/// with torch, see DDIMScheduler), α = 1/√(σ²+1), σ_t = σ·α, λ = log α − log σ_t, and the update
/// with the same scalar and tensor operations in the same order. torch's CPU float sqrt, log
/// and exp (MKL/SLEEF) are not correctly rounded, Swift's are, so scalars can differ by an ulp:
/// results agree to a few ulps, not bit for bit.
public struct DPMSolverMultistepScheduler: Sendable {
    public let config: DPMSolverConfig
    /// ᾱ_t for t in 0..<numTrainTimesteps (the same as DDIMScheduler's).
    public let alphasCumprod: [Float]
    /// σ_t = √((1−ᾱ_t)/ᾱ_t) per training step: what the inference sigmas are picked from.
    public let trainSigmas: [Float]
    /// Top of the schedule after lambda_min_clipped: numTrainTimesteps unless clipped.
    public let lastTimestep: Int
    let ddim: DDIMScheduler

    public init(configPath: String) throws { try self.init(config: DPMSolverConfig(path: configPath)) }

    /// DPM-Solver++(2M) on a DDIM config's schedule (from_config of a DDIM scheduler).
    public init(ddim: DDIMConfig) throws { try self.init(config: DPMSolverConfig(schedule: ddim)) }

    public init(config: DPMSolverConfig) throws {
        try config.check(source: "DPMSolverConfig")
        self.config = config
        ddim = DDIMScheduler(config: config.schedule)
        var cumprod = ddim.alphasCumprod
        // as diffusers: a zero-terminal-SNR schedule's last ᾱ becomes 2⁻²⁴, so σ and λ stay finite
        if config.schedule.rescaleBetasZeroSnr { cumprod[cumprod.count - 1] = 0x1p-24 }
        alphasCumprod = cumprod
        trainSigmas = alphasCumprod.map { a in ((1 - a) / a).squareRoot() }
        let trainSteps = config.schedule.numTrainTimesteps
        if config.lambdaMinClipped == -.infinity {
            lastTimestep = trainSteps
        } else {
            // torch.searchsorted(torch.flip(lambda_t, [0]), lambda_min_clipped) in float32.
            let flipped = alphasCumprod.reversed().map { a -> Float in
                Foundation.log(a.squareRoot()) - Foundation.log((1 - a).squareRoot())
            }
            let value = Float(config.lambdaMinClipped)
            var lo = 0
            var hi = flipped.count
            while lo < hi {
                let mid = lo + (hi - lo) / 2
                if !(flipped[mid] >= value) { lo = mid + 1 } else { hi = mid }
            }
            lastTimestep = trainSteps - lo
        }
    }

    // MARK: schedule

    /// Throws unless `steps` is in 1...num_train_timesteps and gives a schedule diffusers can
    /// run (distinct timesteps: a repeated one makes its 2nd-order step divide 0 by 0).
    public func validate(steps: Int) throws {
        let trainSteps = config.schedule.numTrainTimesteps
        guard (1...trainSteps).contains(steps) else {
            throw DPMSolverError("DPM-Solver steps must be in 1...\(trainSteps), got \(steps)")
        }
        let ts = timesteps(steps: steps)
        guard !ts.isEmpty else {
            throw DPMSolverError(
                "DPM-Solver: no timesteps for \(steps) steps (lambda_min_clipped leaves \(lastTimestep))")
        }
        for i in 1..<ts.count where ts[i] >= ts[i - 1] {
            throw DPMSolverError(
                "DPM-Solver: \(steps) steps with '\(config.schedule.timestepSpacing.rawValue)' spacing repeat timestep \(ts[i]); use fewer steps"
            )
        }
    }

    /// The inference timesteps, descending, as `set_timesteps(steps)` makes them. Usually
    /// `steps` of them; "trailing" can give one more (numpy's arange), ending at −1 — mirrored.
    public func timesteps(steps: Int) -> [Int] {
        let trainSteps = config.schedule.numTrainTimesteps
        let last = lastTimestep
        precondition(steps > 0 && steps <= trainSteps, "DPM-Solver steps must be in 1...\(trainSteps), got \(steps)")
        switch config.schedule.timestepSpacing {
        case .linspace:
            // np.linspace(0, last - 1, steps + 1).round()[::-1][:-1]
            let delta = Double(last - 1) / Double(steps)
            return (1...steps).reversed().map { i in
                i == steps ? last - 1 : Int((Double(i) * delta).rounded(.toNearestOrEven))
            }
        case .leading:
            // (np.arange(0, steps + 1) * (last // (steps + 1))).round()[::-1][:-1] + steps_offset
            let ratio = last / (steps + 1)
            return (1...steps).reversed().map { $0 * ratio + config.schedule.stepsOffset }
        case .trailing:
            // np.arange(last, 0, -trainSteps / steps).round() - 1; numpy fills start + i·(x1 − start).
            let ratio = Double(trainSteps) / Double(steps)
            let start = Double(last)
            let count = max(0, Int((-start / -ratio).rounded(.up)))
            let delta = (start + -ratio) - start
            return (0..<count).map { i in
                let v = i == 0 ? start : i == 1 ? start + -ratio : start + Double(i) * delta
                return Int(v.rounded(.toNearestOrEven)) - 1
            }
        }
    }

    /// The sigmas set_timesteps makes: σ at each timestep (np.interp: clamped to the
    /// training range), then the final one (0, or σ at t = 0 for "sigma_min"). timesteps + 1 values.
    public func sigmas(steps: Int) -> [Float] {
        let top = trainSigmas.count - 1
        return timesteps(steps: steps).map { trainSigmas[min(max($0, 0), top)] }
            + [config.finalSigmasType == .zero ? 0 : trainSigmas[0]]
    }

    /// ᾱ_t (DDIMScheduler's; for t < 0 its final ᾱ).
    public func alphaCumprod(_ t: Int) -> Float { ddim.alphaCumprod(t) }

    /// x̂0 from the model output at `timestep`, exactly DDIMScheduler.predictedOriginal (so
    /// MUSE's x̂0 is the same whichever sampler runs). Differentiable. The x̂0 `step` uses
    /// (`dataPrediction`) goes through σ as diffusers does and differs from this by float rounding.
    public func predictedOriginal(eps: Tensor, timestep: Int, sample: Tensor) -> Tensor {
        ddim.predictedOriginal(eps: eps, timestep: timestep, sample: sample)
    }

    // MARK: solver

    /// (α_t, σ_t) for a sigma: diffusers' _sigma_to_alpha_sigma_t.
    @inline(__always)
    static func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    @inline(__always)
    static func lambda(_ a: (alpha: Float, sigma: Float)) -> Float { Foundation.log(a.alpha) - Foundation.log(a.sigma) }

    /// diffusers' convert_model_output for dpmsolver++: the data prediction x̂0 at schedule
    /// position `index` (epsilon: (x − σ_t·ε)/α_t; v: α_t·x − σ_t·v; sample: the output).
    public func dataPrediction(modelOutput: Tensor, index: Int, sample: Tensor, steps: Int) -> Tensor {
        dataPrediction(modelOutput, sample, sigma: sigmas(steps: steps)[index])
    }

    func dataPrediction(_ output: Tensor, _ sample: Tensor, sigma: Float) -> Tensor {
        precondition(output.shape == sample.shape, "DPM-Solver: model output \(output.shape) vs sample \(sample.shape)")
        let (alpha, sigmaT) = Self.alphaSigma(sigma)
        switch config.schedule.predictionType {
        case .epsilon: return (sample - output * sigmaT) / Tensor(alpha)  // divide, as torch does
        case .vPrediction: return sample * alpha - output * sigmaT
        case .sample: return output
        }
    }

    /// The order of the update at schedule position `index` (1 or 2): first order without a
    /// history (the first step), on the last step when lower_order_final / euler_at_final /
    /// final_sigmas_type "zero" ask for it, and always for solver_order 1.
    public func order(at index: Int, steps: Int, hasHistory: Bool) -> Int {
        let count = timesteps(steps: steps).count
        let lowerOrderFinal =
            index == count - 1
            && (config.eulerAtFinal || (config.lowerOrderFinal && count < 15) || config.finalSigmasType == .zero)
        return config.solverOrder == 1 || !hasHistory || lowerOrderFinal ? 1 : 2
    }

    /// One DPM-Solver++ step from position `index` of `timesteps(steps:)` (the model was
    /// evaluated at that timestep) to the next sigma. `previous` is the history returned by
    /// the step at `index − 1` (nil on the first step, or when starting mid-schedule: the step
    /// is then first order, as diffusers' first step is). Returns the new sample and the
    /// history for the next step. Validate `steps` first; misuse is a precondition failure.
    public func step(
        modelOutput eps: Tensor, index: Int, sample: Tensor, steps: Int,
        previous: DPMSolverHistory?
    ) -> (prevSample: Tensor, history: DPMSolverHistory) {
        let sig = sigmas(steps: steps)
        precondition(
            index >= 0 && index < sig.count - 1, "DPM-Solver: step index \(index) outside 0..<\(sig.count - 1)")
        if let p = previous {
            precondition(
                p.steps == steps && p.index == index - 1,
                "DPM-Solver: history from step \(p.index) of \(p.steps), expected step \(index - 1) of \(steps)")
            precondition(p.shape == sample.shape, "DPM-Solver: history shape \(p.shape) vs sample \(sample.shape)")
        }
        let x0 = dataPrediction(eps, sample, sigma: sig[index])
        let t = Self.alphaSigma(sig[index + 1])
        let s0 = Self.alphaSigma(sig[index])
        let h = Self.lambda(t) - Self.lambda(s0)
        let phi = t.alpha * (Foundation.exp(-h) - 1)  // α_t·(e^{−h} − 1)
        var prev = sample * (t.sigma / s0.sigma) - x0 * phi
        if order(at: index, steps: steps, hasHistory: previous != nil) == 2, let p = previous {
            let s1 = Self.alphaSigma(sig[index - 1])
            let r0 = (Self.lambda(s0) - Self.lambda(s1)) / h
            let d1 = (x0 - p.tensor) * (1 / r0)
            switch config.solverType {
            case .midpoint: prev = prev - d1 * (0.5 * phi)
            case .heun: prev = prev + d1 * (t.alpha * ((Foundation.exp(-h) - 1) / h + 1))
            }
        }
        return (prev, DPMSolverHistory(index: index, steps: steps, shape: x0.shape, x0: x0.data))
    }
}
