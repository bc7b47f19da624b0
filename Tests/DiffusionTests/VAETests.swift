import Foundation
import Tensor
import XCTest

@testable import Diffusion

// Parity with diffusers' AutoencoderKL on models/tiny-sd/vae (random BF16 weights, upcast to
// float32), against Tests/Fixtures/vae.safetensors from tools/reference/make_fixtures.py.
// Errors are max |Δ| / max |expected|; measured values are noted at each assertion.
final class VAETests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let vaeFolder = root + "/models/tiny-sd/vae"
    nonisolated(unsafe) static var loaded: AutoencoderKL?

    func vae() throws -> AutoencoderKL {
        if let v = Self.loaded { return v }
        let v = try AutoencoderKL(folder: Self.vaeFolder)
        Self.loaded = v
        return v
    }

    func fixture(_ name: String) throws -> Tensor {
        try SafeTensorsFile(path: Self.root + "/Tests/Fixtures/vae.safetensors").tensor(name)
    }

    /// max |a − b| relative to the largest |b|.
    func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        let scale = b.data.map(abs).max() ?? 1
        return zip(a.data, b.data).map { abs($0 - $1) }.max()! / max(scale, 1e-12)
    }

    func testConfig() throws {
        let v = try vae()
        XCTAssertEqual(v.scalingFactor, 0.18215)
        XCTAssertEqual(v.downsampleFactor, 8)
        XCTAssertEqual(v.latentChannels, 4)
    }

    func testEncodeMatchesDiffusers() throws {
        let (mean, std) = try vae().encode(try fixture("image"))
        let em = relativeError(mean, try fixture("latent_mean"))
        let es = relativeError(std, try fixture("latent_std"))
        print("VAE encode: mean rel err \(em), std rel err \(es)")
        XCTAssertLessThanOrEqual(em, 1e-4)  // measured 1.7e-6
        XCTAssertLessThanOrEqual(es, 1e-4)  // measured 4.2e-7
    }

    func testDecodeMatchesDiffusers() throws {
        let decoded = try vae().decode(try fixture("latent_mean"))
        let e = relativeError(decoded, try fixture("decoded"))
        print("VAE decode: rel err \(e)")
        XCTAssertLessThanOrEqual(e, 1e-4)  // measured 2.5e-6 (max |decoded| 3.5)
    }

    /// d/d latent of sum(decode(latent) · grad_seed), as MUSE backpropagates a loss on the image.
    func testDecodeGradientMatchesDiffusers() throws {
        let latent = try fixture("latent_mean").asVariable()
        let loss = (try vae().decode(latent) * (try fixture("grad_seed"))).sum()
        let grad = Autograd.gradients(of: loss, withRespectTo: [latent])[0]
        let e = relativeError(grad, try fixture("grad_latent"))
        print("VAE decode gradient: rel err \(e)")
        XCTAssertLessThanOrEqual(e, 1e-4)  // measured 4.6e-6 (max |grad| 133)
    }

    func testWrongInputShapesThrow() throws {
        let v = try vae()
        let cases: [(Tensor, String)] = [
            (Tensor.zeros([1, 3, 60, 64]), "multiple of 8"),
            (Tensor.zeros([1, 4, 64, 64]), "[B, 3, H, W]"),
            (Tensor.zeros([3, 64, 64]), "[B, 3, H, W]"),
        ]
        for (image, words) in cases {
            XCTAssertThrowsError(try v.encodeChecked(image)) { XCTAssertTrue("\($0)".contains(words), "\($0)") }
        }
        XCTAssertThrowsError(try v.decodeChecked(Tensor.zeros([1, 3, 8, 8]))) {
            XCTAssertTrue("\($0)".contains("[B, 4, h, w]"), "\($0)")
        }
        XCTAssertEqual(try v.decodeChecked(Tensor.zeros([1, 4, 2, 3])).shape, [1, 3, 16, 24])
    }

    /// A copy of the tiny VAE with one tensor dropped or reshaped must fail to load, naming it.
    func testMissingOrMisshapenWeightIsNamed() throws {
        let dir = NSTemporaryDirectory() + "vae-corrupt-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: Self.vaeFolder + "/config.json", toPath: dir + "/config.json")
        let source = try SafeTensorsFile(path: Self.vaeFolder + "/diffusion_pytorch_model.safetensors")
        let all = try source.names.map { ($0, try source.tensor($0)) }
        let weights = dir + "/diffusion_pytorch_model.safetensors"

        let missing = "decoder.up_blocks.2.resnets.1.conv2.weight"
        try SafeTensorsFile.write(all.filter { $0.0 != missing }, to: weights)
        XCTAssertThrowsError(try AutoencoderKL(folder: dir)) { XCTAssertTrue("\($0)".contains(missing), "\($0)") }

        let misshapen = "encoder.mid_block.attentions.0.to_q.weight"
        try SafeTensorsFile.write(all.map { $0.0 == misshapen ? ($0.0, $0.1.reshaped([32, 128])) : $0 }, to: weights)
        XCTAssertThrowsError(try AutoencoderKL(folder: dir)) {
            XCTAssertTrue("\($0)".contains(misshapen) && "\($0)".contains("[64, 64]"), "\($0)")
        }

        try SafeTensorsFile.write(all, to: weights)  // the intact copy loads
        XCTAssertNoThrow(try AutoencoderKL(folder: dir))
    }
}
