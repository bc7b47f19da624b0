import Diffusion
import Foundation
import Tensor
import Vocabulary

/// The cheap stand-in for x̂0 that the timing rule scores with CLIP (WHEN).
enum LatentPreview {
    /// SD 1.x latent → RGB factors (rows: latent channels, columns R, G, B), the linear
    /// approximation ComfyUI and others use for live previews. Applied to the *scaled*
    /// latent the UNet works in; gives roughly [-1, 1].
    static let sd15Factors: [[Float]] = [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]

    /// Scaled latent [1, 4, h, w] → image [1, 3, h, w] in about [-1, 1] (at latent resolution:
    /// the CLIP preprocessing resizes it to the tower's size).
    static func rgb(_ latent: Tensor) -> Tensor {
        precondition(
            latent.rank == 4 && latent.shape[1] == sd15Factors.count,
            "latent-RGB preview wants [B, 4, h, w], got \(latent.shape)")
        // [3, 4] weight for a 1×1 convolution.
        let weight = Tensor(shape: [3, 4, 1, 1], data: (0..<3).flatMap { c in sd15Factors.map { $0[c] } })
        return latent.conv2d(weight, nil, stride: 1, padding: 0).clamp(-1...1)
    }
}

/// s_t: CLIP cosine similarity between an image and the prompt (text embedded once).
final class PromptScorer {
    let tower: CLIPVisionEncoder
    let text: CLIPTextEncoder
    let tokenizer: CLIPTokenizer
    private var cache: [String: Tensor] = [:]

    /// `role` names the pair in errors ("timing CLIP", "evaluation CLIP").
    init(tower: CLIPVisionEncoder, text: CLIPTextEncoder, tokenizer: CLIPTokenizer, role: String = "timing CLIP") throws
    {
        guard let dim = text.projectionDim else {
            throw ModelLoadError(
                "\(role): the text model has no text projection (needs CLIPTextModelWithProjection or a CLIPModel)")
        }
        guard dim == tower.projectionDim else {
            throw ModelLoadError(
                "\(role): text projects to \(dim) dimensions, the vision tower to \(tower.projectionDim)")
        }
        self.tower = tower
        self.text = text
        self.tokenizer = tokenizer
    }

    func textEmbedding(_ prompt: String) -> Tensor {
        if let hit = cache[prompt] { return hit }
        let e = l2Normalized(text.textEmbeds(ids: [tokenizer.tokenize(prompt, length: text.maxPositions)])!)
        cache[prompt] = e
        return e
    }

    /// image [B, 3, H, W] in [-1, 1] → L2-normalised CLIP image embeddings [B, D].
    func imageEmbedding(_ image: Tensor) -> Tensor {
        l2Normalized(tower.imageEmbeds(pixelValues: tower.preprocess(image)))
    }

    /// image [1, 3, H, W] in [-1, 1] → cosine similarity with `prompt`.
    func callAsFunction(_ image: Tensor, prompt: String) -> Float {
        (imageEmbedding(image) * textEmbedding(prompt)).sum().scalar
    }
}
