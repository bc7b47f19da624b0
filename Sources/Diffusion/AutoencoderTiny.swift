import DiffusersLayout
import Foundation
import Tensor

// diffusers' AutoencoderTiny (TAESD, madebyollin/taesd): EncoderTiny / DecoderTiny from
// models/autoencoders/vae.py and AutoencoderTinyBlock from models/unets/unet_2d_blocks.py,
// mirrored layer by layer (weight names are the nn.Sequential indices diffusers saves:
// "encoder.layers.3.conv.0.weight", …). Built from Tensor ops, so encode and decode are
// differentiable end to end.
//
// Latent conventions (checked in diffusers 0.42.1's source):
// - `encode` returns `AutoencoderTiny.encode(x).latents`: the raw encoder output. diffusers
//   applies no scaling there; `scale_latents`/`unscale_latents` (here `scaleLatents`/
//   `unscaleLatents`) only appear in `AutoencoderTiny.forward`, which round-trips the latents
//   through 8-bit quantisation ([0, 1] ↔ raw), never in encode/decode or in any pipeline.
// - `decode` is `AutoencoderTiny.decode(z).sample`: DecoderTiny clamps its input softly
//   (tanh(z/3)·3), runs the layers (TAESD's [0, 1] image convention) and returns x·2 − 1,
//   i.e. images in [−1, 1] like AutoencoderKL.decode (not clamped).
// - TAESD was distilled on Stable Diffusion's *scaled* latents, the space the UNet works in
//   (KL latent × 0.18215); that is why its config says scaling_factor = 1.0 (madebyollin/taesd:
//   "TAESD's scale_factor for latents is 1"). StableDiffusionPipeline decodes with
//   `self.vae.decode(latents / self.vae.config.scaling_factor)` and, with TAESD swapped in as
//   `vae`, divides by TAESD's own scaling_factor (1.0): the UNet's latent goes in unchanged.
//   So a caller holding the SD UNet's latent z (what the engine's pipeline divides by the
//   full VAE's 0.18215 before AutoencoderKL.decode) calls `decode(z)` — or `decodeSDLatent`,
//   which spells out the pipeline's division — and must NOT divide by 0.18215 first.
//   Encoding the other way: `encode(image)` already gives UNet-space latents (img2img with
//   TAESD multiplies by TAESD's scaling_factor, 1.0).

/// diffusers' AutoencoderTiny. `encode`/`decode` stop with a precondition on a wrongly
/// shaped input; `encodeChecked`/`decodeChecked` throw `VAEInputError` instead.
public final class AutoencoderTiny {
    public let inChannels: Int
    public let outChannels: Int
    public let latentChannels: Int
    /// config `scaling_factor` (1.0 for TAESD: its latents are already SD's scaled latents).
    public let scalingFactor: Float
    /// config `shift_factor` (0 for TAESD). AutoencoderTiny itself never uses it, nor does
    /// StableDiffusionPipeline; kept for callers that follow SD3-style pipelines.
    public let shiftFactor: Float
    /// config `latent_magnitude` and `latent_shift`, used by `scaleLatents`/`unscaleLatents`.
    public let latentMagnitude: Float
    public let latentShift: Float
    /// diffusers' AutoencoderTiny registers `force_upcast = False` whatever config.json says
    /// (the value in the file is read, type-checked and ignored, as diffusers does). This
    /// port computes in float32 regardless.
    public let forceUpcast = false
    /// Image pixels per latent pixel along each side for `encode` (2^(encoder stages − 1)).
    public let downsampleFactor: Int
    /// Image pixels per latent pixel along each side for `decode`
    /// (upsampling_scaling_factor^(decoder stages − 1)); equal to `downsampleFactor` for TAESD.
    public let upsampleFactor: Int

    private let encoder: TinyEncoder
    private let decoder: TinyDecoder

