import Diffusion
import Foundation
import Tensor
import XCTest

// Expected values: Tests/Fixtures/dpmpp_2m.safetensors from tools/reference/make_dpm_fixtures.py
// (diffusers 0.42.1 DPMSolverMultistepScheduler, torch 2.13 CPU). Errors are relative to the
// largest reference magnitude.
final class DPMSolverTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let tinySD = root + "/models/tiny-sd"
    static let tinyConfig = tinySD + "/scheduler/scheduler_config.json"
    static let fixture = Result { try SafeTensorsFile(path: root + "/Tests/Fixtures/dpmpp_2m.safetensors") }
    static let model = Result { try StableDiffusion(folder: tinySD) }

    static func info() throws -> [String: Any] {
        let f = try fixture.get()
        guard let text = f.metadata["info"],
            let info = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        else {
            throw DPMSolverError("dpmpp_2m.safetensors: no 'info' metadata")
        }
        return info
    }

    /// Each fixture schedule's config dict written to a scheduler_config.json and loaded back.
    static func schedulers() throws -> [String: DPMSolverMultistepScheduler] {
        let schedules = try XCTUnwrap(try info()["schedules"] as? [String: [String: Any]])
        var out: [String: DPMSolverMultistepScheduler] = [:]
        for (name, dict) in schedules {
            out[name] = try DPMSolverMultistepScheduler(
                configPath: try writeTemporary(
                    String(
                        decoding: JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys]), as: UTF8.self)))
        }
        return out
    }

    static let temporaryDirectory = NSTemporaryDirectory() + "dpm-config-\(UUID().uuidString)"

    override class func tearDown() {
        try? FileManager.default.removeItem(atPath: temporaryDirectory)
        super.tearDown()
    }

    static func writeTemporary(_ text: String) throws -> String {
        try FileManager.default.createDirectory(atPath: temporaryDirectory, withIntermediateDirectories: true)
        let path = temporaryDirectory + "/\(UUID().uuidString).json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func relativeError(_ got: [Float], _ expected: [Float]) -> Float {
        precondition(got.count == expected.count, "\(got.count) vs \(expected.count) values")
        let scale = max(expected.map(abs).max() ?? 1, 1e-12)
        return zip(got, expected).map { abs($0 - $1) }.max()! / scale
    }

    static func row(_ t: Tensor, _ i: Int) -> Tensor {
        t.narrowed(axis: 0, start: i, length: 1).reshaped(Array(t.shape.dropFirst()))
    }

    // MARK: config

    func testConfigFromModelFolder() throws {
        let c = try DPMSolverConfig(path: Self.tinyConfig)
        XCTAssertEqual(c.schedule, try DDIMConfig(path: Self.tinyConfig))  // same schedule the DDIM scheduler reads
        XCTAssertEqual(c, DPMSolverConfig.stableDiffusion)
        XCTAssertEqual(c.solverOrder, 2)
        XCTAssertEqual(c.solverType, .midpoint)
        XCTAssertTrue(c.lowerOrderFinal)
        XCTAssertEqual(c.finalSigmasType, .zero)
        XCTAssertEqual(c.lambdaMinClipped, -.infinity)
        let s = try DPMSolverMultistepScheduler(configPath: Self.tinyConfig)
        XCTAssertEqual(s.alphasCumprod, DDIMScheduler(config: c.schedule).alphasCumprod)
        XCTAssertEqual(
            try DPMSolverMultistepScheduler(ddim: .stableDiffusion).timesteps(steps: 10),
            [901, 811, 721, 631, 541, 451, 361, 271, 181, 91])
        XCTAssertEqual(DPMSolverConfig().schedule.timestepSpacing, .linspace)  // diffusers' class default
    }

    /// SD 1.5's own scheduler_config.json (PNDMScheduler) has no timestep_spacing: diffusers'
    /// from_config drops keys the PNDM scheduler defaulted, so DPM-Solver gets its own default
    /// "linspace" (DDIM gets its "leading").
    func testSD15FileGetsDPMDefaults() throws {
        let schedules = try XCTUnwrap(try Self.info()["schedules"] as? [String: [String: Any]])
        let path = try Self.writeTemporary(
            String(
                decoding: try JSONSerialization.data(
                    withJSONObject: try XCTUnwrap(schedules["sd15_file"])), as: UTF8.self))
        let s = try DPMSolverMultistepScheduler(configPath: path)
        XCTAssertEqual(s.config.schedule.timestepSpacing, .linspace)
        XCTAssertEqual(s.timesteps(steps: 10), [999, 899, 799, 699, 599, 500, 400, 300, 200, 100])
        XCTAssertEqual(try DDIMConfig(path: path).timestepSpacing, .leading)
        var expected = DPMSolverConfig.stableDiffusion
        expected.schedule.timestepSpacing = .linspace
        XCTAssertEqual(s.config.schedule.betaStart, expected.schedule.betaStart)
        XCTAssertEqual(s.config.schedule.stepsOffset, 1)
        XCTAssertEqual(s.timesteps(steps: 10), try DPMSolverMultistepScheduler(config: expected).timesteps(steps: 10))
    }

    /// A config as DPMSolverMultistepScheduler.save_config writes it: "lambda_min_clipped": -Infinity.
    func testReadsConfigSavedByDiffusers() throws {
        let text = try XCTUnwrap(try Self.info()["saved_dpm_config"] as? String)
        XCTAssertTrue(text.contains("-Infinity"))
        let c = try DPMSolverConfig(path: try Self.writeTemporary(text))
        XCTAssertEqual(c, try DPMSolverConfig(path: Self.tinyConfig))
    }

    func testUnsupportedOptionsAreErrorsNamingTheKey() throws {
        let cases: [(String, String)] = [
            (#"{"algorithm_type": "sde-dpmsolver++"}"#, "algorithm_type"),
            (#"{"algorithm_type": "dpmsolver"}"#, "algorithm_type"),
            (#"{"use_karras_sigmas": true}"#, "use_karras_sigmas"),
            (#"{"use_lu_lambdas": true}"#, "use_lu_lambdas"),
            (#"{"use_exponential_sigmas": true}"#, "use_exponential_sigmas"),
            (#"{"thresholding": true}"#, "thresholding"),
            (#"{"rescale_betas_zero_snr": true}"#, "rescale_betas_zero_snr"),  // with epsilon
            (#"{"solver_order": 3}"#, "solver_order"),
            (#"{"solver_type": "rk4"}"#, "solver_type"),
            (#"{"final_sigmas_type": "sigma_max"}"#, "final_sigmas_type"),
            (#"{"variance_type": "learned_range"}"#, "variance_type"),
            (#"{"prediction_type": "flow_prediction"}"#, "prediction_type"),
            (#"{"timestep_spacing": "karras"}"#, "timestep_spacing"),
            (#"{"beta_schedule": "sigmoid"}"#, "beta_schedule"),
            (#"{"lambda_min_clipped": NaN}"#, "lambda_min_clipped"),
            (#"{"trained_betas": [0.1, 0.2]}"#, "trained_betas"),
            (#"{"solver_order": "two"}"#, "solver_order"),
            (#"{"lower_order_final": "yes"}"#, "lower_order_final"),
        ]
        for (json, key) in cases {
            XCTAssertThrowsError(try DPMSolverConfig(path: try Self.writeTemporary(json)), json) {
                XCTAssertTrue("\($0)".contains("'\(key)'"), "\($0)")
            }
        }
        // diffusers' own aliases are accepted
        let deis = try DPMSolverConfig(
            path: try Self.writeTemporary(#"{"algorithm_type": "deis", "solver_type": "bh2"}"#))
        XCTAssertEqual(deis.solverType, .midpoint)
        var c = DPMSolverConfig.stableDiffusion
        c.solverOrder = 3
        XCTAssertThrowsError(try DPMSolverMultistepScheduler(config: c)) {
            XCTAssertTrue("\($0)".contains("solver_order"))
        }
    }

    // MARK: schedule

    /// Timesteps identical for every fixture schedule and step count; sigmas within a few
    /// float32 ulps (torch's CPU sqrt is not correctly rounded, Swift's is: measured max 1.2e-7 relative).
    func testTimestepsAndSigmasMatchDiffusers() throws {
        let f = try Self.fixture.get()
        let stepsList = try XCTUnwrap(try Self.info()["steps_list"] as? [Int])
        var worstSigma: Float = 0
        for (name, s) in try Self.schedulers() {
            for n in stepsList {
                let want = try f.int64s("timesteps/\(name)/\(n)").map(Int.init)
                XCTAssertEqual(s.timesteps(steps: n), want, "\(name) \(n) steps")
                let sigmas = s.sigmas(steps: n)
                let wantSigmas = try f.tensor("sigmas/\(name)/\(n)").data
                XCTAssertEqual(sigmas.count, wantSigmas.count)
                for (a, b) in zip(sigmas, wantSigmas) { worstSigma = max(worstSigma, abs(a - b) / max(abs(b), 1e-30)) }
                if wantSigmas.last == 0 { XCTAssertEqual(sigmas.last, 0, "\(name) final sigma") }
            }
        }
        print("DPM-Solver sigmas: max relative |Δ| \(worstSigma)")
        XCTAssertLessThanOrEqual(worstSigma, 5e-7)
    }

    /// rescale_betas_zero_snr: diffusers sets the last ᾱ to 2⁻²⁴ (σ = 4096); sigmas of 10
    /// trailing steps on SD's schedule with v-prediction, printed by hand from diffusers 0.42.1.
    func testZeroTerminalSNRSigmasMatchDiffusers() throws {
        var c = DPMSolverConfig.stableDiffusion
        c.schedule.predictionType = .vPrediction
        c.schedule.timestepSpacing = .trailing
        c.schedule.rescaleBetasZeroSnr = true
        let s = try DPMSolverMultistepScheduler(config: c)
        XCTAssertEqual(s.timesteps(steps: 10), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99])
        let want: [Float] = [
            4096.0, 18.130056381225586, 7.410707473754883, 4.114185333251953, 2.604856252670288,
            1.7680810689926147, 1.24137544631958, 0.8747435808181763, 0.59475177526474, 0.3549894392490387, 0,
        ]
        let got = s.sigmas(steps: 10)
        XCTAssertEqual(got.count, want.count)
        for (a, b) in zip(got, want) { XCTAssertEqual(a, b, accuracy: max(b * 2e-6, 0), "σ \(b)") }
    }

    /// Every step count 1...trainSteps for the spacings (leading, trailing, linspace, clipped λ):
    /// count, sum and weighted sum of the timesteps equal diffusers'.
    func testTimestepsForEveryStepCount() throws {
        let f = try Self.fixture.get()
        let names = try XCTUnwrap(try Self.info()["checksummed"] as? [String])
        let all = try Self.schedulers()
        for name in names {
            let s = try XCTUnwrap(all[name])
            let want = try f.int64s("checksum/\(name)")
            let trainSteps = s.config.schedule.numTrainTimesteps
            XCTAssertEqual(want.count, trainSteps * 3)
            for n in 1...trainSteps {
                let ts = s.timesteps(steps: n)
                let got = [ts.count, ts.reduce(0, +), ts.enumerated().reduce(0) { $0 + ($1.offset + 1) * $1.element }]
                XCTAssertEqual(got.map(Int64.init), Array(want[(n - 1) * 3..<n * 3]), "\(name) \(n) steps")
            }
        }
    }

    func testInvalidStepCountsThrow() throws {
        let s = try DPMSolverMultistepScheduler(configPath: Self.tinyConfig)
        for steps in [0, -1, 1001, Int.max] {
            XCTAssertThrowsError(try s.validate(steps: steps)) { XCTAssertTrue("\($0)".contains("1...1000"), "\($0)") }
        }
        // 'leading' with 1000 steps: step ratio 1000 // 1001 = 0, every timestep is 1.
        XCTAssertThrowsError(try s.validate(steps: 1000)) { XCTAssertTrue("\($0)".contains("repeat"), "\($0)") }
        for steps in [1, 2, 10, 50, 999] { XCTAssertNoThrow(try s.validate(steps: steps)) }
        XCTAssertThrowsError(
            try Self.model.get().denoiseDPMSolver(
                from: Tensor.zeros([1, 4, 8, 8]), prompt: "",
                steps: 0, guidance: 1))
    }

    // MARK: steps

    /// Every fixture chain, step by step from diffusers' inputs (the history is this port's own
    /// from the previous reference input): x̂0 and the output within 1e-5 of the largest
    /// reference value (measured 5.7e-7), and the whole chain run on its own outputs (1.0e-6).
    func testStepsMatchDiffusers() throws {
        let f = try Self.fixture.get()
        let cases = try XCTUnwrap(try Self.info()["step_cases"] as? [[String: Any]])
        let all = try Self.schedulers()
        var worstStep: Float = 0
        var worstChain: Float = 0
        for c in cases {
            let name = c["name"] as! String
            let steps = c["steps"] as! Int
            let s = try XCTUnwrap(all[c["schedule"] as! String])
            try s.validate(steps: steps)
            let eps = try f.tensor("step/\(name)/eps")
            let x0s = try f.tensor("step/\(name)/x0")
            let prevs = try f.tensor("step/\(name)/prev")
            let sample0 = try f.tensor("step/\(name)/sample0")
            XCTAssertEqual(eps.shape[0], s.timesteps(steps: steps).count)
            var history: DPMSolverHistory? = nil
            var chainHistory: DPMSolverHistory? = nil
            var chain = sample0
            var orders: [Int] = []
            for i in 0..<eps.shape[0] {
                let input = i == 0 ? sample0 : Self.row(prevs, i - 1)
                let e = Self.row(eps, i)
                orders.append(s.order(at: i, steps: steps, hasHistory: history != nil))
                let x0 = s.dataPrediction(modelOutput: e, index: i, sample: input, steps: steps)
                let out = s.step(modelOutput: e, index: i, sample: input, steps: steps, previous: history)
                XCTAssertEqual(out.history.x0, x0.data)
                let errX0 = Self.relativeError(x0.data, Self.row(x0s, i).data)
                let errPrev = Self.relativeError(out.prevSample.data, Self.row(prevs, i).data)
                XCTAssertLessThanOrEqual(errX0, 1e-5, "\(name) step \(i) x0")
                XCTAssertLessThanOrEqual(errPrev, 1e-5, "\(name) step \(i) prev")
                worstStep = max(worstStep, errX0, errPrev)
                history = out.history
                (chain, chainHistory) = s.step(
                    modelOutput: e, index: i, sample: chain, steps: steps, previous: chainHistory)
            }
            let errChain = Self.relativeError(chain.data, Self.row(prevs, eps.shape[0] - 1).data)
            XCTAssertLessThanOrEqual(errChain, 1e-5, "\(name) whole chain")
            worstChain = max(worstChain, errChain)
            // Which update each step used (diffusers' lower_order_nums / lower_order_final logic).
            let n = orders.count
            switch name {
            case "tiny10", "tiny25", "sd15_trailing7", "v_heun10", "cosine_clipped12", "sigmamin10", "euler_at_final20":
                XCTAssertEqual(orders, [1] + Array(repeating: 2, count: n - 2) + [1], name)
            case "sigmamin20":  // ≥ 15 steps, final sigma σ_min: the last step is 2nd order too
                XCTAssertEqual(orders, [1] + Array(repeating: 2, count: n - 1), name)
            case "order1_sample10":
                XCTAssertEqual(orders, Array(repeating: 1, count: n), name)
            default: XCTFail("unknown case \(name)")
            }
        }
        print("DPM-Solver steps: max relative |Δ| per step \(worstStep), whole chains \(worstChain)")
    }

    /// Interrupt a 10-step run anywhere, checkpoint latent and history through JSON, resume:
    /// bit-identical to the uninterrupted run.
    func testResumeFromSerializedHistoryIsBitIdentical() throws {
        let f = try Self.fixture.get()
        let s = try DPMSolverMultistepScheduler(configPath: Self.tinyConfig)
        let eps = try f.tensor("step/tiny10/eps")
        let sample0 = try f.tensor("step/tiny10/sample0")
        let steps = 10
        func run(from start: Int, sample: Tensor, history: DPMSolverHistory?, to end: Int) -> (
            Tensor, DPMSolverHistory?
        ) {
            var z = sample
            var h = history
            for i in start..<end {
                let out = s.step(modelOutput: Self.row(eps, i), index: i, sample: z, steps: steps, previous: h)
                (z, h) = (out.prevSample, out.history)
            }
            return (z, h)
        }
        struct Checkpoint: Codable {
            var shape: [Int]
            var latent: [Float]
            var history: DPMSolverHistory?
            var next: Int
        }
        let (reference, _) = run(from: 0, sample: sample0, history: nil, to: steps)
        for cut in 0...steps {
            let (z, h) = run(from: 0, sample: sample0, history: nil, to: cut)
            let saved = try JSONEncoder().encode(Checkpoint(shape: z.shape, latent: z.data, history: h, next: cut))
            let c = try JSONDecoder().decode(Checkpoint.self, from: saved)
            XCTAssertEqual(c.history, h)
            let (resumed, _) = run(
                from: c.next, sample: Tensor(shape: c.shape, data: c.latent), history: c.history, to: steps)
            XCTAssertEqual(resumed.data, reference.data, "resumed after \(cut) steps")
        }
        // Without its history a mid-schedule step falls back to first order: a different result.
        let (z5, _) = run(from: 0, sample: sample0, history: nil, to: 5)
        let (noHistory, _) = run(from: 5, sample: z5, history: nil, to: steps)
        XCTAssertNotEqual(noHistory.data, reference.data)
    }

    /// predictedOriginal is DDIM's x̂0 (MUSE scores the same x̂0 with either sampler); the
    /// solver's own data prediction agrees with it to float rounding.
    func testPredictedOriginalIsDDIMs() throws {
        let s = try DPMSolverMultistepScheduler(configPath: Self.tinyConfig)
        let ddim = try DDIMScheduler(configPath: Self.tinyConfig)
        let z = Tensor.randomNormal([1, 4, 4, 4], seed: 5)
        let eps = Tensor.randomNormal([1, 4, 4, 4], seed: 6)
        for (i, t) in s.timesteps(steps: 10).enumerated() {
            let x0 = s.predictedOriginal(eps: eps, timestep: t, sample: z)
            XCTAssertEqual(x0.data, ddim.predictedOriginal(eps: eps, timestep: t, sample: z).data)
            let solver = s.dataPrediction(modelOutput: eps, index: i, sample: z, steps: 10)
            XCTAssertLessThanOrEqual(Self.relativeError(solver.data, x0.data), 1e-6, "t=\(t)")
        }
    }

    // MARK: txt2img

    /// diffusers' 10 stored guided eps replayed through the step (no UNet): each step ≤ 1e-5
    /// (measured 2.2e-7).
    func testStepsReplayTxt2imgFixture() throws {
        let f = try Self.fixture.get()
        let s = try DPMSolverMultistepScheduler(configPath: Self.tinyConfig)
        let epss = try f.tensor("txt2img/eps_steps")
        let lats = try f.tensor("txt2img/latents_steps")
        var z = try f.tensor("txt2img/initial_latent")
        var history: DPMSolverHistory? = nil
        var worst: Float = 0
        for i in 0..<10 {
            let out = s.step(modelOutput: Self.row(epss, i), index: i, sample: z, steps: 10, previous: history)
            worst = max(worst, Self.relativeError(out.prevSample.data, Self.row(lats, i).data))
            (z, history) = (Self.row(lats, i), out.history)
        }
        print("DPM-Solver txt2img replay: max relative |Δ| per step \(worst)")
        XCTAssertLessThanOrEqual(worst, 1e-5)
    }

    // Measured: final latent 2.1e-6, decoded image 2.2e-6 (relative to the largest value); most of
    // it is the UNet's own float error (1.4e-6 per call, see UNetTests).
    func testGuidedTxt2ImgMatchesDiffusers() throws {
        let sd = try Self.model.get()
        let f = try Self.fixture.get()
        let steps = Int(try f.tensor("txt2img/num_inference_steps").data[0])
        let dpm = try sd.dpmSolverScheduler()
        XCTAssertEqual(dpm.timesteps(steps: steps), try f.int64s("txt2img/timesteps").map(Int.init))
        XCTAssertEqual(sd.tokenIDs("a photo of a cat"), try f.int64s("txt2img/cond_ids").map(Int.init))
        var stepsSeen = 0
        let latent = try sd.denoiseDPMSolver(
            from: try f.tensor("txt2img/initial_latent"), prompt: "a photo of a cat",
            steps: steps, guidance: try f.tensor("txt2img/guidance_scale").data[0]
        ) { done, _ in
            stepsSeen = done
        }
        XCTAssertEqual(stepsSeen, steps)
        let latentError = Self.relativeError(latent.data, try f.tensor("txt2img/final_latent").data)
        let image = sd.vae.decode(latent * (1 / sd.vae.scalingFactor))
        let imageError = Self.relativeError(image.data, try f.tensor("txt2img/image").data)
        print("DPM-Solver++(2M) txt2img: final latent \(latentError), image \(imageError)")
        XCTAssertLessThan(latentError, 1e-4)
        XCTAssertLessThan(imageError, 1e-4)
    }
}
