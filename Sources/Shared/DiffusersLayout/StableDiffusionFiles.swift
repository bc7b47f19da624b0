import Foundation

/// Where a Stable Diffusion 1.x model's files are: a diffusers folder (weights and configs
/// together), or one checkpoint file in the original LDM layout (`v1-5-pruned-emaonly.safetensors`),
/// which carries no configs, so they come from a config folder: the one given, else the
/// repository's `models/sd15-config` (SD 1.5's configs; its `tokenizer` links to `models/clip-bpe`).
/// The one statement of which paths are which, read by the engine, the command line and `submit`.
public struct StableDiffusionFiles: Equatable, Sendable {
    /// The folder, or the single checkpoint file.
    public let path: String
    /// Where model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/ are:
    /// `path` itself for a folder.
    public let configFolder: String
    public let isSingleFile: Bool

    /// As given; `locate` works it out from a path.
    public init(path: String, configFolder: String, isSingleFile: Bool) {
        self.path = path
        self.configFolder = configFolder
        self.isSingleFile = isSingleFile
    }

    /// A path that is not a model: names it and says what is accepted.
    public struct Refusal: Error, CustomStringConvertible, LocalizedError, Equatable {
        public let message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
        public var errorDescription: String? { message }
    }

    /// Single-file checkpoints MUSE reads (safetensors: a header and raw arrays, nothing executed).
    public static let singleFileExtensions: Set<String> = ["safetensors"]
    /// Pickled PyTorch checkpoints: unpickling runs code from the file, so they are refused
    /// by their name, never opened.
    public static let pickleExtensions: Set<String> = ["ckpt", "bin", "pt", "pth"]
    /// SD 1.5's configs under the repository's `models/`, for single files given without a config folder.
    public static let bundledConfigName = "sd15-config"

    /// `path` classified: a folder is a diffusers folder (its contents are checked when read),
    /// a `.safetensors` file a single-file checkpoint with `configFolder` (nil: the bundled SD
    /// 1.5 one, searched for as `models/` is: `MUSE_MODELS_DIR`, then upwards from the current
    /// folder and from the executable's), a pickle is refused with the command that converts it.
    public static func locate(
        _ path: String, configFolder: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> StableDiffusionFiles {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw Refusal("model \(path) does not exist")
        }
        if isDirectory.boolValue {
            if let configFolder {
                throw Refusal(
                    "model \(path) is a diffusers folder, which holds its own configs; a config folder (\(configFolder)) "
                        + "goes only with a single-file checkpoint")
            }
            return StableDiffusionFiles(path: path, configFolder: path, isSingleFile: false)
        }
        let ext = (path as NSString).pathExtension.lowercased()
        if pickleExtensions.contains(ext) { throw Refusal(pickleRefusal(path)) }
        guard singleFileExtensions.contains(ext) else {
            throw Refusal(
                "model \(path) is neither a Stable Diffusion folder (diffusers layout) nor a single-file "
                    + ".safetensors checkpoint")
        }
        let config = try configFolder ?? bundledConfigFolder(environment: environment)
        var configIsFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: config, isDirectory: &configIsFolder), configIsFolder.boolValue
        else {
            throw Refusal("config folder \(config) for the single-file checkpoint \(path) is not a folder")
        }
        return StableDiffusionFiles(path: path, configFolder: config, isSingleFile: true)
    }

    /// The bundled SD 1.5 config folder, `models/sd15-config`.
    public static func bundledConfigFolder(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> String {
        var starts: [URL] = []
        if let dir = environment["MUSE_MODELS_DIR"], !dir.isEmpty {
            let candidate = URL(fileURLWithPath: dir).appendingPathComponent(bundledConfigName)
            if FileManager.default.fileExists(atPath: DiffusersLayout.configPath(candidate.path, component: "unet")) {
                return candidate.path
            }
        }
        starts.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        if let executable = Bundle.main.executableURL?.resolvingSymlinksInPath() {
            starts.append(executable.deletingLastPathComponent())
        }
        for start in starts {
            var dir = start.standardizedFileURL
            while true {
                let candidate = dir.appendingPathComponent("models").appendingPathComponent(bundledConfigName)
                if FileManager.default.fileExists(atPath: DiffusersLayout.configPath(candidate.path, component: "unet"))
                {
                    return candidate.path
                }
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        throw Refusal(
            "cannot find the bundled SD 1.5 configs (models/\(bundledConfigName)) for a single-file checkpoint: "
                + "set MUSE_MODELS_DIR to the repository's models/ folder, or give a config folder")
    }

    /// What a pickled checkpoint gets: the refusal and the diffusers command (0.42.1) that turns it
    /// into a diffusers folder MUSE loads.
    public static func pickleRefusal(_ path: String) -> String {
        let ext = (path as NSString).pathExtension
        let output = (path as NSString).deletingPathExtension + "-diffusers"
        return "model \(path): .\(ext) checkpoints are pickled PyTorch files, which can run code when loaded, "
            + "so MUSE never opens them. Convert it once with diffusers (0.42.1), then pass the folder it writes:\n"
            + "  " + conversionCommand(path, output: output) + "\n"
            + "(or use the checkpoint's .safetensors download, which MUSE reads directly)"
    }

    /// `python3 -c '…from_single_file(path).save_pretrained(output)…'`, quoted for a POSIX shell.
    public static func conversionCommand(_ path: String, output: String) -> String {
        func python(_ s: String) -> String {
            "\""
                + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n") + "\""
        }
        let program =
            "from diffusers import StableDiffusionPipeline; "
            + "StableDiffusionPipeline.from_single_file(\(python(path))).save_pretrained(\(python(output)))"
        return "python3 -c '" + program.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
