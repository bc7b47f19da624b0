import Diffusion
import Foundation
import Tensor
import Vocabulary
import XCTest

@testable import MUSE

final class TokenTests: XCTestCase {
    func testSlotSitsAfterThePromptBeforeEos() throws {
        let sd = try Tiny.engine().sd
        let prompt = TokenPrompt(prompt: "a photo of a cat", tokenizer: sd.tokenizer, length: 77)
        let words = sd.tokenizer.encode("a photo of a cat")
        XCTAssertEqual(prompt.slot, 1 + words.count)
        XCTAssertEqual(Array(prompt.ids[1..<prompt.slot]), words)
        XCTAssertEqual(prompt.ids[prompt.slot + 1], sd.tokenizer.eosID)
        XCTAssertEqual(prompt.ids.count, 77)
        // A long prompt is cut to leave room for the slot and eos.
        let long = TokenPrompt(prompt: String(repeating: "cat ", count: 100), tokenizer: sd.tokenizer, length: 77)
        XCTAssertEqual(long.slot, 75)
        XCTAssertEqual(long.ids[76], sd.tokenizer.eosID)
    }

    /// With v set to a word's own embedding, the conditioning equals encoding the prompt
    /// with that word's id in the slot.
    func testConditioningWithAWordEmbeddingEqualsThePromptWithTheWord() throws {
        let sd = try Tiny.engine().sd
        let word = sd.tokenizer.encode("the")
        XCTAssertEqual(word.count, 1)
        let prompt = TokenPrompt(prompt: "a photo of a cat", tokenizer: sd.tokenizer, length: 77)
        var ids = prompt.ids
        ids[prompt.slot] = word[0]
        let expected = sd.textEncoder.encode(ids: [ids])
        let got = prompt.conditioning(sd.textEncoder, token: sd.textEncoder.tokenEmbeddings(word).reshaped([-1]))
        XCTAssertEqual(got.shape, expected.shape)
        XCTAssertEqual(got.data, expected.data)
    }

    func testInitialTokenIsTheMeanOfTheWordsPieces() throws {
        let sd = try Tiny.engine().sd
        let ids = sd.tokenizer.encode("contentment")
        XCTAssertGreaterThan(ids.count, 1, "the tiny vocabulary splits emotion words")
        let v = EmotionToken.initial(word: "contentment", tokenizer: sd.tokenizer, encoder: sd.textEncoder)
        let rows = sd.textEncoder.tokenEmbeddings(ids)
        for j in [0, 5, 31] {
            let mean = (0..<ids.count).map { rows.data[$0 * 32 + j] }.reduce(0, +) / Float(ids.count)
            XCTAssertEqual(v[j], mean, accuracy: 1e-6)
        }
    }

    /// The gradient reaches v through the text encoder, UNet, x̂0 formula, decoder and classifier.
    func testGradientFlowsToTheToken() throws {
        let engine = try Tiny.engine()
        let sd = engine.sd
        let prompt = TokenPrompt(prompt: "a photo of a cat", tokenizer: sd.tokenizer, length: 77)
        let v0 = EmotionToken.initial(word: "awe", tokenizer: sd.tokenizer, encoder: sd.textEncoder)
        let z = Tensor.randomNormal([1, 4, 8, 8], seed: 1)
        let epsU = sd.unet(z, timestep: 501, context: sd.encodePrompt(""))
        func loss(_ v: Tensor) -> Tensor {
            let c = sd.unet(z, timestep: 501, context: prompt.conditioning(sd.textEncoder, token: v))
            let x0 = sd.scheduler.predictedOriginal(eps: epsU + (c - epsU) * 7.5, timestep: 501, sample: z)
            let logits = engine.classifier.logits(images: engine.decodedImage(x0, .vae))
            return EmotionLoss(target: .awe, inherent: nil, similar: [], lambdaInherent: 0, lambdaSimilar: 0)(
                logits: logits
            ).loss
        }
        let v = Tensor(shape: [32], data: v0).asVariable()
        let g = Autograd.gradients(of: loss(v), withRespectTo: [v])[0]
        let norm = g.data.map { $0 * $0 }.reduce(0, +).squareRoot()
        XCTAssertGreaterThan(norm, 1e-3)
        // A small step against the gradient lowers the loss by about |g|·step.
        let step: Float = 1e-3
        let moved = Tensor(shape: [32], data: zip(v0, g.data).map { $0 - step * $1 / norm })
        let drop = loss(Tensor(shape: [32], data: v0)).scalar - loss(moved).scalar
        XCTAssertEqual(drop, step * norm, accuracy: 0.3 * step * norm)
    }
}
