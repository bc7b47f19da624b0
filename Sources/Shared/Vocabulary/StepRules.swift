import DiffusersLayout
import Foundation

/// How many DDIM steps a model's scheduler can take, on top of `JobSettings.stepsRange`:
/// with diffusers' 'leading' spacing the first timestep is (steps − 1)·⌊T/steps⌋ +
/// steps_offset, which for Stable Diffusion's T = 1000 and steps_offset 1 is 1000 at 1000
/// steps — past the last training timestep, which the engine refuses. Read from
/// scheduler/scheduler_config.json alone, so specs and the command line are checked before
/// any weights load.
public struct StepRules: Equatable, Sendable {
    public let trainSteps: Int
    public let spacing: TimestepSpacing
    public let stepsOffset: Int

    public init(trainSteps: Int = 1000, spacing: String = "leading", stepsOffset: Int = 0) throws {
        guard trainSteps > 0 else { throw SettingsError(key: "num_train_timesteps", "must be positive") }
        guard let spacing = TimestepSpacing(rawValue: spacing) else {
            throw SettingsError(key: "timestep_spacing", "'\(spacing)' is not supported")
        }
        self.trainSteps = trainSteps
        self.spacing = spacing
        self.stepsOffset = stepsOffset
    }

    /// The first (largest) timestep `steps` steps start from (`steps` must be positive).
    public func firstTimestep(steps: Int) -> Int {
        spacing.firstTimestep(steps: steps, trainSteps: trainSteps, stepsOffset: stepsOffset)
    }

    /// nil when the model's scheduler can take `steps` steps, else why not.
    public func problem(steps: Int) -> String? {
        let range = JobSettings.stepsRange
        guard range.contains(steps) else { return "\(steps) is outside \(range.lowerBound)...\(range.upperBound)" }
        guard steps <= trainSteps else { return "\(steps) steps exceed the model's \(trainSteps) training steps" }
        let first = firstTimestep(steps: steps)
        guard first < trainSteps else {
            let most = (1..<steps).reversed().first { firstTimestep(steps: $0) < trainSteps }
            return "\(steps) steps put a timestep at \(first), beyond the model's \(trainSteps) training steps "
                + "(\(spacing.rawValue) spacing, steps_offset \(stepsOffset)); "
                + (most.map { "use at most \($0)" } ?? "no step count fits this scheduler")
        }
        return nil
    }
}

extension StepRules {
    /// The rules of a model wherever its files are (a single checkpoint file's scheduler config
    /// is in its config folder).
    public init(model files: StableDiffusionFiles) throws {
        try self.init(modelFolder: files.configFolder)
    }

    /// The rules of a Stable Diffusion folder in the diffusers layout (scheduler/scheduler_config.json;
    /// missing keys take diffusers' DDIM defaults).
    public init(modelFolder folder: String) throws {
        let path = folder + "/" + DiffusersLayout.schedulerConfig
        guard let object = DiffusersLayout.jsonObject(atPath: path) else {
            throw SettingsError("cannot read \(path) as a JSON object")
        }
        func int(_ key: String, _ fallback: Int) throws -> Int {
            guard let value = object[key], !(value is NSNull) else { return fallback }
            guard let n = value as? Int else { throw SettingsError("\(path): '\(key)' is not an integer") }
            return n
        }
        let spacing = object["timestep_spacing"] as? String ?? "leading"
        do {
            try self.init(
                trainSteps: try int("num_train_timesteps", 1000), spacing: spacing,
                stepsOffset: try int("steps_offset", 0))
        } catch let e as SettingsError {
            throw SettingsError("\(path): \(e.description)")
        }
    }
}