    // Long on purpose: reads and checks the file's fields in order, each check beside the
    // field it guards; split up, the list of fields would only move elsewhere.
    /// Loads `folder` (diffusers layout: config.json + diffusion_pytorch_model.safetensors,
    /// F32/F16/BF16). Missing config keys take diffusers' defaults (TAESD's real config).
    /// Every config value is type- and range-checked and every tensor shape-checked; a bad one
    /// throws a `ModelLoadError` naming the file and the key or tensor.
    public init(folder: String) throws {
        let r = try ModelConfig(path: DiffusersLayout.configPath(folder))
        if r.has("_class_name") {
            guard let s = r.values["_class_name"] as? String, s == "AutoencoderTiny" else {
                throw r.fail(
                    "_class_name", "is \(ModelConfig.describe(r.values["_class_name"]!)), expected AutoencoderTiny")
            }
        }
        let channelRange = 1...8192
        inChannels = try r.int("in_channels", default: 3, in: 1...1024)
        outChannels = try r.int("out_channels", default: 3, in: 1...1024)
        latentChannels = try r.int("latent_channels", default: 4, in: 1...1024)
        let encoderChannels = try r.ints(
            "encoder_block_out_channels", count: 1...8, in: channelRange, default: [64, 64, 64, 64])
        let decoderChannels = try r.ints(
            "decoder_block_out_channels", count: 1...8, in: channelRange, default: [64, 64, 64, 64])
        let encoderBlocks = try r.ints("num_encoder_blocks", count: 1...8, in: 0...64, default: [1, 3, 3, 3])
        let decoderBlocks = try r.ints("num_decoder_blocks", count: 1...8, in: 0...64, default: [3, 3, 3, 1])
        // diffusers raises ValueError for these two.
        guard encoderChannels.count == encoderBlocks.count else {
            throw r.fail(
                "num_encoder_blocks",
                "has \(encoderBlocks.count) entries but 'encoder_block_out_channels' has \(encoderChannels.count)")
        }
        guard decoderChannels.count == decoderBlocks.count else {
            throw r.fail(
                "num_decoder_blocks",
                "has \(decoderBlocks.count) entries but 'decoder_block_out_channels' has \(decoderChannels.count)")
        }
        // EncoderTiny gives stage i's stride-2 conv block_out_channels[i] inputs but feeds it stage
        // i−1's block_out_channels[i−1] channels; DecoderTiny's stage convs keep block_out_channels[i]
        // and feed stage i+1, which expects block_out_channels[i+1]. Unequal values build in
        // diffusers but fail in its forward pass: refuse them here.
        for (key, list) in [
            ("encoder_block_out_channels", encoderChannels), ("decoder_block_out_channels", decoderChannels),
        ]
        where Set(list).count != 1 {
            throw r.fail(
                key,
                "is \(list); diffusers' EncoderTiny/DecoderTiny only run with one repeated value (TAESD: [64, 64, 64, 64])"
            )
        }
        let act = try r.string("act_fn", default: "relu").lowercased()  // get_activation lowercases
        guard let activation = TinyActivation(rawValue: act) else {
            throw r.fail("act_fn", "'\(act)' unsupported (relu, silu, swish, gelu, mish)")
        }
        let upsampleFn = try r.string("upsample_fn", default: "nearest")
        guard let upsampleMode = TinyUpsampleMode(rawValue: upsampleFn) else {
            throw r.fail("upsample_fn", "'\(upsampleFn)' unsupported (nearest, nearest-exact, bilinear)")
        }
        let upsampling = try r.int("upsampling_scaling_factor", default: 2, in: 1...8)
        latentMagnitude = try r.float("latent_magnitude", default: 3, "a finite number > 0") { $0.isFinite && $0 > 0 }
        latentShift = try r.float("latent_shift", default: 0.5, "a finite number") { $0.isFinite }
        scalingFactor = try r.float("scaling_factor", default: 1, "a finite number > 0") { $0.isFinite && $0 > 0 }
        shiftFactor = try r.float("shift_factor", default: 0, "a finite number") { $0.isFinite }
        _ = try r.bool("force_upcast", default: false)

        downsampleFactor = 1 << (encoderChannels.count - 1)
        let up = (0..<(decoderChannels.count - 1)).reduce(1) { product, _ in product * upsampling }
        guard up <= 256 else {
            throw r.fail(
                "upsampling_scaling_factor",
                "\(upsampling) over \(decoderChannels.count) decoder stages upsamples by \(up) (at most 256)")
        }
        upsampleFactor = up

        let weights = try ModelWeights(folder: folder)
        encoder = try TinyEncoder(
            weights.scoped("encoder"), inChannels: inChannels, latentChannels: latentChannels,
            channels: encoderChannels, blocks: encoderBlocks, activation: activation)
        decoder = try TinyDecoder(
            weights.scoped("decoder"), latentChannels: latentChannels, outChannels: outChannels,
            channels: decoderChannels, blocks: decoderBlocks, activation: activation,
            upsample: TinyUpsample(mode: upsampleMode, factor: upsampling))
    }

