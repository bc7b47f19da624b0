import Foundation
import Tensor
import XCTest

@testable import Diffusion

// The vision tower's preprocessing against transformers 5.24's CLIPImageProcessor (its PIL
// backend: torchvision is not installed) on procedural uint8 images, with the tiny tower's
// preprocessor_config.json (shortest edge 32, crop 32) and CLIP ViT-L/14's (224, 224).
// Fixtures: tools/reference/make_preprocess_fixtures.py → Tests/Fixtures/clip_preprocess.safetensors.
final class CLIPPreprocessTests: XCTestCase {
    /// Images as (height, width): square, landscape, portrait, 64² (upsampled to 224 by ViT-L's
    /// config) and 20×24 (upsampled by both).
    static let images = [(512, 512), (512, 768), (768, 512), (64, 64), (20, 24)]

    /// Max |ours − CLIPImageProcessor| in normalised units. The processor rounds to uint8 after
    /// each of PIL's two passes, the Swift path does not: measured 0.0121–0.0158 over the ten
    /// cases (0.0158 = 1.05 levels of 255 at std 0.2613), the same as the float64 reference's
    /// distance from the processor (the script prints both). The old path (square crop, bilinear
    /// without antialiasing) is off by 0.0995–1.83.
    static let processorTolerance: Float = 0.02
    /// Max |ours − float64 reference| (same steps, no rounding): measured 4.8e-7 – 1.1e-6.
    static let floatTolerance: Float = 1e-5

    /// make_preprocess_fixtures.py's image(): the same integer arithmetic, uint8 [3, H, W].
    static func image(height h: Int, width w: Int) -> [UInt8] {
        func tri(_ t: Int, _ p: Int) -> Int { abs(t % (2 * p) - p) }
        var out = [UInt8](repeating: 0, count: 3 * h * w)
        for c in 0..<3 {
            for y in 0..<h {
                for x in 0..<w {
                    let smooth = tri(2 * x + y + 31 * c, 150) * 255 / 150
                    let ripple = tri(7 * x + 5 * (h - y) + 13 * c, 40) * 255 / 40
                    var v = (2 * smooth + ripple) / 3
                    if (x / 41 + y / 53 + c) % 4 == 0 { v = 255 - v }
                    if (y / 16) % 5 == 2 { v = (x + c) % 3 == 0 ? 230 : 25 }
                    out[(c * h + y) * w + x] = UInt8(v)
                }
            }
        }
        return out
    }

    /// The uint8 image as the engine holds it: [1, 3, H, W] in [-1, 1], u ↦ u/127.5 − 1.
    static func engineImage(height h: Int, width w: Int) -> Tensor {
        Tensor(shape: [1, 3, h, w], data: image(height: h, width: w).map { Float($0) / 127.5 - 1 })
    }

    static func vitL() throws -> CLIPImagePreprocessor {
        let config = try ModelConfig(path: CLIPTests.root + "/Tests/Fixtures/clip_vit_l14_preprocessor_config.json")
        return try CLIPImagePreprocessor(config: config, imageSize: 224, channels: 3)
    }

    /// The engine's preprocessing before this change, to show the test tells them apart.
    static func oldPreprocess(_ images: Tensor, size: Int, mean: [Float], std: [Float]) -> Tensor {
        var x = images * 0.5 + 0.5
        let (h, w) = (x.shape[2], x.shape[3])
        if h > w { x = x.narrowed(axis: 2, start: (h - w) / 2, length: w) }
        if w > h { x = x.narrowed(axis: 3, start: (w - h) / 2, length: h) }
        if x.shape[2] != size { x = x.resizeBilinear(height: size, width: size) }
        return (x - Tensor(shape: [1, 3, 1, 1], data: mean)) / Tensor(shape: [1, 3, 1, 1], data: std)
    }

    static func maxError(_ a: Tensor, _ b: Tensor) -> Float {
        precondition(a.count == b.count, "\(a.shape) vs \(b.shape)")
        return zip(a.data, b.data).map { abs($0 - $1) }.max() ?? 0
    }

