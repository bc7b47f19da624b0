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
