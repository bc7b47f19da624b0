import Diffusion
import Foundation
import Tensor
import Vocabulary

/// What `start` and `resume` check before any work: the schedule, the decoders, the preview,
/// the image size, and a saved state against this engine and its job.
extension SynthesisEngine {
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

    func checkSize(width: Int, height: Int, what: String) throws {
        if let problem = sizeRules.problem(width: width, height: height) { throw SynthesisError("\(what): \(problem)") }
        if let problem = sizeRules.memoryProblem(width: width, height: height) {
            throw SynthesisError("\(what): \(problem)")
        }
    }
}
