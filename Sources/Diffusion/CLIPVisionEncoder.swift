import DiffusersLayout
import Foundation
import Tensor

// CLIP's vision tower with its projection, as transformers' CLIPVisionModelWithProjection.
// Differentiable with respect to the pixels: MUSE's emotion loss flows back through it.

public final class CLIPVisionEncoder {
    public let imageSize: Int
    public let patchSize: Int
    public let hiddenSize: Int
    public let projectionDim: Int
    /// CLIPImageProcessor's steps (preprocessor_config.json, else CLIP's defaults at imageSize).
    public let preprocessor: CLIPImagePreprocessor
    public var imageMean: [Float] { preprocessor.mean }
    public var imageStd: [Float] { preprocessor.std }
    let classEmbedding: Tensor  // [hidden]
    let patchEmbedding: Conv2d  // stride = kernel = patch, no bias
    let positionEmbedding: Tensor  // [patches + 1, hidden]
    let preLayerNorm, postLayerNorm: LayerNorm
    let layers: [PreNormEncoderLayer]
    let visualProjection: Linear

    /// `folder`: a CLIPVisionModelWithProjection or full CLIPModel folder (config.json,
    /// safetensors weights, optionally preprocessor_config.json).
    public init(folder: String) throws {
        let top = try ModelConfig(path: DiffusersLayout.configPath(folder))
        let c = top.clipTower("vision_config")
        let shape = try EncoderShape(c, defaults: (768, 3072, 12, 12))
        hiddenSize = shape.hidden
        imageSize = try c.int("image_size", default: 224, in: 1...4096)
        patchSize = try c.int("patch_size", default: 32, in: 1...4096)
        let channels = try c.int("num_channels", default: 3, in: 1...64)
        // CLIPModel keeps projection_dim at the top level, single-tower configs in their own.
        projectionDim = try top.int("projection_dim", default: 512, in: 1...8192)
        guard imageSize % patchSize == 0 else {
            throw c.fail("patch_size", "= \(patchSize): 'image_size' = \(imageSize) must be a multiple of it")
        }
        let positions = (imageSize / patchSize) * (imageSize / patchSize) + 1

        let all = try ModelWeights(folder: folder)
        let w = all.towerScope("vision_model", probe: "embeddings.patch_embedding.weight")
        classEmbedding = try w.tensor("embeddings.class_embedding", shape: [hiddenSize])
        patchEmbedding = try Conv2d(
            w, "embeddings.patch_embedding", in: channels, out: hiddenSize,
            kernel: patchSize, stride: patchSize, bias: false)
        positionEmbedding = try w.tensor("embeddings.position_embedding.weight", shape: [positions, hiddenSize])
        preLayerNorm = try LayerNorm(w, "pre_layrnorm", dim: hiddenSize, eps: shape.eps)  // sic, transformers' name
        layers = try PreNormEncoderLayer.stack(w, shape, names: .clip)
        postLayerNorm = try LayerNorm(w, "post_layernorm", dim: hiddenSize, eps: shape.eps)
        visualProjection = try Linear(all, "visual_projection", in: hiddenSize, out: projectionDim, bias: false)

        let path = folder + "/preprocessor_config.json"
        preprocessor = try CLIPImagePreprocessor(
            config: ModelFile.exists(path) ? try ModelConfig(path: path) : nil, imageSize: imageSize,
            channels: channels)
    }

    /// The encoder's output before post_layernorm: [B, patches + 1, hidden] (CLS first).
    public func lastHiddenState(pixelValues x: Tensor) -> Tensor {
        precondition(
            x.rank == 4 && x.shape[2] == imageSize && x.shape[3] == imageSize,
            "CLIP vision: pixels \(x.shape), want [B, C, \(imageSize), \(imageSize)]")
        let batch = x.shape[0]
        let patches = patchEmbedding(x).flattenedSpatialToTokens()  // [B, grid², hidden]
        let cls = classEmbedding.reshaped([1, 1, hiddenSize])
        var h = Tensor.concat([Tensor.concat(Array(repeating: cls, count: batch), axis: 0), patches], axis: 1)
        h = preLayerNorm(h + positionEmbedding)
        for layer in layers { h = Autograd.checkpointed([h]) { layer($0[0], causal: false) } }
        return h
    }

    /// image_embeds: post_layernorm of the CLS token, projected: [B, projectionDim].
    public func imageEmbeds(pixelValues: Tensor) -> Tensor {
        let h = lastHiddenState(pixelValues: pixelValues)
        let cls = h.narrowed(axis: 1, start: 0, length: 1).reshaped([h.shape[0], hiddenSize])
        return visualProjection(postLayerNorm(cls))
    }

    /// Images [B, C, H, W] in [-1, 1] (the VAE's range) → normalized pixel values [B, C, S, S],
    /// differentiably, as CLIPImageProcessor would give them for the same pixels as uint8
    /// (antialiased bicubic resize of the shortest edge, centre crop, normalisation; see
    /// CLIPImagePreprocessor for what differs: PIL's rounding to uint8 only).
    public func preprocess(_ images: Tensor) -> Tensor { preprocessor(images) }
}
