import ArgumentParser
import Foundation
import Imaging
import Support
import Tensor
import Vocabulary

/// `muse bench`: engine kernel throughput, with the BLAS kernels it ran on.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure sgemm, conv2d and attention throughput (forward and backward).")

    @Option(help: "Repetitions per measurement; the best is reported.")
    var repeats = 3

    @Flag(help: "Smaller sizes, for a quick check.")
    var quick = false

    func run() throws {
        let blas = BLAS.ensureConfigured()
        print("BLAS: \(blas)")
        let cpu = BLAS.cpuModelName()
        print(
            "CPU: \(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores, engine threads \(Threads.count) (MUSE_THREADS)"
        )
        print("C kernels: \(Tensor.cKernelSet) clones; conv 3×3: \(Tensor.convAlgorithm.rawValue) (MUSE_CONV)")

        let n = quick ? 512 : 2048
        let a = Tensor.randomNormal([n, n], seed: 1)
        let b = Tensor.randomNormal([n, n], seed: 2)
        report("sgemm \(n)³", flops: 2 * pow(Double(n), 3), seconds: best { _ = a.matmul(b) })

        let side = quick ? 32 : 64
        let channels = 320
        let x = Tensor.randomNormal([1, channels, side, side], seed: 3)
        let w = Tensor.randomNormal([channels, channels, 3, 3], seed: 4) * 0.02
        let convFlops = 2 * Double(channels * channels * 9 * side * side)
        benchConvForward(channels: channels, side: side)
        let xv = x.asVariable()
        report(
            "conv2d 3×3 \(channels)→\(channels) at \(side)×\(side) forward+backward (input and weight)",
            flops: 3 * convFlops,
            seconds: best {
                let wv = w.asVariable()
                _ = Autograd.gradients(of: xv.conv2d(wv, padding: 1).sum(), withRespectTo: [xv, wv])
            })
        benchConvInputGradient(channels: channels, side: side)
        if !quick {
            // The UNet's other levels and the VAE decoder's largest layers.
            for (channels, side) in [(640, 32), (1280, 16), (1280, 8), (128, 256), (128, 512)] {
                benchConvForward(channels: channels, side: side)
            }
        }

        let tokens = quick ? 1024 : 4096
        let heads = 8
        let dim = 40
        let q = Tensor.randomNormal([1, tokens, heads * dim], seed: 5)
        let attnFlops = 4 * Double(heads * tokens * tokens * dim)
        report(
            "attention \(tokens)×\(tokens)×\(dim)×\(heads) heads forward", flops: attnFlops,
            seconds: best { _ = Tensor.attention(query: q, key: q, value: q, heads: heads) })
        let qv = q.asVariable()
        report(
            "attention \(tokens)×\(tokens)×\(dim)×\(heads) heads forward+backward", flops: attnFlops * 3.5,
            seconds: best {
                _ = Autograd.gradients(
                    of: Tensor.attention(query: qv, key: qv, value: qv, heads: heads).sum(),
                    withRespectTo: [qv])
            })
    }

    /// Stride-1 3×3 forward on the automatic path, then on im2col (the A/B: the label gains
    /// ", im2col"; ops/bench compares both with PyTorch's same-named line).
    func benchConvForward(channels: Int, side: Int) {
        let x = Tensor.randomNormal([1, channels, side, side], seed: 3)
        let w = Tensor.randomNormal([channels, channels, 3, 3], seed: 4) * 0.02
        let flops = 2 * Double(channels * channels * 9 * side * side)
        let name = "conv2d 3×3 \(channels)→\(channels) at \(side)×\(side) forward"
        _ = x.conv2d(w, padding: 1)  // weight transform cached before timing, as in a model
        report(name, flops: flops, seconds: best { _ = x.conv2d(w, padding: 1) })
        withConvAlgorithm(.im2col) {
            report(name + ", im2col", flops: flops, seconds: best { _ = x.conv2d(w, padding: 1) })
        }
        // Weights that require gradients are not cached: the Winograd transform runs each call.
        let wv = w.asVariable()
        report(name + ", weights transformed per call", flops: flops, seconds: best { _ = x.conv2d(wv, padding: 1) })
    }

    /// Forward and input gradient with constant weights: what MUSE's backward pass does.
    func benchConvInputGradient(channels: Int, side: Int) {
        let xv = Tensor.randomNormal([1, channels, side, side], seed: 3).asVariable()
        let w = Tensor.randomNormal([channels, channels, 3, 3], seed: 4) * 0.02
        let flops = 4 * Double(channels * channels * 9 * side * side)
        let name = "conv2d 3×3 \(channels)→\(channels) at \(side)×\(side) forward+backward (input)"
        let run = { _ = Autograd.gradients(of: xv.conv2d(w, padding: 1).sum(), withRespectTo: [xv]) }
        run()
        report(name, flops: flops, seconds: best(run))
        withConvAlgorithm(.im2col) { report(name + ", im2col", flops: flops, seconds: best(run)) }
    }

    func withConvAlgorithm(_ algorithm: ConvAlgorithm, _ body: () -> Void) {
        let saved = Tensor.convAlgorithm
        Tensor.convAlgorithm = algorithm
        defer { Tensor.convAlgorithm = saved }
        body()
    }

    func best(_ body: () -> Void) -> Double {
        (0..<max(1, repeats)).map { _ in
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }.min()!
    }

    func report(_ name: String, flops: Double, seconds: Double) {
        let label = name.padding(toLength: 78, withPad: " ", startingAt: 0)
        print(label + String(format: "%9.4f s  %7.1f GFLOP/s", seconds, flops / seconds / 1e9))
    }
}
