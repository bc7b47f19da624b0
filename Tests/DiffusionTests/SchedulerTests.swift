import Foundation
import Tensor
import XCTest

@testable import Diffusion

// Expected values come from diffusers 0.42.1 / torch 2.13 (DDIMScheduler.from_config on
// models/tiny-sd/scheduler, which is SD 1.5's scheduler config) and Tests/Fixtures/ddim_txt2img.safetensors.
final class SchedulerTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let configPath = root + "/models/tiny-sd/scheduler/scheduler_config.json"

    func sd() throws -> DDIMScheduler { try DDIMScheduler(configPath: Self.configPath) }

    func testConfigReadsSD15Settings() throws {
        XCTAssertEqual(try DDIMConfig(path: Self.configPath), DDIMConfig.stableDiffusion)
    }

    func testUnsupportedOptionsAreErrors() throws {
        let dir = NSTemporaryDirectory() + "ddim-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (json, key) in [
            (#"{"thresholding": true}"#, "thresholding"),
            (#"{"beta_schedule": "sigmoid"}"#, "beta_schedule"),
            (#"{"timestep_spacing": "karras"}"#, "timestep_spacing"),
        ] {
            let path = dir + "/c.json"
            try json.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try DDIMConfig(path: path)) { XCTAssertTrue("\($0)".contains(key), "\($0)") }
        }
    }

    /// ᾱ must equal torch's float32 values exactly (FMA linspace, double-accumulated cumprod).
    func testAlphasCumprodBitExact() throws {
        let fixture = try SafeTensorsFile(path: Self.root + "/Tests/Fixtures/ddim_txt2img.safetensors")
        XCTAssertEqual(try sd().alphasCumprod, try fixture.tensor("alphas_cumprod").data)
        // diffusers' defaults (linear 1e-4…0.02) and the cosine schedule, spot-checked.
        let linear = DDIMScheduler(config: DDIMConfig())
        XCTAssertEqual(
            [linear.alphaCumprod(0), linear.alphaCumprod(499), linear.alphaCumprod(999)],
            [0.9998999834060669, 0.07858723402023315, 4.035830352222547e-05])
        var cosine = DDIMConfig()
        cosine.betaSchedule = .squaredCosCapV2
        let c = DDIMScheduler(config: cosine)
        XCTAssertEqual(c.alphaCumprod(0), 0.9999586939811707)
        XCTAssertEqual(c.alphaCumprod(499), 0.4938434660434723, accuracy: 1e-7)
        XCTAssertEqual(c.alphaCumprod(999) / 2.4287349909002387e-09, 1, accuracy: 1e-4)
    }

    func testTimesteps() throws {
        let s = try sd()
        XCTAssertEqual(s.timesteps(steps: 50), Array(stride(from: 981, through: 1, by: -20)))
        XCTAssertEqual(s.timesteps(steps: 10), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
        XCTAssertEqual(s.timesteps(steps: 7), [853, 711, 569, 427, 285, 143, 1])
        XCTAssertEqual(s.inversionTimesteps(steps: 10), [1, 101, 201, 301, 401, 501, 601, 701, 801, 901])
        XCTAssertEqual(s.previousTimestep(981, steps: 50), 961)
        XCTAssertEqual(s.previousTimestep(1, steps: 50), -19)
        XCTAssertEqual(s.alphaCumprod(-19), s.alphaCumprod(0))  // set_alpha_to_one false

        let fixture = try SafeTensorsFile(path: Self.root + "/Tests/Fixtures/ddim_txt2img.safetensors")
        XCTAssertEqual(s.timesteps(steps: 10).map(Float.init), try fixture.tensor("timesteps").data)

        var c = DDIMConfig.stableDiffusion
        c.timestepSpacing = .trailing
        let trailing = DDIMScheduler(config: c)
        XCTAssertEqual(trailing.timesteps(steps: 10), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99])
        XCTAssertEqual(trailing.timesteps(steps: 7), [999, 856, 713, 570, 428, 285, 142])
        XCTAssertEqual(trailing.timesteps(steps: 50), Array(stride(from: 999, through: 19, by: -20)))
        c.timestepSpacing = .linspace
        let linspace = DDIMScheduler(config: c)
        XCTAssertEqual(linspace.timesteps(steps: 10), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0])
        XCTAssertEqual(linspace.timesteps(steps: 7), [999, 832, 666, 500, 333, 166, 0])
        XCTAssertEqual(Array(linspace.timesteps(steps: 50).prefix(8)), [999, 979, 958, 938, 917, 897, 877, 856])
        XCTAssertEqual(
            DDIMScheduler(config: DDIMConfig()).timesteps(steps: 10), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0])
    }

    /// Hand case, 50 steps: first, a middle and the last step (whose ᾱ_prev is ᾱ_0).
    func testStepMatchesDiffusers() throws {
        let s = try sd()
        let sample = Tensor(shape: [1, 4, 1, 1], data: [0.5, -1.0, 2.0, 0.25])
        let eps = Tensor(shape: [1, 4, 1, 1], data: [0.1, 0.2, -0.3, 0.4])
        let expected: [Int: (prev: [Float], x0: [Float])] = [
            981: (
                [0.5491006374359131, -1.1475021839141846, 2.2826788425445557, 0.2314120978116989],
                [5.267192840576172, -15.782552719116211, 30.253061294555664, -1.9585493803024292]
            ),
            21: (
                [0.49454137682914734, -1.0291084051132202, 2.048210382461548, 0.21224835515022278],
                [0.49083182215690613, -1.038249135017395, 2.062351942062378, 0.19590362906455994]
            ),
            1: (
                [0.49899962544441223, -1.002855896949768, 2.004497528076172, 0.2452501803636551],
                [0.49629509449005127, -1.0091159343719482, 2.0141003131866455, 0.23368747532367706]
            ),
        ]
        for (t, want) in expected {
            let out = s.step(eps: eps, timestep: t, sample: sample, steps: 50)
            // Same float32 operations in the same order as torch, but torch's CPU float sqrt
            // (this build, AVX512) is not correctly rounded: √ᾱ is off by 1 ulp for ~20% of
            // timesteps, so results agree to a few ulps, not bit for bit.
            assertClose(out.prevSample.data, want.prev, 1e-6, "t=\(t)")
            assertClose(out.predictedOriginal.data, want.x0, 1e-6, "t=\(t)")
            assertClose(s.predictedOriginal(eps: eps, timestep: t, sample: sample).data, want.x0, 1e-6)
        }
        var c = DDIMConfig.stableDiffusion
        c.predictionType = .vPrediction
        let v = DDIMScheduler(config: c).step(eps: eps, timestep: 501, sample: sample, steps: 50)
        assertClose(
            v.prevSample.data, [0.49676084518432617, -1.005570650100708, 2.008129119873047, 0.23783743381500244], 1e-6)
        assertClose(
            v.predictedOriginal.data,
            [0.17705467343330383, -0.6946973204612732, 1.3042476177215576, -0.2094871699810028], 1e-6)
    }

    /// A shift of Δ in ε, carried into the model output by outputPerEpsilon, moves x̂0 and the
    /// DDIM step the same way for every prediction type (universal guidance relies on it).
    func testOutputPerEpsilonMovesEveryPredictionTypeAlike() throws {
        let sample = Tensor(shape: [4], data: [0.5, -1.0, 2.0, 0.25])
        let output = Tensor(shape: [4], data: [0.1, -0.2, 0.3, 0.05])
        let delta = Tensor(shape: [4], data: [0.3, 0.1, -0.2, 0.4])
        for kind in [DDIMConfig.Prediction.epsilon, .vPrediction, .sample] {
            var c = DDIMConfig.stableDiffusion
            c.predictionType = kind
            let s = DDIMScheduler(config: c)
            for t in [101, 501, 901] {
                let shifted = output + delta * s.outputPerEpsilon(timestep: t)
                let before = s.predictions(output: output, alpha: s.alphaCumprod(t), sample: sample)
                let after = s.predictions(output: shifted, alpha: s.alphaCumprod(t), sample: sample)
                let a = s.alphaCumprod(t)
                // ε-guidance: ε̂ moves by Δ, x̂0 by −√(1−ᾱ)/√ᾱ·Δ
                assertClose((after.eps - before.eps).data, delta.data, 1e-5, "\(kind) ε̂ t=\(t)")
                let x0Move = (delta * (-(1 - a).squareRoot() / a.squareRoot())).data
                assertClose((after.x0 - before.x0).data, x0Move, 1e-4, "\(kind) x̂0 t=\(t)")
            }
        }
    }

    /// rescale_betas_zero_snr on SD's schedule with v-prediction and trailing spacing (what
    /// `train.py --unet-zero-snr` exports): ᾱ, timesteps and two DDIM steps against diffusers
    /// 0.42.1 (DDIMScheduler(..., rescale_betas_zero_snr=True), printed by hand).
    func testZeroTerminalSNRMatchesDiffusers() throws {
        var c = DDIMConfig.stableDiffusion
        c.predictionType = .vPrediction
        c.timestepSpacing = .trailing
        c.rescaleBetasZeroSnr = true
        let s = DDIMScheduler(config: c)
        let want: [Int: Float] = [
            0: 0.9991499781608582, 1: 0.9982334971427917, 250: 0.6524567604064941, 500: 0.2410186380147934,
            750: 0.03279908001422882, 900: 0.002960391342639923, 980: 7.707603799644858e-05,
            998: 1.9679633567193378e-07,
        ]
        for (t, a) in want { XCTAssertEqual(s.alphaCumprod(t) / a, 1, accuracy: 2e-6, "ᾱ_\(t)") }
        XCTAssertEqual(s.alphaCumprod(999), 0, "the last step is pure noise")
        XCTAssertEqual(Array(s.timesteps(steps: 50).prefix(3)), [999, 979, 959])
        let sample = Tensor(shape: [1, 4, 1, 1], data: [0.5, -1.0, 2.0, 0.25])
        let v = Tensor(shape: [1, 4, 1, 1], data: [0.1, 0.2, -0.3, 0.4])
        let first = s.step(eps: v, timestep: 999, sample: sample, steps: 50)
        assertClose(first.predictedOriginal.data, [-0.1, -0.2, 0.3, -0.4], 1e-7, "x̂0 = −v at ᾱ = 0")
        assertClose(
            first.prevSample.data, [0.49905234575271606, -1.0018095970153809, 2.002692937850952, 0.24628442525863647],
            1e-6)
        let middle = s.step(eps: v, timestep: 499, sample: sample, steps: 50)
        assertClose(
            middle.prevSample.data, [0.4965883791446686, -1.0058233737945557, 2.0084850788116455, 0.2372284233570099],
            1e-6)
        assertClose(
            middle.predictedOriginal.data,
            [0.1591072678565979, -0.6663848757743835, 1.2457271814346313, -0.22509539127349854], 1e-6)
        XCTAssertTrue(s.outputPerEpsilon(timestep: 499).isFinite)
    }

    /// Zero terminal SNR with epsilon prediction (no x̂0 at ᾱ = 0) or with a schedule whose last
    /// beta is 0 (the rescaling would divide 0 by 0) is refused, naming the key.
    func testZeroTerminalSNRRefusesWhatItCannotRun() throws {
        let dir = NSTemporaryDirectory() + "ddim-zsnr-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/c.json"
        for (json, words) in [
            (#"{"rescale_betas_zero_snr": true}"#, "prediction_type"),
            (#"{"rescale_betas_zero_snr": true, "prediction_type": "v_prediction", "beta_end": 0}"#, "last beta"),
        ] {
            try json.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try DDIMConfig(path: path), json) {
                XCTAssertTrue("\($0)".contains("rescale_betas_zero_snr") && "\($0)".contains(words), "\($0)")
            }
        }
        try #"{"rescale_betas_zero_snr": true, "prediction_type": "sample"}"#.write(
            toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(DDIMScheduler(config: try DDIMConfig(path: path)).alphaCumprod(999), 0)
    }

    /// The fixture's 10-step txt2img loop, replayed from its stored (guided) eps: no UNet needed.
    func testStepsReplayTxt2imgFixture() throws {
        let s = try sd()
        let f = try SafeTensorsFile(path: Self.root + "/Tests/Fixtures/ddim_txt2img.safetensors")
        let epss = try f.tensor("eps_steps")
        let lats = try f.tensor("latents_steps")
        var z = try f.tensor("initial_latent")
        var worst: Float = 0
        for (i, t) in s.timesteps(steps: 10).enumerated() {
            let eps = epss.narrowed(axis: 0, start: i, length: 1).reshaped(z.shape)
            z = s.step(eps: eps, timestep: t, sample: z, steps: 10).prevSample
            let want = lats.narrowed(axis: 0, start: i, length: 1).reshaped(z.shape)
            let scale = max(1, want.data.map(abs).max()!)
            worst = max(worst, zip(z.data, want.data).map { abs($0 - $1) }.max()! / scale)
            z = want  // compare each step on its own, not the accumulated drift
        }
        print("DDIM txt2img replay: max relative |Δ| per step \(worst)")
        XCTAssertLessThanOrEqual(worst, 1e-6, "max relative |Δ| per step \(worst)")  // measured 1.9e-7
    }

    /// With eps held fixed, invertStep(from: prev, to: t) undoes step(t → prev) up to float rounding.
    func testInversionUndoesStep() throws {
        let s = try sd()
        var rng = SystemRandomNumberGenerator()
        let z = Tensor(shape: [1, 4, 4, 4], data: (0..<64).map { _ in Float.random(in: -2...2, using: &rng) })
        let eps = Tensor(shape: [1, 4, 4, 4], data: (0..<64).map { _ in Float.random(in: -1...1, using: &rng) })
        for steps in [10, 50] {
            for t in s.timesteps(steps: steps) {
                let prev = s.previousTimestep(t, steps: steps)
                let down = s.step(eps: eps, timestep: t, sample: z, steps: steps).prevSample
                let back = s.invertStep(eps: eps, fromTimestep: prev, toTimestep: t, sample: down)
                assertClose(back.data, z.data, 2e-5, "t=\(t) steps=\(steps)")
            }
        }
    }

    /// x̂0 = (z − √(1−ᾱ)·eps)/√ᾱ is differentiable in both eps and z.
    func testPredictedOriginalGradient() throws {
        let s = try sd()
        let t = 501
        let a = s.alphaCumprod(t)
        let z = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6]).asVariable()
        let eps = Tensor(shape: [2, 3], data: [0.5, -0.5, 0.1, 0.2, 0.3, -0.1]).asVariable()
        let r = Tensor(shape: [2, 3], data: [1, -2, 0.5, 3, 0, -1])
        let g = Autograd.gradients(
            of: (s.predictedOriginal(eps: eps, timestep: t, sample: z) * r).sum(),
            withRespectTo: [z, eps])
        assertClose(g[0].data, r.data.map { $0 / a.squareRoot() }, 1e-6)
        assertClose(g[1].data, r.data.map { -$0 * (1 - a).squareRoot() / a.squareRoot() }, 1e-6)
    }

    func assertClose(
        _ a: [Float], _ b: [Float], _ tol: Float, _ message: String = "",
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let worst = zip(a, b).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tol, "\(message) max rel err \(worst)", file: file, line: line)
    }
}
