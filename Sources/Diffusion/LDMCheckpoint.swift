import Foundation
import Tensor

/// A Stable Diffusion 1.x checkpoint in one .safetensors file, in the original LDM (CompVis)
/// layout: `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE), `cond_stage_model.
/// transformer.text_model.*` (CLIP text encoder); full checkpoints add the UNet's EMA copy as
/// `model_ema.*`. Each component is served as `ModelWeights` under its diffusers names, through
/// a map made once from the file's own names by the rules of diffusers 0.42.1
/// (`loaders/single_file_utils.py`: `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
/// `convert_ldm_clip_checkpoint`). SD 2.x and SDXL checkpoints are refused when opened.
public struct LDMCheckpoint {
    public let file: SafeTensorsFile
    public var path: String { file.path }

    static let unetPrefix = "model.diffusion_model."
    static let emaPrefix = "model_ema."
    /// diffusers tries both and keeps the last one present.
    static let vaePrefixes = ["first_stage_model.", "vae."]
    static let textPrefix = "cond_stage_model.transformer."
    /// diffusers treats a checkpoint as holding EMA weights past this many `model_ema.*` keys.
    static let emaKeyThreshold = 100

    public init(path: String) throws {
        file = try SafeTensorsFile(path: path)
        try refuseOtherModels()
    }

    // MARK: which model

    /// SDXL and SD 2.x (OpenCLIP text encoder, 1024-wide cross-attention) are refused by name,
    /// as is a file without an LDM UNet.
    func refuseOtherModels() throws {
        func refuse(_ what: String, _ evidence: String) -> ModelLoadError {
            ModelLoadError("\(path) is \(what) (\(evidence)); MUSE runs Stable Diffusion 1.x only")
        }
        if let key = file.names.first(where: { $0.hasPrefix("conditioner.embedders.") }) {
            throw refuse("an SDXL checkpoint", "its text encoders are under 'conditioner.embedders.', e.g. '\(key)'")
        }
        if let key = file.names.first(where: { $0.hasPrefix("cond_stage_model.model.") }) {
            throw refuse(
                "an SD 2.x checkpoint", "its text encoder is OpenCLIP, under 'cond_stage_model.model.', e.g. '\(key)'")
        }
        for name in file.names where name.hasPrefix(Self.unetPrefix) && name.hasSuffix(".attn2.to_k.weight") {
            guard let shape = file.info(name)?.shape, shape.count == 2 else { continue }
            if let family = [1024: "an SD 2.x checkpoint", 2048: "an SDXL checkpoint"][shape[1]] {
                throw refuse(family, "its UNet attends to \(shape[1])-wide text features: '\(name)' is \(shape)")
            }
        }
        guard file.names.contains(where: { $0.hasPrefix(Self.unetPrefix) }) else {
            let starts = Set(file.names.map { $0.split(separator: ".").first.map(String.init) ?? $0 }).sorted()
            let shown = starts.prefix(6).map { "'\($0).'" }.joined(separator: ", ")
            throw ModelLoadError(
                "\(path) is not a Stable Diffusion checkpoint in the original (LDM) layout: it has no UNet "
                    + "('\(Self.unetPrefix)…'); its \(file.names.count) tensors start with \(shown.isEmpty ? "nothing" : shown)"
                    + (starts.count > 6 ? ", …" : "")
                    + ". A diffusers model is a folder (model_index.json, unet/, vae/, …)")
        }
    }

    /// Whether the file holds the UNet's EMA copy (`model_ema.*`), as diffusers decides it.
    public var hasEMA: Bool { file.names.lazy.filter { $0.hasPrefix(Self.emaPrefix) }.count > Self.emaKeyThreshold }

