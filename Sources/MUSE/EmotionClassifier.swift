import Diffusion
import Foundation
import Tensor
import Vocabulary

/// An emotion classifier over images: a CLIP vision tower's image_embeds followed by a
/// head giving 8 logits in EmoSet order. Differentiable with respect to the pixels, so
/// MUSE's loss reaches the image decoder through it.
public final class EmotionClassifier {
    public enum Head {
        /// logits = image_embeds · weightᵀ + bias on the *unnormalised* embeddings, as
        /// EmoGen's Linear(768→8) over CLIP ViT-L/14 image_embeds.
        case linear(weight: Tensor, bias: Tensor)
        /// logits = scale · cos(image_embeds, class text embedding): CLIP zero-shot.
        /// `classEmbeddings` [8, D] are already L2-normalised.
        case zeroShot(classEmbeddings: Tensor, logitScale: Float)
    }

    public let tower: CLIPVisionEncoder
    public let head: Head
    /// Where the head came from, for traces and logs.
    public let headDescription: String

    public init(tower: CLIPVisionEncoder, head: Head, description: String) {
        self.tower = tower
        self.head = head
        self.headDescription = description
    }

    /// A linear head from safetensors with tensors `weight` [8, D] and `bias` [8]
    /// (tools/reference/convert_emogen_head.py writes EmoGen's head in this form).
    public convenience init(tower: CLIPVisionEncoder, headFile: String) throws {
        guard FileManager.default.fileExists(atPath: headFile) else {
            throw ModelLoadError("classifier head \(headFile) does not exist")
        }
        let file = try SafeTensorsFile(path: headFile)
        let n = Emotion.allCases.count
        guard file.contains("weight"), file.contains("bias") else {
            throw ModelLoadError(
                "classifier head \(headFile): needs tensors 'weight' [\(n), D] and 'bias' [\(n)], has \(file.names)")
        }
        let weight = try file.tensor("weight")
        let bias = try file.tensor("bias")
        guard weight.rank == 2, weight.shape[0] == n, bias.shape == [n] else {
            throw ModelLoadError(
                "classifier head \(headFile): weight \(weight.shape) / bias \(bias.shape), expected [\(n), D] / [\(n)] (one output per emotion)"
            )
        }
        guard weight.shape[1] == tower.projectionDim else {
            throw ModelLoadError(
                "classifier head \(headFile) takes \(weight.shape[1])-d features but the vision tower projects to \(tower.projectionDim)"
            )
        }
        self.init(tower: tower, head: .linear(weight: weight, bias: bias), description: "linear head \(headFile)")
    }

    /// Prompt ensembling templates for the zero-shot head ({} = the emotion word). They
    /// describe the feeling an image evokes rather than its content, as the emotion
    /// classification literature does for CLIP zero-shot baselines.
    public static let zeroShotTemplates = [
        "a photo that evokes {}.",
        "an image that makes people feel {}.",
        "a picture full of {}.",
        "a photo expressing {}.",
    ]

    /// The zero-shot head: for each emotion, the mean of its templates' L2-normalised
    /// text_embeds, renormalised (CLIP's prompt ensembling). `text` must project to the
    /// tower's dimension. The logit scale is the model's `logit_scale` (exp'd) when the
    /// folder holds a full CLIPModel, else CLIP's trained value 100.
    public static func zeroShot(
        tower: CLIPVisionEncoder, textFolder: String,
        templates: [String] = zeroShotTemplates
    ) throws -> EmotionClassifier {
        let text = try CLIPTextEncoder(folder: textFolder)
        guard let dim = text.projectionDim else {
            throw ModelLoadError(
                "\(textFolder): the zero-shot head needs a text model with a projection (CLIPTextModelWithProjection or CLIPModel)"
            )
        }
        guard dim == tower.projectionDim else {
            throw ModelLoadError(
                "\(textFolder) projects text to \(dim) dimensions but the vision tower to \(tower.projectionDim)")
        }
        let tokenizer = try CLIPTokenizer(folder: textFolder)
        var rows: [Tensor] = []
        for emotion in Emotion.allCases {
            let ids = templates.map {
                tokenizer.tokenize($0.replacingOccurrences(of: "{}", with: emotion.word), length: text.maxPositions)
            }
            let embeds = Autograd.noGrad { text.textEmbeds(ids: ids)! }
            rows.append(l2Normalized(l2Normalized(embeds).mean(axis: 0)))
        }
        var scale: Float = 100
        let weights = try ModelWeights(folder: textFolder)
        if let logScale = try weights.optionalTensor("logit_scale") { scale = Foundation.exp(logScale.data[0]) }
        return EmotionClassifier(
            tower: tower, head: .zeroShot(classEmbeddings: Tensor.concat(rows, axis: 0), logitScale: scale),
            description: "zero-shot head from \(textFolder) (\(templates.count) templates, scale \(scale))")
    }

    /// Images [B, 3, H, W] in [-1, 1] → logits [B, 8].
    public func logits(images: Tensor) -> Tensor {
        let features = tower.imageEmbeds(pixelValues: tower.preprocess(images))
        switch head {
        case .linear(let weight, let bias):
            return features.linear(weight, bias)
        case .zeroShot(let classEmbeddings, let logitScale):
            return l2Normalized(features).linear(classEmbeddings) * logitScale
        }
    }

    /// Images [B, 3, H, W] in [-1, 1] → softmax probabilities [B, 8] in EmoSet order.
    public func probabilities(images: Tensor) -> Tensor { logits(images: images).softmax() }
}

/// Rows divided by their L2 norm (differentiable). x: [B, D] or [D].
public func l2Normalized(_ x: Tensor) -> Tensor {
    let axis = x.rank - 1
    return x / (x.square().sum(axis: axis) + 1e-12).sqrt()
}
