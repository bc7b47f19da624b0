import Diffusion
import Foundation
import Tensor
import Vocabulary

/// The result of a finished synthesis.
public struct SynthesisResult {
    /// [1, 3, H, W] in [-1, 1] (clamped).
    public let image: Tensor
    public let width: Int
    public let height: Int
    /// Interleaved 8-bit RGB, what a PNG of the result holds.
    public let rgb: [UInt8]
    /// The classifier's probabilities on the 8-bit image, EmoSet order.
    public let probabilities: [Float]
    public let trace: SynthesisTrace
}

public struct SynthesisError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { description }
}

/// MUSE generation and editing as a step machine: `start` → `advance`… → `finish`.
/// Each `advance` runs one DDIM step (with its inner iterations) and returns a new state
/// value; the engine keeps no per-job state of its own (only caches of deterministic
/// text encodings), so any saved state can be continued by any engine on the same models.
/// Not thread-safe: one synthesis at a time per engine (Autograd's recording flag is global).
public final class SynthesisEngine {
    public let sd: StableDiffusion
    public let classifier: EmotionClassifier
    let promptScorer: PromptScorer
    /// Measures CLIP score, CLIP-I and Sem-D: the spec's evaluation CLIP, else `promptScorer`.
    let evaluationScorer: PromptScorer
    /// The cheaper decoder `guidance_decoder: tiny` guides with (nil: none loaded).
    public let tinyDecoder: AutoencoderTiny?
    /// An independent classifier that only scores finished images (nil: none).
    public let evaluator: EmotionClassifier?
    /// Native size and the multiple image sides must be of.
    public let sizeRules: ImageSizeRules

    private var conditioningCache: [String: Tensor] = [:]
    /// DPM-Solver++(2M) from the model's scheduler config, made on first use.
    private var dpmSolver: DPMSolverMultistepScheduler?

    /// `timingText`: a CLIP text model with projection, used to embed the prompt for s_t (and
    /// CLIP score); `promptTower` is its vision half, when the classifier's tower is another
    /// model (nil: the classifier's tower is `timingText`'s pair).
    public init(
        sd: StableDiffusion, classifier: EmotionClassifier, timingText: CLIPTextEncoder,
        timingTokenizer: CLIPTokenizer, promptTower: CLIPVisionEncoder? = nil, tinyDecoder: AutoencoderTiny? = nil,
        evaluator: EmotionClassifier? = nil,
        evaluationCLIP: (tower: CLIPVisionEncoder, text: CLIPTextEncoder, tokenizer: CLIPTokenizer)? = nil
    ) throws {
        self.sd = sd
        self.classifier = classifier
        self.evaluator = evaluator
        if let tiny = tinyDecoder {
            guard tiny.latentChannels == sd.unet.inChannels, tiny.downsampleFactor == sd.vae.downsampleFactor else {
                throw SynthesisError(
                    "the tiny decoder takes \(tiny.latentChannels)-channel latents at factor \(tiny.downsampleFactor); "
                        + "this model's are \(sd.unet.inChannels) channels at factor \(sd.vae.downsampleFactor)")
            }
        }
        self.tinyDecoder = tinyDecoder
        promptScorer = try PromptScorer(
            tower: promptTower ?? classifier.tower, text: timingText, tokenizer: timingTokenizer)
        evaluationScorer =
            try evaluationCLIP.map {
                try PromptScorer(tower: $0.tower, text: $0.text, tokenizer: $0.tokenizer, role: "evaluation CLIP")
            } ?? promptScorer
        sizeRules = try ImageSizeRules(modelFolder: sd.folder)
    }

    /// Loads everything from folders: an SD 1.x diffusers folder, a CLIP vision tower
    /// (CLIPVisionModelWithProjection or CLIPModel), a linear head file (nil: zero-shot head
    /// from `textFolder`) and a CLIP text model with projection (CLIPTextModelWithProjection
    /// or CLIPModel) for timing and the zero-shot head, and the vision half of that CLIP pair
    /// when the tower is not it (`promptTower`, with a linear head only); optionally the tiny
    /// decoder and an evaluator classifier.
    public static func load(
        model: String, tower towerFolder: String, head: String?, text textFolder: String,
        promptTower: String? = nil, tinyDecoder: String? = nil, evaluator: EvaluatorFiles? = nil,
        evaluationCLIP: (tower: String, text: String)? = nil
    ) throws -> SynthesisEngine {
        if promptTower != nil && head == nil {
            throw SynthesisError(
                "a prompt tower needs a linear head: the zero-shot head compares the classifier tower with the text model directly"
            )
        }
        let sd = try StableDiffusion(folder: model)
        let tower = try CLIPVisionEncoder(folder: towerFolder)
        let classifier =
            try head.map { try EmotionClassifier(tower: tower, headFile: $0) }
            ?? EmotionClassifier.zeroShot(tower: tower, textFolder: textFolder)
        return try SynthesisEngine(
            sd: sd, classifier: classifier, timingText: try CLIPTextEncoder(folder: textFolder),
            timingTokenizer: try CLIPTokenizer(folder: textFolder),
            promptTower: try promptTower.map { try CLIPVisionEncoder(folder: $0) },
            tinyDecoder: try tinyDecoder.map { try AutoencoderTiny(folder: $0) }, evaluator: try evaluator?.load(),
            evaluationCLIP: try evaluationCLIP.map {
                (
                    tower: try CLIPVisionEncoder(folder: $0.tower), text: try CLIPTextEncoder(folder: $0.text),
                    tokenizer: try CLIPTokenizer(folder: $0.text)
                )
            })
    }

