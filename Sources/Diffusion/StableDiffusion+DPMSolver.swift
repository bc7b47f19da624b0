import DiffusersLayout
import Foundation
import Tensor

extension StableDiffusion {
    /// DPM-Solver++(2M) for this model: DPMSolverMultistepScheduler.from_config of the
    /// model's scheduler config (scheduler/scheduler_config.json).
    public func dpmSolverScheduler() throws -> DPMSolverMultistepScheduler {
        try DPMSolverMultistepScheduler(configPath: files.configFolder + "/" + DiffusersLayout.schedulerConfig)
    }

    /// Text-to-image with DPM-Solver++ from a given initial latent (init_noise_sigma is 1):
    /// the one denoising loop with diffusers' DPMSolverMultistepScheduler step. `scheduler`
    /// defaults to `dpmSolverScheduler()`. Returns the final latent (before
    /// 1/scaling_factor); `progress` is called after each step. Throws for step counts the
    /// scheduler cannot run (see `DPMSolverMultistepScheduler.validate(steps:)`).
    public func denoiseDPMSolver(
        from latent: Tensor, prompt: String, negativePrompt: String = "",
        steps: Int, guidance: Float, scheduler: DPMSolverMultistepScheduler? = nil,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> Tensor {
        try denoise(
            from: latent, prompt: prompt, negativePrompt: negativePrompt, steps: steps, guidance: guidance,
            scheduler: try scheduler ?? dpmSolverScheduler(), progress: progress)
    }
}
