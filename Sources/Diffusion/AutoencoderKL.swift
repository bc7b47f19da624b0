import DiffusersLayout
import Foundation
import Tensor

// diffusers' AutoencoderKL (SD 1.x image autoencoder): Encoder/Decoder from models/autoencoders/vae.py,
// DownEncoderBlock2D / UpDecoderBlock2D / UNetMidBlock2D, ResnetBlock2D without a time embedding.
// Every layer is built from Tensor ops, so decode (and encode) are differentiable end to end.

/// A tensor handed to the VAE with the wrong shape.
public struct VAEInputError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Shape checking: `encode`/`decode` stop with a precondition naming the problem;
/// `encodeChecked`/`decodeChecked` throw `VAEInputError` with the same message instead.
public final class AutoencoderKL {
    public let scalingFactor: Float
    public let inChannels: Int
    public let outChannels: Int
    public let latentChannels: Int
    /// Image pixels per latent pixel along each side (8 for SD 1.x).
    public var downsampleFactor: Int { 1 << (blockCount - 1) }

    private let blockCount: Int
    private let encoder: VAEEncoder
    private let decoder: VAEDecoder
    private let quantConv: Conv2d?
    private let postQuantConv: Conv2d?

    /// Loads `folder` (a diffusers `vae/` folder: config.json + safetensors). Every tensor is
    /// shape-checked against the config; a missing or misshapen one throws an error naming it.
    public convenience init(folder: String) throws {
        try self.init(
            config: try ModelConfig(path: DiffusersLayout.configPath(folder)),
            weights: { try ModelWeights(folder: folder) })
    }

    /// The autoencoder `config` describes, its weights opened by `weights` once the config is checked.
    public init(config: ModelConfig, weights load: () throws -> ModelWeights) throws {
        // Range-checked before any layer is built; at most 8 levels keeps the factor ≤ 128.
        let channels = try config.ints("block_out_channels", count: 1...8, in: 1...8192)
        for key in ["down_block_types", "up_block_types"] where config.has(key) {
            let types = try config.strings(key)
            let expected = key == "down_block_types" ? "DownEncoderBlock2D" : "UpDecoderBlock2D"
            guard types.count == channels.count, types.allSatisfy({ $0 == expected }) else {
                throw config.fail(key, "must be \(channels.count)× \(expected), got \(types)")
            }
        }
        let act = try config.string("act_fn", default: "silu")
        guard act == "silu" || act == "swish" else { throw config.fail("act_fn", "= '\(act)' unsupported (silu only)") }

        let spec = VAESpec(
            channels: channels,
            layersPerBlock: try config.int("layers_per_block", default: 1, in: 1...64),
            groups: try config.int("norm_num_groups", default: 32, in: 1...8192),
            midAttention: try config.bool("mid_block_add_attention", default: true))
        guard channels.allSatisfy({ $0 % spec.groups == 0 }) else {
            throw config.fail(
                "norm_num_groups", "= \(spec.groups): block_out_channels \(channels) must each be divisible by it")
        }
        inChannels = try config.int("in_channels", default: 3, in: 1...1024)
        outChannels = try config.int("out_channels", default: 3, in: 1...1024)
        latentChannels = try config.int("latent_channels", default: 4, in: 1...1024)
        scalingFactor = try config.float("scaling_factor", default: 0.18215, "a finite number > 0") {
            $0.isFinite && $0 > 0
        }
        let useQuantConv = try config.bool("use_quant_conv", default: true)
        let usePostQuantConv = try config.bool("use_post_quant_conv", default: true)
        blockCount = channels.count

        let weights = try load()
        encoder = try VAEEncoder(
            weights.scoped("encoder"), spec, inChannels: inChannels, latentChannels: latentChannels)
        decoder = try VAEDecoder(
            weights.scoped("decoder"), spec, latentChannels: latentChannels, outChannels: outChannels)
        let l = latentChannels
        quantConv =
            useQuantConv
            ? try Conv2d(weights, "quant_conv", in: 2 * l, out: 2 * l, kernel: 1) : nil
        postQuantConv =
            usePostQuantConv
            ? try Conv2d(weights, "post_quant_conv", in: l, out: l, kernel: 1) : nil
    }

