import DiffusersLayout
import Foundation
import Tensor

// A transformers ViTForImageClassification folder as a whole image classifier: its image
// processor, the ViT encoder and its classification head. Differentiable with respect to the
// pixels, so MUSE can guide with it as it does with a CLIP tower and a head.

/// transformers 5.24's ViTImageProcessor, differentiably, for images [B, 3, H, W] in [-1, 1]
/// (x ↦ (x + 1)/2 · 255 is the 8-bit image's values): resize to size (height, width), centre
/// crop when do_center_crop, × rescale_factor, (x − image_mean)/image_std.
///
/// ViTImageProcessor is the torchvision backend. Given a float32 tensor, its resize is
/// torchvision's `resize_image`: F.interpolate(mode="bilinear" for resample 2, "bicubic" for 3,
/// align_corners=False, antialias=True), with no rounding or clamping, which is what this
/// computes (`Tensor.resampled`, Pillow's antialiased taps; the two passes' order differs from
/// torch's only by float rounding). The uint8 paths round after the resize: torchvision's
/// own and ViTImageProcessorPil (transformers' fallback without torchvision) are within about
/// one level of 255 of this (0.0174 in normalised units on the tiny model's fixture,
/// tools/reference/build_tiny_vit.py).
public struct ViTImagePreprocessor: Sendable {
    /// The resize's output (height, width).
    public let size: [Int]
    public let filter: ResampleFilter
    /// (height, width) of the centre crop after the resize, nil without one.
    public let crop: [Int]?
    /// 255 · rescale_factor (1 for the usual 1/255), 255 without do_rescale.
    public let rescale: Float
    public let mean: [Float]
    public let std: [Float]

    /// ViTImageProcessor's class defaults (IMAGENET_STANDARD_MEAN/STD).
    public static let standardMean: [Float] = [0.5, 0.5, 0.5]
    public static let standardStd: [Float] = [0.5, 0.5, 0.5]

    /// From preprocessor_config.json; ViTImageProcessor's defaults where a key is absent. The
    /// steps must give the model's `imageSize` square (the encoder takes no other size).
    public init(config p: ModelConfig, imageSize: Int) throws {
        if p.has("image_processor_type") {
            let type = try p.string("image_processor_type")
            guard type.hasPrefix("ViT") else {
                throw p.fail("image_processor_type", "is '\(type)': only ViTImageProcessor's settings are read")
            }
        }
        guard try p.bool("do_resize", default: true) else {
            throw p.fail("do_resize", "is false: the engine's images must be resized to the model's size")
        }
        let size = try CLIPImagePreprocessor.size(
            p, "size", integerMeans: "square", default: ["height": 224, "width": 224])
        guard let height = size["height"], let width = size["width"], size.count == 2 else {
            throw p.fail("size", "must be {\"height\": h, \"width\": w} (or an integer), got \(size)")
        }
        self.size = [height, width]
        switch try p.int("resample", default: 2) {
        case 2: filter = .bilinear
        case 3: filter = .bicubic
        case let other: throw p.fail("resample", "= \(other): must be 2 (bilinear) or 3 (bicubic)")
        }
        var crop: [Int]? = nil
        if try p.bool("do_center_crop", default: false) {
            let c = try CLIPImagePreprocessor.size(
                p, "crop_size", integerMeans: "square", default: ["height": 224, "width": 224])
            guard let ch = c["height"], let cw = c["width"], c.count == 2 else {
                throw p.fail("crop_size", "must be {\"height\": h, \"width\": w} (or an integer), got \(c)")
            }
            guard ch <= height && cw <= width else {
                throw p.fail(
                    "crop_size", "\(ch)×\(cw) is larger than 'size' \(height)×\(width) (padding is not supported)")
            }
            crop = [ch, cw]
        }
        self.crop = crop
        var rescale: Float = 255
        if try p.bool("do_rescale", default: true) {
            let factor = try p.double("rescale_factor", default: 1 / 255.0, "a number > 0") { $0 > 0 && $0.isFinite }
            rescale = Float(255 * factor)
        }
        self.rescale = rescale
        if try p.bool("do_normalize", default: true) {
            mean = try p.floats("image_mean", count: 3...3, in: -1000...1000, default: Self.standardMean)
            std = try p.floats("image_std", count: 3...3, in: 1e-6...1000, default: Self.standardStd)
        } else {
            mean = [0, 0, 0]
            std = [1, 1, 1]
        }
        let out = crop ?? self.size
        guard out == [imageSize, imageSize] else {
            throw p.fail(
                crop == nil ? "size" : "crop_size",
                "gives \(out[0])×\(out[1]) pixels, not the model's \(imageSize)×\(imageSize) (config.json 'image_size')"
            )
        }
    }