    /// image [B, inChannels, H, W] in [−1, 1] → latents [B, latentChannels, ⌈H/f⌉, ⌈W/f⌉]
    /// (f = `downsampleFactor`), exactly `AutoencoderTiny.encode(image).latents`: already in the
    /// SD UNet's (scaled) latent space.
    public func encode(_ image: Tensor) -> Tensor {
        if let problem = checkImage(image) { preconditionFailure(problem) }
        return encoder(image)
    }

    /// latent [B, latentChannels, h, w] (raw TAESD latents = the SD UNet's latents) → image
    /// [B, outChannels, h·f, w·f] (f = `upsampleFactor`) in the [−1, 1] convention, unclamped:
    /// exactly `AutoencoderTiny.decode(latent).sample`.
    public func decode(_ latent: Tensor) -> Tensor {
        if let problem = checkLatent(latent) { preconditionFailure(problem) }
        return decoder(latent)
    }

    /// What StableDiffusionPipeline does with the UNet's latent when its `vae` is this TAESD:
    /// `vae.decode(latents / vae.config.scaling_factor)`, with *this* model's scaling factor
    /// (1.0 for TAESD, so the latent goes in unchanged). `sdScalingFactor` (the full VAE's,
    /// 0.18215 for SD 1.x) deliberately does not enter the arithmetic: TAESD was trained on
    /// latents already multiplied by it. It is taken so call sites state which latent space they
    /// hold, and must be a finite positive number.
    public func decodeSDLatent(_ scaledLatent: Tensor, sdScalingFactor: Float) -> Tensor {
        precondition(
            sdScalingFactor.isFinite && sdScalingFactor > 0,
            "decodeSDLatent: sdScalingFactor must be finite and > 0, got \(sdScalingFactor)")
        if scalingFactor == 1 { return decode(scaledLatent) }
        let s = scalingFactor
        return decode(scaledLatent.pointwise({ $0 / s }, saving: .nothing) { _ in 1 / s })
    }

    /// diffusers' `scale_latents`: raw latents → [0, 1], x / (2·latent_magnitude) + latent_shift,
    /// clamped (for storing latents as 8-bit images).
    public func scaleLatents(_ x: Tensor) -> Tensor {
        let d = 2 * latentMagnitude
        return (x.pointwise({ $0 / d }, saving: .nothing) { _ in 1 / d } + latentShift).clamp(0...1)
    }

    /// diffusers' `unscale_latents`: [0, 1] → raw latents, (x − latent_shift)·2·latent_magnitude.
    public func unscaleLatents(_ x: Tensor) -> Tensor {
        (x - latentShift) * (2 * latentMagnitude)
    }

    public func encodeChecked(_ image: Tensor) throws -> Tensor {
        if let problem = checkImage(image) { throw VAEInputError(message: problem) }
        return encode(image)
    }

    public func decodeChecked(_ latent: Tensor) throws -> Tensor {
        if let problem = checkLatent(latent) { throw VAEInputError(message: problem) }
        return decode(latent)
    }

