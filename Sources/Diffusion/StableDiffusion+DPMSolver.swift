import DiffusersLayout
import Foundation
import Tensor

extension StableDiffusion {
    /// DPM-Solver++(2M) for this model: DPMSolverMultistepScheduler.from_config of the
    /// model's scheduler config (scheduler/scheduler_config.json).
    public func dpmSolverScheduler() throws -> DPMSolverMultistepScheduler {
        try DPMSolverMultistepScheduler(configPath: folder + "/" + DiffusersLayout.schedulerConfig)
    }

    /// Text-to-image with DPM-Solver++ from a given initial latent (init_noise_sigma is 1):
    /// the DDIM `denoise` with diffusers' DPMSolverMultistepScheduler step. `scheduler`
    /// defaults to `dpmSolverScheduler()`. Returns the final latent (before
    /// 1/scaling_factor); `progress` is called after each step. Throws for step counts the
    /// scheduler cannot run (see `DPMSolverMultistepScheduler.validate(steps:)`).
    public func denoiseDPMSolver(
        from latent: Tensor, prompt: String, negativePrompt: String = "",
        steps: Int, guidance: Float, scheduler: DPMSolverMultistepScheduler? = nil,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> Tensor {
        let dpm = try scheduler ?? dpmSolverScheduler()
        try dpm.validate(steps: steps)
        let conditional = encodePrompt(prompt)
        let unconditional = encodePrompt(negativePrompt)
        var z = latent
        var history: DPMSolverHistory? = nil
        let timesteps = dpm.timesteps(steps: steps)
        for (i, t) in timesteps.enumerated() {
            let eps = guidedNoise(
                latent: z, timestep: t, conditional: conditional, unconditional: unconditional,
                guidance: guidance)
            (z, history) = dpm.step(modelOutput: eps, index: i, sample: z, steps: steps, previous: history)
            progress?(i + 1, timesteps.count)
        }
        return z
    }
}
