import Diffusion
import Foundation
import Tensor
import Vocabulary
import XCTest

@testable import MUSE

/// `guidance_decoder: tiny`: the tiny decoder steers, the full VAE still makes the image.
final class GuidanceDecoderTests: XCTestCase {
    func job(_ method: SynthesisMethod, _ decoder: GuidanceDecoder) -> SynthesisJob {
        var muse = Tiny.quickSettings()
        muse.guidanceDecoder = decoder
        muse.stopFraction = 0.75
        return SynthesisJob(
            prompt: "a photo of a cat", emotion: .fear, method: method, seed: 21,
            settings: JobSettings(steps: 8, muse: muse))
    }

    func testTheFinalImageAlwaysComesFromTheFullVAE() throws {
        // Without guidance the decoder choice can only change what is read at the start
        // step, never the image.
        let vae = try Tiny.run(job(.none, .vae))
        let tiny = try Tiny.run(job(.none, .tiny))
        XCTAssertEqual(tiny.rgb, vae.rgb)
        XCTAssertNil(vae.trace.inherent, "without guidance nothing is decoded or classified for WHICH")
        XCTAssertNil(vae.trace.startProbabilities)
    }

    func testGuidanceReadsTheTinyDecodersImage() throws {
        let engine = try Tiny.engine()
        let vae = try Tiny.run(job(.muse, .vae))
        let tiny = try Tiny.run(job(.muse, .tiny))
        let first = { (r: SynthesisResult) in r.trace.stepTraces.first { $0.guided }?.inner.first?.probabilities ?? [] }
        XCTAssertEqual(first(vae).count, 8)
        XCTAssertNotEqual(first(tiny), first(vae), "the classifier saw a different image")
        XCTAssertNotEqual(tiny.rgb, vae.rgb, "a different guide leads to a different token and image")
        // How far the tiny decode's probabilities are from the full decode's on the same x̂0
        // (random weights: reported, not tuned to).
        let z = Tensor.randomNormal([1, 4, 8, 8], seed: 5)
        let pv = engine.classifier.probabilities(images: engine.decodedImage(z, .vae)).data
        let pt = engine.classifier.probabilities(images: engine.decodedImage(z, .tiny)).data
        let l1 = zip(pv, pt).map { abs($0 - $1) }.reduce(0, +)
        print(String(format: "classifier on the tiny vs the full decode of one x̂0: L1 distance %.3f", l1))
        XCTAssertEqual(pt.reduce(0, +), 1, accuracy: 1e-4)
    }

    func testTinyGuidanceNeedsATinyDecoder() throws {
        let bare = try SynthesisEngine.load(model: Tiny.sd, tower: Tiny.tower, head: Tiny.head, text: Tiny.text)
        assertThrows(try bare.start(job(.muse, .tiny)), containing: ["guidance_decoder tiny", "no tiny decoder"])
        XCTAssertNoThrow(try bare.start(job(.muse, .vae)))
    }
}
