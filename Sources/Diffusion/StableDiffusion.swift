import DiffusersLayout
import Foundation
import Tensor

/// A Stable Diffusion 1.x model, loaded whole: from a diffusers folder, or from one checkpoint
/// file in the original LDM layout with the configs of a config folder (`LDMCheckpoint`).
public final class StableDiffusion {
    /// Where the weights and configs came from.
    public let files: StableDiffusionFiles
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextEncoder
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let scheduler: DDIMScheduler

    /// A diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).
    public convenience init(folder: String) throws {
        try self.init(files: StableDiffusionFiles(path: folder, configFolder: folder, isSingleFile: false))
    }

    /// Whatever `path` is: a diffusers folder, or a single-file `.safetensors` checkpoint with
    /// the configs of `configFolder` (nil: the bundled SD 1.5 ones, models/sd15-config). A
    /// pickled checkpoint (.ckpt, .bin, .pt, .pth) is refused unopened, with the command that
    /// converts it. `extractEMA`: a full checkpoint's EMA UNet instead of its plain one (diffusers'
    /// `extract_ema`; off by default, as in diffusers).
    public convenience init(path: String, configFolder: String? = nil, extractEMA: Bool = false) throws {
        let files: StableDiffusionFiles
        do { files = try StableDiffusionFiles.locate(path, configFolder: configFolder) } catch let refusal
            as StableDiffusionFiles.Refusal
        {
            throw ModelLoadError(refusal.message)
        }
        try self.init(files: files, extractEMA: extractEMA)
    }

