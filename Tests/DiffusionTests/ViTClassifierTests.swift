import Foundation
import Tensor
import XCTest

@testable import Diffusion

/// Parity of the ViT image classifier with transformers 5.24 (models/tiny-vit-emotion and
/// Tests/Fixtures/vit_classifier.safetensors, both by tools/reference/build_tiny_vit.py): the
/// image processor's torchvision path on float images (antialiased bilinear resize 40×48 → 32×32
/// and 20×28 → 32×32, rescale, ImageNet normalisation), the encoder and the head, and the
/// gradient of Σ(logits · R) with respect to the [-1, 1] pixels. Errors are judged as in
/// CLIPTests: max|ours − reference| ≤ tolerance · max|reference| (the fixture's own float32 error
/// against float64 is 3.3e-7 for the logits, 8.4e-7 for the gradient).
final class ViTClassifierTests: XCTestCase {
    static let folder = CLIPTests.model("tiny-vit-emotion")

    /// Asserts max|actual − expected| ≤ tolerance · max|expected| and prints the error.
    func assertClose(
        _ actual: Tensor, _ expected: Tensor, tolerance: Float, _ what: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(actual.shape, expected.shape, what, file: file, line: line)
        guard actual.shape == expected.shape else { return }
        let error = zip(actual.data, expected.data).map { abs($0 - $1) }.max() ?? 0
        let scale = max(expected.data.map(abs).max() ?? 0, .leastNormalMagnitude)
        XCTAssertLessThanOrEqual(
            error / scale, tolerance, "\(what): max error \(error), scale \(scale)", file: file, line: line)
        print("ViTClassifierTests \(what): max abs error \(error) (scale \(scale), relative \(error / scale))")
    }

    func testConfigAndLabels() throws {
        let vit = try ViTImageClassifier(folder: Self.folder)
        XCTAssertEqual([vit.imageSize, vit.patchSize, vit.hiddenSize, vit.layers.count], [32, 8, 32, 2])
        XCTAssertEqual(
            vit.labels, ["fear", "excitement", "awe", "amusement", "sadness", "contentment", "disgust", "anger"])
        XCTAssertEqual(vit.preprocessor.filter, .bilinear)
        XCTAssertEqual(vit.preprocessor.size, [32, 32])
        XCTAssertNil(vit.preprocessor.crop)
        XCTAssertEqual(vit.preprocessor.mean, [0.485, 0.456, 0.406])
        XCTAssertEqual(vit.preprocessor.std, [0.229, 0.224, 0.225])
    }

    func testLogitsAndInputGradientMatchTransformers() throws {
        let f = try CLIPTests.fixture("vit_classifier.safetensors")
        let vit = try ViTImageClassifier(folder: Self.folder)
        // The encoder alone, on transformers' pixel values. Measured 8.3e-7 (scale 3.3, relative 2.5e-7).
        assertClose(
            vit.logits(pixelValues: try f.tensor("pixel_values")), try f.tensor("logits"), tolerance: 1e-5,
            "ViT logits from pixel_values")
        // The processor (resize, rescale, normalise). Measured 8.9e-7 (scale 2.3, relative 3.9e-7).
        let images = try f.tensor("images").asVariable()
        let pixels = vit.preprocess(images)
        assertClose(pixels, try f.tensor("pixel_values"), tolerance: 1e-5, "ViT pixel_values")
        // End to end, and d Σ(logits·R) / d images. Measured 1.5e-6 (relative 4.5e-7) and
        // 3.1e-7 (scale 0.44, relative 7.1e-7).
        let logits = vit.logits(pixelValues: pixels)
        assertClose(logits, try f.tensor("logits"), tolerance: 1e-5, "ViT logits from images")
        let grad = Autograd.gradients(of: logits, withRespectTo: [images], seed: try f.tensor("grad_seed"))[0]
        assertClose(grad, try f.tensor("grad_images"), tolerance: 1e-5, "ViT grad_images")

        // An image smaller than the model's: the antialiased bilinear resize enlarges it. Measured
        // 1.1e-6 (relative 3.8e-7) and 6.3e-7 (scale 0.36, relative 1.7e-6).
        let small = try f.tensor("small_images").asVariable()
        let smallLogits = vit.logits(pixelValues: vit.preprocess(small))
        assertClose(smallLogits, try f.tensor("small_logits"), tolerance: 1e-5, "ViT small logits")
        let smallGrad = Autograd.gradients(
            of: smallLogits, withRespectTo: [small], seed: try f.tensor("small_grad_seed"))[0]
        assertClose(smallGrad, try f.tensor("small_grad_images"), tolerance: 1e-5, "ViT small grad_images")
    }

    /// A folder without preprocessor_config.json is refused: the normalisation it was trained
    /// with cannot be guessed.
    func testMissingProcessorConfigIsRefused() throws {
        let dir = NSTemporaryDirectory() + "vit-copy-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.createSymbolicLink(
                atPath: dir + "/" + name, withDestinationPath: Self.folder + "/" + name)
        }
        XCTAssertThrowsError(try ViTImageClassifier(folder: dir)) {
            XCTAssertTrue("\($0)".contains("\(dir): no preprocessor_config.json"), "\($0)")
        }
    }
}
