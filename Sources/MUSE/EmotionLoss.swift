import Foundation
import Tensor
import Vocabulary

/// L_emo = −log p(e*) + λ_inh·(−log(1 − p(e_inh))) + λ_sim·Σ_{e∈S} −log(1 − p(e))
/// (docs/METHOD.md, WHICH), on one image's logits.
///
/// Stability without clamping: −log p(e*) comes straight from log-softmax, and
/// log(1 − p(e)) = logsumexp_{j≠e}(log p_j), computed with the max shifted out. Both stay
/// finite with useful gradients even at p = 0 or 1, where a clamp would zero the gradient
/// exactly when the term matters most.
struct EmotionLoss {
    let target: Emotion
    let inherent: Emotion?
    let similar: [Emotion]
    let lambdaInherent: Float
    let lambdaSimilar: Float

    /// logits [1, 8] → (scalar loss, probabilities [1, 8]).
    func callAsFunction(logits: Tensor) -> (loss: Tensor, probabilities: Tensor) {
        precondition(
            logits.shape == [1, Emotion.allCases.count], "emotion loss wants logits [1, 8], got \(logits.shape)")
        let logP = logits.logSoftmax()
        var loss = -logP.narrowed(axis: 1, start: target.index, length: 1).sum()
        if let inherent, lambdaInherent > 0 { loss = loss - Self.logComplement(logP, inherent) * lambdaInherent }
        if lambdaSimilar > 0 { for e in similar { loss = loss - Self.logComplement(logP, e) * lambdaSimilar } }
        return (loss, logP.exp())
    }

    /// log(1 − p(e)) from log-probabilities [1, n]: logsumexp of the others.
    static func logComplement(_ logP: Tensor, _ e: Emotion) -> Tensor {
        let n = logP.shape[1]
        let i = e.index
        var parts: [Tensor] = []
        if i > 0 { parts.append(logP.narrowed(axis: 1, start: 0, length: i)) }
        if i < n - 1 { parts.append(logP.narrowed(axis: 1, start: i + 1, length: n - 1 - i)) }
        let others = parts.count == 1 ? parts[0] : Tensor.concat(parts, axis: 1)
        let shift = others.data.max()!  // a constant: the largest term becomes exp(0) = 1
        return ((others - shift).exp().sum()).log() + shift
    }
}
