import Tensor

// Building blocks shared by the CLIP, UNet and VAE ports, named after their PyTorch modules
// so weight names map one to one.

public struct Linear {
    /// The weight as stored (float32, or bfloat16 with `MUSE_WEIGHTS_DTYPE=bf16`).
    public let store: WeightStore
    public let bias: Tensor?
    public var weight: Tensor { store.tensor }
    public init(_ w: ModelWeights, _ name: String, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) throws {
        store = WeightStore(try w.tensor(name + ".weight", shape: [outFeatures, inFeatures]))
        self.bias = bias ? try w.tensor(name + ".bias", shape: [outFeatures]) : nil
    }
    public func callAsFunction(_ x: Tensor) -> Tensor { x.linear(weight, bias) }
}

public struct Conv2d {
    /// The weight as stored (float32, or bfloat16 with `MUSE_WEIGHTS_DTYPE=bf16`: then
    /// widened per call, so Winograd transforms it per call too).
    public let store: WeightStore
    public let bias: Tensor?
    public var weight: Tensor { store.tensor }
    public let stride: Int
    public let padding: Int
    public init(
        _ w: ModelWeights, _ name: String, in inChannels: Int, out outChannels: Int, kernel: Int,
        stride: Int = 1, padding: Int = 0, bias: Bool = true
    ) throws {
        store = WeightStore(try w.tensor(name + ".weight", shape: [outChannels, inChannels, kernel, kernel]))
        self.bias = bias ? try w.tensor(name + ".bias", shape: [outChannels]) : nil
        self.stride = stride
        self.padding = padding
    }
    public func callAsFunction(_ x: Tensor) -> Tensor { x.conv2d(weight, bias, stride: stride, padding: padding) }
}

public struct GroupNorm {
    public let weight: Tensor
    public let bias: Tensor
    public let groups: Int
    public let eps: Float
    public init(_ w: ModelWeights, _ name: String, channels: Int, groups: Int, eps: Float) throws {
        weight = try w.tensor(name + ".weight", shape: [channels])
        bias = try w.tensor(name + ".bias", shape: [channels])
        self.groups = groups
        self.eps = eps
    }
    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.groupNorm(groups: groups, weight: weight, bias: bias, eps: eps)
    }
    /// silu(self(x)), fused (Tensor.groupNormSiLU).
    public func thenSiLU(_ x: Tensor) -> Tensor {
        x.groupNormSiLU(groups: groups, weight: weight, bias: bias, eps: eps)
    }
}

public struct LayerNorm {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float
    public init(_ w: ModelWeights, _ name: String, dim: Int, eps: Float) throws {
        weight = try w.tensor(name + ".weight", shape: [dim])
        bias = try w.tensor(name + ".bias", shape: [dim])
        self.eps = eps
    }
    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

extension Tensor {
    /// [B, C, H, W] → [B, H·W, C] (tokens for attention).
    public func flattenedSpatialToTokens() -> Tensor {
        reshaped([shape[0], shape[1], shape[2] * shape[3]]).permuted([0, 2, 1])
    }

    /// [B, H·W, C] → [B, C, H, W].
    public func tokensToSpatial(height: Int, width: Int) -> Tensor {
        permuted([0, 2, 1]).reshaped([shape[0], shape[2], height, width])
    }
}

/// diffusers' ResnetBlock2D (time-conditioned when `timeDim` is given; the VAE uses none).
struct ResnetBlock {
    let norm1, norm2: GroupNorm
    let conv1, conv2: Conv2d
    let timeProjection: Linear?
    let shortcut: Conv2d?

    init(_ w: ModelWeights, in inChannels: Int, out outChannels: Int, timeDim: Int?, groups: Int, eps: Float) throws {
        norm1 = try GroupNorm(w, "norm1", channels: inChannels, groups: groups, eps: eps)
        conv1 = try Conv2d(w, "conv1", in: inChannels, out: outChannels, kernel: 3, padding: 1)
        timeProjection = try timeDim.map { try Linear(w, "time_emb_proj", in: $0, out: outChannels) }
        norm2 = try GroupNorm(w, "norm2", channels: outChannels, groups: groups, eps: eps)
        conv2 = try Conv2d(w, "conv2", in: outChannels, out: outChannels, kernel: 3, padding: 1)
        shortcut =
            inChannels == outChannels
            ? nil
            : try Conv2d(w, "conv_shortcut", in: inChannels, out: outChannels, kernel: 1)
    }

