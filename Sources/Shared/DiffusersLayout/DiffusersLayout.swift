import Foundation

/// What a model folder in the diffusers / transformers layout holds, named once: the file
/// names, the timestep spacing rule, and the config facts the spec checks, the command line
/// and the engine all read (Foundation only, so the coordinator's side can use it without the
/// engine).
public enum DiffusersLayout {
    /// A Stable Diffusion pipeline folder's index (its presence says "this is one").
    public static let modelIndex = "model_index.json"
    /// A model's configuration, in its folder or a pipeline's component folder.
    public static let config = "config.json"
    /// The scheduler's configuration inside a pipeline folder.
    public static let schedulerConfig = "scheduler/scheduler_config.json"
    /// A CLIP BPE tokenizer's two files.
    public static let vocabulary = "vocab.json"
    public static let merges = "merges.txt"
    /// The tokenizers library's one-file form (the BPE model, normaliser and special tokens);
    /// transformers 5's `save_pretrained` writes only this.
    public static let tokenizerJSON = "tokenizer.json"

    /// The names a component's weights are saved under: diffusers' and transformers'.
    public static let weightStems = ["diffusion_pytorch_model", "model"]
    /// Variants tried, in this order, when a folder has no plain weights file (diffusers'
    /// `variant=`: the hub's fp16 branches ship only `*.fp16.safetensors`).
    public static let preferredVariants = ["fp16", "bf16"]

    /// Where a component's weights may be, best first: a single file or a shard index.
    public enum WeightSource: Equatable, Sendable {
        case file(String)
        case index(String)
        public var path: String {
            switch self {
            case .file(let p), .index(let p): return p
            }
        }
    }

    /// The places a component folder's weights may be, in the order a loader tries them:
    /// `stem.safetensors`, `stem.safetensors.index.json`, then each variant found in the folder
    /// (`stem.fp16.safetensors`, diffusers' `stem.safetensors.index.fp16.json` and
    /// transformers' `stem.fp16.safetensors.index.json`), fp16 before bf16 before the rest.
    public static func weightSources(in folder: String) -> [WeightSource] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var sources: [WeightSource] = []
        for stem in weightStems {
            sources += [.file("\(stem).safetensors"), .index("\(stem).safetensors.index.json")]
        }
        var variants = Set<String>()
        for name in names {
            for stem in weightStems {
                for (prefix, suffix) in [
                    ("\(stem).", ".safetensors"), ("\(stem).safetensors.index.", ".json"),
                    ("\(stem).", ".safetensors.index.json"),
                ] where name.hasPrefix(prefix) && name.hasSuffix(suffix) && name.count > prefix.count + suffix.count {
                    let variant = String(name.dropFirst(prefix.count).dropLast(suffix.count))
                    if !variant.contains(".") && !variant.contains("-of-") { variants.insert(variant) }
                }
            }
        }
        let ordered = preferredVariants.filter(variants.contains) + variants.subtracting(preferredVariants).sorted()
        for variant in ordered {
            for stem in weightStems {
                sources += [
                    .file("\(stem).\(variant).safetensors"), .index("\(stem).safetensors.index.\(variant).json"),
                    .index("\(stem).\(variant).safetensors.index.json"),
                ]
            }
        }
        return sources.map {
            switch $0 {
            case .file(let name): return .file(folder + "/" + name)
            case .index(let name): return .index(folder + "/" + name)
            }
        }
    }

    /// Pickled checkpoints (`.bin`, `.ckpt`, `.pt`, `.pth`) in `folder`: never loaded (unpickling
    /// runs code), named in the refusal with how to convert them.
    public static func pickledWeights(in folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { name in [".bin", ".ckpt", ".pt", ".pth"].contains { name.hasSuffix($0) } }.sorted()
    }

    /// `folder`/`component`/config.json (component "" for the folder's own).
    public static func configPath(_ folder: String, component: String = "") -> String {
        component.isEmpty ? folder + "/" + config : folder + "/" + component + "/" + config
    }

    /// Config files larger than this are not read here (real ones are a few kilobytes).
    static let maxConfigBytes = 16 << 20

    /// A config file as a JSON object, nil when absent, not a regular file of at most
    /// `maxConfigBytes` (a FIFO would block the read), or not an object. Symbolic links (the
    /// hub cache's layout) are followed.
    public static func jsonObject(atPath path: String) -> [String: Any]? {
        guard let (target, size) = regularFile(path), size <= maxConfigBytes,
            let data = FileManager.default.contents(atPath: target)
        else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// `path` with its symbolic links resolved (a Hugging Face cache snapshot is made of them)
    /// and its size, when that is a regular file; nil for anything else (a FIFO would block a
    /// read, a device never end). The one check every reader here makes before it opens a file.
    static func regularFile(_ path: String) -> (path: String, size: Int)? {
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: target),
            attributes[.type] as? FileAttributeType == .typeRegular, let size = attributes[.size] as? Int
        else { return nil }
        return (target, size)
    }

    /// A whole CLIPModel (vision and text towers in one folder): its config has both halves'
    /// settings. Such a folder serves as a classifier tower and as its own text model.
    public static func isFullCLIP(_ folder: String) -> Bool {
        guard let json = jsonObject(atPath: configPath(folder)) else { return false }
        return json["text_config"] != nil && json["vision_config"] != nil
    }

    /// A transformers image-classification folder (a ViTForImageClassification: model_type
    /// "vit", or an `architectures` entry ending in "ForImageClassification"). It is a whole
    /// emotion classifier, head included, and has no CLIP embedding: a spec's classifier or
    /// evaluation tower may be one, without a head or text model. Other image classifiers than
    /// ViT are detected too, so that the loader refuses them by name.
    public static func isImageClassifier(_ folder: String) -> Bool {
        guard let json = jsonObject(atPath: configPath(folder)) else { return false }
        if json["model_type"] as? String == "vit" { return true }
        let architectures = json["architectures"] as? [Any] ?? []
        return architectures.contains { ($0 as? String)?.hasSuffix("ForImageClassification") == true }
    }
}