    func checkImage(_ x: Tensor) -> String? {
        guard x.rank == 4, x.shape[1] == inChannels, x.shape[0] > 0, x.shape[2] > 0, x.shape[3] > 0 else {
            return "AutoencoderTiny encode wants an image [B, \(inChannels), H, W], got \(x.shape)"
        }
        return nil
    }

    func checkLatent(_ z: Tensor) -> String? {
        guard z.rank == 4, z.shape[1] == latentChannels, z.shape[0] > 0, z.shape[2] > 0, z.shape[3] > 0 else {
            return "AutoencoderTiny decode wants a latent [B, \(latentChannels), h, w], got \(z.shape)"
        }
        return nil
    }
}

// MARK: - Layers

/// diffusers' get_activation names (lower-cased) that this port runs.
private enum TinyActivation: String {
    case relu, silu, swish, gelu, mish

    func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .relu: return taesdReLU(x)
        case .silu, .swish: return x.silu()
        case .gelu: return x.gelu()  // nn.GELU(): exact erf form
        case .mish:
            // torch: x·tanh(log1p(exp(x))); d/dx = t + x·σ(x)·(1 − t²), t = tanh(softplus(x)).
            return x.pointwise({ $0 * Foundation.tanh(Foundation.log1p(Foundation.exp($0))) }, saving: .input) { v in
                let t = Foundation.tanh(Foundation.log1p(Foundation.exp(v)))
                let s = 1 / (1 + Foundation.exp(-v))
                return t + v * s * (1 - t * t)
            }
        }
    }
}

/// max(x, 0) with torch's VJP (zero gradient where x ≤ 0).
private func taesdReLU(_ x: Tensor) -> Tensor { x.clampMin(0) }

private enum TinyUpsampleMode: String {
    case nearest
    case nearestExact = "nearest-exact"
    case bilinear
}

/// nn.Upsample(scale_factor: k, mode: …) for an integer k. For integer factors "nearest"
/// and "nearest-exact" pick the same source pixel (⌊o/k⌋ = ⌊(o + ½)/k⌋); "bilinear" uses
/// align_corners=False, whose source coordinate (o + ½)/k − ½ is what resizeBilinear computes.
private struct TinyUpsample {
    let mode: TinyUpsampleMode
    let factor: Int

    func callAsFunction(_ x: Tensor) -> Tensor {
        if factor == 1 { return x }
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        switch mode {
        case .bilinear:
            return x.resizeBilinear(height: h * factor, width: w * factor)
        case .nearest, .nearestExact:
            if factor == 2 { return x.upsampleNearest2x() }
            // Replicate by broadcasting against ones; its VJP sums each k×k block back.
            let ones = Tensor.full([1, 1, 1, factor, 1, factor], 1)
            return (x.reshaped([b, c, h, 1, w, 1]) * ones).reshaped([b, c, h * factor, w * factor])
        }
    }
}

/// AutoencoderTinyBlock: relu(conv(act(conv(act(conv(x))))) + skip(x)); the fuse is always
/// ReLU whatever act_fn says.
private struct TinyBlock {
    let conv0, conv2, conv4: Conv2d
    let skip: Conv2d?
    let activation: TinyActivation

    init(_ w: ModelWeights, in inChannels: Int, out outChannels: Int, activation: TinyActivation) throws {
        conv0 = try Conv2d(w, "conv.0", in: inChannels, out: outChannels, kernel: 3, padding: 1)
        conv2 = try Conv2d(w, "conv.2", in: outChannels, out: outChannels, kernel: 3, padding: 1)
        conv4 = try Conv2d(w, "conv.4", in: outChannels, out: outChannels, kernel: 3, padding: 1)
        skip =
            inChannels == outChannels
            ? nil
            : try Conv2d(w, "skip", in: inChannels, out: outChannels, kernel: 1, bias: false)
        self.activation = activation
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = conv4(activation(conv2(activation(conv0(x)))))
        return taesdReLU(h + (skip?(x) ?? x))
    }
}

