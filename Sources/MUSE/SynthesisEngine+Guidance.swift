import Diffusion
import Foundation
import Tensor
import Vocabulary

/// The guidance of one step: the emotion token's optimisation (MUSE), universal guidance,
/// the token's drift bound and the loss.
extension SynthesisEngine {
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
}
