import ArgumentParser
import DiffusersLayout
import Diffusion
import Foundation
import Imaging
import MUSE
import Support
import Tensor
import Vocabulary

/// `muse generate`: text-to-image with an emotion (MUSE or a baseline), or plain
/// text-to-image without --emotion.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate an image evoking an emotion (MUSE), or a plain text-to-image without --emotion.")

    @Option(help: "Text prompt.")
    var prompt: String

    @OptionGroup var engine: MUSEEngineOptions

    func run() throws {
        let checked = try engine.check()
        guard let emotion = checked.emotion else {
            try plain(checked)
            return
        }
        let museEngine = try engine.loadEngine(checked)
        let job = SynthesisJob(
            prompt: prompt, emotion: emotion, method: checked.method, seed: engine.seed, settings: checked.settings)
        try EngineCLI.runJob(museEngine, job, image: nil, options: engine)
    }

    /// Plain text-to-image through StableDiffusion.denoise (DDIM) or denoiseDPMSolver
    /// (`--scheduler dpmpp-2m`).
    func plain(_ checked: MUSEEngineOptions.Checked) throws {
        EngineCLI.log("BLAS: \(BLAS.ensureConfigured())")
        let sd = try StableDiffusion(files: checked.paths.modelFiles)
        let steps = checked.settings.steps
        let side = sd.unet.sampleSize * sd.vae.downsampleFactor
        let began = Date()
        let z = Tensor.randomNormal(sd.latentShape(height: side, width: side), seed: engine.seed)
        let progress = { (done: Int, total: Int) in EngineCLI.log("step \(done)/\(total)") }
        let latent: Tensor
        switch checked.settings.scheduler {
        case .ddim:
            latent = sd.denoise(
                from: z, prompt: prompt, negativePrompt: engine.negativePrompt, steps: steps,
                guidance: engine.guidance, progress: progress)
        case .dpmpp2m:
            latent = try sd.denoiseDPMSolver(
                from: z, prompt: prompt, negativePrompt: engine.negativePrompt, steps: steps,
                guidance: engine.guidance, progress: progress)
        }
        let (w, h, bytes) = sd.decodeToImage(latent).rgbBytes()
        try EngineCLI.writePNG(bytes, width: w, height: h, to: engine.out)
        let seconds = Date().timeIntervalSince(began)
        if let tracePath = engine.trace {
            let summary: [String: String] = [
                "mode": "plain", "prompt": prompt, "seed": "\(engine.seed)", "steps": "\(steps)",
                "scheduler": checked.settings.scheduler.rawValue,
                "guidance": "\(engine.guidance)", "seconds": String(format: "%.3f", seconds),
            ]
            try EngineCLI.writeJSON(summary, to: tracePath)
        }
        EngineCLI.log(String(format: "wrote %@ (%d×%d) in %.1f s", engine.out, w, h, seconds))
    }
}
