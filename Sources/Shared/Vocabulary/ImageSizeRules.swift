import DiffusersLayout
import Foundation

/// Image size rules of a Stable Diffusion model, from three config values: the native side
/// is the UNet's sample_size times the VAE factor (2^(VAE levels − 1)); sides must be
/// multiples of the VAE factor times the UNet's downsampling (2^(UNet levels − 1)), so every
/// UNet level has whole pixels. Inputs are range-checked first, so nothing overflows.
public struct ImageSizeRules: Equatable, Sendable {
    public static let levelsRange = 1...8
    public static let sampleSizeRange = 1...1024

    public let nativeSide: Int
    public let multiple: Int
    public let vaeFactor: Int
    /// The UNet's first-level width (SD 1.5: 320) and the weights' bytes on disk, for the
    /// memory estimate; 320 and 0 when not read from a model folder.
    public var unetWidth = 320
    public var weightBytes = 0
    /// The VAE's latent channels and scaling_factor (SD 1.x: 4 and 0.18215), which say whether
    /// the latent-rgb preview's factors fit; SD 1.x's when not read from a model folder.
    public var vaeLatentChannels = 4
    public var vaeScalingFactor = 0.18215

    /// nil when the latent-rgb preview fits this model's latent space (`PreviewKind.latentRGBProblem`).
    public var latentRGBProblem: String? {
        PreviewKind.latentRGBProblem(
            latentChannels: vaeLatentChannels, vaeFactor: vaeFactor, scalingFactor: vaeScalingFactor)
    }

    public init(unetSampleSize: Int, unetLevels: Int, vaeLevels: Int) throws {
        for (name, value, range) in [
            ("unet sample_size", unetSampleSize, Self.sampleSizeRange),
            ("unet block_out_channels count", unetLevels, Self.levelsRange),
            ("vae block_out_channels count", vaeLevels, Self.levelsRange),
        ] where !range.contains(value) {
            throw SettingsError(key: name, "\(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        vaeFactor = 1 << (vaeLevels - 1)
        nativeSide = unetSampleSize * vaeFactor
        multiple = vaeFactor << (unetLevels - 1)
    }

    /// nil when a `width`×`height` image fits the model, else why not.
    public func problem(width: Int, height: Int) -> String? {
        guard width > 0, height > 0, width % multiple == 0, height % multiple == 0 else {
            return "\(width)×\(height) does not fit this model: sides must be positive multiples of \(multiple) "
                + "(VAE factor \(vaeFactor) × UNet downsampling; native size \(nativeSide)×\(nativeSide))"
        }
        return nil
    }
}

extension ImageSizeRules {
    /// The rules of a Stable Diffusion folder in the diffusers layout, from unet/config.json
    /// and vae/config.json alone (no weights are read).
    public init(modelFolder folder: String) throws {
        guard FileManager.default.fileExists(atPath: folder + "/" + DiffusersLayout.modelIndex) else {
            throw SettingsError(
                "\(folder) is not a Stable Diffusion folder in the diffusers layout (no \(DiffusersLayout.modelIndex))")
        }
        func config(_ sub: String) throws -> [String: Any] {
            let path = DiffusersLayout.configPath(folder, component: sub)
            guard let object = DiffusersLayout.jsonObject(atPath: path) else {
                throw SettingsError("cannot read \(path) as a JSON object")
            }
            return object
        }
        func levels(_ object: [String: Any], _ sub: String) throws -> Int {
            guard let list = object["block_out_channels"] as? [Any] else {
                throw SettingsError(
                    "\(DiffusersLayout.configPath(folder, component: sub)): block_out_channels is missing or not a list"
                )
            }
            return list.count
        }
        let unet = try config("unet")
        let vae = try config("vae")
        let width = (unet["block_out_channels"] as? [Any])?.first as? Int ?? 320
        let sample = unet["sample_size"] == nil ? 64 : (unet["sample_size"] as? Int)
        guard let sample else {
            throw SettingsError(
                "\(DiffusersLayout.configPath(folder, component: "unet")): sample_size is not an integer")
        }
        do {
            try self.init(
                unetSampleSize: sample, unetLevels: try levels(unet, "unet"), vaeLevels: try levels(vae, "vae"))
        } catch let e as SettingsError {
            throw SettingsError("\(folder): \(e.description)")
        }
        unetWidth = min(max(width, 1), 65_536)
        vaeLatentChannels = vae["latent_channels"] as? Int ?? 4
        vaeScalingFactor = vae["scaling_factor"] as? Double ?? 0.18215
        // Held as float32 in memory, whatever the files' dtype (bf16 jobs halve it: `estimatedPeakBytes`).
        weightBytes =
            4
            * ["unet", "vae", "text_encoder"].reduce(0) {
                $0 + DiffusersLayout.parameterCount(component: folder + "/" + $1)
            }
    }

    /// The rules of a model wherever its files are: a folder's own configs, or a single
    /// checkpoint file's config folder (then the weights are that file's parameters).
    public init(model files: StableDiffusionFiles) throws {
        try self.init(modelFolder: files.configFolder)
        if files.isSingleFile { weightBytes = 4 * DiffusersLayout.parameterCount(safetensors: files.path) }
    }
}

extension ImageSizeRules {
    /// Activation bytes per output pixel of a guided step at UNet width 320, from a
    /// measurement: SD 1.5-sized models at 512² peaked at 12.8 GB with 4.3 GB of weights
    /// (docs/PERFORMANCE.md, "A full-size MUSE job"), i.e. ≈ 32 KB per pixel; it scales with the UNet's width.
    static let activationBytesPerPixel = 32_000.0

    /// Estimated peak memory of a guided step on a `width`×`height` image (bf16 weights take half).
    public func estimatedPeakBytes(width: Int, height: Int, weightsDType: WeightsDType = .f32) -> Double {
        Double(weightBytes) * (weightsDType == .bf16 ? 0.5 : 1)
            + Double(width) * Double(height) * Self.activationBytesPerPixel * Double(unetWidth) / 320
    }

    /// `MUSE_MAX_MEMORY_GB` when set (0.1...100000), else 80 % of this machine's memory.
    public static func memoryLimitBytes(environment: [String: String] = ProcessInfo.processInfo.environment) -> Double {
        if let text = environment["MUSE_MAX_MEMORY_GB"], let gb = Double(text), gb >= 0.1, gb <= 100_000 {
            return gb * 1e9
        }
        return Double(ProcessInfo.processInfo.physicalMemory) * 0.8
    }

    /// nil when a job on a `width`×`height` image should fit in memory, else the estimate
    /// and the limit, so an oversized job is refused before it allocates anything.
    public func memoryProblem(
        width: Int, height: Int, environment: [String: String] = ProcessInfo.processInfo.environment
    )
        -> String?
    {
        let need = estimatedPeakBytes(width: width, height: height)
        let limit = Self.memoryLimitBytes(environment: environment)
        guard need > limit else { return nil }
        return String(
            format:
                "%d×%d would need about %.1f GB at its peak (weights %.1f GB + activations), over the limit of %.1f GB "
                + "(MUSE_MAX_MEMORY_GB; default 80%% of this machine's memory)",
            width, height, need / 1e9, Double(weightBytes) / 1e9, limit / 1e9)
    }
}
