import DiffusersLayout
import Diffusion
import Foundation
import Tensor
import Vocabulary

/// How a finished image scores, measured apart from the guidance: an independent
/// evaluator's class probabilities (the guide classifier flatters the methods optimised
/// against it), and CLIP measurements in the evaluation CLIP's space (the spec's
/// `evaluation.clip_tower`/`clip_text`, else the prompt tower with the timing text model) — the image embedding (for
/// Sem-D), CLIP score against the prompt, and for edits CLIP-I against the source.
public struct ImageEvaluation: Codable, Equatable, Sendable {
    /// The evaluator's description; nil when the job had none.
    public var evaluator: String?
    /// The evaluator's probabilities on the 8-bit image, EmoSet order.
    public var probabilities: [Float]?
    /// 100 · max(cos(CLIP image, CLIP text of the prompt), 0).
    public var clipScore: Float
    /// Edits: cos(CLIP image of the source, CLIP image of the edit).
    public var clipI: Float?
    /// L2-normalised CLIP image embedding of the result.
    public var imageEmbedding: [Float]
    /// Edits: the source's, taken when the job started.
    public var sourceEmbedding: [Float]?
    /// Edits: the evaluator's probabilities on the source image (Emo-S: how far the edit moved
    /// the target from where the source had it).
    public var sourceProbabilities: [Float]?
}

/// An evaluator classifier: a tower with a linear head, zero-shot from a CLIP text model, or
/// a whole image classifier (a transformers ViTForImageClassification folder).
public enum EvaluatorFiles: Equatable, Sendable {
    case linear(tower: String, head: String)
    case zeroShot(tower: String, text: String)
    case imageClassifier(folder: String)

    /// What a job's evaluator locations name: with a head, a linear head; without a head or
    /// text, an image-classification folder as itself (its config says so:
    /// `DiffusersLayout.isImageClassifier`); otherwise zero-shot with `text`, else the tower
    /// itself (a whole CLIPModel).
    public init(tower: String, head: String?, text: String?) {
        if let head {
            self = .linear(tower: tower, head: head)
        } else if text == nil, DiffusersLayout.isImageClassifier(tower) {
            self = .imageClassifier(folder: tower)
        } else {
            self = .zeroShot(tower: tower, text: text ?? tower)
        }
    }

    func load() throws -> EmotionClassifier {
        let c: EmotionClassifier
        switch self {
        case .linear(let towerFolder, let head):
            try refuseImageClassifier(towerFolder, "linear head")
            c = try EmotionClassifier(tower: CLIPVisionEncoder(folder: towerFolder), headFile: head)
        case .zeroShot(let towerFolder, let text):
            try refuseImageClassifier(towerFolder, "zero-shot text model")
            c = try EmotionClassifier.zeroShot(tower: CLIPVisionEncoder(folder: towerFolder), textFolder: text)
        case .imageClassifier(let folder):
            c = try EmotionClassifier(imageClassifierFolder: folder)
        }
        return c.described(as: "evaluator: \(c.headDescription)")
    }
}

/// An image-classification folder is a whole classifier: a head or text model beside it is a
/// mistake, named here rather than as a CLIP tower that fails to load.
func refuseImageClassifier(_ folder: String, _ what: String) throws {
    guard DiffusersLayout.isImageClassifier(folder) else { return }
    throw SynthesisError("\(folder) is an image classifier (ViT) with its own head; it takes no \(what)")
}

extension SynthesisEngine {
    /// L2-normalised CLIP image embedding of an image [1, 3, H, W] in [-1, 1].
    func clipImageEmbedding(_ image: Tensor) -> [Float] {
        Autograd.noGrad { evaluationScorer.imageEmbedding(image).data }
    }

    /// Scores the final 8-bit image (`image` is it as a tensor).
    func evaluate(
        _ image: Tensor, prompt: String, sourceEmbedding: [Float]?, sourceProbabilities: [Float]? = nil
    ) -> ImageEvaluation {
        let embedding = clipImageEmbedding(image)
        let text = Autograd.noGrad { evaluationScorer.textEmbedding(prompt).data }
        let cosine = zip(embedding, text).reduce(0) { $0 + $1.0 * $1.1 }
        let clipI = sourceEmbedding.map { s in zip(embedding, s).reduce(0) { $0 + $1.0 * $1.1 } }
        let p = evaluator.map { e in Autograd.noGrad { e.probabilities(images: image).data } }
        return ImageEvaluation(
            evaluator: evaluator?.headDescription, probabilities: p, clipScore: 100 * max(cosine, 0), clipI: clipI,
            imageEmbedding: embedding, sourceEmbedding: sourceEmbedding, sourceProbabilities: sourceProbabilities)
    }

    /// Edits, at start: the guide's and the evaluator's probabilities on the source image.
    func sourceProbabilities(_ image: Tensor) -> (guide: [Float], evaluator: [Float]?) {
        Autograd.noGrad {
            (classifier.probabilities(images: image).data, evaluator.map { $0.probabilities(images: image).data })
        }
    }
}