    /// The names under `prefix`, without it.
    func names(under prefix: String) -> [String] {
        file.names.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    // MARK: components

    /// The UNet under diffusers names (`layersPerBlock` from its config). With `extractEMA`
    /// and EMA weights present, each tensor comes from its `model_ema.*` copy — diffusers'
    /// `extract_ema=True`; its default, and so this one, is the plain `model.diffusion_model.*`.
    public func unetWeights(layersPerBlock: Int, extractEMA: Bool = false) throws -> ModelWeights {
        let useEMA = extractEMA && hasEMA
        var map: [String: String] = [:]
        for ldm in names(under: Self.unetPrefix) {
            guard let name = LDMNames.unet(ldm, layersPerBlock: layersPerBlock) else {
                throw unexpected(Self.unetPrefix + ldm, "an SD 1.x UNet")
            }
            var stored = Self.unetPrefix + ldm
            if useEMA {
                // diffusers: "model_ema." + the key without its first part, dots removed.
                stored = Self.emaPrefix + stored.split(separator: ".").dropFirst().joined()
                guard file.contains(stored) else {
                    throw ModelLoadError(
                        "\(path): EMA weights were asked for, but '\(stored)' (the EMA copy of '\(Self.unetPrefix + ldm)') is missing"
                    )
                }
            }
            try add(name, stored, to: &map, component: "UNet")
        }
        return ModelWeights(file: file, names: map, component: "UNet")
    }

    /// The autoencoder under diffusers names (`levels`: its config's block count). The mid-block
    /// attention's q/k/v/proj_out, 1×1 convolutions in LDM, are served as linear weights.
    public func vaeWeights(levels: Int) throws -> ModelWeights {
        guard let prefix = Self.vaePrefixes.last(where: { p in file.names.contains { $0.hasPrefix(p) } }) else {
            throw ModelLoadError("\(path): no autoencoder ('first_stage_model.…' or 'vae.…')")
        }
        var map: [String: String] = [:]
        for ldm in names(under: prefix) {
            // The training loss (discriminator, logvar) some checkpoints keep is no part of the model.
            if ldm.hasPrefix("loss.") { continue }
            guard let name = LDMNames.vae(ldm, levels: levels) else { throw unexpected(prefix + ldm, "an SD 1.x VAE") }
            try add(name, prefix + ldm, to: &map, component: "VAE")
        }
        return ModelWeights(file: file, names: map, component: "VAE", reshape: LDMNames.vaeAttentionShape)
    }

    /// The CLIP text encoder under transformers' names (`text_model.…`).
    public func textEncoderWeights() throws -> ModelWeights {
        let names = names(under: Self.textPrefix)
        guard !names.isEmpty else {
            throw ModelLoadError("\(path): no CLIP text encoder ('\(Self.textPrefix)…')")
        }
        var map: [String: String] = [:]
        // position_ids is a buffer (0, 1, …, 76) transformers makes itself.
        for name in names where !name.hasSuffix("embeddings.position_ids") {
            try add(name, Self.textPrefix + name, to: &map, component: "text encoder")
        }
        return ModelWeights(file: file, names: map, component: "text encoder")
    }

    func add(_ name: String, _ stored: String, to map: inout [String: String], component: String) throws {
        if let other = map[name] {
            throw ModelLoadError("\(path): '\(other)' and '\(stored)' are both the \(component)'s '\(name)'")
        }
        map[name] = stored
    }

    func unexpected(_ stored: String, _ what: String) -> ModelLoadError {
        ModelLoadError("\(path): unexpected tensor '\(stored)': not part of \(what) in the LDM layout")
    }

    // MARK: shapes against the configs

    /// The shape facts a config fixes, as (what, the file's value and evidence, the config's):
    /// widths, input and latent channels, text width and depth. A checkpoint that does not fit
    /// its config folder is refused here, before any layer is built.
    public func checkFits(unet: ModelConfig, vae: ModelConfig, text: ModelConfig, configFolder: String) throws {
        let textConfig = text.clipTower("text_config")
        let unetChannels = try unet.ints("block_out_channels", count: 1...8, in: 1...8192)
        let vaeChannels = try vae.ints("block_out_channels", count: 1...8, in: 1...8192)
        var checks: [(what: String, stored: String, dim: Int, expected: Int, key: String, config: ModelConfig)] = [
            ("UNet width", Self.unetPrefix + "input_blocks.0.0.weight", 0, unetChannels[0], "block_out_channels", unet),
            (
                "UNet input channels", Self.unetPrefix + "input_blocks.0.0.weight", 1,
                try unet.int("in_channels", default: 4, in: 1...1024), "in_channels", unet
            ),
            ("VAE width", "encoder.conv_in.weight", 0, vaeChannels[0], "block_out_channels", vae),
            (
                "VAE latent channels", "decoder.conv_in.weight", 1,
                try vae.int("latent_channels", default: 4, in: 1...1024), "latent_channels", vae
            ),
            (
                "text encoder width", Self.textPrefix + "text_model.embeddings.token_embedding.weight", 1,
                try textConfig.int("hidden_size", default: 512, in: 1...8192), "hidden_size", textConfig
            ),
            (
                "text vocabulary", Self.textPrefix + "text_model.embeddings.token_embedding.weight", 0,
                try textConfig.int("vocab_size", default: 49408, in: 1...1_000_000), "vocab_size", textConfig
            ),
        ]
        if let key = file.names.first(where: { $0.hasPrefix(Self.unetPrefix) && $0.hasSuffix(".attn2.to_k.weight") }) {
            checks.append(
                (
                    "UNet cross-attention width", key, 1, try unet.int("cross_attention_dim", in: 1...8192),
                    "cross_attention_dim", unet
                ))
        }
        let vaePrefix = Self.vaePrefixes.last(where: { p in file.names.contains { $0.hasPrefix(p) } }) ?? ""
        for check in checks {
            let stored =
                check.stored.hasPrefix("encoder.") || check.stored.hasPrefix("decoder.")
                ? vaePrefix + check.stored : check.stored
            guard let shape = file.info(stored)?.shape, check.dim < shape.count else { continue }
            guard shape[check.dim] != check.expected else { continue }
            throw ModelLoadError(
                "\(path) does not fit the config folder \(configFolder): its \(check.what) is \(shape[check.dim]) "
                    + "('\(stored)' is \(shape)), \(check.config.path) says \(check.key) "
                    + ModelConfig.describe(check.config.values[check.key] ?? check.expected)
                    + ". Give the config folder made for this checkpoint")
        }
        let layers = try textConfig.int("num_hidden_layers", default: 12, in: 1...64)
        let stored = Set(
            names(under: Self.textPrefix + "text_model.encoder.layers.").compactMap { $0.split(separator: ".").first })
        if !stored.isEmpty && stored.count != layers {
            throw ModelLoadError(
                "\(path) does not fit the config folder \(configFolder): its text encoder has \(stored.count) layers, "
                    + "\(textConfig.path) says num_hidden_layers \(layers). Give the config folder made for this checkpoint"
            )
        }
    }
}

/// LDM names → diffusers names, one tensor at a time (nil: no SD 1.x tensor has that name).
/// The rules are diffusers 0.42.1's, on the name's parts instead of substrings.
enum LDMNames {
    static let unetTopLevel: [String: String] = [
        "time_embed.0.weight": "time_embedding.linear_1.weight", "time_embed.0.bias": "time_embedding.linear_1.bias",
        "time_embed.2.weight": "time_embedding.linear_2.weight", "time_embed.2.bias": "time_embedding.linear_2.bias",
        "input_blocks.0.0.weight": "conv_in.weight", "input_blocks.0.0.bias": "conv_in.bias",
        "out.0.weight": "conv_norm_out.weight", "out.0.bias": "conv_norm_out.bias",
        "out.2.weight": "conv_out.weight", "out.2.bias": "conv_out.bias",
    ]

