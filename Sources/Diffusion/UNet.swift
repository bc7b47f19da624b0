import DiffusersLayout
import Foundation
import Tensor

/// diffusers' BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward.
struct TransformerBlock {
    let norm1, norm2, norm3: LayerNorm
    let selfAttention, crossAttention: DiffusersAttention
    let feedForwardIn, feedForwardOut: Linear

    init(_ w: ModelWeights, channels: Int, contextDim: Int, heads: Int) throws {
        norm1 = try LayerNorm(w, "norm1", dim: channels, eps: 1e-5)
        selfAttention = try DiffusersAttention(w, "attn1", queryDim: channels, heads: heads)
        norm2 = try LayerNorm(w, "norm2", dim: channels, eps: 1e-5)
        crossAttention = try DiffusersAttention(w, "attn2", queryDim: channels, contextDim: contextDim, heads: heads)
        norm3 = try LayerNorm(w, "norm3", dim: channels, eps: 1e-5)
        feedForwardIn = try Linear(w, "ff.net.0.proj", in: channels, out: channels * 8)
        feedForwardOut = try Linear(w, "ff.net.2", in: channels * 4, out: channels)
    }

    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var h = x + selfAttention(norm1(x))
        h = h + crossAttention(norm2(h), context: context)
        return h + feedForwardOut(feedForwardIn(norm3(h)).geglu())
    }
}

/// diffusers' Transformer2DModel over an NCHW feature map (1×1-conv or linear projections).
struct SpatialTransformer {
    let norm: GroupNorm
    let projectIn, projectOut: Linear
    let blocks: [TransformerBlock]

    init(_ w: ModelWeights, channels: Int, contextDim: Int, heads: Int, layers: Int, groups: Int) throws {
        norm = try GroupNorm(w, "norm", channels: channels, groups: groups, eps: 1e-6)
        projectIn = try Linear.flexible(w, "proj_in", in: channels, out: channels, bias: true)
        blocks = try (0..<layers).map {
            try TransformerBlock(
                w.scoped("transformer_blocks.\($0)"), channels: channels, contextDim: contextDim, heads: heads)
        }
        projectOut = try Linear.flexible(w, "proj_out", in: channels, out: channels, bias: true)
    }

    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (height, width) = (x.shape[2], x.shape[3])
        var h = projectIn(norm(x).flattenedSpatialToTokens())
        for block in blocks { h = block(h, context: context) }
        return x + projectOut(h).tokensToSpatial(height: height, width: width)
    }
}

/// One level of the UNet: resnets (each optionally followed by a transformer), then a
/// down- or up-sampling convolution.
struct UNetLevel {
    let resnets: [ResnetBlock]
    let attentions: [SpatialTransformer]
    let sampler: Conv2d?
}

/// UNet2DConditionModel as Stable Diffusion 1.x uses it: shapes from unet/config.json.
public final class UNet2DConditionModel {
    public let inChannels: Int
    public let contextDim: Int
    /// config `sample_size`: the latent side the model was trained at (64 for SD 1.x), in 1...1024.
    public let sampleSize: Int
    let timeChannels: Int
    let flipSinToCos: Bool
    let freqShift: Float
    let convIn, convOut: Conv2d
    let timeLinear1, timeLinear2: Linear
    let down: [UNetLevel]
    let midResnets: [ResnetBlock]
    let midAttention: SpatialTransformer?
    let up: [UNetLevel]
    let normOut: GroupNorm

    /// A diffusers `unet/` folder: config.json and the safetensors weights.
    public convenience init(folder: String) throws {
        try self.init(
            config: try ModelConfig(path: DiffusersLayout.configPath(folder)),
            weights: { try ModelWeights(folder: folder) })
    }

