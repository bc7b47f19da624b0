import Diffusion
import Foundation
import Tensor
import Vocabulary
import XCTest

@testable import MUSE

/// MUSE as the method defines it: WHEN inside an edit's own schedule, WHICH from the prompt
/// alone, universal guidance's gradient through the UNet, descriptive prompt-only prompts,
/// the token's drift and the separate evaluation of finished images.
final class FidelityTests: XCTestCase {
    let prompt = "a quiet lake at dawn"

    func edit(strength: Float, steps: Int, settings: MUSESettings = MUSESettings()) -> SynthesisJob {
        var s = settings
        s.innerIterations = 1
        return SynthesisJob(
            prompt: prompt, emotion: .sadness, method: .muse, seed: 0,
            settings: JobSettings(steps: steps, strength: strength, muse: s))
    }

    /// With the default window (10 %–50 % start, stop at 80 %) an edit at strength 0.3 of 20
    /// steps denoises steps 14..<20: the window is 15…17 to 19 in that part. Before, the
    /// fractions were of all 20 steps, so guidance started at once at step 14 ("latest").
    func testEditGuidanceWindowIsRelativeToTheDenoisedPart() throws {
        let job = edit(strength: 0.3, steps: 20)
        let window = GuidanceWindow(settings: job.settings, method: job.method)
        XCTAssertEqual(
            [window.firstStep, window.minStart, window.latestStart, window.stop], [14, 15, 17, 19])
        XCTAssertNil(window.problem)
        let result = try Tiny.run(job, image: SynthesisTests.testPattern())
        let trace = result.trace
        XCTAssertEqual(trace.firstStep, 14)
        XCTAssertEqual(trace.stopStep, 19)
        let start = try XCTUnwrap(trace.startStep)
        print("edit 0.3 × 20: start \(start) (\(trace.startReason?.rawValue ?? "-")), s_t", trace.promptScores)
        XCTAssertGreaterThan(start, trace.firstStep, "s_t is observed before guidance starts")
        XCTAssertTrue((15...17).contains(start))
        XCTAssertGreaterThanOrEqual(trace.stepTraces.filter(\.guided).count, 2)
    }

    /// Settings that leave no guided step are refused, by the engine and by job validation.
    func testAWindowWithNoGuidedStepIsRefused() throws {
        let job = edit(strength: 0.1, steps: 10)
        XCTAssertNotNil(GuidanceWindow(settings: job.settings, method: .muse).problem)
        assertThrows(
            try Tiny.engine().start(job, image: SynthesisTests.testPattern()),
            containing: ["guidance might never start", "strength 0.1", "stop_fraction"])
        var fixed = job
        fixed.method = .museFixedTiming
        fixed.settings.muse.fixedStartFraction = 0.9
        assertThrows(try fixed.validate(), containing: ["no step would be guided", "fixed_start_fraction"])
        // Methods that do not guide have no window to miss.
        var plain = job
        plain.method = .none
        XCTAssertNoThrow(try plain.validate())
    }

    func testEditsNeedASourcePrompt() throws {
        var job = edit(strength: 0.6, steps: 10)
        job.prompt = " "
        assertThrows(try job.validate(), containing: ["source_prompt", "needs a source prompt"])
        job.method = .universalGuidance
        assertThrows(try job.validate(), containing: ["a universal-guidance edit needs a source prompt"])
        // A plain reconstruction may go without one.
        job.method = .none
        XCTAssertNoThrow(try job.validate())
    }

    /// e_inh comes from the x̂0 the prompt alone predicts: at step 0 (same z_T) that is what
    /// method `none` classifies there, up to float summation order (`none` runs both CFG
    /// branches as one batch of 2, the read-out its conditional branch alone: measured 2.4e-6).
    /// The read-out with the token is kept beside it, 1e-4 or more away.
    func testInherentEmotionIsReadFromThePromptOnlyPrediction() throws {
        var settings = Tiny.quickSettings(iterations: 1)
        settings.classifyEveryStep = true
        let muse = try Tiny.run(
            SynthesisJob(
                prompt: prompt, emotion: .awe, method: .muse, seed: 5, settings: JobSettings(steps: 6, muse: settings)))
        let plain = try Tiny.run(
            SynthesisJob(
                prompt: prompt, emotion: .awe, method: .none, seed: 5, settings: JobSettings(steps: 6, muse: settings)))
        XCTAssertEqual(muse.trace.startStep, 0)
        let promptOnly = try XCTUnwrap(muse.trace.inherentProbabilities)
        let reference = try XCTUnwrap(plain.trace.stepTraces[0].probabilities)
        for (a, b) in zip(promptOnly, reference) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        let withToken = try XCTUnwrap(muse.trace.startProbabilities)
        XCTAssertGreaterThan(zip(promptOnly, withToken).map { abs($0 - $1) }.max()!, 1e-4, "the token changes x̂0")
        let inherent = try XCTUnwrap(muse.trace.inherent)
        let top = Emotion.allCases.filter { $0 != .awe }.max { promptOnly[$0.index] < promptOnly[$1.index] }
        XCTAssertEqual(inherent, top)
    }