    public func callAsFunction(_ images: Tensor) -> Tensor {
        precondition(
            images.rank == 4 && images.shape[1] == 3, "ViT preprocess: images \(images.shape), want [B, 3, H, W]")
        var x = images * 0.5 + 0.5
        x = x.resampled(axis: 3, size: size[1], filter: filter).resampled(axis: 2, size: size[0], filter: filter)
        if let crop {
            // torchvision's center_crop: top int((h − ch)/2), left int((w − cw)/2).
            x = x.narrowed(axis: 2, start: (size[0] - crop[0]) / 2, length: crop[0])
                .narrowed(axis: 3, start: (size[1] - crop[1]) / 2, length: crop[1])
        }
        if rescale != 1 { x = x * rescale }
        let m = Tensor(shape: [1, 3, 1, 1], data: mean)
        let s = Tensor(shape: [1, 3, 1, 1], data: std)
        return (x - m) / s
    }
}

/// transformers' ViTForImageClassification: patch embedding with a CLS token and position
/// embeddings, pre-norm encoder layers (GELU), the final layernorm, and the classifier on the
/// CLS token. Weights as save_pretrained writes them ("vit.encoder.layer.N.attention.attention.query…",
/// also transformers 5's module names "vit.layers.N.attention.q_proj…").
public final class ViTImageClassifier {
    public let folder: String
    public let imageSize: Int
    public let patchSize: Int
    public let hiddenSize: Int
    /// config.json's id2label, by class index: logit i is `labels[i]`.
    public let labels: [String]
    public let preprocessor: ViTImagePreprocessor
    let clsToken: Tensor  // [1, 1, hidden]
    let patchEmbedding: Conv2d  // stride = kernel = patch, with bias
    let positionEmbedding: Tensor  // [patches + 1, hidden]
    let layers: [PreNormEncoderLayer]
    let layerNorm: LayerNorm
    let classifier: Linear

    /// At most this many classes (ImageNet-21k heads have 21843).
    public static let maxLabels = 65536

