import XCTest

@testable import Tensor

/// Winograd F(2×2,3×3) convolution against the im2col path it replaces for stride-1 3×3.
final class WinogradTests: XCTestCase {
    /// [batch, in channels, height, width, out channels]: odd sizes, 1×1 and 1×n images,
    /// channel counts that are multiples of nothing, batch 2, and UNet/VAE-like layers.
    static let shapes = [
        [1, 3, 5, 7, 4], [1, 5, 1, 1, 6], [2, 37, 13, 9, 29], [1, 7, 1, 10, 3], [2, 16, 2, 3, 8],
        [1, 64, 33, 31, 48], [2, 320, 16, 16, 320], [1, 128, 64, 64, 128], [1, 640, 8, 8, 640],
    ]

    override func tearDown() {
        Tensor.convAlgorithm = .automatic
        Tensor.winogradBandBudget = 1 << 20
    }

    func conv(_ algorithm: ConvAlgorithm, _ body: () -> Tensor) -> Tensor {
        Tensor.convAlgorithm = algorithm
        defer { Tensor.convAlgorithm = .automatic }
        return body()
    }

    /// Largest |a − b| relative to the largest |b| (a relative error per element is
    /// meaningless where outputs cancel to near zero).
    func error(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        let scale = b.data.map(abs).max() ?? 1
        let worst = zip(a.data, b.data).map { abs($0 - $1) }.max() ?? 0
        print(String(format: "winograd vs im2col %@: max |diff| %.2e of max |value| %.3g", "\(a.shape)", worst, scale))
        return worst / max(scale, 1e-30)
    }

    func inputs(_ s: [Int], seed: UInt64) -> (Tensor, Tensor, Tensor) {
        // He-like weight scale, as in trained layers, so outputs stay of order one.
        let scale = Float(2.0 / Double(9 * s[1])).squareRoot()
        return (
            random([s[0], s[1], s[2], s[3]], seed: seed), random([s[4], s[1], 3, 3], seed: seed + 1, scale: scale),
            random([s[4]], seed: seed + 2)
        )
    }

    func testForwardMatchesIm2col() {
        for (i, s) in Self.shapes.enumerated() {
            let (x, w, b) = inputs(s, seed: UInt64(10 * i))
            let old = conv(.im2col) { x.conv2d(w, b, padding: 1) }
            let new = conv(.winograd) { x.conv2d(w, b, padding: 1) }
            // Measured: at most 3e-7 of the largest output on these shapes.
            XCTAssertLessThan(error(new, old), 2e-6, "shape \(s)")
        }
    }

    func testInputGradientMatchesIm2colVJP() {
        for (i, s) in Self.shapes.enumerated() {
            let (x, w, b) = inputs(s, seed: UInt64(10 * i + 5))
            let xv = x.asVariable()
            let r = random([s[0], s[4], s[2], s[3]], seed: 99)
            let grad = { Autograd.gradients(of: (xv.conv2d(w, b, padding: 1) * r).sum(), withRespectTo: [xv])[0] }
            let old = conv(.im2col, grad)
            let new = conv(.winograd, grad)
            XCTAssertLessThan(error(new, old), 2e-6, "shape \(s)")
        }
    }

    func testGradientsMatchFiniteDifferences() {
        Tensor.convAlgorithm = .winograd
        let (x, w, b) = inputs([2, 5, 7, 6, 4], seed: 3)
        // Input, weight (Winograd forward with a per-call transform, im2col weight gradient) and bias.
        checkGradients([x, w, b]) { $0[0].conv2d($0[1], $0[2], padding: 1) }
        checkGradients([x]) { $0[0].conv2d(w, padding: 1) }
    }

    func testBandsAcrossImagesGiveTheSameValues() {
        let (x, w, b) = inputs([2, 37, 13, 9, 29], seed: 7)
        let whole = conv(.winograd) { x.conv2d(w, b, padding: 1) }
        // One tile row per band: bands end inside images, tiles of two images never mix.
        // (Not bitwise: sgemm's kernels for a narrower product may sum in another order.)
        Tensor.winogradBandBudget = 1
        XCTAssertLessThan(error(conv(.winograd) { x.conv2d(w, b, padding: 1) }, whole), 1e-6)
    }

    func testRunsAreBitwiseDeterministic() {
        let (x, w, b) = inputs([2, 96, 40, 24, 64], seed: 11)
        let xv = x.asVariable()
        let run = {
            let y = xv.conv2d(w, b, padding: 1)
            return (y.data, Autograd.gradients(of: (y * y).sum(), withRespectTo: [xv])[0].data)
        }
        Tensor.convAlgorithm = .winograd
        let (y1, g1) = run()
        let (y2, g2) = run()
        XCTAssertEqual(y1, y2)
        XCTAssertEqual(g1, g2)
    }

    func testAutomaticChoice() {
        func geometry(_ c: Int, _ side: Int, kernel: Int = 3, stride: Int = 1, cin: Int? = nil) -> ConvGeometry {
            ConvGeometry(
                batch: 1, inChannels: cin ?? c, height: side, width: side, outChannels: c, kernelH: kernel,
                kernelW: kernel, stride: stride, padding: kernel / 2)
        }
        XCTAssertTrue(geometry(320, 64).usesWinograd)
        XCTAssertTrue(geometry(128, 512).usesWinograd)
        XCTAssertFalse(geometry(320, 4, cin: 4).usesWinograd, "conv_in: too few channels")
        XCTAssertFalse(geometry(320, 64, stride: 2).usesWinograd)
        XCTAssertFalse(geometry(320, 64, kernel: 1).usesWinograd)
        Tensor.convAlgorithm = .im2col
        XCTAssertFalse(geometry(320, 64).usesWinograd)
    }

    func testWeightTransformIsCachedPerLiveTensor() {
        let x = random([1, 32, 16, 16], seed: 1)
        var w: Tensor? = random([32, 32, 3, 3], seed: 2)
        Tensor.convAlgorithm = .winograd
        let before = Tensor.winogradCacheFloats
        _ = x.conv2d(w!, padding: 1)
        _ = x.conv2d(w!, padding: 1)
        XCTAssertEqual(Tensor.winogradCacheFloats - before, 16 * 32 * 32, "one entry, made once")
        w = nil
        XCTAssertEqual(Tensor.winogradCacheFloats, before, "a freed weight's entry no longer counts")
        _ = x.conv2d(random([32, 32, 3, 3], seed: 3).asVariable(), padding: 1)
        XCTAssertEqual(Tensor.winogradCacheFloats, before, "weights being trained are not cached")
    }
}
