import Foundation
import Vocabulary

/// WHEN: decides per step whether guidance is on, from the CLIP similarity s_t of the
/// step's x̂0 preview with the prompt. Guidance starts once s_t has settled — its change
/// stayed under δ on m consecutive steps — but not before the minimum step; at the latest
/// step it starts regardless; it stops (exclusive) at the stop step. Part of the saved
/// state: the settle counter and the previous s_t carry across a resume.
public struct GuidanceTiming: Codable, Equatable, Sendable {
    public enum StartReason: String, Codable, Sendable {
        /// s_t settled (the rule).
        case settled
        /// Reached the latest start step without settling.
        case latest
        /// muse-fixed-timing or universal guidance: the configured step.
        case fixed
    }

    /// Schedule indices (0-based, in denoising order).
    public let minStart: Int
    public let latestStart: Int
    public let stop: Int
    /// The fixed start step when the rule is off (muse-fixed-timing), else nil.
    public let fixedStart: Int?
    public let delta: Float
    public let settleSteps: Int

    public private(set) var previous: Float?
    public private(set) var settleCount = 0
    public private(set) var startStep: Int?
    public private(set) var startReason: StartReason?

    /// The window's indices are relative to the part of the schedule the job denoises
    /// (`GuidanceWindow`).
    public init(job: SynthesisJob) {
        let window = GuidanceWindow(settings: job.settings, method: job.method)
        minStart = window.minStart
        latestStart = window.latestStart
        stop = window.stop
        fixedStart = window.fixedStart
        delta = job.settings.muse.settleDelta
        settleSteps = job.settings.muse.settleSteps
    }

    /// Feed step `index`'s s_t; returns whether this step is guided.
    public mutating func observe(step index: Int, promptScore: Float) -> Bool {
        if let previous, abs(promptScore - previous) < delta { settleCount += 1 } else { settleCount = 0 }
        previous = promptScore
        if startStep == nil, index < stop {
            if let fixedStart {
                if index >= fixedStart { start(index, .fixed) }
            } else if settleCount >= settleSteps && index >= minStart {
                start(index, .settled)
            } else if index >= latestStart {
                start(index, .latest)
            }
        }
        return isGuided(index)
    }

    public func isGuided(_ index: Int) -> Bool {
        guard let startStep else { return false }
        return index >= startStep && index < stop
    }

    /// Whether `index` is the step where guidance began (WHICH is fixed there).
    public func startsAt(_ index: Int) -> Bool { startStep == index }

    private mutating func start(_ index: Int, _ reason: StartReason) {
        startStep = index
        startReason = reason
    }
}