    /// image [B, inChannels, H, W] in [-1, 1] (H, W multiples of `downsampleFactor`) →
    /// the posterior's mean and std, each [B, latentChannels, H/f, W/f], not yet scaled.
    public func encode(_ image: Tensor) -> (mean: Tensor, std: Tensor) {
        if let problem = checkImage(image) { preconditionFailure(problem) }
        var h = encoder(image)
        if let quantConv { h = quantConv(h) }
        let parts = h.chunked(2, axis: 1)
        // DiagonalGaussianDistribution: logvar clamped to [-30, 20], std = exp(logvar / 2).
        return (parts[0], (parts[1].clamp(-30...20) * 0.5).exp())
    }

    /// latent [B, latentChannels, h, w], already divided by `scalingFactor` → image
    /// [B, outChannels, h·f, w·f], roughly in [-1, 1] and not clamped.
    public func decode(_ latent: Tensor) -> Tensor {
        if let problem = checkLatent(latent) { preconditionFailure(problem) }
        var z = latent
        if let postQuantConv { z = postQuantConv(z) }
        return decoder(z)
    }

    public func encodeChecked(_ image: Tensor) throws -> (mean: Tensor, std: Tensor) {
        if let problem = checkImage(image) { throw VAEInputError(message: problem) }
        return encode(image)
    }

    public func decodeChecked(_ latent: Tensor) throws -> Tensor {
        if let problem = checkLatent(latent) { throw VAEInputError(message: problem) }
        return decode(latent)
    }

    func checkImage(_ x: Tensor) -> String? {
        let f = downsampleFactor
        guard x.rank == 4, x.shape[1] == inChannels else {
            return "VAE encode wants an image [B, \(inChannels), H, W], got \(x.shape)"
        }
        guard x.shape[2] > 0, x.shape[3] > 0, x.shape[2] % f == 0, x.shape[3] % f == 0 else {
            return "VAE encode: image size \(x.shape[2])×\(x.shape[3]) is not a positive multiple of \(f)"
        }
        return nil
    }

    func checkLatent(_ z: Tensor) -> String? {
        guard z.rank == 4, z.shape[1] == latentChannels, z.shape[2] > 0, z.shape[3] > 0 else {
            return "VAE decode wants a latent [B, \(latentChannels), h, w], got \(z.shape)"
        }
        return nil
    }
}

struct VAESpec {
    let channels: [Int]
    let layersPerBlock: Int
    let groups: Int
    let midAttention: Bool
    let eps: Float = 1e-6  // Encoder/Decoder hard-code resnet_eps = 1e-6 and GroupNorm eps = 1e-6
}

/// The mid-block Attention (one head, q/k/v biases, group norm first, residual added).
struct VAEAttention {
    let norm: GroupNorm
    let attention: DiffusersAttention

    init(_ w: ModelWeights, _ name: String, _ s: VAESpec, channels: Int) throws {
        norm = try GroupNorm(w, name + ".group_norm", channels: channels, groups: s.groups, eps: s.eps)
        // heads = channels / attention_head_dim, and the VAE passes attention_head_dim = channels.
        attention = try DiffusersAttention(w, name, queryDim: channels, heads: 1, qkvBias: true)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let (height, width) = (x.shape[2], x.shape[3])
        let tokens = attention(norm(x).flattenedSpatialToTokens())
        return tokens.tokensToSpatial(height: height, width: width) + x
    }
}

/// UNetMidBlock2D: resnet, then (attention, resnet) once.
struct VAEMidBlock {
    let resnets: [ResnetBlock]
    let attention: VAEAttention?

    init(_ w: ModelWeights, _ s: VAESpec, channels: Int) throws {
        resnets = try (0..<2).map {
            try ResnetBlock(
                w.scoped("resnets.\($0)"), in: channels, out: channels, timeDim: nil, groups: s.groups, eps: s.eps)
        }
        attention = s.midAttention ? try VAEAttention(w, "attentions.0", s, channels: channels) : nil
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = resnets[0](x)
        if let attention { h = attention(h) }
        return resnets[1](h)
    }
}

