import Diffusion
import Tensor
import XCTest

/// End-to-end parity with diffusers: a 10-step guided DDIM txt2img and a DDIM inversion
/// round trip on the tiny model, from the same initial latents.
final class PipelineParityTests: XCTestCase {
    static let model = Result { try StableDiffusion(folder: Parity.tinySD) }

    func testPromptIDsAndConditioningMatch() throws {
        let sd = try Self.model.get()
        let f = try Parity.fixture("ddim_txt2img")
        XCTAssertEqual(sd.tokenIDs("a photo of a cat"), try f.int64s("cond_ids").map(Int.init))
        XCTAssertEqual(sd.tokenIDs(""), try f.int64s("uncond_ids").map(Int.init))
        let context = Tensor.concat([sd.encodePrompt(""), sd.encodePrompt("a photo of a cat")], axis: 0)
        XCTAssertLessThan(Parity.relativeError(context, try f.tensor("encoder_hidden_states")), 1e-5)
    }

    // Measured: final latent 1.5e-6, decoded image 2.4e-6 (relative to the largest value).
    func testGuidedTxt2ImgMatchesDiffusers() throws {
        let sd = try Self.model.get()
        let f = try Parity.fixture("ddim_txt2img")
        let steps = Int(try f.tensor("num_inference_steps").data[0])
        XCTAssertEqual(sd.scheduler.timesteps(steps: steps), try f.tensor("timesteps").data.map { Int($0) })
        var stepsSeen = 0
        let latent = sd.denoise(
            from: try f.tensor("initial_latent"), prompt: "a photo of a cat",
            steps: steps, guidance: try f.tensor("guidance_scale").data[0]
        ) { done, _ in stepsSeen = done }
        XCTAssertEqual(stepsSeen, steps)
        XCTAssertLessThan(Parity.relativeError(latent, try f.tensor("final_latent")), 1e-4)
        let image = sd.vae.decode(latent * (1 / sd.vae.scalingFactor))
        XCTAssertLessThan(Parity.relativeError(image, try f.tensor("image")), 1e-4)
    }

    // Measured: z0 1.9e-6, zT 4.2e-5, reconstruction 7.7e-5 (errors grow along the 20 UNet calls).
    func testInversionRoundTripMatchesDiffusers() throws {
        let sd = try Self.model.get()
        let f = try Parity.fixture("ddim_inversion")
        let z0 = try sd.encodeImage(try f.tensor("image"))
        XCTAssertLessThan(Parity.relativeError(z0, try f.tensor("z0")), 1e-4)
        XCTAssertEqual(
            sd.scheduler.inversionTimesteps(steps: 10), try f.tensor("timesteps_inversion").data.map { Int($0) })
        let trajectory = sd.invert(z0, steps: 10)
        XCTAssertEqual(trajectory.count, 10)
        XCTAssertLessThan(Parity.relativeError(trajectory.last!, try f.tensor("zT")), 1e-3)
        let reconstruction = sd.denoise(from: trajectory.last!, prompt: "", steps: 10, guidance: 1)
        XCTAssertLessThan(Parity.relativeError(reconstruction, try f.tensor("z0_rec")), 1e-3)
    }

    func testPartialInversionStopsEarly() throws {
        let sd = try Self.model.get()
        let z0 = Tensor.randomNormal([1, 4, 8, 8], seed: 3)
        XCTAssertEqual(sd.invert(z0, steps: 10, strength: 0.5).count, 5)
        XCTAssertEqual(sd.invert(z0, steps: 10, strength: 0).count, 0)
    }

    func testMissingModelPartsAreNamed() {
        XCTAssertThrowsError(try StableDiffusion(folder: "/nonexistent/model")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/model"), "\(error)")
        }
        XCTAssertThrowsError(try StableDiffusion(folder: Parity.tinySD + "/unet")) { error in
            XCTAssertTrue("\(error)".contains("model_index.json"), "\(error)")
        }
    }
}
