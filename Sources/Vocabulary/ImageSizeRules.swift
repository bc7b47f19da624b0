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
        guard FileManager.default.fileExists(atPath: folder + "/model_index.json") else {
            throw SettingsError(
                "\(folder) is not a Stable Diffusion folder in the diffusers layout (no model_index.json)")
        }
        func config(_ sub: String) throws -> [String: Any] {
            let path = "\(folder)/\(sub)/config.json"
            guard let data = FileManager.default.contents(atPath: path),
                let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            else { throw SettingsError("cannot read \(path) as a JSON object") }
            return object
        }
        func levels(_ object: [String: Any], _ sub: String) throws -> Int {
            guard let list = object["block_out_channels"] as? [Any] else {
                throw SettingsError("\(folder)/\(sub)/config.json: block_out_channels is missing or not a list")
            }
            return list.count
        }
        let unet = try config("unet")
        let vae = try config("vae")
        let sample = unet["sample_size"] == nil ? 64 : (unet["sample_size"] as? Int)
        guard let sample else { throw SettingsError("\(folder)/unet/config.json: sample_size is not an integer") }
        do {
            try self.init(
                unetSampleSize: sample, unetLevels: try levels(unet, "unet"), vaeLevels: try levels(vae, "vae"))
        } catch let e as SettingsError {
            throw SettingsError("\(folder): \(e.description)")
        }
    }
}