    func testMatchesCLIPImageProcessor() throws {
        let f = try CLIPTests.fixture("clip_preprocess.safetensors")
        let tiny = try CLIPVisionEncoder(folder: CLIPTests.model("tiny-clip-vision"))
        XCTAssertEqual(tiny.preprocessor.resize, .shortestEdge(32))
        XCTAssertEqual(tiny.preprocessor.crop, [32, 32])
        XCTAssertEqual(tiny.preprocessor.rescale, 1)
        let vitL = try Self.vitL()
        XCTAssertEqual(vitL.resize, .shortestEdge(224))
        XCTAssertEqual(vitL.crop, [224, 224])
        let configs: [(name: String, size: Int, run: (Tensor) -> Tensor)] = [
            ("tiny", 32, tiny.preprocess), ("vitl", 224, { vitL($0) }),
        ]
        var floatChecks = 0
        for (name, size, run) in configs {
            let mean = Tensor(shape: [1, 3, 1, 1], data: vitL.mean)
            let std = Tensor(shape: [1, 3, 1, 1], data: vitL.std)
            for (h, w) in Self.images {
                let key = "\(name)_\(h)x\(w)"
                let input = Self.engineImage(height: h, width: w)
                let ours = run(input)
                XCTAssertEqual(ours.shape, [1, 3, size, size], key)
                // pixel_values = (u / 255 − mean) / std of the processor's uint8 pixels (the
                // script checks this equals its pixel_values to 1e-6).
                let u8 = try f.tensor(key + "_processor").reshaped([1, 3, size, size])
                let processor = (u8 * (1 / Float(255)) - mean) / std
                let error = Self.maxError(ours, processor)
                let old = Self.maxError(
                    Self.oldPreprocess(input, size: size, mean: vitL.mean, std: vitL.std), processor)
                var line = "\(key): max |ours − processor| \(error), old path \(old)"
                XCTAssertLessThanOrEqual(error, Self.processorTolerance, key)
                XCTAssertGreaterThan(old, 4 * Self.processorTolerance, "\(key): the old path would pass")
                if f.contains(key + "_float") {
                    let reference = try f.tensor(key + "_float").reshaped([1, 3, size, size])
                    let floatError = Self.maxError(ours, reference)
                    line += ", |ours − float reference| \(floatError)"
                    XCTAssertLessThanOrEqual(floatError, Self.floatTolerance, key)
                    floatChecks += 1
                }
                print("CLIPPreprocessTests " + line)
            }
        }
        XCTAssertEqual(floatChecks, 6)
    }

    /// The op against torch: F.interpolate(mode="bicubic", antialias=True) and its autograd.
    func testResizeMatchesTorchForwardAndBackward() throws {
        let f = try CLIPTests.fixture("clip_preprocess.safetensors")
        for name in ["resize_a", "resize_b"] {
            let x = try f.tensor(name + "_input").asVariable()
            let expected = try f.tensor(name + "_output")
            let y = x.resizeBicubicAntialiased(height: expected.shape[2], width: expected.shape[3])
            XCTAssertEqual(y.shape, expected.shape)
            let forward = Self.maxError(y, expected)
            let grad = Autograd.gradients(of: y, withRespectTo: [x], seed: try f.tensor(name + "_seed"))[0]
            let backward = Self.maxError(grad, try f.tensor(name + "_grad"))
            // Measured 2.4e-7 / 7.5e-8 forward and 2.4e-7 / 1.1e-8 backward (values of order 1–3).
            XCTAssertLessThanOrEqual(forward, 1e-5, name)
            XCTAssertLessThanOrEqual(backward, 1e-5, name)
            print("CLIPPreprocessTests \(name) \(x.shape)→\(y.shape): forward \(forward), VJP \(backward)")
        }
    }

    /// The whole preprocessing's VJP (clamps included) against torch autograd of the float64
    /// reference, tiny config: 64² (down) and 20×24 (up).
    func testPreprocessGradientMatchesTorch() throws {
        let f = try CLIPTests.fixture("clip_preprocess.safetensors")
        let tiny = try CLIPVisionEncoder(folder: CLIPTests.model("tiny-clip-vision"))
        for (h, w) in [(64, 64), (20, 24)] {
            let key = "tiny_\(h)x\(w)"
            let x = Self.engineImage(height: h, width: w).asVariable()
            let seed = try f.tensor(key + "_seed").reshaped([1, 3, 32, 32])
            let grad = Autograd.gradients(of: tiny.preprocess(x), withRespectTo: [x], seed: seed)[0]
            let expected = try f.tensor(key + "_grad").reshaped([1, 3, h, w])
            let error = Self.maxError(grad, expected)
            let scale = expected.data.map(abs).max()!
            // Measured 2.4e-7 and 1.4e-6 (scales 1.6 and 8.0).
            XCTAssertLessThanOrEqual(error, 1e-5, key)
            print("CLIPPreprocessTests \(key) gradient vs torch: max error \(error) (scale \(scale))")
        }
    }

