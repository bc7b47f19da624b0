import Diffusion
import Foundation
import Tensor
import Vocabulary
import XCTest

@testable import MUSE

/// Head files written for the tests: the bundled tiny head's tensors under other metadata.
enum HeadFiles {
    static let emoSet = Emotion.allCases.map(\.rawValue).joined(separator: ",")
    static let vit = Tiny.models + "/tiny-vit-emotion"

    /// A fresh folder, removed by the caller.
    static func folder() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("muse-contract-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    /// The bundled tiny head's rows in the order of `classes` (names of Emotion cases), saved
    /// with that metadata (nil: none).
    static func write(
        _ path: String, classes: [String]?, features: String? = nil, rows: [Emotion]? = nil
    ) throws {
        let f = try SafeTensorsFile(path: Tiny.head)
        let order = (rows ?? Emotion.allCases).map(\.index)
        let weight = EmotionClassifier.gathered(try f.tensor("weight"), order)
        let bias = EmotionClassifier.gathered(try f.tensor("bias"), order)
        var metadata: [String: String] = [:]
        if let classes { metadata["classes"] = classes.joined(separator: ",") }
        if let features { metadata["features"] = features }
        try SafeTensorsFile.write([("weight", weight), ("bias", bias)], metadata: metadata, to: path)
    }
}

/// The classifier contract (issue #25): heads name their classes and are mapped to EmoSet's
/// order by name; a linear head says which features it takes; a ViT image-classification folder
/// is a whole classifier, guide or evaluator.
final class ClassifierContractTests: XCTestCase {
    func tower() throws -> CLIPVisionEncoder { try XCTUnwrap(Tiny.engine().classifier.tower) }

    /// torchvision's ImageFolder sorts classes alphabetically: the same head saved in that row
    /// order, saying so, gives the EmoSet-ordered head's probabilities exactly (the rows are
    /// gathered back at load); names are matched ignoring case and spaces.
    func testHeadRowsAreMappedToEmoSetOrderByName() throws {
        let dir = try HeadFiles.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let alphabetical = Emotion.allCases.sorted { $0.rawValue < $1.rawValue }
        XCTAssertNotEqual(alphabetical, Emotion.allCases)
        try HeadFiles.write(dir + "/alpha.safetensors", classes: alphabetical.map(\.rawValue), rows: alphabetical)
        try HeadFiles.write(
            dir + "/spelled.safetensors", classes: alphabetical.map { " " + $0.rawValue.capitalized },
            rows: alphabetical)
        let tower = try tower()
        let reference = try EmotionClassifier(tower: tower, headFile: Tiny.head)
        let images = Tensor.randomUniform([2, 3, 48, 40], seed: 11, range: -1...1)
        let expected = reference.probabilities(images: images).data
        for name in ["alpha", "spelled"] {
            let c = try EmotionClassifier(tower: tower, headFile: dir + "/\(name).safetensors")
            XCTAssertEqual(c.probabilities(images: images).data, expected, name)
            XCTAssertTrue(c.headDescription.contains("mapped to EmoSet order"), c.headDescription)
            XCTAssertTrue(c.headDescription.contains("image_embeds"), c.headDescription)
        }
        XCTAssertTrue(reference.headDescription.contains("(image_embeds; classes in EmoSet order)"))
    }

