import Foundation
import Tensor

/// A sampler the denoising loop drives: its schedule for a step count, and one step from the
/// guided model output. `History` is what a multistep sampler carries from step to step (nil
/// before the first; DDIM carries none). To add a sampler: conform it here and the loop
/// (`StableDiffusion.denoise(from:…scheduler:)`) runs it; MUSE's step machine also keeps its
/// history in `SynthesisState` (docs/ARCHITECTURE.md, "How to add…").
public protocol DenoisingScheduler {
    associatedtype History
    /// Throws, naming the problem, unless `steps` gives a schedule this sampler can run.
    func validate(steps: Int) throws
    /// The inference timesteps, in denoising order.
    func timesteps(steps: Int) -> [Int]
    /// z_{t−1} from z_t (`sample`) and the model output at `timestep`, the `index`-th step.
    func step(
        modelOutput: Tensor, index: Int, timestep: Int, sample: Tensor, steps: Int, history: History?
    ) -> (sample: Tensor, history: History?)
}

extension DDIMScheduler: DenoisingScheduler {
    /// DDIM is single-step: nothing to carry.
    public typealias History = Never

    public func step(
        modelOutput: Tensor, index: Int, timestep: Int, sample: Tensor, steps: Int, history: Never?
    ) -> (sample: Tensor, history: Never?) {
        (step(eps: modelOutput, timestep: timestep, sample: sample, steps: steps).prevSample, nil)
    }
}

extension DPMSolverMultistepScheduler: DenoisingScheduler {
    public func step(
        modelOutput: Tensor, index: Int, timestep: Int, sample: Tensor, steps: Int, history: DPMSolverHistory?
    ) -> (sample: Tensor, history: DPMSolverHistory?) {
        let (prev, next) = step(modelOutput: modelOutput, index: index, sample: sample, steps: steps, previous: history)
        return (prev, next)
    }
}
