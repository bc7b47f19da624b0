import Foundation
import Vocabulary
import XCTest

@testable import MUSE

/// A guide tower that is not its text model's CLIP pair (the bundled miniworld guide is tuned
/// for robustness on x̂0) comes with `promptTower`: s_t and CLIP score are measured there.
final class PromptTowerTests: XCTestCase {
    static let world = Tiny.models + "/miniworld"

    func load(
        tower: String, head: String?, promptTower: String? = nil, evaluationCLIP: (tower: String, text: String)? = nil
    ) throws -> SynthesisEngine {
        try SynthesisEngine.load(
            model: Self.world + "/sd", tower: Self.world + "/" + tower, head: head.map { Self.world + "/" + $0 },
            text: Self.world + "/clip-text", promptTower: promptTower.map { Self.world + "/" + $0 },
            evaluationCLIP: evaluationCLIP)
    }

    /// The same unguided image scored by three engines: with the prompt tower its CLIP score is
    /// exactly that of an engine whose own tower is the CLIP pair, and not what the guide tower
    /// alone would give; the matching caption outscores another scene's caption in that space.
    func testCLIPScoreIsMeasuredWithThePromptTower() throws {
        let paired = try load(tower: "guide-vision", head: "emotion-head.safetensors", promptTower: "clip-vision")
        let clipOnly = try load(tower: "clip-vision", head: nil)
        let guideOnly = try load(tower: "guide-vision", head: "emotion-head.safetensors")
        let house = "a brown house in the middle, with two trees, by the sea, among mountains, cloudy, in the morning"
        let boat = "a yellow boat on the right, and a cat, by a lake, below hills, clear sky, winter, at dawn"
        func score(_ engine: SynthesisEngine, _ prompt: String, scoredAs: String) throws -> Float {
            let job = SynthesisJob(
                prompt: prompt, emotion: .awe, method: .none, seed: 5, settings: JobSettings(steps: 20))
            let image = try engine.run(job).image
            return engine.evaluate(image, prompt: scoredAs, sourceEmbedding: nil).clipScore
        }
        let pairedScore = try score(paired, house, scoredAs: house)
        XCTAssertEqual(pairedScore, try score(clipOnly, house, scoredAs: house))
        XCTAssertNotEqual(pairedScore, try score(guideOnly, house, scoredAs: house))
        XCTAssertGreaterThan(pairedScore, try score(paired, house, scoredAs: boat))
    }

    /// A prompt tower needs a linear head, and must project where the text model does.
    func testMismatchedPromptTowersAreRefused() throws {
        XCTAssertThrowsError(try load(tower: "guide-vision", head: nil, promptTower: "clip-vision")) {
            XCTAssertTrue("\($0)".contains("a prompt tower needs a linear head"), "\($0)")
        }
        XCTAssertThrowsError(
            try SynthesisEngine.load(
                model: Self.world + "/sd", tower: Self.world + "/guide-vision",
                head: Self.world + "/emotion-head.safetensors", text: Self.world + "/clip-text",
                promptTower: Tiny.tower)
        ) {
            XCTAssertTrue("\($0)".contains("timing CLIP: text projects to"), "\($0)")
        }
    }

    /// The spec's evaluation CLIP measures CLIP score and the image embedding (Sem-D, CLIP-I)
    /// even when the engine has no prompt tower: an engine guided and timed by the guide tower
    /// alone scores exactly as the CLIP pair itself, while s_t stays the guide tower's.
    func testEvaluationCLIPMeasuresInsteadOfTheGuideTower() throws {
        let pair = (tower: Self.world + "/clip-vision", text: Self.world + "/clip-text")
        let measured = try load(tower: "guide-vision", head: "emotion-head.safetensors", evaluationCLIP: pair)
        let guideOnly = try load(tower: "guide-vision", head: "emotion-head.safetensors")
        let clipOnly = try load(tower: "clip-vision", head: nil)
        let prompt = "a white lighthouse on the left, by the sea, below hills, stormy, in autumn, at dusk"
        let job = SynthesisJob(prompt: prompt, emotion: .fear, method: .none, seed: 3, settings: JobSettings(steps: 20))
        let image = try guideOnly.run(job).image
        let e = measured.evaluate(image, prompt: prompt, sourceEmbedding: nil)
        let reference = clipOnly.evaluate(image, prompt: prompt, sourceEmbedding: nil)
        XCTAssertEqual(e.clipScore, reference.clipScore)
        XCTAssertEqual(e.imageEmbedding, reference.imageEmbedding)
        XCTAssertNotEqual(e.clipScore, guideOnly.evaluate(image, prompt: prompt, sourceEmbedding: nil).clipScore)
        // The evaluation CLIP does not touch guidance or timing: the same job, the same image.
        XCTAssertEqual(try measured.run(job).image.data, image.data)
        XCTAssertThrowsError(
            try load(
                tower: "guide-vision", head: "emotion-head.safetensors",
                evaluationCLIP: (tower: Tiny.tower, text: Self.world + "/clip-text"))
        ) {
            XCTAssertTrue("\($0)".contains("evaluation CLIP: text projects to"), "\($0)")
        }
    }
}
