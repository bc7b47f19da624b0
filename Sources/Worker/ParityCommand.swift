import ArgumentParser
import Diffusion
import Foundation
import Tensor

/// `muse-worker parity-unet`: runs a UNet folder on the inputs stored by
/// tools/reference/full_sd15_parity.py and compares with diffusers' output.
struct ParityUNet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parity-unet",
        abstract: "Compare this engine's UNet with diffusers' on a stored input (see tools/reference/full_sd15_parity.py).")

    @Option(help: "UNet folder (config.json + safetensors).")
    var unet = "/tmp/sd15-random/unet"

    @Option(help: "Fixture with sample, timestep, encoder_hidden_states, out (default: UNET/parity.safetensors).")
    var fixture: String?

    @Option(help: "Timed forwards.")
    var repeats = 2

    @Flag(help: "Also time forward+backward to the conditioning.")
    var backward = false

    func run() throws {
        print("BLAS: \(BLAS.ensureConfigured())")
        var start = Date()
        let model = try UNet2DConditionModel(folder: unet)
        print(String(format: "loaded %@ in %.1f s", unet, Date().timeIntervalSince(start)))
        let f = try SafeTensorsFile(path: fixture ?? unet + "/parity.safetensors")
        let sample = try f.tensor("sample"), context = try f.tensor("encoder_hidden_states")
        let timestep = try f.tensor("timestep").data[0]
        let expected = try f.tensor("out")
        var out: Tensor? = nil
        for i in 0..<max(1, repeats) {
            start = Date()
            out = model(sample, timestep: timestep, context: context)
            print(String(format: "forward %d, batch %d, %d×%d latent: %.2f s", i + 1, sample.shape[0],
                         sample.shape[2], sample.shape[3], Date().timeIntervalSince(start)))
        }
        let scale = expected.data.map(abs).max()!
        let maxError = zip(out!.data, expected.data).map { abs($0 - $1) }.max()!
        let meanError = zip(out!.data, expected.data).map { Double(abs($0 - $1)) }.reduce(0, +) / Double(expected.count)
        print(String(format: "max |swift − diffusers| = %.3e (%.3e of max |out| %.3f), mean %.3e",
                     maxError, maxError / scale, scale, meanError))
        if backward {
            let contextVar = context.asVariable()
            start = Date()
            let loss = model(sample, timestep: timestep, context: contextVar).sum()
            _ = Autograd.gradients(of: loss, withRespectTo: [contextVar])
            print(String(format: "forward+backward to the conditioning: %.2f s", Date().timeIntervalSince(start)))
        }
    }
}