    func callAsFunction(_ x: Tensor, time: Tensor? = nil) -> Tensor {
        var h = conv1(norm1.thenSiLU(x))
        if let timeProjection, let time {
            let t = timeProjection(time.silu())
            h = h + t.reshaped([t.shape[0], t.shape[1], 1, 1])
        }
        h = conv2(norm2.thenSiLU(h))
        return (shortcut?(x) ?? x) + h
    }
}

/// diffusers' `Attention` projections (to_q, to_k, to_v, to_out.0), for UNet transformer
/// blocks (no q/k/v bias) and the VAE's mid-block attention (with bias, one head).
/// Older checkpoints name them query/key/value/proj_attn; both are accepted.
public struct DiffusersAttention {
    public let toQ, toK, toV, toOut: Linear
    public let heads: Int

    public init(
        _ w: ModelWeights, _ name: String, queryDim: Int, contextDim: Int? = nil,
        heads: Int, qkvBias: Bool = false
    ) throws {
        let a = w.scoped(name)
        let legacy = !a.contains("to_q.weight") && a.contains("query.weight")
        let kv = contextDim ?? queryDim
        toQ = try Linear.flexible(a, legacy ? "query" : "to_q", in: queryDim, out: queryDim, bias: qkvBias)
        toK = try Linear.flexible(a, legacy ? "key" : "to_k", in: kv, out: queryDim, bias: qkvBias)
        toV = try Linear.flexible(a, legacy ? "value" : "to_v", in: kv, out: queryDim, bias: qkvBias)
        toOut = try Linear.flexible(a, legacy ? "proj_attn" : "to_out.0", in: queryDim, out: queryDim, bias: true)
        self.heads = heads
    }

    /// x: [B, T, C]; context: [B, S, C'] for cross-attention (nil: self-attention).
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let c = context ?? x
        return toOut(Tensor.attention(query: toQ(x), key: toK(c), value: toV(c), heads: heads))
    }
}

extension Linear {
    /// A linear layer whose weight may be stored as a 1×1 convolution ([out, in, 1, 1]).
    static func flexible(
        _ w: ModelWeights, _ name: String, in inFeatures: Int, out outFeatures: Int,
        bias: Bool
    ) throws -> Linear {
        if let t = try w.optionalTensor(name + ".weight"), t.rank == 4 {
            guard t.shape == [outFeatures, inFeatures, 1, 1] else {
                throw w.shapeError(name + ".weight", got: t.shape, expected: [outFeatures, inFeatures])
            }
            return Linear(
                weight: t.reshaped([outFeatures, inFeatures]),
                bias: bias ? try w.tensor(name + ".bias", shape: [outFeatures]) : nil)
        }
        return try Linear(w, name, in: inFeatures, out: outFeatures, bias: bias)
    }

    public init(weight: Tensor, bias: Tensor?) {
        store = WeightStore(weight)
        self.bias = bias
    }
}

// MARK: pre-norm transformer encoders (CLIP's text and vision towers, ViT)

/// The activation named by `hidden_act`.
enum EncoderActivation {
    case quickGelu, gelu

    /// `defaultName`: the model's default when the config leaves the key out (CLIP's quick_gelu, ViT's gelu).
    init(_ config: ModelConfig, default defaultName: String = "quick_gelu") throws {
        switch try config.string("hidden_act", default: defaultName) {
        case "quick_gelu": self = .quickGelu
        case "gelu": self = .gelu
        case let other: throw config.fail("hidden_act", "is '\(other)': unsupported (quick_gelu or gelu)")
        }
    }

    func callAsFunction(_ x: Tensor) -> Tensor { self == .gelu ? x.gelu() : x.quickGelu() }
}

/// Shapes of a pre-norm transformer encoder, read from config.json. Defaults are
/// transformers' where the config leaves a key out (CLIP's unless given).
struct EncoderShape {
    let hidden, intermediate, layers, heads: Int
    let eps: Float
    let activation: EncoderActivation

