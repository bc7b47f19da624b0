import ArgumentParser
import Diffusion
import Foundation
import Imaging
import Support
import Tensor
import Vocabulary

/// `muse bench-engine`: the four operations of a MUSE inner iteration at full
/// SD 1.5 size, timed and checked against the outputs tools/reference/bench_engine.py stored
/// for the same random weights.
struct BenchEngineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-engine",
        abstract: "Time and check UNet and VAE at full SD 1.5 size (inputs from tools/reference/bench_engine.py).")

    @Option(help: "Folder with unet/, vae/ and engine_parity.safetensors.")
    var root = "/tmp/sd15-random"

    @Option(help: "Timed runs of each operation; the best is reported (the first run also pays for growing the heap).")
    var repeats = 2

    @Flag(help: "Time the UNet forward only (inputs from bench_engine.py --unet-only).")
    var unetOnly = false

    func run() throws {
        print("BLAS: \(BLAS.ensureConfigured())")
        print("C kernels: \(Tensor.cKernelSet) clones; conv 3×3: \(Tensor.convAlgorithm.rawValue) (MUSE_CONV)")
        let f = try SafeTensorsFile(path: root + "/engine_parity.safetensors")
        let unet = try UNet2DConditionModel(folder: root + "/unet")
        let sample = try f.tensor("sample")
        let context = try f.tensor("encoder_hidden_states")
        let timestep = try f.tensor("timestep").data[0]
        var (seconds, eps) = timed(repeats) { unet(sample, timestep: timestep, context: context) }
        report("UNet forward, 64×64 latent, batch 1", seconds, eps, try f.tensor("eps"))
        if unetOnly {
            // The A/B on a shared machine: the two paths alternate, so both see the same load.
            var (current, old) = (seconds, Double.infinity)
            for _ in 0..<repeats {
                let saved = Tensor.convAlgorithm
                Tensor.convAlgorithm = .im2col
                old = min(old, timed(1) { unet(sample, timestep: timestep, context: context) }.0)
                Tensor.convAlgorithm = saved
                current = min(current, timed(1) { unet(sample, timestep: timestep, context: context) }.0)
            }
            print(String(format: "UNet forward: %.2f s, im2col %.2f s (alternating, best of each)", current, old))
            print(String(format: "Winograd weight cache after the UNet: %.0f MB", cacheMB()))
            return
        }
        let contextVar = context.asVariable()
        var grad: Tensor
        (seconds, grad) = timed(repeats) {
            Autograd.gradients(
                of: unet(sample, timestep: timestep, context: contextVar).sum(), withRespectTo: [contextVar])[0]
        }
        report("UNet forward+backward to the conditioning", seconds, grad, try f.tensor("grad_context"))

        let vae = try AutoencoderKL(folder: root + "/vae")
        let latent = try f.tensor("latent")
        var image: Tensor
        (seconds, image) = timed(repeats) { vae.decode(latent) }
        report("VAE decode, 64×64 latent → 512×512", seconds, image, try f.tensor("image"))
        let latentVar = latent.asVariable()
        (seconds, grad) = timed(repeats) {
            Autograd.gradients(of: vae.decode(latentVar).sum(), withRespectTo: [latentVar])[0]
        }
        report("VAE decode forward+backward to the latent", seconds, grad, try f.tensor("grad_latent"))
        print(String(format: "Winograd weight cache after UNet and VAE: %.0f MB", cacheMB()))
    }

    func cacheMB() -> Double { Double(Tensor.winogradCacheFloats * MemoryLayout<Float>.size) / 1e6 }

    func timed<T>(_ repeats: Int, _ body: () -> T) -> (Double, T) {
        var best = Double.infinity
        var result: T? = nil
        for _ in 0..<max(1, repeats) {
            let start = DispatchTime.now().uptimeNanoseconds
            result = body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return (best, result!)
    }

    func report(_ name: String, _ seconds: Double, _ got: Tensor, _ expected: Tensor) {
        let scale = expected.data.map(abs).max() ?? 1
        let error = zip(got.data, expected.data).map { abs($0 - $1) }.max() ?? 0
        print(
            name.padding(toLength: 60, withPad: " ", startingAt: 0)
                + String(format: "%9.2f s   max error %.1e of max |value| %.3g", seconds, error / scale, scale))
    }
}