    /// ResBlock's layers by their diffusers names (update_unet_resnet_ldm_to_diffusers).
    static let unetResnetParts = [
        ("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."), ("emb_layers.1.", "time_emb_proj."), ("skip_connection.", "conv_shortcut."),
    ]

    /// An index part: decimal digits only (no sign), short enough to be far from overflow.
    static func index<S: StringProtocol>(_ s: S) -> Int? {
        guard !s.isEmpty, s.count <= 6, s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(s)
    }

    static func resnet<S: StringProtocol>(_ rest: S) -> String? {
        for (ldm, diffusers) in unetResnetParts where rest.hasPrefix(ldm) {
            return diffusers + rest.dropFirst(ldm.count)
        }
        return nil
    }

    /// A UNet name without "model.diffusion_model.".
    static func unet(_ ldm: String, layersPerBlock: Int) -> String? {
        if let name = unetTopLevel[ldm] { return name }
        let parts = ldm.split(separator: ".", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count >= 3, let i = index(parts[1]) else { return nil }
        let group = layersPerBlock + 1
        if parts[0] == "middle_block" {
            // middle_block.0 and .2 are resnets 0 and 1, middle_block.1 the attention.
            let rest = parts[2...].joined(separator: ".")
            switch i {
            case 0, 2: return resnet(rest).map { "mid_block.resnets.\(i / 2)." + $0 }
            case 1: return "mid_block.attentions.0." + rest
            default: return nil
            }
        }
        guard parts.count == 4, let j = index(parts[2]) else { return nil }
        let rest = parts[3]
        switch (parts[0], j) {
        case ("input_blocks", 0) where i >= 1:
            let down = "down_blocks.\((i - 1) / group)."
            if rest == "op.weight" || rest == "op.bias" { return down + "downsamplers.0.conv." + rest.dropFirst(3) }
            return resnet(rest).map { down + "resnets.\((i - 1) % group)." + $0 }
        case ("input_blocks", 1) where i >= 1:
            return "down_blocks.\((i - 1) / group).attentions.\((i - 1) % group)." + rest
        case ("output_blocks", 0):
            return resnet(rest).map { "up_blocks.\(i / group).resnets.\(i % group)." + $0 }
        case ("output_blocks", 1), ("output_blocks", 2):
            // The upsampler follows the resnet (.1) or the resnet and its attention (.2).
            if rest == "conv.weight" || rest == "conv.bias" {
                return "up_blocks.\(i / group).upsamplers.0." + rest
            }
            return j == 1 ? "up_blocks.\(i / group).attentions.\(i % group)." + rest : nil
        default:
            return nil
        }
    }

    static let vaeTopLevel: [String: String] = {
        var map = ["quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"]
        for part in ["encoder", "decoder"] {
            map[part + ".conv_in"] = part + ".conv_in"
            map[part + ".conv_out"] = part + ".conv_out"
            map[part + ".norm_out"] = part + ".conv_norm_out"
        }
        var out: [String: String] = [:]
        for (ldm, diffusers) in map {
            for p in ["weight", "bias"] { out[ldm + "." + p] = diffusers + "." + p }
        }
        return out
    }()

    static let vaeAttentionParts = [
        "norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0",
    ]

    /// ResnetBlock's parts keep their names but the shortcut's.
    static func vaeResnet<S: StringProtocol>(_ rest: S) -> String {
        rest.hasPrefix("nin_shortcut.") ? "conv_shortcut." + rest.dropFirst("nin_shortcut.".count) : String(rest)
    }

    /// A VAE name without "first_stage_model." (`levels`: the config's block count; the decoder's
    /// LDM blocks count up from the bottom, diffusers' from the top).
    static func vae(_ ldm: String, levels: Int) -> String? {
        if let name = vaeTopLevel[ldm] { return name }
        let parts = ldm.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 4, parts[0] == "encoder" || parts[0] == "decoder" else { return nil }
        let coder = parts[0]
        if parts[1] == "mid" {
            let rest = parts[3...].joined(separator: ".")
            switch parts[2] {
            case "block_1": return "\(coder).mid_block.resnets.0." + vaeResnet(rest)
            case "block_2": return "\(coder).mid_block.resnets.1." + vaeResnet(rest)
            case "attn_1":
                guard parts.count == 5, let part = vaeAttentionParts[parts[3]],
                    parts[4] == "weight" || parts[4] == "bias"
                else { return nil }
                return "\(coder).mid_block.attentions.0.\(part).\(parts[4])"
            default: return nil
            }
        }
        guard let i = index(parts[2]), i < levels else { return nil }
        let rest = parts[3...].joined(separator: ".")
        switch (coder, parts[1]) {
        case ("encoder", "down"):
            if rest == "downsample.conv.weight" || rest == "downsample.conv.bias" {
                return "encoder.down_blocks.\(i).downsamplers.0.conv." + parts[5]
            }
            guard parts[3] == "block", parts.count >= 6, let j = index(parts[4]) else { return nil }
            return "encoder.down_blocks.\(i).resnets.\(j)." + vaeResnet(parts[5...].joined(separator: "."))
        case ("decoder", "up"):
            let block = levels - 1 - i
            if rest == "upsample.conv.weight" || rest == "upsample.conv.bias" {
                return "decoder.up_blocks.\(block).upsamplers.0.conv." + parts[5]
            }
            guard parts[3] == "block", parts.count >= 6, let j = index(parts[4]) else { return nil }
            return "decoder.up_blocks.\(block).resnets.\(j)." + vaeResnet(parts[5...].joined(separator: "."))
        default:
            return nil
        }
    }

    /// diffusers' conv_attn_to_linear: the mid-block attention's [C, C, 1, 1] (or [C, C, 1])
    /// weights as [C, C].
    static let vaeAttentionShape: @Sendable (String, [Int]) -> [Int]? = { name, shape in
        guard name.contains("mid_block.attentions.0.to_"), name.hasSuffix(".weight"), shape.count > 2,
            shape.dropFirst(2).allSatisfy({ $0 == 1 })
        else { return nil }
        return Array(shape.prefix(2))
    }
}
