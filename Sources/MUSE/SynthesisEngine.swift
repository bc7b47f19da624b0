import DiffusersLayout
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
    /// DPM-Solver++(2M) from the model's scheduler config, made on first use (by
    /// `dpmScheduler()`, SynthesisEngine+Schedule.swift).
    var dpmSolver: DPMSolverMultistepScheduler?

    /// `timingText`: a CLIP text model with projection, used to embed the prompt for s_t (and
    /// CLIP score); `promptTower` is its vision half, when the classifier's tower is another
    /// model (nil: the classifier's tower is `timingText`'s pair; required for an image
    /// classifier, which has no CLIP tower).
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
        guard let scoringTower = promptTower ?? classifier.tower else {
            throw SynthesisError(
                "the guide (\(classifier.headDescription)) has no CLIP image embedding; the prompt score s_t needs "
                    + "the vision half of the timing text model's CLIP pair (a prompt tower)")
        }
        promptScorer = try PromptScorer(tower: scoringTower, text: timingText, tokenizer: timingTokenizer)
        evaluationScorer =
            try evaluationCLIP.map {
                try PromptScorer(tower: $0.tower, text: $0.text, tokenizer: $0.tokenizer, role: "evaluation CLIP")
            } ?? promptScorer
        sizeRules = try ImageSizeRules(model: sd.files)
    }

    /// Loads everything from folders: an SD 1.x diffusers folder (or a single-file .safetensors
    /// checkpoint with `modelConfig`'s configs, by default SD 1.5's: `StableDiffusion(path:)`), a CLIP vision tower
    /// (CLIPVisionModelWithProjection or CLIPModel), a linear head file (nil: zero-shot head
    /// from `textFolder`) and a CLIP text model with projection (CLIPTextModelWithProjection
    /// or CLIPModel) for timing and the zero-shot head, and the vision half of that CLIP pair
    /// when the tower is not it (`promptTower`, with a linear head only); optionally the tiny
    /// decoder and an evaluator classifier. `towerFolder` may instead be a transformers
    /// ViTForImageClassification folder (`DiffusersLayout.isImageClassifier`), a whole
    /// classifier: no head, and `promptTower` (or a whole CLIPModel as `textFolder`) for s_t.
    public static func load(
        model: String, modelConfig: String? = nil, tower towerFolder: String, head: String?, text textFolder: String,
        promptTower: String? = nil, tinyDecoder: String? = nil, evaluator: EvaluatorFiles? = nil,
        evaluationCLIP: (tower: String, text: String)? = nil
    ) throws -> SynthesisEngine {
        let isImageClassifier = DiffusersLayout.isImageClassifier(towerFolder)
        var promptTower = promptTower
        if isImageClassifier {
            if head != nil { try refuseImageClassifier(towerFolder, "linear head") }
            if promptTower == nil && DiffusersLayout.isFullCLIP(textFolder) { promptTower = textFolder }
            guard promptTower != nil else {
                throw SynthesisError(
                    "\(towerFolder) is an image classifier (ViT) without a CLIP embedding: the prompt score s_t needs "
                        + "a prompt tower, the vision half of \(textFolder)'s CLIP pair")
            }
        } else if promptTower != nil && head == nil {
            throw SynthesisError(
                "a prompt tower needs a linear head: the zero-shot head compares the classifier tower with the text model directly"
            )
        }
        let sd = try StableDiffusion(path: model, configFolder: modelConfig)
        let classifier: EmotionClassifier
        if isImageClassifier {
            classifier = try EmotionClassifier(imageClassifierFolder: towerFolder)
        } else {
            let tower = try CLIPVisionEncoder(folder: towerFolder)
            classifier =
                try head.map { try EmotionClassifier(tower: tower, headFile: $0) }
                ?? EmotionClassifier.zeroShot(tower: tower, textFolder: textFolder)
        }
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
