import Diffusion
import Foundation
import Tensor
import Vocabulary

/// Null-text inversion's part of the synthesis state (Mokady et al. 2023), advanced one
/// denoising step at a time so that it is checkpointed with the rest: the inversion's latents
/// (the pivots), the reconstruction latent z̄ that follows them with the source prompt, and
/// the unconditional embedding optimised at the current step.
public struct NullTextState: Codable, Equatable, Sendable {
    /// The latents the reconstruction must land on, in denoising order: entry j (of
    /// `latentCount` floats each) is the target of the j-th denoised step; the last is the
    /// encoded source itself.
    public var pivots: [Float]
    /// z̄ at the state's step: the reconstruction with the source prompt and the optimised
    /// embeddings.
    public var reconstruction: [Float]
    /// The unconditional embedding [1, T, D] for the state's step (after `optimise` ran on
    /// it); at the next step it is the optimisation's starting point.
    public var embedding: [Float]
    public var embeddingShape: [Int]
    /// Set once the embedding was optimised for `stepIndex` (a resumed state must not
    /// optimise twice).
    public var optimisedStep: Int?

    func validate(latentCount: Int, denoisedSteps: Int) throws {
        guard pivots.count == latentCount * denoisedSteps, reconstruction.count == latentCount else {
            throw StateError(
                "null-text pivots (\(pivots.count)) or reconstruction (\(reconstruction.count)) do not fit "
                    + "\(denoisedSteps) steps of \(latentCount)-value latents")
        }
        guard embeddingShape.count == 3, embeddingShape.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }),
            embeddingShape.reduce(1, *) == embedding.count
        else {
            throw StateError("null-text embedding has \(embedding.count) values for shape \(embeddingShape)")
        }
    }
}

/// One denoised step's null-text optimisation, for the trace.
public struct NullTextStepTrace: Codable, Equatable, Sendable {
    /// Adam steps taken (0: the step already landed within tolerance).
    public var iterations: Int
    /// ‖z̄_{t−1} − pivot‖² (mean) before the first and after the last update.
    public var lossFirst: Float
    public var lossLast: Float
}

extension SynthesisEngine {
    /// The unconditional branch of the job at its current step: the negative prompt for
    /// generation and DDIM-inverted edits, the source prompt for negative-prompt inversion,
    /// the optimised null text for null-text inversion.
    func unconditionalEmbedding(_ s: SynthesisState) -> Tensor {
        guard s.job.isEdit else { return unconditional(s.job.settings.negativePrompt) }
        switch s.job.settings.inversion {
        case .ddim: return unconditional(s.job.settings.negativePrompt)
        case .negativePrompt: return plainConditioning(s.job.prompt)
        case .nullText:
            guard let n = s.nullText else { preconditionFailure("null-text edit without its state (start makes it)") }
            return Tensor(shape: n.embeddingShape, data: n.embedding)
        }
    }

    /// The inversion of an edit: DDIM with the source prompt at guidance 1 (all three kinds
    /// start from it), and for null-text the state that `optimiseNullText` advances.
    func invertSource(_ z0: Tensor, job: SynthesisJob, strength: Float) -> (
        start: Tensor, steps: Int, nullText: NullTextState?
    ) {
        let trajectory = Autograd.noGrad {
            sd.invert(z0, prompt: job.prompt, steps: job.settings.steps, strength: strength)
        }
        let start = trajectory.last ?? z0
        guard job.settings.inversion == .nullText, !trajectory.isEmpty else {
            return (start, trajectory.count, nil)
        }
        // Denoising step j goes from trajectory[count − 1 − j] to trajectory[count − 2 − j]
        // (to z0 for the last one).
        let targets = Array(trajectory.dropLast().reversed()) + [z0]
        let empty = plainConditioning("")
        let state = NullTextState(
            pivots: targets.flatMap(\.data), reconstruction: start.data, embedding: empty.data,
            embeddingShape: empty.shape, optimisedStep: nil)
        return (start, trajectory.count, state)
    }

    /// Null-text inversion at the state's step: up to `null_text_steps` Adam steps on the
    /// unconditional embedding so that the guided DDIM step from z̄_t (source prompt, CFG w)
    /// lands on the inversion's latent; then z̄ takes that step. Adam starts fresh per step
    /// from the previous step's embedding, with the paper's learning rate (1e-2, decaying
    /// linearly to half over the schedule) and early stop (tolerance growing from 1e-5).
    func optimiseNullText(_ s: inout SynthesisState, t: Int, timings: inout PhaseTimings) throws -> NullTextStepTrace? {
        guard var n = s.nullText, n.optimisedStep != s.stepIndex else { return nil }
        let job = s.job
        let w = job.settings.guidance
        let shape = s.latentShape
        let count = shape.reduce(1, *)
        let denoised = job.settings.steps - job.settings.firstStep
        let j = s.stepIndex - job.settings.firstStep
        let target = Tensor(shape: shape, data: Array(n.pivots[(j * count)..<((j + 1) * count)]))
        let zbar = Tensor(shape: shape, data: n.reconstruction)
        let steps = job.settings.steps
        let epsC = Autograd.noGrad {
            timed(&timings.unet) { sd.unet(zbar, timestep: Float(t), context: plainConditioning(job.prompt)) }
        }
        func landing(_ u: Tensor) -> Tensor {
            let epsU = timed(&timings.unet) { sd.unet(zbar, timestep: Float(t), context: u) }
            return sd.scheduler.step(eps: epsU + (epsC - epsU) * w, timestep: t, sample: zbar, steps: steps)
                .prevSample
        }
        var trace = NullTextStepTrace(iterations: 0, lossFirst: 0, lossLast: 0)
        // At guidance 1 the unconditional branch drops out: nothing to optimise.
        guard w != 1 else {
            n.reconstruction = Autograd.noGrad { landing(Tensor(shape: n.embeddingShape, data: n.embedding)) }.data
            n.optimisedStep = s.stepIndex
            s.nullText = n
            return trace
        }
        let progress = Float(j) / Float(max(denoised, 1))
        var adamSettings = MUSESettings()
        adamSettings.learningRate = 1e-2 * (1 - progress / 2)
        let tolerance = 1e-5 + 1e-3 * progress
        var adam = AdamState(count: n.embedding.count)
        for iteration in 0...job.settings.nullTextSteps {
            let u = Tensor(shape: n.embeddingShape, data: n.embedding).asVariable()
            let prev = landing(u)
            let loss = (prev - target).square().mean()
            let value = loss.scalar
            guard value.isFinite else { throw nonFinite("the null-text inversion loss", step: s.stepIndex, job) }
            if iteration == 0 { trace.lossFirst = value }
            trace.lossLast = value
            // The landing of the embedding as it now is: z̄'s next value.
            if value < tolerance || iteration == job.settings.nullTextSteps {
                n.reconstruction = prev.data
                break
            }
            let grad = timed(&timings.backward) { Autograd.gradients(of: loss, withRespectTo: [u])[0] }
            guard grad.data.allSatisfy(\.isFinite) else {
                throw nonFinite("the null-text gradient", step: s.stepIndex, job)
            }
            adam.update(&n.embedding, gradient: grad.data, settings: adamSettings)
            trace.iterations += 1
        }
        n.optimisedStep = s.stepIndex
        s.nullText = n
        return trace
    }
}