    public init(files: StableDiffusionFiles, extractEMA: Bool = false) throws {
        let folder = files.configFolder
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ModelLoadError("model folder \(folder) does not exist")
        }
        guard fm.fileExists(atPath: folder + "/model_index.json") else {
            throw ModelLoadError("\(folder) is not a diffusers model folder: model_index.json is missing")
        }
        for part in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]
        where !fm.fileExists(atPath: folder + "/" + part) {
            throw ModelLoadError("\(folder): component folder '\(part)/' is missing")
        }
        self.files = files
        tokenizer = try CLIPTokenizer(folder: folder + "/tokenizer")
        if files.isSingleFile {
            (textEncoder, unet, vae) = try Self.loadSingleFile(files, extractEMA: extractEMA)
        } else {
            textEncoder = try CLIPTextEncoder(folder: folder + "/text_encoder")
            unet = try UNet2DConditionModel(folder: folder + "/unet")
            vae = try AutoencoderKL(folder: folder + "/vae")
        }
        scheduler = try DDIMScheduler(configPath: folder + "/" + DiffusersLayout.schedulerConfig)
        guard textEncoder.hiddenSize == unet.contextDim else {
            throw ModelLoadError(
                "\(files.path): text encoder width \(textEncoder.hiddenSize) does not match the UNet's cross_attention_dim \(unet.contextDim)"
            )
        }
    }

    /// The three networks out of one LDM checkpoint, with the config folder's configs: the
    /// file must fit them (`LDMCheckpoint.checkFits`) and every tensor mapped to a component
    /// must be one it reads.
    static func loadSingleFile(
        _ files: StableDiffusionFiles, extractEMA: Bool
    ) throws -> (CLIPTextEncoder, UNet2DConditionModel, AutoencoderKL) {
        let folder = files.configFolder
        let unetConfig = try ModelConfig(path: DiffusersLayout.configPath(folder, component: "unet"))
        let vaeConfig = try ModelConfig(path: DiffusersLayout.configPath(folder, component: "vae"))
        let textConfig = try ModelConfig(path: DiffusersLayout.configPath(folder, component: "text_encoder"))
        let checkpoint = try LDMCheckpoint(path: files.path)
        try checkpoint.checkFits(unet: unetConfig, vae: vaeConfig, text: textConfig, configFolder: folder)

        // diffusers' conversion takes one layers_per_block for every level.
        let levels = try unetConfig.ints("block_out_channels", count: 1...8, in: 1...8192).count
        let layers = try unetConfig.intOrList("layers_per_block", count: levels, in: 1...64)
        guard Set(layers).count == 1 else {
            throw unetConfig.fail(
                "layers_per_block", "= \(layers): a single-file checkpoint needs one value for all levels")
        }
        let vaeLevels = try vaeConfig.ints("block_out_channels", count: 1...8, in: 1...8192).count

        let unetWeights = try checkpoint.unetWeights(layersPerBlock: layers[0], extractEMA: extractEMA)
        let unet = try UNet2DConditionModel(config: unetConfig, weights: { unetWeights })
        let vaeWeights = try checkpoint.vaeWeights(levels: vaeLevels)
        let vae = try AutoencoderKL(config: vaeConfig, weights: { vaeWeights })
        let textWeights = try checkpoint.textEncoderWeights()
        let text = try CLIPTextEncoder(config: textConfig, weights: { textWeights })
        for (component, weights) in [("UNet", unetWeights), ("VAE", vaeWeights), ("text encoder", textWeights)] {
            let unread = weights.unreadTensors()
            guard let first = unread.first else { continue }
            throw ModelLoadError(
                "\(files.path): \(unread.count) tensor(s) no SD 1.x \(component) with the configs of \(folder) has, "
                    + "e.g. '\(first.stored)' (its '\(first.name)'); give the config folder made for this checkpoint")
        }
        return (text, unet, vae)
    }

    /// Token ids of `prompt`, framed and padded to the text encoder's context length.
    public func tokenIDs(_ prompt: String) -> [Int] {
        tokenizer.tokenize(prompt, length: textEncoder.maxPositions)
    }

    /// Text conditioning [1, T, D] for a prompt.
    public func encodePrompt(_ prompt: String) -> Tensor {
        textEncoder.encode(ids: [tokenIDs(prompt)])
    }

    /// Latent shape for an image of the given pixel size.
    public func latentShape(height: Int, width: Int) -> [Int] {
        let f = vae.downsampleFactor
        return [1, unet.inChannels, height / f, width / f]
    }

    /// Classifier-free guided noise: eps_u + w·(eps_c − eps_u), one batched UNet call.
    /// With w == 1 only the conditional branch runs.
    public func guidedNoise(
        latent: Tensor, timestep: Int, conditional: Tensor, unconditional: Tensor,
        guidance: Float
    ) -> Tensor {
        if guidance == 1 { return unet(latent, timestep: Float(timestep), context: conditional) }
        let both = unet(
            Tensor.concat([latent, latent], axis: 0), timestep: Float(timestep),
            context: Tensor.concat([unconditional, conditional], axis: 0))
        let halves = both.chunked(2, axis: 0)
        return halves[0] + (halves[1] - halves[0]) * guidance
    }

    /// Plain DDIM text-to-image from a given initial latent. Returns the final latent
    /// (before 1/scaling_factor); `progress` is called after each step.
    public func denoise(
        from latent: Tensor, prompt: String, negativePrompt: String = "",
        steps: Int, guidance: Float, progress: ((Int, Int) -> Void)? = nil
    ) -> Tensor {
        denoiseLoop(
            from: latent, prompt: prompt, negativePrompt: negativePrompt, steps: steps, guidance: guidance,
            scheduler: scheduler, progress: progress)
    }

    /// Text-to-image with any sampler from a given initial latent (init_noise_sigma 1, as
    /// DDIM's and DPM-Solver++'s). Throws for step counts the sampler cannot run.
    public func denoise<S: DenoisingScheduler>(
        from latent: Tensor, prompt: String, negativePrompt: String = "",
        steps: Int, guidance: Float, scheduler: S, progress: ((Int, Int) -> Void)? = nil
    ) throws -> Tensor {
        try scheduler.validate(steps: steps)
        return denoiseLoop(
            from: latent, prompt: prompt, negativePrompt: negativePrompt, steps: steps, guidance: guidance,
            scheduler: scheduler, progress: progress)
    }

    /// The one denoising loop: classifier-free guided model output, then the sampler's step.
    func denoiseLoop<S: DenoisingScheduler>(
        from latent: Tensor, prompt: String, negativePrompt: String,
        steps: Int, guidance: Float, scheduler: S, progress: ((Int, Int) -> Void)?
    ) -> Tensor {
        let conditional = encodePrompt(prompt)
        let unconditional = encodePrompt(negativePrompt)
        var z = latent
        var history: S.History? = nil
        let timesteps = scheduler.timesteps(steps: steps)
        for (i, t) in timesteps.enumerated() {
            let eps = guidedNoise(
                latent: z, timestep: t, conditional: conditional, unconditional: unconditional,
                guidance: guidance)
            (z, history) = scheduler.step(
                modelOutput: eps, index: i, timestep: t, sample: z, steps: steps, history: history)
            progress?(i + 1, timesteps.count)
        }
        return z
    }

    /// DDIM inversion of a clean latent z0 to the noise level of `steps`' first timestep
    /// (or, with `strength` < 1, to an intermediate one), conditioned on `prompt` without guidance.
    /// Returns the inverted latents after each step; the last is the starting point.
    public func invert(
        _ z0: Tensor, prompt: String = "", steps: Int, strength: Float = 1,
        progress: ((Int, Int) -> Void)? = nil
    ) -> [Tensor] {
        let context = encodePrompt(prompt)
        let ascending = scheduler.inversionTimesteps(steps: steps)
        let count = max(0, min(ascending.count, Int((Float(steps) * strength).rounded())))
        var z = z0
        var trajectory: [Tensor] = []
        for (i, t) in ascending.prefix(count).enumerated() {
            let eps = unet(z, timestep: Float(t), context: context)
            z = scheduler.invertStep(
                eps: eps, fromTimestep: scheduler.previousTimestep(t, steps: steps),
                toTimestep: t, sample: z)
            trajectory.append(z)
            progress?(i + 1, count)
        }
        return trajectory
    }

    /// Latent → image tensor in [-1, 1] (clamped).
    public func decodeToImage(_ latent: Tensor) -> Tensor {
        vae.decode(latent * (1 / vae.scalingFactor)).clamp(-1...1)
    }

    /// Image [1, 3, H, W] in [-1, 1] → scaled latent (posterior mean × scaling factor).
    public func encodeImage(_ image: Tensor) throws -> Tensor {
        try vae.encodeChecked(image).mean * vae.scalingFactor
    }
}

