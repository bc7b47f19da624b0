import Diffusion
import Foundation
import Tensor
import Vocabulary
import XCTest

@testable import MUSE

final class ClassifierTests: XCTestCase {
    /// The fixture's pixel_values are already CLIP-normalised 32×32: undo the normalisation
    /// so `probabilities(images:)` (which preprocesses) sees the same pixels.
    func testLinearHeadMatchesTransformersFixture() throws {
        let classifier = try Tiny.engine().classifier
        let tower = try XCTUnwrap(classifier.tower)
        let f = try SafeTensorsFile(path: Tiny.fixtures + "/clip_vision.safetensors")
        let pixels = try f.tensor("pixel_values")
        let mean = Tensor(shape: [1, 3, 1, 1], data: tower.imageMean)
        let std = Tensor(shape: [1, 3, 1, 1], data: tower.imageStd)
        let images = (pixels * std + mean) * 2 - 1
        let p = classifier.probabilities(images: images)
        let expected = try f.tensor("emotion_probs")
        XCTAssertEqual(p.shape, [2, 8])
        for (a, b) in zip(p.data, expected.data) { XCTAssertEqual(a, b, accuracy: 2e-5) }
    }

    func testProbabilitiesAreDifferentiableInThePixels() throws {
        let classifier = try Tiny.engine().classifier
        let image = Tensor.randomUniform([1, 3, 64, 64], seed: 5, range: -0.9...0.9)
        let v = image.asVariable()
        let target = classifier.probabilities(images: v).narrowed(axis: 1, start: 2, length: 1).sum()
        let g = Autograd.gradients(of: target, withRespectTo: [v])[0]
        for i in [17, 4096 + 2000, 8192 + 4000] {
            var plus = image.data
            var minus = image.data
            plus[i] += 1e-2
            minus[i] -= 1e-2
            func p(_ d: [Float]) -> Float {
                classifier.probabilities(images: Tensor(shape: image.shape, data: d)).data[2]
            }
            XCTAssertEqual(g.data[i], (p(plus) - p(minus)) / 2e-2, accuracy: 1e-4 + 0.05 * abs(g.data[i]), "pixel \(i)")
        }
    }

    func testHeadShapeErrors() throws {
        let tower = try XCTUnwrap(Tiny.engine().classifier.tower)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("muse-heads-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ name: String, _ tensors: [(String, Tensor)]) throws -> String {
            let path = dir + "/" + name
            try SafeTensorsFile.write(tensors, metadata: ["classes": HeadFiles.emoSet], to: path)
            return path
        }
        let sevenWay = try write("seven.safetensors", [("weight", .zeros([7, 32])), ("bias", .zeros([7]))])
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: sevenWay), containing: ["[7, 32]", "one output per emotion"])
        let wide = try write("wide.safetensors", [("weight", .zeros([8, 768])), ("bias", .zeros([8]))])
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: wide), containing: ["takes 768-d features", "projects to 32"])
        let named = try write("named.safetensors", [("fc.weight", .zeros([8, 32])), ("fc.bias", .zeros([8]))])
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: named), containing: ["needs tensors 'weight'", "fc.weight"])
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: dir + "/missing.safetensors"), containing: ["does not exist"])
    }

    /// With one template the class embedding is the normalised text_embeds of that prompt,
    /// which the fixture holds for "a photo that evokes amusement" / "… sadness".
    func testZeroShotHeadUsesNormalisedTextEmbeddings() throws {
        let tower = try XCTUnwrap(Tiny.engine().classifier.tower)
        let zs = try EmotionClassifier.zeroShot(
            tower: tower, textFolder: Tiny.text, templates: ["a photo that evokes {}"])
        guard case .zeroShot(let classes, let scale) = zs.head else { return XCTFail("not a zero-shot head") }
        XCTAssertEqual(scale, 100)
        let f = try SafeTensorsFile(path: Tiny.fixtures + "/clip_text_projection.safetensors")
        let reference = l2Normalized(try f.tensor("text_embeds"))
        for (row, emotion) in [(0, Emotion.amusement), (1, .sadness)] {
            let mine = classes.narrowed(axis: 0, start: emotion.index, length: 1).data
            let theirs = reference.narrowed(axis: 0, start: row, length: 1).data
            for (a, b) in zip(mine, theirs) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        }
        let p = zs.probabilities(images: Tensor.randomUniform([2, 3, 64, 64], seed: 9, range: -1...1))
        XCTAssertEqual(p.shape, [2, 8])
        XCTAssertEqual(p.narrowed(axis: 0, start: 0, length: 1).sum().scalar, 1, accuracy: 1e-5)
        assertThrows(
            try EmotionClassifier.zeroShot(tower: tower, textFolder: Tiny.sd + "/text_encoder"),
            containing: ["needs a text model with a projection"])
    }
}