    /// Directional finite differences of Σ R·f(x) in four random directions d (unit normal
    /// entries) at ViT-L's 512² → 224 geometry, for the op alone (linear, so a wide step is
    /// exact) and the whole preprocessing. The error is judged against ‖∇‖, the typical size of
    /// ∇·d (a single ∇·d can be near zero by chance).
    func testGradientMatchesFiniteDifferences() throws {
        let vitL = try Self.vitL()
        let x = Self.engineImage(height: 512, width: 512)
        let cases: [(String, Float, Double, (Tensor) -> Tensor)] = [
            // Measured 2.1e-7 and 2.6e-5 (float32 sums over 150k outputs).
            ("resize 512²→224", 0.5, 2e-5, { $0.resizeBicubicAntialiased(height: 224, width: 224) }),
            ("preprocess 512²→224", 1e-2, 2e-3, { vitL($0) }),
        ]
        for (what, epsilon, tolerance, f) in cases {
            let v = x.asVariable()
            let out = f(v)
            let r = Tensor.randomNormal(out.shape, seed: 11)
            let grad = Autograd.gradients(of: (out * r).sum(), withRespectTo: [v])[0]
            let norm = grad.data.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            func loss(_ t: Tensor) -> Double {
                zip(f(t).data, r.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            }
            var worst: Double = 0
            for seed in UInt64(1)...4 {
                let d = Tensor.randomNormal(x.shape, seed: 100 + seed)
                let numeric = (loss(x + d * epsilon) - loss(x - d * epsilon)) / Double(2 * epsilon)
                let analytic = zip(grad.data, d.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let relative = abs(numeric - analytic) / norm
                worst = max(worst, relative)
                XCTAssertLessThan(relative, tolerance, "\(what), direction \(seed): \(analytic) vs \(numeric)")
            }
            print("CLIPPreprocessTests \(what): worst |numeric − analytic| / ‖∇‖ \(worst) (‖∇‖ \(norm))")
        }
    }

    func testCentreCropPadsLikeTransformers() {
        // center_crop of a 5×6 image to 8×4: rows padded 2 above and 1 below, columns 1..4 kept.
        let x = Tensor(shape: [1, 1, 5, 6], data: (0..<30).map { Float($0 + 1) })
        let y = CLIPImagePreprocessor.centreCropped(x, height: 8, width: 4)
        XCTAssertEqual(y.shape, [1, 1, 8, 4])
        let rows = stride(from: 0, to: 32, by: 4).map { Array(y.data[$0..<($0 + 4)]) }
        XCTAssertEqual(rows[0], [0, 0, 0, 0])
        XCTAssertEqual(rows[1], [0, 0, 0, 0])
        XCTAssertEqual(rows[2], [2, 3, 4, 5])
        XCTAssertEqual(rows[6], [26, 27, 28, 29])
        XCTAssertEqual(rows[7], [0, 0, 0, 0])
    }

    func testConfigForms() throws {
        func make(_ json: String, imageSize: Int = 224) throws -> CLIPImagePreprocessor {
            let values = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
            return try CLIPImagePreprocessor(
                config: ModelConfig(path: "test", values: values), imageSize: imageSize, channels: 3)
        }
        let modern = try make(#"{"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}"#)
        XCTAssertEqual(modern.resize, .shortestEdge(224))
        XCTAssertEqual(modern.crop, [224, 224])
        XCTAssertEqual(
            try make(#"{"size": {"height": 224, "width": 224}, "do_center_crop": false}"#).resize,
            .exact(height: 224, width: 224))
        XCTAssertEqual(try make("{}", imageSize: 336).crop, [336, 336])
        let defaults = try CLIPImagePreprocessor(config: nil, imageSize: 32, channels: 3)
        XCTAssertEqual(defaults.resize, .shortestEdge(32))
        XCTAssertEqual(defaults.crop, [32, 32])
        XCTAssertEqual(defaults.mean, CLIPImagePreprocessor.openAIMean)
        XCTAssertEqual(try make(#"{"do_rescale": false}"#).rescale, 255)
        XCTAssertThrowsError(try make(#"{"crop_size": 256}"#)) { XCTAssertTrue("\($0)".contains("224×224"), "\($0)") }
        // Configs that would hand the tower another size than its own are refused at load.
        for json in [#"{"do_center_crop": false}"#, #"{"do_resize": false, "do_center_crop": false}"#] {
            XCTAssertThrowsError(try make(json), json) { XCTAssertTrue("\($0)".contains("224×224"), "\($0)") }
        }
        XCTAssertThrowsError(try make(#"{"resample": 2}"#)) { XCTAssertTrue("\($0)".contains("'resample'"), "\($0)") }
        XCTAssertThrowsError(try make(#"{"size": {"longest_edge": 224}}"#)) {
            XCTAssertTrue("\($0)".contains("'size'"), "\($0)")
        }
        // The long edge is int(shortest · long / short), as get_resize_output_image_size.
        XCTAssertTrue(modern.resizedSize(height: 512, width: 769) == (224, 336))
        XCTAssertTrue(modern.resizedSize(height: 700, width: 500) == (313, 224))
    }
}