extension Tensor {
    /// [1, 3, H, W] in [-1, 1] → interleaved RGB bytes (rounded, as diffusers' numpy_to_pil).
    public func rgbBytes() -> (width: Int, height: Int, bytes: [UInt8]) {
        precondition(rank == 4 && shape[0] == 1 && shape[1] == 3, "rgbBytes wants [1, 3, H, W], got \(shape)")
        let (h, w) = (shape[2], shape[3])
        var bytes = [UInt8](repeating: 0, count: h * w * 3)
        for c in 0..<3 {
            for i in 0..<(h * w) {
                let v = (data[c * h * w + i] / 2 + 0.5).clamped(0, 1)
                bytes[i * 3 + c] = UInt8((v * 255).rounded())
            }
        }
        return (w, h, bytes)
    }

    /// Interleaved RGB bytes → [1, 3, H, W] in [-1, 1].
    public static func fromRGBBytes(_ bytes: [UInt8], width: Int, height: Int) -> Tensor {
        precondition(bytes.count == width * height * 3, "expected \(width)×\(height)×3 bytes, got \(bytes.count)")
        var data = [Float](repeating: 0, count: bytes.count)
        for i in 0..<(width * height) {
            for c in 0..<3 {
                data[c * width * height + i] = Float(bytes[i * 3 + c]) / 127.5 - 1
            }
        }
        return Tensor(shape: [1, 3, height, width], data: data)
    }
}

extension Float {
    func clamped(_ lo: Float, _ hi: Float) -> Float { Swift.min(Swift.max(self, lo), hi) }
}
