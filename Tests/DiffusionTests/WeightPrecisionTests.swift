import Diffusion
import Tensor
import XCTest

/// `MUSE_WEIGHTS_DTYPE=bf16`: weights stored as bfloat16 (half the bytes), arithmetic in
/// float32. The tiny UNet against diffusers' float32 outputs, forward and gradients, with
/// activations kept and recomputed.
final class WeightPrecisionTests: XCTestCase {
    func testBFloat16Rounding() {
        let store = { (x: Float) in WeightStore(Tensor(shape: [1], data: [x]), precision: .bf16).tensor.data[0] }
        XCTAssertEqual(store(1), 1)
        XCTAssertEqual(store(-2.5), -2.5)
        XCTAssertEqual(store(1 + 0x1p-8), 1, "a tie rounds to even")
        XCTAssertEqual(store(1 + 3 * 0x1p-8), 1 + 0x1p-6, "a tie rounds to even, upwards here")
        XCTAssertEqual(store(1 + 0x1p-8 + 0x1p-20), 1 + 0x1p-7, "above the tie rounds up")
        XCTAssertTrue(store(.nan).isNaN)
        XCTAssertEqual(store(.infinity), .infinity)
        XCTAssertEqual(store(0x1p-130), 0x1p-130, "subnormals keep their top bits")
    }

    func testUNetWithBFloat16WeightsStaysCloseToDiffusers() throws {
        let saved = WeightPrecision.current
        WeightPrecision.current = .bf16
        let unet = try UNet2DConditionModel(folder: Parity.tinySD + "/unet")
        WeightPrecision.current = saved
        let f = try Parity.fixture("unet")
        let sample = try f.tensor("sample")
        let context = try f.tensor("encoder_hidden_states")
        let timestep = try f.tensor("timestep").data[0]
        let forward = Parity.relativeError(unet(sample, timestep: timestep, context: context), try f.tensor("out"))
        // Measured: forward 6.5e-3, gradients 1.7e-2 (sample) and 1.2e-2 (context), the same
        // with recomputation (float32 weights: 1.4e-6 / 2.7e-6 / 2.9e-6): bfloat16's 8 bits.
        XCTAssertLessThan(forward, 2e-2)
        XCTAssertGreaterThan(forward, 1e-5, "the weights really are rounded")

        for recompute in [false, true] {
            let was = Autograd.recomputeActivations
            Autograd.recomputeActivations = recompute
            defer { Autograd.recomputeActivations = was }
            let sampleVar = sample.asVariable()
            let contextVar = context.asVariable()
            let loss = (unet(sampleVar, timestep: timestep, context: contextVar) * (try f.tensor("grad_seed"))).sum()
            let grads = Autograd.gradients(of: loss, withRespectTo: [sampleVar, contextVar])
            XCTAssertLessThan(
                Parity.relativeError(grads[0], try f.tensor("grad_sample")), 5e-2, "recompute \(recompute)")
            XCTAssertLessThan(
                Parity.relativeError(grads[1], try f.tensor("grad_encoder_hidden_states")), 5e-2,
                "recompute \(recompute)")
        }
    }

    func testStoresHoldHalfTheBytes() {
        let w = Tensor.randomNormal([64, 32], seed: 3)
        let full = WeightStore(w, precision: .f32)
        let half = WeightStore(w, precision: .bf16)
        XCTAssertEqual(full.bytes, 64 * 32 * 4)
        XCTAssertEqual(half.bytes, 64 * 32 * 2)
        XCTAssertTrue(full.tensor === w, "float32 is the loaded tensor itself")
        let widened = half.tensor.data
        let worst = zip(widened, w.data).map { abs($0 - $1) / max(abs($1), 1e-30) }.max()!
        XCTAssertLessThanOrEqual(worst, 0x1p-8, "rounding to nearest: at most half a unit in the 8th bit")
    }
}
