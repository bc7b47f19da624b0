import Diffusion
import Foundation
import Tensor
import Vocabulary

/// The job's sampler: its timesteps and its step (DPM-Solver++ made once, its history kept
/// in the state).
extension SynthesisEngine {
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
}