    /// Universal guidance's gradient reaches z_t through both CFG branches of the UNet, the
    /// x̂0 formula and the decoder: equal to torch autograd's on the tiny models
    /// (tools/reference/make_ug_fixture.py), and far from the old eps-held-fixed gradient.
    func testUniversalGuidanceGradientMatchesTorch() throws {
        let f = try SafeTensorsFile(path: Tiny.fixtures + "/universal_guidance.safetensors")
        let engine = try Tiny.engine()
        let z = try f.tensor("z")
        let r = try f.tensor("grad_seed")
        let t = Int(try f.tensor("timestep").data[0])
        let job = SynthesisJob(
            prompt: prompt, emotion: .awe, method: .universalGuidance, settings: JobSettings(steps: 10, guidance: 7.5))
        var timings = PhaseTimings()
        let (_, image, eps, grad) = engine.guidanceGradient(
            z: z, t: t, job: job, unconditional: engine.unconditional(""), timings: &timings
        ) { image in
            ((image * r).sum(), image)
        }
        let expected = try f.tensor("grad_z")
        let epsError = relativeL2(eps, try f.tensor("eps"))
        let imageError = relativeL2(image, try f.tensor("image"))
        let gradError = relativeL2(grad, expected)
        // The old baseline: eps held fixed, gradient through x̂0 and the decoder only.
        let zv = z.asVariable()
        let x0 = engine.sd.scheduler.predictedOriginal(eps: eps, timestep: t, sample: zv)
        let fixed = Autograd.gradients(
            of: (engine.decodedImage(x0, .vae) * r).sum(), withRespectTo: [zv])[0]
        let fixedError = relativeL2(fixed, expected)
        print(
            String(
                format: "UG vs torch: eps %.2e, image %.2e, ∇z %.2e; eps-fixed ∇z %.2e",
                epsError, imageError, gradError, fixedError))
        XCTAssertLessThan(epsError, 1e-4)  // measured 6.2e-6
        XCTAssertLessThan(imageError, 1e-4)  // measured 5.0e-6
        XCTAssertLessThan(gradError, 1e-4)  // measured 6.4e-6
        XCTAssertGreaterThan(fixedError, 0.05, "the UNet's share of the gradient is not negligible")  // 0.76
    }

    /// Self-recurrence: k takes per guided step, each a loss record; same seed, same bytes.
    func testUniversalGuidanceTakesKStepsAndIsDeterministic() throws {
        var settings = MUSESettings()
        settings.universalRecurrence = 2
        settings.universalStartFraction = 0.25
        settings.universalStopFraction = 0.75
        let job = SynthesisJob(
            prompt: prompt, emotion: .fear, method: .universalGuidance, seed: 3,
            settings: JobSettings(steps: 8, muse: settings))
        let a = try Tiny.run(job)
        let b = try Tiny.run(job)
        XCTAssertEqual(a.rgb, b.rgb)
        XCTAssertEqual(a.trace.startStep, 2)
        XCTAssertEqual(a.trace.startReason, .fixed)
        XCTAssertEqual(a.trace.stepTraces.map(\.guided), (0..<8).map { (2..<6).contains($0) })
        XCTAssertEqual(a.trace.stepTraces.filter(\.guided).map(\.inner.count), [2, 2, 2, 2])
        XCTAssertNil(a.trace.inherent, "universal guidance's loss is the target's alone")
    }

