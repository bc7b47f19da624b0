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

    /// `folder`/`component`/config.json (component "" for the folder's own).
    public static func configPath(_ folder: String, component: String = "") -> String {
        component.isEmpty ? folder + "/" + config : folder + "/" + component + "/" + config
    }

    /// A config file as a JSON object, nil when absent or not an object.
    public static func jsonObject(atPath path: String) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// A whole CLIPModel (vision and text towers in one folder): its config has both halves'
    /// settings. Such a folder serves as a classifier tower and as its own text model.
    public static func isFullCLIP(_ folder: String) -> Bool {
        guard let json = jsonObject(atPath: configPath(folder)) else { return false }
        return json["text_config"] != nil && json["vision_config"] != nil
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