    // Long on purpose: reads and checks the file's fields in order, each check beside the
    // field it guards; split up, the list of fields would only move elsewhere.
    /// The UNet `config` describes, its weights opened by `weights` once the config is
    /// checked (a folder's files, or a single checkpoint's UNet: `LDMCheckpoint`).
    public init(config: ModelConfig, weights: () throws -> ModelWeights) throws {
        // Every value is range-checked before any layer is built; the bounds hold SD 1.x/2.x and
        // SDXL-sized models and keep all size arithmetic far from overflow.
        let channels = try config.ints("block_out_channels", count: 1...8, in: 1...8192)
        let levelCount = channels.count
        let downTypes = try config.strings("down_block_types")
        let upTypes = try config.strings("up_block_types")
        guard downTypes.count == levelCount, upTypes.count == levelCount else {
            throw config.fail(
                "block_out_channels",
                "has \(levelCount) entries but 'down_block_types' has \(downTypes.count) and 'up_block_types' \(upTypes.count)"
            )
        }
        guard channels[0] % 2 == 0 else {
            throw config.fail(
                "block_out_channels", "= \(channels): the first must be even (the timestep embedding width)")
        }
        let layers = try config.intOrList("layers_per_block", count: levelCount, in: 1...64)
        let groups = try config.int("norm_num_groups", default: 32, in: 1...8192)
        guard channels.allSatisfy({ $0 % groups == 0 }) else {
            throw config.fail(
                "norm_num_groups", "= \(groups): block_out_channels \(channels) must each be divisible by it")
        }
        let eps = try config.float("norm_eps", default: 1e-5, in: 0...1)
        let contextDim = try config.int("cross_attention_dim", in: 1...8192)
        self.contextDim = contextDim
        inChannels = try config.int("in_channels", default: 4, in: 1...1024)
        let outChannels = try config.int("out_channels", default: 4, in: 1...1024)
        sampleSize = try config.int("sample_size", default: 64, in: 1...1024)
        // diffusers' historical naming: attention_head_dim is the head count unless num_attention_heads is set.
        let headsKey = config.has("num_attention_heads") ? "num_attention_heads" : "attention_head_dim"
        let heads = try config.intOrList(headsKey, count: levelCount, default: 8, in: 1...128)
        guard zip(channels, heads).allSatisfy({ $0 % $1 == 0 }) else {
            throw config.fail(
                headsKey, "= \(heads): block_out_channels \(channels) must each be divisible by its level's head count")
        }
        let transformerLayers = try config.intOrList(
            "transformer_layers_per_block", count: levelCount, default: 1, in: 1...64)
        for (key, expected) in [("time_embedding_type", "positional"), ("resnet_time_scale_shift", "default")] {
            let value = try config.string(key, default: expected)
            guard value == expected else { throw config.fail(key, "= '\(value)' is not supported") }
        }
        timeChannels = channels[0]
        flipSinToCos = try config.bool("flip_sin_to_cos", default: true)
        freqShift = try config.float("freq_shift", default: 0, in: -1000...1000)
        let timeDim = channels[0] * 4

        let w = try weights()
        convIn = try Conv2d(w, "conv_in", in: inChannels, out: channels[0], kernel: 3, padding: 1)
        timeLinear1 = try Linear(w, "time_embedding.linear_1", in: channels[0], out: timeDim)
        timeLinear2 = try Linear(w, "time_embedding.linear_2", in: timeDim, out: timeDim)

        func transformer(_ w: ModelWeights, _ c: Int, _ level: Int) throws -> SpatialTransformer {
            try SpatialTransformer(
                w, channels: c, contextDim: contextDim, heads: heads[level],
                layers: transformerLayers[level], groups: groups)
        }

        var levels: [UNetLevel] = []
        var skipChannels = [channels[0]]
        for (i, type) in downTypes.enumerated() {
            let b = w.scoped("down_blocks.\(i)")
            let hasAttention = try Self.hasCrossAttention(type, config.path)
            var resnets: [ResnetBlock] = []
            var attentions: [SpatialTransformer] = []
            for j in 0..<layers[i] {
                let cin = j == 0 ? (i == 0 ? channels[0] : channels[i - 1]) : channels[i]
                resnets.append(
                    try ResnetBlock(
                        b.scoped("resnets.\(j)"), in: cin, out: channels[i], timeDim: timeDim, groups: groups, eps: eps)
                )
                if hasAttention { attentions.append(try transformer(b.scoped("attentions.\(j)"), channels[i], i)) }
                skipChannels.append(channels[i])
            }
            let last = i == channels.count - 1
            let sampler =
                last
                ? nil
                : try Conv2d(
                    b, "downsamplers.0.conv", in: channels[i], out: channels[i], kernel: 3, stride: 2, padding: 1)
            if !last { skipChannels.append(channels[i]) }
            levels.append(UNetLevel(resnets: resnets, attentions: attentions, sampler: sampler))
        }
        down = levels

        let top = channels.last!
        let mid = w.scoped("mid_block")
        midResnets = try (0..<2).map {
            try ResnetBlock(mid.scoped("resnets.\($0)"), in: top, out: top, timeDim: timeDim, groups: groups, eps: eps)
        }
        midAttention =
            mid.contains("attentions.0.norm.weight")
            ? try transformer(mid.scoped("attentions.0"), top, channels.count - 1) : nil

        levels = []
        let reversed = Array(channels.reversed())
        let reversedLayers = Array(layers.reversed())
        var output = reversed[0]
        for (i, type) in upTypes.enumerated() {
            let b = w.scoped("up_blocks.\(i)")
            let hasAttention = try Self.hasCrossAttention(type, config.path)
            let previous = output
            output = reversed[i]
            var resnets: [ResnetBlock] = []
            var attentions: [SpatialTransformer] = []
            for j in 0...reversedLayers[i] {
                let skip = skipChannels.removeLast()
                let cin = (j == 0 ? previous : output) + skip
                resnets.append(
                    try ResnetBlock(
                        b.scoped("resnets.\(j)"), in: cin, out: output, timeDim: timeDim, groups: groups, eps: eps))
                if hasAttention {
                    attentions.append(try transformer(b.scoped("attentions.\(j)"), output, channels.count - 1 - i))
                }
            }
            let last = i == channels.count - 1
            let sampler =
                last ? nil : try Conv2d(b, "upsamplers.0.conv", in: output, out: output, kernel: 3, padding: 1)
            levels.append(UNetLevel(resnets: resnets, attentions: attentions, sampler: sampler))
        }
        up = levels

        normOut = try GroupNorm(w, "conv_norm_out", channels: channels[0], groups: groups, eps: eps)
        convOut = try Conv2d(w, "conv_out", in: channels[0], out: outChannels, kernel: 3, padding: 1)
    }

