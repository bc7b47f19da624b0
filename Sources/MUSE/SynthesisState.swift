import Diffusion
import Foundation
import Vocabulary

/// Everything a synthesis needs to continue after a step (docs/METHOD.md): resuming from a
/// saved copy gives the same bytes as never stopping. No RNG state: randomness is used
/// only to draw z_T in `start`.
public struct SynthesisState: Codable, Equatable, Sendable {
    /// 3: guidance windows relative to the denoised part, WHICH from the prompt alone, evaluation.
    /// 4: edit inversions (null-text state), the decoded preview.
    public static let formatVersion = 4
    public var version = SynthesisState.formatVersion
    public var job: SynthesisJob
    /// The next schedule index to run; `job.settings.steps` when finished.
    public var stepIndex: Int
    public var latentShape: [Int]
    /// z_t at `stepIndex`'s timestep (the UNet's scaled latent space).
    public var latent: [Float]
    /// The emotion token v (hidden-size floats); empty for methods without one.
    public var token: [Float]
    public var adam: AdamState
    /// e_inh and S, fixed when guidance starts.
    public var inherent: Emotion?
    public var similar: [Emotion]
    public var timing: GuidanceTiming
    public var trace: SynthesisTrace
    /// DPM-Solver++(2M)'s previous data prediction (nil for DDIM and before the first step).
    public var dpmHistory: DPMSolverHistory?
    /// Null-text inversion's pivots, reconstruction and current embedding (nil otherwise).
    public var nullText: NullTextState?

    // MARK: checkpoint form: large float arrays apart from a small JSON blob

    static let arrayNames = ["latent", "token", "adam.m", "adam.v"]

    /// The state's float arrays by name, for a codec that compresses floats (byte shuffle +
    /// zstd). Together with `checkpointMetadata()` they are the whole state.
    public func checkpointArrays() -> [(String, [Float])] {
        var arrays = [("latent", latent), ("token", token), ("adam.m", adam.m), ("adam.v", adam.v)]
        if let history = dpmHistory { arrays.append(("dpm.x0", history.x0)) }
        if let n = nullText {
            arrays += [
                ("null.pivots", n.pivots), ("null.reconstruction", n.reconstruction), ("null.embedding", n.embedding),
            ]
        }
        return arrays
    }

    /// The rest of the state as JSON (arrays emptied).
    public func checkpointMetadata() throws -> Data {
        var copy = self
        copy.latent = []
        copy.token = []
        copy.adam.m = []
        copy.adam.v = []
        copy.dpmHistory?.x0 = []
        copy.nullText?.pivots = []
        copy.nullText?.reconstruction = []
        copy.nullText?.embedding = []
        return try Self.encoder.encode(copy)
    }

    /// Rebuilds a state from `checkpointMetadata()` and `checkpointArrays()`.
    public init(metadata: Data, arrays: [String: [Float]]) throws {
        var state = try JSONDecoder().decode(SynthesisState.self, from: metadata)
        guard state.version == Self.formatVersion else {
            throw StateError("synthesis state version \(state.version), this build reads \(Self.formatVersion)")
        }
        for name in Self.arrayNames where arrays[name] == nil {
            throw StateError("checkpoint lacks the array '\(name)'")
        }
        state.latent = arrays["latent"]!
        state.token = arrays["token"]!
        state.adam.m = arrays["adam.m"]!
        state.adam.v = arrays["adam.v"]!
        if state.dpmHistory != nil {
            guard let x0 = arrays["dpm.x0"] else { throw StateError("checkpoint lacks the array 'dpm.x0'") }
            state.dpmHistory?.x0 = x0
        }
        if state.nullText != nil {
            for name in ["null.pivots", "null.reconstruction", "null.embedding"] where arrays[name] == nil {
                throw StateError("checkpoint lacks the array '\(name)'")
            }
            state.nullText?.pivots = arrays["null.pivots"]!
            state.nullText?.reconstruction = arrays["null.reconstruction"]!
            state.nullText?.embedding = arrays["null.embedding"]!
        }
        try state.validate()
        self = state
    }

    /// The whole state as one JSON document (the simple path).
    public func jsonData() throws -> Data { try Self.encoder.encode(self) }

    public init(jsonData: Data) throws {
        let state = try JSONDecoder().decode(SynthesisState.self, from: jsonData)
        guard state.version == Self.formatVersion else {
            throw StateError("synthesis state version \(state.version), this build reads \(Self.formatVersion)")
        }
        try state.validate()
        self = state
    }

    func validate() throws {
        guard latentShape.reduce(1, *) == latent.count else {
            throw StateError("latent has \(latent.count) values for shape \(latentShape)")
        }
        guard adam.m.count == token.count, adam.v.count == token.count else {
            throw StateError("Adam moments (\(adam.m.count), \(adam.v.count)) do not match the token (\(token.count))")
        }
        if let h = dpmHistory, h.shape.reduce(1, *) != h.x0.count || h.shape != latentShape {
            throw StateError("DPM-Solver history has \(h.x0.count) values for shape \(h.shape), latent \(latentShape)")
        }
        guard (0...job.settings.steps).contains(stepIndex) else {
            throw StateError("step \(stepIndex) outside 0...\(job.settings.steps)")
        }
        if let n = nullText {
            guard job.isEdit, job.settings.inversion == .nullText else {
                throw StateError("a null-text inversion state in a job that is not a null-text edit")
            }
            // Step j of the denoised part reads pivot j: a step before the part has none.
            guard stepIndex >= job.settings.firstStep else {
                throw StateError(
                    "a null-text edit at step \(stepIndex), before its first denoised step \(job.settings.firstStep)")
            }
            try n.validate(latentCount: latent.count, denoisedSteps: job.settings.steps - job.settings.firstStep)
        } else if job.isEdit && job.settings.inversion == .nullText && stepIndex < job.settings.steps {
            throw StateError("a null-text edit's state lacks its inversion (pivots, reconstruction, embedding)")
        }
    }

    init(
        job: SynthesisJob, stepIndex: Int, latentShape: [Int], latent: [Float], token: [Float],
        timing: GuidanceTiming, trace: SynthesisTrace
    ) {
        self.job = job
        self.stepIndex = stepIndex
        self.latentShape = latentShape
        self.latent = latent
        self.token = token
        self.adam = AdamState(count: token.count)
        self.inherent = nil
        self.similar = []
        self.timing = timing
        self.trace = trace
    }

    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

public struct StateError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "synthesis state: \(message)" }
    public var errorDescription: String? { description }
}
