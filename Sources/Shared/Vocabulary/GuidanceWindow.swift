import Foundation

extension JobSettings {
    /// The first schedule index a job denoises: 0 for generation; for an edit, the steps its
    /// inversion skips (the image is inverted round(steps × strength) steps, as
    /// `StableDiffusion.invert` does).
    public var firstStep: Int {
        guard let strength else { return 0 }
        return steps - min(steps, max(0, Int((Float(steps) * strength).rounded())))
    }
}

/// Where a job's method may guide, as schedule indices (0-based, denoising order). The
/// settings' fractions are of the part of the schedule the job denoises — steps
/// `firstStep..<steps` — so an edit at strength 0.3 waits for s_t over its own 30 %, not over
/// a schedule it never runs.
public struct GuidanceWindow: Equatable, Sendable {
    public let firstStep: Int
    public let steps: Int
    /// No adaptive start before this index ...
    public let minStart: Int
    /// ... and at the latest here.
    public let latestStart: Int
    /// Guidance stops (exclusive) here.
    public let stop: Int
    /// Set when the start is fixed instead of decided by s_t (muse-fixed-timing, universal guidance).
    public let fixedStart: Int?
    let method: SynthesisMethod
    let settings: JobSettings

    public init(settings: JobSettings, method: SynthesisMethod) {
        let first = settings.firstStep
        let denoised = settings.steps - first
        func index(_ fraction: Float) -> Int { first + MUSESettings.stepIndex(fraction, steps: denoised) }
        let m = settings.muse
        firstStep = first
        steps = settings.steps
        minStart = index(m.minStartFraction)
        latestStart = index(m.latestStartFraction)
        switch method {
        case .universalGuidance:
            fixedStart = index(m.universalStartFraction)
            stop = index(m.universalStopFraction)
        case .museFixedTiming:
            fixedStart = index(m.fixedStartFraction)
            stop = index(m.stopFraction)
        default:
            fixedStart = nil
            stop = index(m.stopFraction)
        }
        self.method = method
        self.settings = settings
    }

    /// Why a guiding method would end with no guided step (nil: it can guide). Methods that
    /// do not guide never have a problem.
    public var problem: String? {
        guard method.guides else { return nil }
        let part =
            settings.strength.map {
                "the \(steps - firstStep) steps an edit at strength \($0) denoises (of \(steps))"
            } ?? "the \(steps) steps"
        let stopName = method == .universalGuidance ? "universal_stop_fraction" : "stop_fraction"
        if let fixedStart {
            let startName = method == .universalGuidance ? "universal_start_fraction" : "fixed_start_fraction"
            guard fixedStart < stop else {
                return "no step would be guided: of \(part), guidance starts at step \(fixedStart + 1) "
                    + "(\(startName)) and stops before step \(stop + 1) (\(stopName)); use more steps or move them apart"
            }
            return nil
        }
        guard latestStart < stop else {
            return "guidance might never start: of \(part), it starts at the latest at step \(latestStart + 1) "
                + "(latest_start_fraction) but stops before step \(stop + 1) (stop_fraction); "
                + "use more steps, a higher strength or a lower latest_start_fraction"
        }
        return nil
    }
}

extension SynthesisJob {
    /// Settings ranges, then whether the method has any step to guide.
    public func validate() throws {
        try settings.validate()
        if let problem = GuidanceWindow(settings: settings, method: method).problem {
            throw SettingsError(problem)
        }
        // `none` edits are plain inversion + reconstruction and may go without a caption.
        if isEdit && method != .none && prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw SettingsError(
                key: "source_prompt",
                "a \(method.rawValue) edit needs a source prompt (a caption of the source image): the inversion "
                    + "is conditioned on it, and s_t, which decides when MUSE's guidance starts, compares the image with it"
            )
        }
        if method == .universalGuidance && settings.scheduler != .ddim {
            throw SettingsError(
                key: "scheduler", "universal-guidance re-noises with DDIM's coefficients between takes; use ddim")
        }
    }
}