    static func hasCrossAttention(_ type: String, _ path: String) throws -> Bool {
        switch type {
        case "CrossAttnDownBlock2D", "CrossAttnUpBlock2D": return true
        case "DownBlock2D", "UpBlock2D": return false
        default: throw ModelLoadError("\(path): block type '\(type)' is not supported")
        }
    }

    /// Sinusoidal timestep features, computed in float32 as diffusers does.
    func timestepFeatures(_ timesteps: [Float]) -> Tensor {
        let half = timeChannels / 2
        let frequencies = (0..<half).map { i -> Float in
            Foundation.exp(-Float(Foundation.log(10000.0)) * Float(i) / (Float(half) - freqShift))
        }
        var data: [Float] = []
        for t in timesteps {
            let args = frequencies.map { t * $0 }
            let sines = args.map { Foundation.sin($0) }
            let cosines = args.map { Foundation.cos($0) }
            data += flipSinToCos ? cosines + sines : sines + cosines
        }
        return Tensor(shape: [timesteps.count, timeChannels], data: data)
    }

    /// Predicted noise for `sample` [B, C, H, W] at `timestep`, conditioned on `context` [B, T, D].
    public func callAsFunction(_ sample: Tensor, timestep: Float, context: Tensor) -> Tensor {
        precondition(
            sample.rank == 4 && sample.shape[1] == inChannels,
            "UNet input must be [B, \(inChannels), H, W], got \(sample.shape)")
        precondition(
            context.rank == 3 && context.shape[0] == sample.shape[0] && context.shape[2] == contextDim,
            "UNet context must be [\(sample.shape[0]), T, \(contextDim)], got \(context.shape)")
        let time = timeLinear2(timeLinear1(timestepFeatures(Array(repeating: timestep, count: sample.shape[0]))).silu())
        var h = convIn(sample)
        var skips = [h]
        // With `Autograd.recomputeActivations`, resnets and transformers keep only their inputs
        // for the backward (a 64² self-attention's probabilities alone are 0.5 GB).
        func resnet(_ block: ResnetBlock, _ x: Tensor) -> Tensor {
            Autograd.checkpointed([x, time]) { block($0[0], time: $0[1]) }
        }
        func attend(_ block: SpatialTransformer, _ x: Tensor) -> Tensor {
            Autograd.checkpointed([x, context]) { block($0[0], context: $0[1]) }
        }
        for level in down {
            for (j, block) in level.resnets.enumerated() {
                h = resnet(block, h)
                if j < level.attentions.count { h = attend(level.attentions[j], h) }
                skips.append(h)
            }
            if let sampler = level.sampler {
                h = sampler(h)
                skips.append(h)
            }
        }
        h = resnet(midResnets[0], h)
        if let midAttention { h = attend(midAttention, h) }
        h = resnet(midResnets[1], h)
        for level in up {
            for (j, block) in level.resnets.enumerated() {
                h = resnet(block, Tensor.concat([h, skips.removeLast()], axis: 1))
                if j < level.attentions.count { h = attend(level.attentions[j], h) }
            }
            if let sampler = level.sampler { h = sampler(h.upsampleNearest2x()) }
        }
        return convOut(normOut.thenSiLU(h))
    }
}
