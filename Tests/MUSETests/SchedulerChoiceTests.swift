import Diffusion
import Foundation
import Tensor
import Vocabulary
import XCTest

@testable import MUSE

/// DPM-Solver++(2M) as a job setting: a different sampler (not DDIM under another name),
/// resumable byte for byte with its multistep history, refused for edits; and saved states
/// that do not fit the models are refused before they are continued.
final class SchedulerChoiceTests: XCTestCase {
    func job(_ scheduler: SchedulerKind, steps: Int = 8) -> SynthesisJob {
        var settings = Tiny.quickSettings()
        settings.stopFraction = 0.75
        return SynthesisJob(
            prompt: "a photo of a cat", emotion: .awe, method: .muse, seed: 11,
            settings: JobSettings(steps: steps, scheduler: scheduler, muse: settings))
    }

    func testDPMSolverRunsResumesIdenticallyAndDiffersFromDDIM() throws {
        let engine = try Tiny.engine()
        let ddim = try engine.run(job(.ddim))
        var state = try engine.start(job(.dpmpp2m))
        var saved: [SynthesisState] = [state]
        while !engine.isFinished(state) {
            state = try engine.advance(state)
            saved.append(state)
        }
        XCTAssertEqual(saved[1].dpmHistory?.index, 0, "each step leaves its data prediction for the next")
        let reference = engine.finish(state)
        XCTAssertNotEqual(reference.rgb, ddim.rgb)
        XCTAssertEqual(
            reference.trace.stepTraces.map(\.timestep), try engine.sd.dpmSolverScheduler().timesteps(steps: 8))
        for point in [1, 4, 7] {
            let arrays = Dictionary(uniqueKeysWithValues: saved[point].checkpointArrays())
            XCTAssertNotNil(arrays["dpm.x0"])
            var resumed = try SynthesisState(metadata: try saved[point].checkpointMetadata(), arrays: arrays)
            XCTAssertNoThrow(try engine.checkResumable(resumed))
            while !engine.isFinished(resumed) { resumed = try engine.advance(resumed) }
            XCTAssertEqual(engine.finish(resumed).rgb, reference.rgb, "resumed at \(point)")
        }
    }

    func testEditsRefuseDPMSolver() throws {
        var edit = job(.dpmpp2m)
        edit.settings.strength = 0.5
        assertThrows(
            try Tiny.engine().start(edit, image: SynthesisTests.testPattern()), containing: ["scheduler", "ddim"])
    }

    func testStatesThatDoNotFitTheModelsAreRefused() throws {
        let engine = try Tiny.engine()
        var state = try engine.start(job(.ddim))
        state = try engine.advance(state)
        XCTAssertNoThrow(try engine.checkResumable(state))
        var shortToken = state
        shortToken.token = Array(state.token.prefix(5))
        shortToken.adam = AdamState(count: 5)
        assertThrows(try engine.checkResumable(shortToken), containing: ["token has 5 values"])
        var wrongShape = state
        wrongShape.latentShape = [1, 4, 16, 16]
        wrongShape.latent = [Float](repeating: 0, count: 4 * 16 * 16)
        assertThrows(try engine.checkResumable(wrongShape), containing: ["not the job's 64×64 image"])
        var badChannels = state
        badChannels.latentShape = [1, 3, 8, 8]
        badChannels.latent = [Float](repeating: 0, count: 3 * 8 * 8)
        assertThrows(try engine.checkResumable(badChannels), containing: ["does not fit this model"])
        var poisoned = state
        poisoned.latent[3] = .nan
        assertThrows(try engine.checkResumable(poisoned), containing: ["not finite"])
        // Advanced anyway, the NaN is caught at the step, with the step and the settings named.
        assertThrows(try engine.advance(poisoned), containing: ["step 2 of 8", "not finite", "lower guidance 7.5"])
        var finished = state
        finished.stepIndex = finished.job.settings.steps
        assertThrows(try engine.checkResumable(finished), containing: ["nothing to resume"])
    }
}
