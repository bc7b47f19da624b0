import Diffusion
import Foundation
import Tensor
import Vocabulary

/// A prompt's token ids with one slot for the learnable emotion token v, right after the
/// prompt's own tokens and before eos: [bos, prompt…, v, eos, pad…]. The prompt is
/// truncated to leave room for the slot.
struct TokenPrompt {
    let ids: [Int]
    let slot: Int

    init(prompt: String, tokenizer: CLIPTokenizer, length: Int) {
        let words = tokenizer.encode(prompt).prefix(length - 3)
        var ids = [tokenizer.bosID] + words
        slot = ids.count
        ids += [tokenizer.padID, tokenizer.eosID]  // the pad id only fills the slot's place
        ids += [Int](repeating: tokenizer.padID, count: length - ids.count)
        self.ids = ids
    }

    /// Conditioning [1, T, D] with `token` ([D], may require gradients) in the slot.
    func conditioning(_ encoder: CLIPTextEncoder, token: Tensor) -> Tensor {
        let table = encoder.tokenEmbeddings(ids)  // [T, D], constant
        let d = encoder.hiddenSize
        let t = ids.count
        let rows = Tensor.concat(
            [
                table.narrowed(axis: 0, start: 0, length: slot),
                token.reshaped([1, d]),
                table.narrowed(axis: 0, start: slot + 1, length: t - slot - 1),
            ], axis: 0)
        return encoder.encode(inputEmbeddings: rows.reshaped([1, t, d]))
    }
}

enum EmotionToken {
    /// v's initial value: the input embedding of the emotion word. A word the tokenizer
    /// splits into several BPE tokens (common with small vocabularies) starts from their
    /// mean — one token must carry the whole word, and the mean stays on the embedding
    /// table's scale and points between the pieces' meanings.
    static func initial(word: String, tokenizer: CLIPTokenizer, encoder: CLIPTextEncoder) -> [Float] {
        let ids = tokenizer.encode(word)
        precondition(!ids.isEmpty, "emotion word '\(word)' has no tokens")
        return encoder.tokenEmbeddings(ids).mean(axis: 0).data
    }
}