    func testPromptOnlyUsesTheDescriptivePrompt() throws {
        let engine = try Tiny.engine()
        let job = SynthesisJob(prompt: prompt, emotion: .sadness, method: .promptOnly, settings: JobSettings(steps: 4))
        let state = try engine.start(job)
        var timings = PhaseTimings()
        let used = engine.conditioning(state, token: nil, timings: &timings)
        XCTAssertEqual(used.data, engine.sd.encodePrompt(Emotion.sadness.descriptivePrompt(prompt)).data)
        XCTAssertNotEqual(used.data, engine.sd.encodePrompt(prompt + " sadness").data)
        XCTAssertTrue(Emotion.sadness.descriptivePrompt(prompt).hasPrefix(prompt + ", sad"))
    }

    /// The trace's drift is ‖v − v₀‖ of the token the state ends with.
    func testTokenDriftIsRecorded() throws {
        let engine = try Tiny.engine()
        let job = SynthesisJob(
            prompt: prompt, emotion: .awe, method: .muse, seed: 1,
            settings: JobSettings(steps: 6, muse: Tiny.quickSettings()))
        var state = try engine.start(job)
        let v0 = state.token
        while !engine.isFinished(state) { state = try engine.advance(state) }
        let drift = try XCTUnwrap(state.trace.stepTraces.last?.tokenDrift)
        XCTAssertEqual(drift, euclideanNorm(zip(state.token, v0).map { $0 - $1 }), accuracy: 1e-6)
        XCTAssertGreaterThan(drift, 0)
        XCTAssertEqual(state.trace.tokenNorm, euclideanNorm(v0))
    }

    /// `token_drift_bound` keeps a generation's token within ρ·‖v₀‖ of its word at every step,
    /// `edit_token_drift_bound` an edit's; unbounded, the same runs drift past it.
    func testTokenDriftBound() throws {
        let engine = try Tiny.engine()
        func maxDrift(edit: Bool, bound: Float) throws -> (drift: Float, norm: Float) {
            var settings = Tiny.quickSettings()
            settings.learningRate = 0.05
            if edit { settings.editTokenDriftBound = bound } else { settings.tokenDriftBound = bound }
            let job = SynthesisJob(
                prompt: prompt, emotion: .awe, method: .muse, seed: 1,
                settings: JobSettings(steps: 6, strength: edit ? 1 : nil, muse: settings))
            let trace = try Tiny.run(job, image: edit ? SynthesisTests.testPattern() : nil).trace
            return (trace.stepTraces.compactMap(\.tokenDrift).max() ?? 0, try XCTUnwrap(trace.tokenNorm))
        }
        for edit in [false, true] {
            let free = try maxDrift(edit: edit, bound: 0)
            let bounded = try maxDrift(edit: edit, bound: 0.1)
            XCTAssertGreaterThan(free.drift, 0.2 * free.norm, "unbounded drift (edit: \(edit))")
            XCTAssertLessThanOrEqual(bounded.drift, 0.1 * bounded.norm * 1.0001, "bounded drift (edit: \(edit))")
        }
    }

    /// The evaluator scores only the finished image; CLIP score and CLIP-I are cosines in the
    /// timing CLIP's space.
    func testEvaluationOfTheFinishedImage() throws {
        let engine = try SynthesisEngine.load(
            model: Tiny.sd, tower: Tiny.tower, head: Tiny.head, text: Tiny.text,
            evaluator: .linear(tower: Tiny.tower, head: Tiny.head))
        let generated = try engine.run(
            SynthesisJob(
                prompt: prompt, emotion: .awe, method: .muse, seed: 2,
                settings: JobSettings(steps: 4, muse: Tiny.quickSettings(iterations: 1))))
        let e = try XCTUnwrap(generated.trace.evaluation)
        // Here the evaluator is the guide classifier itself, so it must agree with it.
        XCTAssertEqual(try XCTUnwrap(e.probabilities), generated.probabilities)
        XCTAssertTrue(e.evaluator?.hasPrefix("evaluator:") ?? false)
        XCTAssertEqual(euclideanNorm(e.imageEmbedding), 1, accuracy: 1e-4)
        XCTAssertTrue((0...100).contains(e.clipScore))
        XCTAssertNil(e.clipI)
        let edited = try engine.run(edit(strength: 0.6, steps: 10), image: SynthesisTests.testPattern())
        let clipI = try XCTUnwrap(edited.trace.evaluation?.clipI)
        XCTAssertTrue((-1...1).contains(clipI))
        XCTAssertNotNil(edited.trace.sourceEmbedding)
    }
}
