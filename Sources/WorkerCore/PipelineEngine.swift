import Checkpoints
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

/// The engine as the worker loop sees it: a job becomes a session that advances one step
/// at a time, can be saved as a checkpoint payload at any step boundary and resumed from
/// one, and finishes into an image. `MUSEPipelineEngine` is the real one;
/// `FakePipelineEngine` is a stand-in for queue benchmarks and tests.
public protocol PipelineEngine: AnyObject {
    var name: String { get }
    /// Gets the job's models ready (cached between jobs); returns seconds spent loading.
    func prepare(_ job: PipelineJob, log: Logger) throws -> Double
    func begin(_ job: PipelineJob, image: RGBImage?) throws -> EngineSession
    /// Throws `CheckpointMismatch` when the saved state belongs to other settings.
    func resume(_ job: PipelineJob, from payload: CheckpointPayload) throws -> EngineSession
}

public protocol EngineSession: AnyObject {
    /// The next schedule index to run (= steps done, counting an edit's skipped steps).
    var step: Int { get }
    var totalSteps: Int { get }
    var isFinished: Bool { get }
    func advance() throws
    func checkpoint() throws -> CheckpointPayload
    func finish() throws -> EngineOutput
    /// One log line about the last step (nil: nothing worth saying).
    var lastStepSummary: String? { get }
    /// Wall seconds of each inner iteration of the last step (empty: an unguided step).
    var lastInnerIterationSeconds: [Double] { get }
}

public struct EngineOutput {
    public var rgb: [UInt8]
    public var width: Int
    public var height: Int
    public var probabilities: [String: Double]?
    /// Engine compute time over all sessions of the job (it travels in the state).
    public var engineSeconds: Double
    public var phases: [String: Double]?
    public var trace: JSONValue?
    /// The finished image scored apart from the guidance (manifest `evaluation`).
    public var evaluation: JSONValue?
    /// The whole trace (per-step s_t, per-iteration probabilities, embeddings): the collector
    /// writes it to the trace file a manifest line points to.
    public var traceDocument: JSONValue?

    public init(
        rgb: [UInt8], width: Int, height: Int, probabilities: [String: Double]?, engineSeconds: Double,
        phases: [String: Double]?, trace: JSONValue?, evaluation: JSONValue? = nil, traceDocument: JSONValue? = nil
    ) {
        self.rgb = rgb
        self.width = width
        self.height = height
        self.probabilities = probabilities
        self.engineSeconds = engineSeconds
        self.phases = phases
        self.trace = trace
        self.evaluation = evaluation
        self.traceDocument = traceDocument
    }
}

/// A job-level error. `permanent`: retrying cannot help (bad settings), dead-letter now.
public struct JobFailure: Error, CustomStringConvertible {
    public let message: String
    public let permanent: Bool
    public init(_ message: String, permanent: Bool = false) {
        self.message = message
        self.permanent = permanent
    }
    public var description: String { message }
}

public struct CheckpointMismatch: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// A deterministic no-op engine: a tiny 3×8×8 "latent" evolves per step; the image is
/// that latent as pixels. `stepDelay` simulates work.
public final class FakePipelineEngine: PipelineEngine {
    public let name = "fake"
    public let stepDelay: TimeInterval
    /// Fault injection for supervisor tests: trap (as a Swift runtime error does) when a job
    /// reaches this step.
    public let trapAtStep: Int?
    public init(stepDelay: TimeInterval, trapAtStep: Int? = nil) {
        self.stepDelay = stepDelay
        self.trapAtStep = trapAtStep
    }

    public func prepare(_ job: PipelineJob, log: Logger) throws -> Double { 0 }

    public func begin(_ job: PipelineJob, image: RGBImage?) throws -> EngineSession {
        var state = UInt64(truncatingIfNeeded: job.content.seed) &+ 0x9E37_79B9_7F4A_7C15
        var values = [Float](repeating: 0, count: 3 * 8 * 8)
        for i in values.indices {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            values[i] = Float(state >> 40) / Float(1 << 24)
        }
        if let image {
            let small = image.rgb().resized(width: 8, height: 8)
            for i in 0..<64 { for c in 0..<3 { values[c * 64 + i] = Float(small.pixels[i * 3 + c]) / 255 } }
        }
        return FakeSession(
            jobID: job.id, step: 0, total: job.content.settings.steps, values: values, delay: stepDelay, seconds: 0,
            trapAtStep: trapAtStep)
    }

    public func resume(_ job: PipelineJob, from payload: CheckpointPayload) throws -> EngineSession {
        struct Meta: Codable {
            var engine: String
            var job: String
            var step: Int
            var total: Int
            var seconds: Double
        }
        let meta: Meta
        do { meta = try JSONDecoder().decode(Meta.self, from: payload.metadata) } catch {
            throw CheckpointMismatch(message: "not a fake-engine checkpoint")
        }
        guard meta.engine == name, meta.job == job.id, meta.total == job.content.settings.steps,
            let values = payload.array("values"), values.count == 192
        else {
            throw CheckpointMismatch(message: "checkpoint does not match this job")
        }
        return FakeSession(
            jobID: job.id, step: meta.step, total: meta.total, values: values, delay: stepDelay, seconds: meta.seconds,
            trapAtStep: trapAtStep)
    }

    final class FakeSession: EngineSession {
        let jobID: String
        var step: Int
        let totalSteps: Int
        var values: [Float]
        let delay: TimeInterval
        var seconds: Double
        let trapAtStep: Int?
        var lastStepSummary: String? { nil }
        /// Stands in for guidance: every step counts as one inner iteration of its whole time.
        private(set) var lastInnerIterationSeconds: [Double] = []

        init(
            jobID: String, step: Int, total: Int, values: [Float], delay: TimeInterval, seconds: Double,
            trapAtStep: Int?
        ) {
            self.trapAtStep = trapAtStep
            self.jobID = jobID
            self.step = step
            totalSteps = total
            self.values = values
            self.delay = delay
            self.seconds = seconds
        }

        var isFinished: Bool { step >= totalSteps }

        func advance() throws {
            if step == trapAtStep { fatalError("fake engine: trap at step \(step) (--fake-trap-at-step)") }
            let t0 = Date()
            if delay > 0 { Thread.sleep(forTimeInterval: delay) }
            for i in values.indices {
                let v = values[i] * 1.618 + 0.1 * Float(step + 1)
                values[i] = v - v.rounded(.down)
            }
            step += 1
            let elapsed = Date().timeIntervalSince(t0)
            seconds += elapsed
            lastInnerIterationSeconds = [elapsed]
        }

        func checkpoint() throws -> CheckpointPayload {
            let meta =
                #"{"engine":"fake","job":"\#(jobID)","step":\#(step),"total":\#(totalSteps),"seconds":\#(seconds)}"#
            return CheckpointPayload(metadata: Data(meta.utf8), arrays: [.init(name: "values", values: values)])
        }

        func finish() throws -> EngineOutput {
            var rgb = [UInt8](repeating: 0, count: 64 * 3)
            for i in 0..<64 { for c in 0..<3 { rgb[i * 3 + c] = UInt8(min(255, max(0, values[c * 64 + i] * 255))) } }
            return EngineOutput(
                rgb: rgb, width: 8, height: 8, probabilities: nil, engineSeconds: seconds, phases: nil, trace: nil)
        }
    }
}