    /// Seven classes, a repeated or an unknown name, or no `classes` at all are refused naming
    /// the file and what it holds; the last says how to add them. Unknown `features` name the
    /// allowed values.
    func testHeadsWithoutTheEightEmotionsAreRefused() throws {
        let dir = try HeadFiles.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tower = try tower()
        let all = Emotion.allCases.map(\.rawValue)
        let seven = dir + "/seven.safetensors"
        try SafeTensorsFile.write(
            [("weight", .zeros([7, 32])), ("bias", .zeros([7]))],
            metadata: ["classes": all.dropLast().joined(separator: ",")], to: seven)
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: seven),
            containing: [seven, "must name the 8 emotions", "found 7: amusement,", "missing sadness"])
        let repeated = dir + "/repeated.safetensors"
        try HeadFiles.write(repeated, classes: ["awe"] + all.dropFirst())
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: repeated),
            containing: [repeated, "found 8: awe, awe,", "missing amusement", "repeated awe"])
        let unknown = dir + "/unknown.safetensors"
        try HeadFiles.write(unknown, classes: all.dropLast() + ["joy"])
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: unknown), containing: ["unknown 'joy'", "missing sadness"])
        let bare = dir + "/bare.safetensors"
        try HeadFiles.write(bare, classes: nil)
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: bare),
            containing: [
                bare, "no 'classes' metadata", "save_file(load_file(p), p, metadata={'classes': '\(HeadFiles.emoSet)'",
                "'features': 'image_embeds'",
            ])
        let oddFeatures = dir + "/features.safetensors"
        try HeadFiles.write(oddFeatures, classes: all, features: "pooler_output")
        assertThrows(
            try EmotionClassifier(tower: tower, headFile: oddFeatures),
            containing: [oddFeatures, "'pooler_output'", "allowed: image_embeds, normalized_image_embeds"])
    }

    /// `features: normalized_image_embeds`: logits = weight · normalize(image_embeds) + bias,
    /// with gradients reaching the pixels through the normalisation.
    func testNormalizedFeaturesAreNormalisedBeforeTheHead() throws {
        let dir = try HeadFiles.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/probe.safetensors"
        try HeadFiles.write(path, classes: Emotion.allCases.map(\.rawValue), features: "normalized_image_embeds")
        let tower = try tower()
        let probe = try EmotionClassifier(tower: tower, headFile: path)
        XCTAssertTrue(probe.headDescription.contains("normalized_image_embeds"), probe.headDescription)
        let images = Tensor.randomUniform([2, 3, 40, 40], seed: 12, range: -1...1)
        let f = try SafeTensorsFile(path: Tiny.head)
        let (weight, bias) = (try f.tensor("weight"), try f.tensor("bias"))
        let embeds = tower.imageEmbeds(pixelValues: tower.preprocess(images)).data
        let d = tower.projectionDim
        var expected: [Float] = []
        for b in 0..<2 {
            let x = Array(embeds[(b * d)..<((b + 1) * d)])
            let norm = x.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for k in 0..<8 {
                let row = weight.data[(k * d)..<((k + 1) * d)]
                expected.append(zip(row, x).reduce(0) { $0 + $1.0 * $1.1 / norm } + bias.data[k])
            }
        }
        let logits = probe.logits(images: images)
        for (a, e) in zip(logits.data, expected) { XCTAssertEqual(a, e, accuracy: 1e-5) }
        let plain = try EmotionClassifier(tower: tower, headFile: Tiny.head).logits(images: images)
        XCTAssertGreaterThan(zip(plain.data, logits.data).map { abs($0 - $1) }.max() ?? 0, 0.01)
        let v = images.asVariable()
        let g = Autograd.gradients(of: probe.logits(images: v).sum(), withRespectTo: [v])[0]
        XCTAssertGreaterThan(g.data.map(abs).max() ?? 0, 0)
    }

    /// The tiny ViT's id2label lists the emotions shuffled: its probabilities come out in EmoSet
    /// order, as transformers' softmax permuted by id2label (fixture by build_tiny_vit.py).
    /// Measured max error 1.8e-7 on probabilities up to 0.82.
    func testViTProbabilitiesAreInEmoSetOrder() throws {
        let c = try EmotionClassifier(imageClassifierFolder: HeadFiles.vit)
        XCTAssertNil(c.tower)
        guard case .imageClassifier(let model, let columns) = c.head else { return XCTFail("not a ViT head") }
        XCTAssertEqual(
            model.labels, ["fear", "excitement", "awe", "amusement", "sadness", "contentment", "disgust", "anger"])
        XCTAssertEqual(columns, [3, 2, 5, 1, 7, 6, 0, 4])
        XCTAssertTrue(c.headDescription.contains("mapped to EmoSet order"), c.headDescription)
        let f = try SafeTensorsFile(path: Tiny.fixtures + "/vit_classifier.safetensors")
        let p = c.probabilities(images: try f.tensor("images"))
        let expected = try f.tensor("emoset_probabilities")
        XCTAssertEqual(p.shape, [2, 8])
        let error = zip(p.data, expected.data).map { abs($0 - $1) }.max() ?? .infinity
        print("ClassifierContractTests ViT EmoSet probabilities: max abs error \(error)")
        XCTAssertLessThan(error, 1e-5)
        XCTAssertEqual(p.data.indices.max { p.data[$0] < p.data[$1] }.map { $0 % 8 }, Emotion.sadness.index)
    }

    /// id2label naming other classes is refused naming them; so is a ViT folder given a head.
    func testViTWithOtherLabelsIsRefused() throws {
        let dir = try HeadFiles.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["model.safetensors", "preprocessor_config.json"] {
            try FileManager.default.copyItem(atPath: HeadFiles.vit + "/" + name, toPath: dir + "/" + name)
        }
        let config = try String(contentsOfFile: HeadFiles.vit + "/config.json", encoding: .utf8)
        try config.replacingOccurrences(of: "\"0\": \"fear\"", with: "\"0\": \"joy\"")
            .write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        assertThrows(
            try EmotionClassifier(imageClassifierFolder: dir),
            containing: [
                dir + "/config.json: 'id2label'", "found 8: joy, excitement,", "missing fear", "unknown 'joy'",
            ])
        assertThrows(
            try EvaluatorFiles.linear(tower: HeadFiles.vit, head: Tiny.head).load(),
            containing: ["is an image classifier (ViT) with its own head"])
    }

    /// The ViT guides MUSE (s_t measured by the CLIP pair given as prompt tower) and evaluates;
    /// without a prompt tower, or with a head, it is refused before anything runs.
    func testViTGuidesAndEvaluates() throws {
        XCTAssertEqual(
            EvaluatorFiles(tower: HeadFiles.vit, head: nil, text: nil), .imageClassifier(folder: HeadFiles.vit))
        XCTAssertEqual(
            EvaluatorFiles(tower: Tiny.tower, head: nil, text: Tiny.text), .zeroShot(tower: Tiny.tower, text: Tiny.text)
        )
        let engine = try SynthesisEngine.load(
            model: Tiny.sd, tower: HeadFiles.vit, head: nil, text: Tiny.text, promptTower: Tiny.tower,
            evaluator: EvaluatorFiles(tower: HeadFiles.vit, head: nil, text: nil))
        let job = SynthesisJob(
            prompt: "a lake at dawn", emotion: .awe, method: .muse, seed: 4,
            settings: JobSettings(steps: 4, muse: Tiny.quickSettings()))
        let result = try engine.run(job)
        XCTAssertTrue(result.trace.classifier.hasPrefix("ViT image classifier"), result.trace.classifier)
        XCTAssertGreaterThan(result.trace.stepTraces.filter(\.guided).count, 0)
        XCTAssertEqual(result.probabilities.reduce(0, +), 1, accuracy: 1e-5)
        let evaluation = try XCTUnwrap(result.trace.evaluation)
        XCTAssertEqual(evaluation.probabilities, result.probabilities, "the guide and the evaluator are one model")
        XCTAssertTrue(evaluation.evaluator?.hasPrefix("evaluator: ViT image classifier") == true)

        assertThrows(
            try SynthesisEngine.load(model: Tiny.sd, tower: HeadFiles.vit, head: nil, text: Tiny.text),
            containing: ["is an image classifier (ViT) without a CLIP embedding", "needs a prompt tower"])
        assertThrows(
            try SynthesisEngine.load(
                model: Tiny.sd, tower: HeadFiles.vit, head: Tiny.head, text: Tiny.text, promptTower: Tiny.tower),
            containing: ["it takes no linear head"])
    }
}