/// EncoderTiny: layers = [conv(in→c₀), blocks…, (stride-2 conv without bias, blocks…)…, conv(c→latent)],
/// applied to (x + 1) / 2.
private struct TinyEncoder {
    let stages: [(down: Conv2d, blocks: [TinyBlock])]
    let convOut: Conv2d

    init(
        _ w: ModelWeights, inChannels: Int, latentChannels: Int, channels: [Int], blocks: [Int],
        activation: TinyActivation
    ) throws {
        var index = 0
        var stages: [(down: Conv2d, blocks: [TinyBlock])] = []
        for (i, c) in channels.enumerated() {
            let down =
                i == 0
                ? try Conv2d(w, "layers.\(index)", in: inChannels, out: c, kernel: 3, padding: 1)
                : try Conv2d(w, "layers.\(index)", in: c, out: c, kernel: 3, stride: 2, padding: 1, bias: false)
            index += 1
            var stageBlocks: [TinyBlock] = []
            for _ in 0..<blocks[i] {
                stageBlocks.append(try TinyBlock(w.scoped("layers.\(index)"), in: c, out: c, activation: activation))
                index += 1
            }
            stages.append((down, stageBlocks))
        }
        self.stages = stages
        convOut = try Conv2d(w, "layers.\(index)", in: channels.last!, out: latentChannels, kernel: 3, padding: 1)
    }

    func callAsFunction(_ image: Tensor) -> Tensor {
        var h = (image + 1) * 0.5  // [-1, 1] → TAESD's [0, 1] (x.add(1).div(2); halving is exact)
        for stage in stages {
            h = stage.down(h)
            for block in stage.blocks { h = block(h) }
        }
        return convOut(h)
    }
}

/// DecoderTiny: tanh(z/3)·3, then layers = [conv(latent→c₀), act, (blocks…, upsample, conv without
/// bias)…, blocks…, conv(c→out, bias)], then x·2 − 1.
private struct TinyDecoder {
    let convIn: Conv2d
    let activation: TinyActivation
    let stages: [(blocks: [TinyBlock], upsample: Bool, conv: Conv2d)]
    let upsample: TinyUpsample

    init(
        _ w: ModelWeights, latentChannels: Int, outChannels: Int, channels: [Int], blocks: [Int],
        activation: TinyActivation, upsample: TinyUpsample
    ) throws {
        convIn = try Conv2d(w, "layers.0", in: latentChannels, out: channels[0], kernel: 3, padding: 1)
        var index = 2  // layers.1 is the activation
        var stages: [(blocks: [TinyBlock], upsample: Bool, conv: Conv2d)] = []
        for (i, c) in channels.enumerated() {
            let isFinal = i == channels.count - 1
            var stageBlocks: [TinyBlock] = []
            for _ in 0..<blocks[i] {
                stageBlocks.append(try TinyBlock(w.scoped("layers.\(index)"), in: c, out: c, activation: activation))
                index += 1
            }
            if !isFinal { index += 1 }  // nn.Upsample
            let conv = try Conv2d(
                w, "layers.\(index)", in: c, out: isFinal ? outChannels : c, kernel: 3, padding: 1,
                bias: isFinal)
            index += 1
            stages.append((stageBlocks, !isFinal, conv))
        }
        self.stages = stages
        self.activation = activation
        self.upsample = upsample
    }

    func callAsFunction(_ latent: Tensor) -> Tensor {
        // torch.tanh(x / 3) * 3: a soft clamp of the latents to (−3, 3).
        var h = latent.pointwise({ $0 / 3 }, saving: .nothing) { _ in 1 / 3 }.tanh() * 3
        h = activation(convIn(h))
        for stage in stages {
            for block in stage.blocks { h = block(h) }
            if stage.upsample { h = upsample(h) }
            h = stage.conv(h)
        }
        return h * 2 - 1  // TAESD's [0, 1] → diffusers' [-1, 1] (x.mul(2).sub(1))
    }
}