    /// `folder`: config.json (model_type "vit"), preprocessor_config.json and safetensors weights.
    public init(folder: String) throws {
        self.folder = folder
        let c = try ModelConfig(path: DiffusersLayout.configPath(folder))
        let modelType = c.has("model_type") ? try c.string("model_type") : "(none)"
        guard modelType == "vit" else {
            throw c.fail(
                "model_type", "is '\(modelType)': only ViTForImageClassification (model_type \"vit\") is supported")
        }
        if c.has("architectures") {
            let architectures = try c.strings("architectures")
            guard architectures.isEmpty || architectures.contains("ViTForImageClassification") else {
                throw c.fail(
                    "architectures", "is \(architectures): needs ViTForImageClassification (a ViT with its classifier)")
            }
        }
        let shape = try EncoderShape(c, defaults: (768, 3072, 12, 12), eps: 1e-12, activation: "gelu")
        hiddenSize = shape.hidden
        imageSize = try c.int("image_size", default: 224, in: 1...4096)
        patchSize = try c.int("patch_size", default: 16, in: 1...4096)
        guard imageSize % patchSize == 0 else {
            throw c.fail("patch_size", "= \(patchSize): 'image_size' = \(imageSize) must be a multiple of it")
        }
        let channels = try c.int("num_channels", default: 3, in: 1...64)
        guard channels == 3 else { throw c.fail("num_channels", "= \(channels): the engine's images are RGB (3)") }
        labels = try Self.labels(c)
        let positions = (imageSize / patchSize) * (imageSize / patchSize) + 1

        let all = try ModelWeights(folder: folder)
        let w = all.scoped("vit")
        let modular =
            !w.contains("encoder.layer.0.layernorm_before.weight") && w.contains("layers.0.layernorm_before.weight")
        clsToken = try w.tensor("embeddings.cls_token", shape: [1, 1, hiddenSize])
        patchEmbedding = try Conv2d(
            w, "embeddings.patch_embeddings.projection", in: channels, out: hiddenSize, kernel: patchSize,
            stride: patchSize)
        positionEmbedding = try w.tensor("embeddings.position_embeddings", shape: [1, positions, hiddenSize])
            .reshaped([positions, hiddenSize])
        layers = try PreNormEncoderLayer.stack(
            w, shape, names: modular ? .vitModular : .vit, qkvBias: try c.bool("qkv_bias", default: true))
        layerNorm = try LayerNorm(w, "layernorm", dim: hiddenSize, eps: shape.eps)
        classifier = try Linear(all, "classifier", in: hiddenSize, out: labels.count)

        let processorPath = folder + "/preprocessor_config.json"
        guard ModelFile.exists(processorPath) else {
            throw ModelLoadError(
                "\(folder): no preprocessor_config.json (the ViTImageProcessor settings the model was trained with: "
                    + "size, resample, image_mean, image_std); save the processor beside the model")
        }
        preprocessor = try ViTImagePreprocessor(config: ModelConfig(path: processorPath), imageSize: imageSize)
    }

    /// id2label as a list by index: its keys must be 0..<n, each once.
    static func labels(_ c: ModelConfig) throws -> [String] {
        guard let map = c.values["id2label"] as? [String: Any], !map.isEmpty else {
            throw c.fail("id2label", "is missing or empty: the classes' names say which logit is which class")
        }
        guard map.count <= maxLabels else { throw c.fail("id2label", "has \(map.count) entries, at most \(maxLabels)") }
        var labels = [String?](repeating: nil, count: map.count)
        for (key, value) in map {
            guard let index = Int(key), labels.indices.contains(index), labels[index] == nil else {
                throw c.fail("id2label", "has key '\(key)': keys must be the class indices 0...\(map.count - 1)")
            }
            guard let name = value as? String else {
                throw c.fail("id2label", "entry '\(key)' must be a string, got \(ModelConfig.describe(value))")
            }
            labels[index] = name
        }
        return labels.map { $0! }
    }

    /// Images [B, 3, H, W] in [-1, 1] → pixel values [B, 3, imageSize, imageSize] (differentiable).
    public func preprocess(_ images: Tensor) -> Tensor { preprocessor(images) }

    /// Pixel values [B, 3, imageSize, imageSize] → logits [B, labels.count], in id2label's order.
    public func logits(pixelValues x: Tensor) -> Tensor {
        precondition(
            x.rank == 4 && x.shape[1] == 3 && x.shape[2] == imageSize && x.shape[3] == imageSize,
            "ViT: pixels \(x.shape), want [B, 3, \(imageSize), \(imageSize)]")
        let batch = x.shape[0]
        let patches = patchEmbedding(x).flattenedSpatialToTokens()  // [B, grid², hidden]
        let cls = Tensor.concat(Array(repeating: clsToken, count: batch), axis: 0)
        var h = Tensor.concat([cls, patches], axis: 1) + positionEmbedding
        for layer in layers { h = Autograd.checkpointed([h]) { layer($0[0], causal: false) } }
        // The final layernorm is per token: only the CLS token's reaches the classifier.
        let first = h.narrowed(axis: 1, start: 0, length: 1).reshaped([batch, hiddenSize])
        return classifier(layerNorm(first))
    }
}