    init(
        _ c: ModelConfig, defaults: (hidden: Int, intermediate: Int, layers: Int, heads: Int),
        eps defaultEps: Float = 1e-5,
        activation defaultActivation: String = "quick_gelu"
    ) throws {
        hidden = try c.int("hidden_size", default: defaults.hidden, in: 1...8192)
        intermediate = try c.int("intermediate_size", default: defaults.intermediate, in: 1...32768)
        layers = try c.int("num_hidden_layers", default: defaults.layers, in: 1...64)
        heads = try c.int("num_attention_heads", default: defaults.heads, in: 1...128)
        eps = try c.float("layer_norm_eps", default: defaultEps, in: 0...1)
        activation = try EncoderActivation(c, default: defaultActivation)
        guard hidden % heads == 0 else {
            throw c.fail("hidden_size", "= \(hidden) is not divisible by 'num_attention_heads' = \(heads)")
        }
    }
}

/// One pre-norm block: x + attn(ln1(x)), then x + mlp(ln2(x)). transformers' CLIPEncoderLayer
/// and ViTLayer compute the same and differ only in their weights' names.
struct PreNormEncoderLayer {
    /// Where a block's weights are, relative to the encoder's scope.
    struct Names {
        /// The block's scope, "\(layerPrefix).\(index)".
        let layerPrefix: String
        let layerNorm1, layerNorm2, query, key, value, output, fc1, fc2: String

        static let clip = Names(
            layerPrefix: "encoder.layers", layerNorm1: "layer_norm1", layerNorm2: "layer_norm2",
            query: "self_attn.q_proj", key: "self_attn.k_proj", value: "self_attn.v_proj", output: "self_attn.out_proj",
            fc1: "mlp.fc1", fc2: "mlp.fc2")
        /// ViT as saved by transformers (save_pretrained writes these names, as hub checkpoints have them).
        static let vit = Names(
            layerPrefix: "encoder.layer", layerNorm1: "layernorm_before", layerNorm2: "layernorm_after",
            query: "attention.attention.query", key: "attention.attention.key", value: "attention.attention.value",
            output: "attention.output.dense", fc1: "intermediate.dense", fc2: "output.dense")
        /// ViT in transformers 5's module names (what its modules are called in memory).
        static let vitModular = Names(
            layerPrefix: "layers", layerNorm1: "layernorm_before", layerNorm2: "layernorm_after",
            query: "attention.q_proj", key: "attention.k_proj", value: "attention.v_proj", output: "attention.o_proj",
            fc1: "mlp.fc1", fc2: "mlp.fc2")
    }

    let layerNorm1, layerNorm2: LayerNorm
    let qProj, kProj, vProj, outProj, fc1, fc2: Linear
    let heads: Int
    let activation: EncoderActivation

    init(_ w: ModelWeights, _ s: EncoderShape, names n: Names, qkvBias: Bool = true) throws {
        layerNorm1 = try LayerNorm(w, n.layerNorm1, dim: s.hidden, eps: s.eps)
        layerNorm2 = try LayerNorm(w, n.layerNorm2, dim: s.hidden, eps: s.eps)
        qProj = try Linear(w, n.query, in: s.hidden, out: s.hidden, bias: qkvBias)
        kProj = try Linear(w, n.key, in: s.hidden, out: s.hidden, bias: qkvBias)
        vProj = try Linear(w, n.value, in: s.hidden, out: s.hidden, bias: qkvBias)
        outProj = try Linear(w, n.output, in: s.hidden, out: s.hidden)
        fc1 = try Linear(w, n.fc1, in: s.hidden, out: s.intermediate)
        fc2 = try Linear(w, n.fc2, in: s.intermediate, out: s.hidden)
        heads = s.heads
        activation = s.activation
    }

    /// x: [B, T, hidden]. `causal` for the text tower.
    func callAsFunction(_ x: Tensor, causal: Bool) -> Tensor {
        let h = layerNorm1(x)
        let attended = Tensor.attention(query: qProj(h), key: kProj(h), value: vProj(h), heads: heads, causal: causal)
        let x = x + outProj(attended)
        return x + fc2(activation(fc1(layerNorm2(x))))
    }

    static func stack(_ w: ModelWeights, _ s: EncoderShape, names: Names, qkvBias: Bool = true) throws
        -> [PreNormEncoderLayer]
    {
        try (0..<s.layers).map {
            try PreNormEncoderLayer(w.scoped("\(names.layerPrefix).\($0)"), s, names: names, qkvBias: qkvBias)
        }
    }
}