struct VAEEncoder {
    let convIn, convOut: Conv2d
    let blocks: [(resnets: [ResnetBlock], down: Conv2d?)]
    let mid: VAEMidBlock
    let normOut: GroupNorm

    init(_ w: ModelWeights, _ s: VAESpec, inChannels: Int, latentChannels: Int) throws {
        let c = s.channels
        convIn = try Conv2d(w, "conv_in", in: inChannels, out: c[0], kernel: 3, padding: 1)
        var blocks: [(resnets: [ResnetBlock], down: Conv2d?)] = []
        var cin = c[0]
        for (i, cout) in c.enumerated() {
            let b = w.scoped("down_blocks.\(i)")
            let resnets = try (0..<s.layersPerBlock).map {
                try ResnetBlock(
                    b.scoped("resnets.\($0)"), in: $0 == 0 ? cin : cout, out: cout, timeDim: nil, groups: s.groups,
                    eps: s.eps)
            }
            // Downsample2D with padding 0: pad right/bottom by one, then a stride-2 conv.
            let down =
                i < c.count - 1
                ? try Conv2d(b, "downsamplers.0.conv", in: cout, out: cout, kernel: 3, stride: 2) : nil
            blocks.append((resnets, down))
            cin = cout
        }
        self.blocks = blocks
        mid = try VAEMidBlock(w.scoped("mid_block"), s, channels: c.last!)
        normOut = try GroupNorm(w, "conv_norm_out", channels: c.last!, groups: s.groups, eps: s.eps)
        convOut = try Conv2d(w, "conv_out", in: c.last!, out: 2 * latentChannels, kernel: 3, padding: 1)  // double_z
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convIn(x)
        for block in blocks {
            for resnet in block.resnets { h = resnet(h) }
            if let down = block.down { h = down(h.padded(right: 1, bottom: 1)) }
        }
        return convOut(normOut.thenSiLU(mid(h)))
    }
}

struct VAEDecoder {
    let convIn, convOut: Conv2d
    let mid: VAEMidBlock
    let blocks: [(resnets: [ResnetBlock], up: Conv2d?)]
    let normOut: GroupNorm

    init(_ w: ModelWeights, _ s: VAESpec, latentChannels: Int, outChannels: Int) throws {
        let reversed = Array(s.channels.reversed())
        convIn = try Conv2d(w, "conv_in", in: latentChannels, out: reversed[0], kernel: 3, padding: 1)
        mid = try VAEMidBlock(w.scoped("mid_block"), s, channels: reversed[0])
        var blocks: [(resnets: [ResnetBlock], up: Conv2d?)] = []
        var cin = reversed[0]
        for (i, cout) in reversed.enumerated() {
            let b = w.scoped("up_blocks.\(i)")
            // UpDecoderBlock2D has one resnet more than the encoder's blocks.
            let resnets = try (0...s.layersPerBlock).map {
                try ResnetBlock(
                    b.scoped("resnets.\($0)"), in: $0 == 0 ? cin : cout, out: cout, timeDim: nil, groups: s.groups,
                    eps: s.eps)
            }
            let up =
                i < reversed.count - 1
                ? try Conv2d(b, "upsamplers.0.conv", in: cout, out: cout, kernel: 3, padding: 1) : nil
            blocks.append((resnets, up))
            cin = cout
        }
        self.blocks = blocks
        normOut = try GroupNorm(w, "conv_norm_out", channels: s.channels[0], groups: s.groups, eps: s.eps)
        convOut = try Conv2d(w, "conv_out", in: s.channels[0], out: outChannels, kernel: 3, padding: 1)
    }

    /// With `Autograd.recomputeActivations`, each resnet (and the mid block) keeps only its
    /// input for the backward: at 512² the decoder's kept activations are most of a guided
    /// step's peak memory.
    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = Autograd.checkpointed([convIn(z)]) { [mid] in mid($0[0]) }
        for block in blocks {
            for resnet in block.resnets { h = Autograd.checkpointed([h]) { resnet($0[0]) } }
            if let up = block.up { h = up(h.upsampleNearest2x()) }
        }
        return convOut(normOut.thenSiLU(h))
    }
}