    // MARK: start

    /// Generation (`image` nil): z_T from the seed. Editing (`job.settings.strength` set):
    /// `image` [1, 3, H, W] in [-1, 1] is VAE-encoded and DDIM-inverted with the job's
    /// (source) prompt, guidance 1, fully or to the strength's intermediate step; the job's
    /// `inversion` decides what the denoising uses as its unconditional branch (EditInversion).
    public func start(_ job: SynthesisJob, image: Tensor? = nil) throws -> SynthesisState {
        try job.validate()
        try checkSchedule(job.settings)
        try checkDecoder(job.settings.muse)
        try checkPreview(job.settings.muse)
        let began = DispatchTime.now().uptimeNanoseconds
        var timings = PhaseTimings()
        let latent: Tensor
        var firstStep = 0
        var sourceEmbedding: [Float]?
        var nullText: NullTextState?
        if let strength = job.settings.strength {
            guard let image else { throw SynthesisError("an edit job needs an input image") }
            guard (0...1).contains(strength) else {
                throw SynthesisError("edit strength must be in [0, 1], got \(strength)")
            }
            try checkSize(
                width: image.shape.last ?? 0, height: image.rank == 4 ? image.shape[2] : 0, what: "input image")
            guard image.rank == 4, image.shape[0] == 1, image.shape[1] == 3 else {
                throw SynthesisError("input image tensor must be [1, 3, H, W], got \(image.shape)")
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let z0 = try Autograd.noGrad { try sd.encodeImage(image) }
            let inverted = invertSource(z0, job: job, strength: strength)
            timings.inversion = seconds(since: t0)
            latent = inverted.start
            nullText = inverted.nullText
            sourceEmbedding = clipImageEmbedding(image.clamp(-1...1))
            firstStep = job.settings.steps - inverted.steps
            // GuidanceWindow places WHEN inside the denoised part from the same count.
            guard firstStep == job.settings.firstStep else {
                throw SynthesisError(
                    "the inversion ran \(inverted.steps) steps, not the \(job.settings.steps - job.settings.firstStep) "
                        + "strength \(strength) asks for (this scheduler config cannot invert that far)")
            }
        } else {
            guard image == nil else {
                throw SynthesisError("an image was given but the job is not an edit (set its strength)")
            }
            let width = job.settings.width ?? sizeRules.nativeSide
            let height = job.settings.height ?? sizeRules.nativeSide
            try checkSize(width: width, height: height, what: "output size")
            // init_noise_sigma is 1 for DDIM: z_T is the standard normal draw itself.
            latent = Tensor.randomNormal(sd.latentShape(height: height, width: width), seed: job.seed)
        }

        let token =
            job.method.insertsToken
            ? initialToken(job) : []
        let timing = GuidanceTiming(job: job)
        var trace = SynthesisTrace(
            method: job.method, emotion: job.emotion, prompt: job.prompt, seed: job.seed,
            steps: job.settings.steps, firstStep: firstStep, preview: previewDescription(job.settings.muse.preview),
            classifier: classifier.headDescription, stopStep: timing.stop)
        if job.method.optimizesToken { trace.tokenNorm = euclideanNorm(token) }
        trace.sourceEmbedding = sourceEmbedding
        if job.isEdit, let image {
            trace.inversion = job.settings.inversion
            // The source as the 8-bit image it came from, scored as finished images are.
            let (w, h, bytes) = image.clamp(-1...1).rgbBytes()
            let source = Tensor.fromRGBBytes(bytes, width: w, height: h)
            (trace.sourceProbabilities, trace.sourceEvaluatorProbabilities) = timed(&timings.evaluation) {
                sourceProbabilities(source)
            }
        }
        timings.total = seconds(since: began)
        trace.timings = timings
        var state = SynthesisState(
            job: job, stepIndex: firstStep, latentShape: latent.shape, latent: latent.data,
            token: token, timing: timing, trace: trace)
        state.nullText = nullText
        return state
    }

    /// Checks a saved state against this engine's models before it is continued: a state that
    /// passes its own checksums can still belong to other models (latent shape, token size) or
    /// name a schedule this model cannot run. Throws `SynthesisError` saying what disagrees.
    public func checkResumable(_ state: SynthesisState) throws {
        try state.job.validate()
        try checkSchedule(state.job.settings)
        try checkDecoder(state.job.settings.muse)
        try checkPreview(state.job.settings.muse)
        guard state.stepIndex < state.job.settings.steps else {
            throw SynthesisError(
                "the state is at step \(state.stepIndex) of \(state.job.settings.steps): nothing to resume")
        }
        let shape = state.latentShape
        let f = sd.vae.downsampleFactor
        guard shape.count == 4, shape.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }),
            shape == sd.latentShape(height: shape[2] * f, width: shape[3] * f),
            sizeRules.problem(width: shape[3] * f, height: shape[2] * f) == nil
        else {
            throw SynthesisError(
                "the state's latent \(shape) does not fit this model (\(sd.unet.inChannels) channels, factor \(f))")
        }
        if !state.job.isEdit {
            let width = state.job.settings.width ?? sizeRules.nativeSide
            let height = state.job.settings.height ?? sizeRules.nativeSide
            guard shape == sd.latentShape(height: height, width: width) else {
                throw SynthesisError("the state's latent \(shape) is not the job's \(width)×\(height) image")
            }
        }
        guard state.latent.allSatisfy(\.isFinite), state.token.allSatisfy(\.isFinite) else {
            throw SynthesisError("the state holds values that are not finite (NaN or ∞)")
        }
        let tokenSize = state.job.method.insertsToken ? sd.textEncoder.hiddenSize : 0
        guard state.token.count == tokenSize else {
            throw SynthesisError("the state's token has \(state.token.count) values; this model's has \(tokenSize)")
        }
        if let n = state.nullText {
            let expected = [1, sd.textEncoder.maxPositions, sd.textEncoder.hiddenSize]
            guard n.embeddingShape == expected, n.embedding.allSatisfy(\.isFinite),
                n.reconstruction.allSatisfy(\.isFinite), n.pivots.allSatisfy(\.isFinite)
            else {
                throw SynthesisError(
                    "the state's null-text embedding \(n.embeddingShape) does not fit this text encoder \(expected), "
                        + "or holds values that are not finite")
            }
        }
        if let h = state.dpmHistory, h.index != state.stepIndex - 1 || h.steps != state.job.settings.steps {
            throw SynthesisError(
                "the DPM-Solver history is for step \(h.index) of \(h.steps), not \(state.stepIndex - 1)")
        }
    }

    func checkDecoder(_ settings: MUSESettings) throws {
        if settings.guidanceDecoder == .tiny && tinyDecoder == nil {
            throw SynthesisError(
                "guidance_decoder tiny: no tiny decoder is loaded (tiny_decoder in the spec, --tiny-decoder on the command line)"
            )
        }
    }

    /// latent-rgb only where its factors were fit (SD 1.x's latent space).
    func checkPreview(_ settings: MUSESettings) throws {
        guard settings.preview == .latentRGB else { return }
        if let problem = PreviewKind.latentRGBProblem(
            latentChannels: sd.vae.latentChannels, vaeFactor: sd.vae.downsampleFactor,
            scalingFactor: Double(sd.vae.scalingFactor))
        {
            throw SynthesisError("preview: \(problem)")
        }
    }

    /// The step count must give the chosen sampler a valid schedule.
    func checkSchedule(_ settings: JobSettings) throws {
        let steps = settings.steps
        let trainSteps = sd.scheduler.config.numTrainTimesteps
        guard steps >= 1, steps <= trainSteps else {
            throw SynthesisError("steps must be in 1...\(trainSteps), got \(steps)")
        }
        switch settings.scheduler {
        case .ddim:
            // 'leading' spacing with steps_offset can overshoot the last training step (e.g. 1000 steps).
            if let last = sd.scheduler.timesteps(steps: steps).max(), last >= trainSteps {
                throw SynthesisError(
                    "\(steps) steps put a timestep at \(last), beyond the model's \(trainSteps) training steps; use fewer steps"
                )
            }
        case .dpmpp2m:
            let dpm = try dpmScheduler()
            try dpm.validate(steps: steps)
            guard dpm.timesteps(steps: steps).count == steps else {
                throw SynthesisError(
                    "DPM-Solver++ with this scheduler config makes a schedule of other than \(steps) steps")
            }
        }
    }

    func dpmScheduler() throws -> DPMSolverMultistepScheduler {
        if let dpmSolver { return dpmSolver }
        let made = try sd.dpmSolverScheduler()
        dpmSolver = made
        return made
    }

    /// The job's timesteps, in denoising order.
    func timesteps(_ settings: JobSettings) -> [Int] {
        switch settings.scheduler {
        case .ddim: return sd.scheduler.timesteps(steps: settings.steps)
        // checkSchedule (in start) made the scheduler; a state from elsewhere is checked on resume.
        case .dpmpp2m: return (try? dpmScheduler().timesteps(steps: settings.steps)) ?? []
        }
    }

    func checkSize(width: Int, height: Int, what: String) throws {
        if let problem = sizeRules.problem(width: width, height: height) { throw SynthesisError("\(what): \(problem)") }
        if let problem = sizeRules.memoryProblem(width: width, height: height) {
            throw SynthesisError("\(what): \(problem)")
        }
    }

    func previewDescription(_ kind: PreviewKind) -> String {
        let size = promptScorer.tower.imageSize
        switch kind {
        case .latentRGB:
            return "latent-rgb: SD 1.x latent→RGB factors at latent resolution, CLIP preprocessing to \(size)×\(size)"
        case .vaeDecode: return "vae-decode: x̂0 through the full VAE, CLIP preprocessing to \(size)×\(size)"
        case .decoded:
            let decoder = previewDecoder(kind) == .tiny ? "the tiny decoder" : "the full VAE"
            return "decoded: x̂0 through \(decoder), CLIP preprocessing to \(size)×\(size)"
        }
    }

    /// The decoder a preview kind reads x̂0 through (latent-rgb uses none; nil).
    func previewDecoder(_ kind: PreviewKind) -> GuidanceDecoder? {
        switch kind {
        case .latentRGB: return nil
        case .vaeDecode: return .vae
        case .decoded: return tinyDecoder == nil ? .vae : .tiny
        }
    }

    public func isFinished(_ state: SynthesisState) -> Bool { state.stepIndex >= state.job.settings.steps }

    // MARK: one step

    /// Runs schedule step `state.stepIndex`: s_t and the timing decision, WHICH at the start
    /// step, the inner iterations on guided steps, then the DDIM step with the updated token.
    /// Throws when the numbers leave the finite range (settings that push the latent or the
    /// loss to NaN or ∞), naming the step and the settings involved.
    public func advance(_ state: SynthesisState) throws -> SynthesisState {
        precondition(!isFinished(state), "advance on a finished synthesis")
        var s = state
        let job = s.job
        let began = DispatchTime.now().uptimeNanoseconds
        var timings = s.trace.timings
        let index = s.stepIndex
        let t = timesteps(job.settings)[index]
        let z = Tensor(shape: s.latentShape, data: s.latent)
        let w = job.settings.guidance

        let nullTextTrace = try optimiseNullText(&s, t: t, timings: &timings)
        let (epsU, eps0) = unguidedEps(s, z: z, t: t, timings: &timings)
        var eps = eps0
        let previewStart = DispatchTime.now().uptimeNanoseconds
        let promptScore = Autograd.noGrad {
            score(sd.scheduler.predictedOriginal(eps: eps0, timestep: t, sample: z), job, &timings)
        }
        let previewSeconds = seconds(since: previewStart)
        let guided = s.timing.observe(step: index, promptScore: promptScore)

        // WHICH only matters to the token methods (universal guidance's loss is the target's
        // alone); the others skip its decodes and classifier.
        if s.timing.startsAt(index) && job.method.guides {
            s.trace.startStep = index
            s.trace.startReason = s.timing.startReason
            if job.method.optimizesToken { fixWhich(&s, z: z, t: t, epsU: epsU, eps: eps0, timings: &timings) }
        }

        var inner: [InnerIterationTrace] = []
        var next: Tensor? = nil
        if guided && job.method.optimizesToken {
            inner = try optimizeToken(&s, z: z, t: t, epsU: epsU, timings: &timings)
            let cond = Autograd.noGrad {
                conditioning(s, token: Tensor(shape: [s.token.count], data: s.token), timings: &timings)
            }
            let c = Autograd.noGrad { timed(&timings.unet) { sd.unet(z, timestep: Float(t), context: cond) } }
            eps = combine(epsU, c, w)
        } else if guided && job.method == .universalGuidance {
            (next, eps, inner) = try universalGuidance(s, z: z, t: t, timings: &timings)
        }

        var stepProbabilities: [Float]? = nil
        if job.settings.muse.classifyEveryStep {
            stepProbabilities = Autograd.noGrad {
                classify(sd.scheduler.predictedOriginal(eps: eps, timestep: t, sample: z), job, &timings)
            }
        }
        let latent = next ?? schedulerStep(&s, eps: eps, t: t, z: z)
        guard latent.data.allSatisfy(\.isFinite) else { throw nonFinite("the latent", step: index, job) }
        s.latent = latent.data
        s.stepIndex += 1
        let elapsed = seconds(since: began)
        timings.total += elapsed
        s.trace.timings = timings
        s.trace.stepTraces.append(
            StepTrace(
                index: index, timestep: t, promptScore: promptScore, guided: guided,
                inner: inner, probabilities: stepProbabilities, seconds: elapsed,
                previewSeconds: previewSeconds, tokenDrift: tokenDrift(s), nullText: nullTextTrace))
        return s
    }

    /// The sampler's step from z_t with the final eps (DPM-Solver++ keeps its history in `s`).
    func schedulerStep(_ s: inout SynthesisState, eps: Tensor, t: Int, z: Tensor) -> Tensor {
        let steps = s.job.settings.steps
        return Autograd.noGrad {
            switch s.job.settings.scheduler {
            case .ddim:
                return sd.scheduler.step(eps: eps, timestep: t, sample: z, steps: steps).prevSample
            case .dpmpp2m:
                // checkSchedule made the scheduler in start (or resume).
                guard let dpm = dpmSolver else { preconditionFailure("DPM-Solver++ used before start checked it") }
                let (prev, history) = dpm.step(
                    modelOutput: eps, index: s.stepIndex, sample: z, steps: steps, previous: s.dpmHistory)
                s.dpmHistory = history
                return prev
            }
        }
    }

    /// Pre-pass without gradients: eps_u once for the step, eps_c with the current token, and
    /// their classifier-free combination. Both branches run as one batch of 2, as diffusers'
    /// pipeline does: a few per cent faster than two calls at full size (docs/PERFORMANCE.md, "Cost per image").
    func unguidedEps(_ s: SynthesisState, z: Tensor, t: Int, timings: inout PhaseTimings) -> (Tensor?, Tensor) {
        let job = s.job
        let w = job.settings.guidance
        return Autograd.noGrad {
            let cond = conditioning(
                s, token: s.token.isEmpty ? nil : Tensor(shape: [s.token.count], data: s.token), timings: &timings)
            if w == 1 {
                return (nil, timed(&timings.unet) { sd.unet(z, timestep: Float(t), context: cond) })
            }
            let both = timed(&timings.unet) {
                sd.unet(
                    Tensor.concat([z, z], axis: 0), timestep: Float(t),
                    context: Tensor.concat([unconditionalEmbedding(s), cond], axis: 0))
            }
            let halves = both.chunked(2, axis: 0)
            return (halves[0], combine(halves[0], halves[1], w))
        }
    }

    /// WHICH, at the step guidance starts: the inherent emotion is the top non-target class
    /// of the image the prompt alone predicts (x̂0 from the prompt without the token: one
    /// more conditional UNet call), so the token's pull toward the target does not hide it;
    /// S is the target's similar emotions without it. The trace keeps both read-outs.
    func fixWhich(
        _ s: inout SynthesisState, z: Tensor, t: Int, epsU: Tensor?, eps: Tensor, timings: inout PhaseTimings
    ) {
        let job = s.job
        let (promptOnly, withToken) = Autograd.noGrad {
            let c = timed(&timings.unet) { sd.unet(z, timestep: Float(t), context: plainConditioning(job.prompt)) }
            let x0 = sd.scheduler.predictedOriginal(
                eps: combine(epsU, c, job.settings.guidance), timestep: t, sample: z)
            let x0Token = sd.scheduler.predictedOriginal(eps: eps, timestep: t, sample: z)
            return (classify(x0, job, &timings), classify(x0Token, job, &timings))
        }
        var inherent = job.emotion == .amusement ? Emotion.awe : Emotion.amusement
        for e in Emotion.allCases where e != job.emotion && promptOnly[e.index] > promptOnly[inherent.index] {
            inherent = e
        }
        s.inherent = inherent
        s.similar = job.settings.muse.similarEmotions.similar(to: job.emotion).filter { $0 != inherent }
        s.trace.inherent = inherent
        s.trace.similar = s.similar
        s.trace.inherentProbabilities = promptOnly
        s.trace.startProbabilities = withToken
    }

    /// v₀: the input embedding of the job's emotion word, where the token starts (and what its
    /// drift is measured from).
    func initialToken(_ job: SynthesisJob) -> [Float] {
        EmotionToken.initial(word: job.emotion.word, tokenizer: sd.tokenizer, encoder: sd.textEncoder)
    }

    /// `token_drift_bound` (generation) or `edit_token_drift_bound`: projects v onto the ball
    /// ‖v − v₀‖ ≤ ρ·‖v₀‖ (nothing when ρ = 0).
    func boundDrift(_ token: inout [Float], _ job: SynthesisJob) {
        let rho = job.isEdit ? job.settings.muse.editTokenDriftBound : job.settings.muse.tokenDriftBound
        guard rho > 0 else { return }
        let v0 = initialToken(job)
        let radius = rho * euclideanNorm(v0)
        let drift = euclideanNorm(zip(token, v0).map { $0 - $1 })
        guard drift > radius else { return }
        let scale = radius / drift
        for i in token.indices { token[i] = v0[i] + (token[i] - v0[i]) * scale }
    }

    /// ‖v − v₀‖ after a step, for methods that optimise the token (nil otherwise).
    func tokenDrift(_ s: SynthesisState) -> Float? {
        guard s.job.method.optimizesToken else { return nil }
        let v0 = initialToken(s.job)
        return euclideanNorm(zip(s.token, v0).map { $0 - $1 })
    }

    /// The error for numbers that left the finite range at `step` (0-based), with the
    /// settings that scale them.
    func nonFinite(_ what: String, step: Int, _ job: SynthesisJob) -> SynthesisError {
        var settings = "guidance \(job.settings.guidance)"
        if job.method.optimizesToken { settings += ", learning_rate \(job.settings.muse.learningRate)" }
        if job.method == .universalGuidance { settings += ", universal_scale \(job.settings.muse.universalScale)" }
        return SynthesisError(
            "step \(step + 1) of \(job.settings.steps): \(what) is not finite (NaN or ∞); lower \(settings)")
    }

    /// HOW: K Adam iterations on v against L_emo of the decoded x̂0; the gradient flows
    /// through the classifier, decoder, x̂0 formula, the UNet's conditional branch and the
    /// text encoder into v (eps_u is a constant).
    func optimizeToken(
        _ s: inout SynthesisState, z: Tensor, t: Int, epsU: Tensor?,
        timings: inout PhaseTimings
    ) throws -> [InnerIterationTrace] {
        let job = s.job
        let loss = lossFunction(s)
        var records: [InnerIterationTrace] = []
        for _ in 0..<job.settings.muse.innerIterations {
            let began = Date()
            let v = Tensor(shape: [s.token.count], data: s.token).asVariable()
            let cond = conditioning(s, token: v, timings: &timings)
            let c = timed(&timings.unet) { sd.unet(z, timestep: Float(t), context: cond) }
            let x0 = sd.scheduler.predictedOriginal(
                eps: combine(epsU, c, job.settings.guidance), timestep: t, sample: z)
            let image = timed(&timings.decode) { decodedImage(x0, job.settings.muse.guidanceDecoder) }
            let logits = timed(&timings.classifier) { classifier.logits(images: image) }
            let (value, p) = loss(logits: logits)
            let grad = timed(&timings.backward) { Autograd.gradients(of: value, withRespectTo: [v])[0] }
            guard value.scalar.isFinite, grad.data.allSatisfy(\.isFinite) else {
                throw nonFinite("the loss or its gradient", step: s.stepIndex, job)
            }
            s.adam.update(&s.token, gradient: grad.data, settings: job.settings.muse)
            boundDrift(&s.token, job)
            records.append(
                InnerIterationTrace(
                    loss: value.scalar, probabilities: p.data, seconds: Date().timeIntervalSince(began)))
        }
        return records
    }

    /// Universal guidance's forward guidance with self-recurrence (Bansal et al. 2023, Alg. 1),
    /// taken `universal_recurrence` (k) times: ε̂ = ε(z_t) + s·√(1−ᾱ_t)·∇_{z_t} ℓ with
    /// ℓ = −log p(target) and the gradient through the UNet (both CFG branches), the x̂0
    /// formula and the decoder; z_{t−1} = DDIM(z_t, ε̂); between takes z_t is re-noised from
    /// z_{t−1} as √(ᾱ_t/ᾱ_{t−1})·z_{t−1} + √(1−ᾱ_t/ᾱ_{t−1})·ε′. ε′ is drawn from a seed
    /// made of the job's seed, the step and the take, so a resumed job draws the same noise.
    /// Returns z_{t−1} of the last take and its guided model output (ε̂ for an epsilon model; the
    /// same shift carried into v or x0 for the others).
    func universalGuidance(
        _ s: SynthesisState, z: Tensor, t: Int, timings: inout PhaseTimings
    ) throws -> (next: Tensor, eps: Tensor, records: [InnerIterationTrace]) {
        let job = s.job
        let settings = job.settings.muse
        let loss = EmotionLoss(target: job.emotion, inherent: nil, similar: [], lambdaInherent: 0, lambdaSimilar: 0)
        let alpha = sd.scheduler.alphaCumprod(t)
        let alphaPrev = sd.scheduler.alphaCumprod(sd.scheduler.previousTimestep(t, steps: job.settings.steps))
        // ε̂ = ε + s·√(1−ᾱ)·∇ℓ, expressed in the model's own output (ε, v or x0). Where ᾱ = 0
        // (zero terminal SNR) x̂0 does not depend on ε, so there is nothing to shift: factor 0.
        let factor =
            alpha > 0
            ? settings.universalScale * (1 - alpha).squareRoot() * sd.scheduler.outputPerEpsilon(timestep: t) : 0
        var zt = z
        var records: [InnerIterationTrace] = []
        for take in 0..<settings.universalRecurrence {
            let began = Date()
            let (value, p, output, grad) = guidanceGradient(
                z: zt, t: t, job: job, unconditional: unconditionalEmbedding(s), timings: &timings
            ) {
                loss(logits: classifier.logits(images: $0))
            }
            guard value.scalar.isFinite, grad.data.allSatisfy(\.isFinite) else {
                throw nonFinite("the loss or its gradient", step: s.stepIndex, job)
            }
            records.append(
                InnerIterationTrace(
                    loss: value.scalar, probabilities: p.data, seconds: Date().timeIntervalSince(began)))
            let guidedOutput = Autograd.noGrad { output + grad * factor }
            let prev = Autograd.noGrad {
                sd.scheduler.step(eps: guidedOutput, timestep: t, sample: zt, steps: job.settings.steps).prevSample
            }
            if take == settings.universalRecurrence - 1 { return (prev, guidedOutput, records) }
            let noise = Tensor.randomNormal(zt.shape, seed: recurrenceSeed(job.seed, step: s.stepIndex, take: take))
            zt = Autograd.noGrad {
                prev * (alpha / alphaPrev).squareRoot() + noise * (1 - alpha / alphaPrev).squareRoot()
            }
        }
        preconditionFailure("universal_recurrence is at least 1 (validated)")
    }

    /// ∇_{z_t} of `loss(image)` through universal guidance's whole denoiser: both classifier-free
    /// branches of the UNet, the x̂0 formula and the guidance decoder (clamped image). Returns
    /// the loss, what `loss` returned beside it, eps at z_t (a constant) and the gradient.
    /// `loss` (the classifier and its loss) is timed as the classifier.
    func guidanceGradient<Extra>(
        z: Tensor, t: Int, job: SynthesisJob, unconditional: Tensor, timings: inout PhaseTimings,
        loss: (Tensor) -> (Tensor, Extra)
    ) -> (value: Tensor, extra: Extra, eps: Tensor, gradient: Tensor) {
        let cond = plainConditioning(job.prompt)
        let uncond = job.settings.guidance == 1 ? nil : unconditional
        let zv = z.asVariable()
        let eps = timed(&timings.unet) {
            combine(
                uncond.map { sd.unet(zv, timestep: Float(t), context: $0) },
                sd.unet(zv, timestep: Float(t), context: cond), job.settings.guidance)
        }
        let x0 = sd.scheduler.predictedOriginal(eps: eps, timestep: t, sample: zv)
        let image = timed(&timings.decode) { decodedImage(x0, job.settings.muse.guidanceDecoder) }
        let (value, extra) = timed(&timings.classifier) { loss(image) }
        let grad = timed(&timings.backward) { Autograd.gradients(of: value, withRespectTo: [zv])[0] }
        return (value, extra, Tensor(shape: eps.shape, data: eps.data), grad)
    }

    /// The seed of self-recurrence noise: distinct per job, step and take.
    func recurrenceSeed(_ seed: UInt64, step: Int, take: Int) -> UInt64 {
        seed ^ (UInt64(step + 1) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(take + 1) &* 0xBF58_476D_1CE4_E5B9)
    }

    func lossFunction(_ s: SynthesisState) -> EmotionLoss {
        let m = s.job.method
        let settings = s.job.settings.muse
        return EmotionLoss(
            target: s.job.emotion, inherent: m.usesInherent ? s.inherent : nil,
            similar: m.usesSimilar ? s.similar : [],
            lambdaInherent: settings.lambdaInherent, lambdaSimilar: settings.lambdaSimilar)
    }

    // MARK: finish

    /// Decodes the final latent; probabilities are measured on the 8-bit image.
    public func finish(_ state: SynthesisState) -> SynthesisResult {
        precondition(
            isFinished(state), "finish before the last step (at \(state.stepIndex) of \(state.job.settings.steps))")
        let began = DispatchTime.now().uptimeNanoseconds
        var trace = state.trace
        let z = Tensor(shape: state.latentShape, data: state.latent)
        let image = Autograd.noGrad { timed(&trace.timings.decode) { sd.decodeToImage(z) } }
        let (width, height, bytes) = image.rgbBytes()
        let final8Bit = Tensor.fromRGBBytes(bytes, width: width, height: height)
        let p = Autograd.noGrad {
            timed(&trace.timings.classifier) { classifier.probabilities(images: final8Bit).data }
        }
        trace.finalProbabilities = p
        trace.evaluation = timed(&trace.timings.evaluation) {
            evaluate(
                final8Bit, prompt: state.job.prompt, sourceEmbedding: trace.sourceEmbedding,
                sourceProbabilities: trace.sourceEvaluatorProbabilities)
        }
        trace.timings.total += seconds(since: began)
        let plain = trace.stepTraces.filter { !$0.guided }
        func ratio(_ steps: [StepTrace]) -> Double? {
            let preview = steps.map(\.previewSeconds).reduce(0, +)
            let total = steps.map(\.seconds).reduce(0, +)
            return steps.isEmpty || total <= preview ? nil : preview / (total - preview)
        }
        trace.previewCostRatio = ratio(plain)
        trace.previewCostRatioAllSteps = ratio(trace.stepTraces)
        return SynthesisResult(image: image, width: width, height: height, rgb: bytes, probabilities: p, trace: trace)
    }

    /// start, advance to the end, finish; `progress(state)` after every step.
    public func run(_ job: SynthesisJob, image: Tensor? = nil, progress: ((SynthesisState) -> Void)? = nil) throws
        -> SynthesisResult
    {
        var state = try start(job, image: image)
        while !isFinished(state) {
            state = try advance(state)
            progress?(state)
        }
        return finish(state)
    }

    // MARK: pieces

    func combine(_ epsU: Tensor?, _ epsC: Tensor, _ w: Float) -> Tensor {
        guard let epsU else { return epsC }
        return epsU + (epsC - epsU) * w
    }

    public func unconditional(_ negativePrompt: String) -> Tensor { plainConditioning(negativePrompt) }

    func plainConditioning(_ prompt: String) -> Tensor {
        if let hit = conditioningCache[prompt] { return hit }
        let c = Autograd.noGrad { sd.encodePrompt(prompt) }
        conditioningCache[prompt] = c
        return c
    }

    /// The job's conditional text embedding: with v in its slot for token methods, with the
    /// emotion described in words for prompt-only (`Emotion.descriptivePrompt`), the bare
    /// prompt otherwise.
    func conditioning(_ s: SynthesisState, token: Tensor?, timings: inout PhaseTimings) -> Tensor {
        let job = s.job
        switch job.method {
        case .promptOnly:
            return plainConditioning(job.emotion.descriptivePrompt(job.prompt))
        case .universalGuidance, .none:
            return plainConditioning(job.prompt)
        default:
            let prompt = TokenPrompt(prompt: job.prompt, tokenizer: sd.tokenizer, length: sd.textEncoder.maxPositions)
            return timed(&timings.textEncoder) { prompt.conditioning(sd.textEncoder, token: token!) }
        }
    }

    /// s_t for a predicted x̂0 (scaled latent).
    func score(_ x0: Tensor, _ job: SynthesisJob, _ timings: inout PhaseTimings) -> Float {
        let preview: Tensor = timed(&timings.preview) {
            // start (and resume) refused latent-rgb for a latent space its factors do not fit.
            guard let decoder = previewDecoder(job.settings.muse.preview) else { return LatentPreview.rgb(x0) }
            return decodedImage(x0, decoder)
        }
        return timed(&timings.promptScore) { promptScorer(preview, prompt: job.prompt) }
    }

    /// x̂0 (scaled latent) → the image it stands for, clamped to [-1, 1] as the output image
    /// will be: the loss sees what the user gets (saturated pixels pass no gradient).
    /// `decoder` picks the full VAE or the tiny one (start checked that one is loaded).
    func decodedImage(_ x0: Tensor, _ decoder: GuidanceDecoder) -> Tensor {
        switch (decoder, tinyDecoder) {
        case (.tiny, let tiny?): return tiny.decodeSDLatent(x0, sdScalingFactor: sd.vae.scalingFactor).clamp(-1...1)
        case (.tiny, nil): preconditionFailure("guidance_decoder tiny without a tiny decoder (start checks this)")
        case (.vae, _): return sd.vae.decode(x0 * (1 / sd.vae.scalingFactor)).clamp(-1...1)
        }
    }

    /// Class probabilities of a scaled latent's image, through the job's guidance decoder.
    func classify(_ x0: Tensor, _ job: SynthesisJob, _ timings: inout PhaseTimings) -> [Float] {
        let image = timed(&timings.decode) { decodedImage(x0, job.settings.muse.guidanceDecoder) }
        return timed(&timings.classifier) { classifier.probabilities(images: image).data }
    }
}

