import Foundation
import Tensor

// CLIP's vision tower with its projection, as transformers' CLIPVisionModelWithProjection.
// Differentiable with respect to the pixels: MUSE's emotion loss flows back through it.

public final class CLIPVisionEncoder {
    public let imageSize: Int
    public let patchSize: Int
    public let hiddenSize: Int
    public let projectionDim: Int
    public let imageMean: [Float]
    public let imageStd: [Float]
    let classEmbedding: Tensor  // [hidden]
    let patchEmbedding: Conv2d  // stride = kernel = patch, no bias
    let positionEmbedding: Tensor  // [patches + 1, hidden]
    let preLayerNorm, postLayerNorm: LayerNorm
    let layers: [CLIPEncoderLayer]
    let visualProjection: Linear

    /// `folder`: a CLIPVisionModelWithProjection or full CLIPModel folder (config.json,
    /// safetensors weights, optionally preprocessor_config.json).
    public init(folder: String) throws {
        let top = try ModelConfig(path: folder + "/config.json")
        let c = top.clipTower("vision_config")
        let shape = try CLIPEncoderShape(c, defaults: (768, 3072, 12, 12))
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
        layers = try CLIPEncoderLayer.stack(w, shape)
        postLayerNorm = try LayerNorm(w, "post_layernorm", dim: hiddenSize, eps: shape.eps)
        visualProjection = try Linear(all, "visual_projection", in: hiddenSize, out: projectionDim, bias: false)

        (imageMean, imageStd) = try Self.normalization(folder: folder, channels: channels)
    }

    /// image_mean/image_std from preprocessor_config.json, else OpenAI CLIP's.
    static func normalization(folder: String, channels: Int) throws -> ([Float], [Float]) {
        var mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
        var std: [Float] = [0.26862954, 0.26130258, 0.27577711]
        let path = folder + "/preprocessor_config.json"
        if ModelFile.exists(path) {
            let p = try ModelConfig(path: path)
            mean = try p.floats("image_mean", count: channels...channels, in: -1000...1000, default: mean)
            std = try p.floats("image_std", count: channels...channels, in: 1e-6...1000, default: std)
        }
        guard mean.count == channels, std.count == channels, std.allSatisfy({ $0 > 0 }) else {
            throw ModelLoadError("\(path): image_mean \(mean) / image_std \(std) do not fit \(channels) channels")
        }
        return (mean, std)
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
        for layer in layers { h = layer(h, causal: false) }
        return h
    }

    /// image_embeds: post_layernorm of the CLS token, projected: [B, projectionDim].
    public func imageEmbeds(pixelValues: Tensor) -> Tensor {
        let h = lastHiddenState(pixelValues: pixelValues)
        let cls = h.narrowed(axis: 1, start: 0, length: 1).reshaped([h.shape[0], hiddenSize])
        return visualProjection(postLayerNorm(cls))
    }

    /// Images [B, 3, H, W] in [-1, 1] (the VAE's range) → normalized pixel values
    /// [B, 3, S, S], differentiably. Non-square images are centre-cropped to a square first,
    /// like CLIPImageProcessor's shortest-edge resize + centre crop. Unlike that processor
    /// (PIL bicubic with antialiasing) this resizes bilinearly without antialiasing.
    public func preprocess(_ images: Tensor) -> Tensor {
        precondition(
            images.rank == 4 && images.shape[1] == imageMean.count,
            "CLIP preprocess: images \(images.shape), want [B, \(imageMean.count), H, W]")
        var x = images * 0.5 + 0.5
        let (h, w) = (x.shape[2], x.shape[3])
        if h > w { x = x.narrowed(axis: 2, start: (h - w) / 2, length: w) }
        if w > h { x = x.narrowed(axis: 3, start: (w - h) / 2, length: h) }
        if x.shape[2] != imageSize { x = x.resizeBilinear(height: imageSize, width: imageSize) }
        let channels = imageMean.count
        let mean = Tensor(shape: [1, channels, 1, 1], data: imageMean)
        let std = Tensor(shape: [1, channels, 1, 1], data: imageStd)
        return (x - mean) / std
    }
}