/// diffusers' `timestep_spacing`: how DDIMScheduler's `set_timesteps(steps)` spreads the
/// inference timesteps over the training ones. The one statement of that rule: the spec checks
/// (`StepRules`) and `DDIMScheduler` both use it. (DPMSolverMultistepScheduler spaces
/// `steps + 1` points by diffusers' own variant, kept beside it.)
public enum TimestepSpacing: String, CaseIterable, Sendable {
    case leading, trailing, linspace

    /// The inference timesteps, descending, as diffusers makes them (`steps` in
    /// 1...`trainSteps`). "leading" adds `stepsOffset`, which can put the first one past the
    /// last training step; callers check.
    public func timesteps(steps: Int, trainSteps: Int, stepsOffset: Int) -> [Int] {
        precondition(steps > 0 && steps <= trainSteps, "steps must be in 1...\(trainSteps), got \(steps)")
        switch self {
        case .leading:
            return (0..<steps).reversed().map { $0 * (trainSteps / steps) + stepsOffset }
        case .trailing:
            // np.round(np.arange(trainSteps, 0, -trainSteps/steps)) - 1
            let ratio = Double(trainSteps) / Double(steps)
            let count = Int((Double(trainSteps) / ratio).rounded(.up))
            return (0..<count).map { Int((Double(trainSteps) - Double($0) * ratio).rounded(.toNearestOrEven)) - 1 }
        case .linspace:
            // np.linspace(0, trainSteps-1, steps).round()[::-1]
            guard steps > 1 else { return [0] }
            let delta = Double(trainSteps - 1) / Double(steps - 1)
            return (0..<steps).reversed().map { i in
                i == steps - 1 ? trainSteps - 1 : Int((Double(i) * delta).rounded(.toNearestOrEven))
            }
        }
    }

    /// The first (largest) timestep, without building the list.
    public func firstTimestep(steps: Int, trainSteps: Int, stepsOffset: Int) -> Int {
        switch self {
        case .leading: return (steps - 1) * (trainSteps / steps) + stepsOffset
        case .trailing: return trainSteps - 1
        case .linspace: return steps > 1 ? trainSteps - 1 : 0
        }
    }
}
