import Diffusion
import Tensor
import XCTest

/// Shared paths and comparisons for the parity tests.
enum Parity {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let tinySD = root + "/models/tiny-sd"

    static func fixture(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: root + "/Tests/Fixtures/\(name).safetensors")
    }

    /// Largest absolute difference, relative to the reference's largest magnitude.
    static func relativeError(_ got: Tensor, _ expected: Tensor) -> Float {
        precondition(got.shape == expected.shape, "shape \(got.shape) vs \(expected.shape)")
        let scale = max(expected.data.map(abs).max() ?? 1, 1e-12)
        return zip(got.data, expected.data).map { abs($0 - $1) }.max()! / scale
    }
}

final class UNetTests: XCTestCase {
    static let model = Result { try UNet2DConditionModel(folder: Parity.tinySD + "/unet") }

    // Measured against diffusers: forward 1.4e-6, gradients 2.7e-6 (sample) and 2.9e-6 (context),
    // relative to the largest reference magnitude; other timesteps ≤ 1.5e-6.
    func testForwardAndGradientsMatchDiffusers() throws {
        let unet = try Self.model.get()
        let f = try Parity.fixture("unet")
        let sample = try f.tensor("sample")
        let context = try f.tensor("encoder_hidden_states")
        let timestep = try f.tensor("timestep").data[0]
        let out = unet(sample, timestep: timestep, context: context)
        XCTAssertLessThan(Parity.relativeError(out, try f.tensor("out")), 1e-5)

        let sampleVar = sample.asVariable()
        let contextVar = context.asVariable()
        let loss = (unet(sampleVar, timestep: timestep, context: contextVar) * (try f.tensor("grad_seed"))).sum()
        let grads = Autograd.gradients(of: loss, withRespectTo: [sampleVar, contextVar])
        XCTAssertLessThan(Parity.relativeError(grads[0], try f.tensor("grad_sample")), 1e-5)
        XCTAssertLessThan(Parity.relativeError(grads[1], try f.tensor("grad_encoder_hidden_states")), 1e-5)
    }

    /// Classifier-free guidance runs both branches as one batch of 2 (SynthesisEngine's pre-pass,
    /// StableDiffusion.guidedNoise): each half must be what a call of its own gives, up to float
    /// summation order (the GEMMs block differently for 2 samples). Measured 1.4e-6 of the
    /// largest output; the margin is the diffusers-parity one.
    func testBatchOfTwoEqualsTwoCalls() throws {
        let unet = try Self.model.get()
        let f = try Parity.fixture("unet")
        let sample = try f.tensor("sample").narrowed(axis: 0, start: 0, length: 1)
        let context = try f.tensor("encoder_hidden_states").narrowed(axis: 0, start: 0, length: 1)
        let other = Tensor.randomNormal(context.shape, seed: 11)
        let timestep = try f.tensor("timestep").data[0]
        let both = unet(
            Tensor.concat([sample, sample], axis: 0), timestep: timestep,
            context: Tensor.concat([other, context], axis: 0)
        ).chunked(2, axis: 0)
        let separate = [
            unet(sample, timestep: timestep, context: other), unet(sample, timestep: timestep, context: context),
        ]
        for (half, alone) in zip(both, separate) {
            XCTAssertLessThan(Parity.relativeError(half, alone), 1e-5)
        }
        XCTAssertGreaterThan(
            Parity.relativeError(both[0], both[1]), 1e-3, "the two contexts must give different outputs")
    }

    func testTimestepEmbeddingAcrossTheSchedule() throws {
        let unet = try Self.model.get()
        let f = try Parity.fixture("unet_timesteps")
        let sample = try f.tensor("sample")
        let context = try f.tensor("encoder_hidden_states")
        for t in try f.tensor("timesteps").data {
            let out = unet(sample, timestep: t, context: context)
            XCTAssertLessThan(Parity.relativeError(out, try f.tensor("out_t\(Int(t))")), 1e-5, "timestep \(t)")
        }
    }

    func testMissingTensorAndWrongShapeAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unet-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: Parity.tinySD + "/unet/config.json", toPath: dir + "/config.json")
        let source = try SafeTensorsFile(path: Parity.tinySD + "/unet/diffusion_pytorch_model.safetensors")
        let weights = try source.names.map { ($0, try source.tensor($0)) }
        let path = dir + "/diffusion_pytorch_model.safetensors"

        try SafeTensorsFile.write(weights.filter { $0.0 != "mid_block.resnets.1.conv2.weight" }, to: path)
        XCTAssertThrowsError(try UNet2DConditionModel(folder: dir)) { error in
            XCTAssertTrue("\(error)".contains("mid_block.resnets.1.conv2.weight"), "\(error)")
        }
        try SafeTensorsFile.write(weights.map { $0.0 == "conv_in.bias" ? ($0.0, Tensor.zeros([7])) : $0 }, to: path)
        XCTAssertThrowsError(try UNet2DConditionModel(folder: dir)) { error in
            XCTAssertTrue("\(error)".contains("conv_in.bias") && "\(error)".contains("[7]"), "\(error)")
        }
    }
}
