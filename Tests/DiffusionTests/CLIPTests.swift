import Foundation
import Tensor
import XCTest

@testable import Diffusion

// Parity with transformers 5.24 on the tiny random-weight models (fixtures written by
// tools/reference/make_fixtures.py). Errors are judged against each output's scale:
// max|ours − reference| ≤ tolerance · max|reference|.
final class CLIPTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static func model(_ name: String) -> String { root + "/models/" + name }
    static func fixture(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: root + "/Tests/Fixtures/" + name)
    }

    /// I64 [B, T] → rows of ids.
    func idRows(_ f: SafeTensorsFile, _ name: String) throws -> [[Int]] {
        let flat = try f.int64s(name).map(Int.init)
        let length = try XCTUnwrap(f.info(name)).shape[1]
        return stride(from: 0, to: flat.count, by: length).map { Array(flat[$0..<($0 + length)]) }
    }

    /// Asserts the scaled max error is within `tolerance`; returns the raw max error.
    @discardableResult
    func assertClose(
        _ actual: Tensor, _ expected: Tensor, tolerance: Float, _ what: String,
        file: StaticString = #filePath, line: UInt = #line
    ) -> Float {
        XCTAssertEqual(actual.shape, expected.shape, what, file: file, line: line)
        guard actual.shape == expected.shape else { return .infinity }
        let error = zip(actual.data, expected.data).map { abs($0 - $1) }.max() ?? 0
        let scale = max(expected.data.map(abs).max() ?? 0, .leastNormalMagnitude)
        XCTAssertLessThanOrEqual(
            error / scale, tolerance, "\(what): max error \(error), scale \(scale)", file: file, line: line)
        print("CLIPTests \(what): max abs error \(error) (scale \(scale))")
        return error
    }

    // MARK: text encoder (models/tiny-sd/text_encoder, F16 weights upcast to Float)

    func testTextEncoderMatchesTransformers() throws {
        let f = try Self.fixture("text_encoder.safetensors")
        let te = try CLIPTextEncoder(folder: Self.model("tiny-sd/text_encoder"))
        let ids = try idRows(f, "input_ids")
        XCTAssertEqual(te.hiddenSize, 32)
        XCTAssertEqual(te.eosTokenID, 2513)

        let embeds = te.tokenEmbeddings(ids.flatMap { $0 }).reshaped([ids.count, ids[0].count, te.hiddenSize])
        assertClose(embeds, try f.tensor("inputs_embeds"), tolerance: 0, "token embeddings")
        // Measured max abs error 1.1e-6 (scale 3.5, relative 3.1e-7).
        let hidden = te.encode(ids: ids)
        assertClose(hidden, try f.tensor("last_hidden_state"), tolerance: 1e-5, "text last_hidden_state")
        // Measured 9.5e-7 (scale 2.5). eos 2513 ≠ 2: the first eos position is pooled.
        assertClose(
            te.pooled(lastHidden: hidden, ids: ids), try f.tensor("pooler_output"), tolerance: 1e-5,
            "text pooler_output")
        XCTAssertNil(te.textEmbeds(ids: ids), "an SD text encoder has no text_projection")
    }

    func testTextEncoderGradientWithRespectToInputEmbeddings() throws {
        let f = try Self.fixture("text_encoder.safetensors")
        let te = try CLIPTextEncoder(folder: Self.model("tiny-sd/text_encoder"))
        let ids = try idRows(f, "input_ids")
        let v = te.tokenEmbeddings(ids.flatMap { $0 }).reshaped([ids.count, ids[0].count, te.hiddenSize]).asVariable()
        let out = te.encode(inputEmbeddings: v)
        let grad = Autograd.gradients(of: out, withRespectTo: [v], seed: try f.tensor("grad_seed"))[0]
        // Measured 1.2e-4 (scale 275, relative 4.4e-7).
        assertClose(grad, try f.tensor("grad_inputs_embeds"), tolerance: 1e-5, "text grad_inputs_embeds")

        // MUSE's use: one learnable token spliced into constant embeddings gets that row's gradient.
        let (b, t) = (1, 5)
        let constant = v.detached()
        let token = constant.narrowed(axis: 0, start: b, length: 1).narrowed(axis: 1, start: t, length: 1).asVariable()
        let row = constant.narrowed(axis: 0, start: b, length: 1)
        let spliced = Tensor.concat(
            [
                row.narrowed(axis: 1, start: 0, length: t), token,
                row.narrowed(axis: 1, start: t + 1, length: ids[0].count - t - 1),
            ], axis: 1)
        let input = Tensor.concat([constant.narrowed(axis: 0, start: 0, length: b), spliced], axis: 0)
        let tokenGrad = Autograd.gradients(
            of: te.encode(inputEmbeddings: input), withRespectTo: [token],
            seed: try f.tensor("grad_seed"))[0]
        let expected = try f.tensor("grad_inputs_embeds").narrowed(axis: 0, start: b, length: 1).narrowed(
            axis: 1, start: t, length: 1)
        assertClose(tokenGrad, expected, tolerance: 1e-5, "single-token gradient")
    }

    func testTextProjectionMatchesTransformers() throws {
        let f = try Self.fixture("clip_text_projection.safetensors")
        let te = try CLIPTextEncoder(folder: Self.model("tiny-clip-text"))
        let ids = try idRows(f, "input_ids")
        XCTAssertEqual(te.projectionDim, 32)
        // Measured 1.0e-6 (scale 2.9) and 8.3e-7 (scale 2.0).
        assertClose(
            te.encode(ids: ids), try f.tensor("last_hidden_state"), tolerance: 1e-5,
            "projection-model last_hidden_state")
        assertClose(try XCTUnwrap(te.textEmbeds(ids: ids)), try f.tensor("text_embeds"), tolerance: 1e-5, "text_embeds")
    }

    // MARK: vision tower (models/tiny-clip-vision)

    func testVisionEncoderMatchesTransformers() throws {
        let f = try Self.fixture("clip_vision.safetensors")
        let vision = try CLIPVisionEncoder(folder: Self.model("tiny-clip-vision"))
        XCTAssertEqual(vision.imageSize, 32)
        XCTAssertEqual(vision.projectionDim, 32)
        XCTAssertEqual(vision.imageMean, [0.48145466, 0.4578275, 0.40821073])
        XCTAssertEqual(vision.imageStd, [0.26862954, 0.26130258, 0.27577711])

        let pixels = try f.tensor("pixel_values").asVariable()
        // Measured 1.8e-6 (scale 3.5) and 7.2e-7 (scale 2.9).
        assertClose(
            vision.lastHiddenState(pixelValues: pixels), try f.tensor("last_hidden_state"), tolerance: 1e-5,
            "vision last_hidden_state")
        let embeds = vision.imageEmbeds(pixelValues: pixels)
        assertClose(embeds, try f.tensor("image_embeds"), tolerance: 1e-5, "image_embeds")
        let grad = Autograd.gradients(of: embeds, withRespectTo: [pixels], seed: try f.tensor("grad_seed"))[0]
        // Measured 4.5e-8 (scale 0.084, relative 5.3e-7).
        assertClose(grad, try f.tensor("grad_pixel_values"), tolerance: 1e-5, "vision grad_pixel_values")
    }

    func testPreprocessIsAffineAtNativeSizeAndResizesOtherwise() throws {
        let vision = try CLIPVisionEncoder(folder: Self.model("tiny-clip-vision"))
        let images = Tensor.randomUniform([1, 3, 32, 32], seed: 7, range: -1...1).asVariable()
        let out = vision.preprocess(images)
        // At the model's size: ((x + 1) / 2 − mean) / std per channel, gradient 0.5 / std.
        let plane = 32 * 32
        let expected = Tensor(
            shape: out.shape,
            data: images.data.enumerated().map { i, x in
                ((x + 1) / 2 - vision.imageMean[i / plane]) / vision.imageStd[i / plane]
            })
        assertClose(out, expected, tolerance: 1e-6, "preprocess")
        let grad = Autograd.gradients(of: out.sum(), withRespectTo: [images])[0]
        for c in 0..<3 { XCTAssertEqual(grad.data[c * plane], 0.5 / vision.imageStd[c], accuracy: 1e-5) }

        // Larger and non-square images: centre-cropped, resized, still differentiable.
        let wide = Tensor.randomUniform([2, 3, 48, 64], seed: 8, range: -1...1).asVariable()
        let small = vision.preprocess(wide)
        XCTAssertEqual(small.shape, [2, 3, 32, 32])
        let g = Autograd.gradients(of: vision.imageEmbeds(pixelValues: small).sum(), withRespectTo: [wide])[0]
        XCTAssertTrue(g.data.contains { $0 != 0 })
        XCTAssertTrue((0..<48).allSatisfy { y in g.data[y * 64] == 0 }, "cropped-away columns get no gradient")
    }

    // MARK: legacy pooling rule

    func testLegacyEOSTokenTwoPoolsAtLargestID() throws {
        let dir = try temporaryCopy(of: "tiny-sd/text_encoder")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let configPath = dir + "/config.json"
        var config = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])
        config["eos_token_id"] = 2
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        let te = try CLIPTextEncoder(folder: dir)
        XCTAssertEqual(te.eosPosition([5, 2500, 7, 2500, 2]), 1, "argmax of the ids, first on ties")
        let modern = try CLIPTextEncoder(folder: Self.model("tiny-sd/text_encoder"))
        XCTAssertEqual(modern.eosPosition([2512, 9, 2513, 2513]), 2, "first eos_token_id")
        XCTAssertEqual(modern.eosPosition([2512, 9]), 0, "no eos: position 0, as argmax of all-false")
    }

    // MARK: load errors name the tensor

    func testMissingOrMisshapenWeightNamesTheTensor() throws {
        let cases: [(model: String, make: (String) throws -> Void, drop: String?, reshape: String?)] = [
            (
                "tiny-sd/text_encoder", { _ = try CLIPTextEncoder(folder: $0) },
                "text_model.encoder.layers.1.mlp.fc2.weight", nil
            ),
            (
                "tiny-sd/text_encoder", { _ = try CLIPTextEncoder(folder: $0) }, nil,
                "text_model.embeddings.position_embedding.weight"
            ),
            ("tiny-clip-vision", { _ = try CLIPVisionEncoder(folder: $0) }, "visual_projection.weight", nil),
            (
                "tiny-clip-vision", { _ = try CLIPVisionEncoder(folder: $0) }, nil,
                "vision_model.embeddings.patch_embedding.weight"
            ),
        ]
        for c in cases {
            let dir = try temporaryCopy(of: c.model)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let path = dir + "/model.safetensors"
            let file = try SafeTensorsFile(path: path)
            let tensors = try file.names.compactMap { name -> (String, Tensor)? in
                if name == c.drop { return nil }
                let t = try file.tensor(name)
                // Drop the first row/plane: same rank, wrong leading size.
                return (name, name == c.reshape ? t.narrowed(axis: 0, start: 1, length: t.shape[0] - 1) : t)
            }
            try SafeTensorsFile.write(tensors, to: path)
            let name = c.drop ?? c.reshape!
            XCTAssertThrowsError(try c.make(dir), name) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("'\(name)'"), "error does not name \(name): \(message)")
                XCTAssertTrue(message.contains(c.drop != nil ? "missing" : "shape"), message)
            }
        }
    }

    /// transformers 5 saves CLIPTextModel without the "text_model." prefix: same model.
    func testTowerWeightsWithoutPrefixLoad() throws {
        let dir = try temporaryCopy(of: "tiny-sd/text_encoder")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        let file = try SafeTensorsFile(path: path)
        try SafeTensorsFile.write(
            try file.names.map { name in
                (
                    name.hasPrefix("text_model.") ? String(name.dropFirst("text_model.".count)) : name,
                    try file.tensor(name)
                )
            }, to: path)
        XCTAssertFalse(try SafeTensorsFile(path: path).names.contains { $0.hasPrefix("text_model.") })
        let ids = [[2512, 10, 20, 30, 2513] + [Int](repeating: 2513, count: 72)]
        let reference = try CLIPTextEncoder(folder: Self.model("tiny-sd/text_encoder")).encode(ids: ids)
        XCTAssertEqual(try CLIPTextEncoder(folder: dir).encode(ids: ids).data, reference.data)
    }

    func temporaryCopy(of model: String) throws -> String {
        let dir = NSTemporaryDirectory() + "clip-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: Self.model(model), toPath: dir)
        return dir
    }
}