// MARK: benchmark hooks

extension SynthesisEngine {
    /// The text encoder's forward of one inner iteration: the job's prompt with `token` ([D], may
    /// require gradients) in its slot → conditioning [1, T, D]. For `muse bench-muse`, which times
    /// the inner iteration's phases one by one; the engine itself goes through `conditioning`.
    public func tokenConditioning(_ job: SynthesisJob, token: Tensor) -> Tensor {
        TokenPrompt(prompt: job.prompt, tokenizer: sd.tokenizer, length: sd.textEncoder.maxPositions)
            .conditioning(sd.textEncoder, token: token)
    }

    /// x̂0 (scaled latent) → the clamped image the classifier sees, through `decoder`, exactly as
    /// the inner iterations decode it (for `muse bench-muse`).
    public func guidanceImage(_ x0: Tensor, decoder: GuidanceDecoder) -> Tensor { decodedImage(x0, decoder) }
}

func euclideanNorm(_ values: [Float]) -> Float { values.reduce(0) { $0 + $1 * $1 }.squareRoot() }

@inline(__always)
func seconds(since start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

/// Runs `body`, adding its wall time to `counter`.
@inline(__always)
func timed<R>(_ counter: inout Double, _ body: () throws -> R) rethrows -> R {
    let start = DispatchTime.now().uptimeNanoseconds
    defer { counter += seconds(since: start) }
    return try body()
}
