import Checkpoints
import Diffusion
import Foundation
import Imaging
import Jobs
import MUSE
import Support
import Tensor
import Vocabulary
import WorkerCore

/// The real engine behind the pipeline: MUSE's step machine (`SynthesisEngine`), its
/// state saved as named float arrays + JSON metadata, models loaded once per worker and
/// checked against the fingerprints the job was submitted with.
public final class MUSEPipelineEngine: PipelineEngine {
    public let name = "muse"
    public init() {}
    private var loaded:
        (locations: ModelLocations, fingerprints: ModelFingerprints, dtype: WeightsDType, engine: SynthesisEngine)?
    /// The model set whose load failed for good here, and why: later jobs naming it fail at
    /// once, without hashing and reading the weights again.
    private var unloadable: (locations: ModelLocations, fingerprints: ModelFingerprints, message: String)?

    public func prepare(_ job: PipelineJob, log: Logger) throws -> Double {
        let dtype = job.content.synthesis.settings.weightsDType
        if let loaded, loaded.locations == job.locations, loaded.fingerprints == job.content.models,
            loaded.dtype == dtype
        {
            return 0
        }
        if let unloadable, unloadable.locations == job.locations, unloadable.fingerprints == job.content.models {
            throw JobFailure(unloadable.message, permanent: true)
        }
        let began = Date()
        let l = job.locations
        func resolve(_ location: String, _ what: String) throws -> String {
            do { return try ModelLocation.resolve(location) } catch {
                throw JobFailure("\(what) \(location): \(error)")
            }
        }
        let model = try resolve(l.model, "model")
        let tower = try resolve(l.tower, "classifier tower")
        let head = try l.head.map { try resolve($0, "classifier head") }
        let text = try resolve(l.text, "CLIP text model")
        let promptTower = try l.promptTower.map { try resolve($0, "prompt tower") }
        let tiny = try l.tinyDecoder.map { try resolve($0, "tiny decoder") }
        let evalTower = try l.evaluatorTower.map { try resolve($0, "evaluator tower") }
        let evalHead = try l.evaluatorHead.map { try resolve($0, "evaluator head") }
        let evalText = try l.evaluatorText.map { try resolve($0, "evaluator text model") }
        guard (l.evaluationCLIPTower == nil) == (l.evaluationCLIPText == nil) else {
            throw JobFailure(
                "the job names half an evaluation CLIP pair (evaluation_clip_tower and _text go together)",
                permanent: true)
        }
        let clipTower = try l.evaluationCLIPTower.map { try resolve($0, "evaluation CLIP tower") }
        let clipText = try l.evaluationCLIPText.map { try resolve($0, "evaluation CLIP text model") }
        let found = ModelFingerprints(
            model: try fingerprint(model), tower: try fingerprint(tower),
            head: try head.map(fingerprint), text: try fingerprint(text),
            promptTower: try promptTower.map(fingerprint), tinyDecoder: try tiny.map(fingerprint),
            evaluatorTower: try evalTower.map(fingerprint), evaluatorHead: try evalHead.map(fingerprint),
            evaluatorText: try evalText.map(fingerprint), evaluationCLIPTower: try clipTower.map(fingerprint),
            evaluationCLIPText: try clipText.map(fingerprint))
        let expected = job.content.models
        for (what, path, have, want) in [
            ("model", model, found.model, expected.model), ("classifier tower", tower, found.tower, expected.tower),
            ("CLIP text model", text, found.text, expected.text),
            ("classifier head", head ?? "", found.head ?? "", expected.head ?? ""),
            ("prompt tower", promptTower ?? "", found.promptTower ?? "", expected.promptTower ?? ""),
            ("tiny decoder", tiny ?? "", found.tinyDecoder ?? "", expected.tinyDecoder ?? ""),
            ("evaluator tower", evalTower ?? "", found.evaluatorTower ?? "", expected.evaluatorTower ?? ""),
            ("evaluator head", evalHead ?? "", found.evaluatorHead ?? "", expected.evaluatorHead ?? ""),
            ("evaluator text model", evalText ?? "", found.evaluatorText ?? "", expected.evaluatorText ?? ""),
            (
                "evaluation CLIP tower", clipTower ?? "", found.evaluationCLIPTower ?? "",
                expected.evaluationCLIPTower ?? ""
            ),
            (
                "evaluation CLIP text model", clipText ?? "", found.evaluationCLIPText ?? "",
                expected.evaluationCLIPText ?? ""
            ),
        ] where have != want {
            throw JobFailure(
                "the \(what) at \(path) has fingerprint \(have), but the job was submitted with \(want): this worker has a different model there"
            )
        }
        if loaded == nil {
            log("BLAS: \(BLAS.ensureConfigured())")
            if let env = ProcessInfo.processInfo.environment["MUSE_WEIGHTS_DTYPE"] {
                log("MUSE_WEIGHTS_DTYPE=\(env) is ignored here: each batch names its engine.weights_dtype")
            }
        }
        loaded = nil  // free the previous models first
        // Layers read it as they are built: the job's setting, never this machine's environment.
        WeightPrecision.current = dtype == .bf16 ? .bf16 : .f32
        do {
            let evaluator = evalTower.map { EvaluatorFiles(tower: $0, head: evalHead, text: evalText) }
            let engine = try SynthesisEngine.load(
                model: model, tower: tower, head: head, text: text, promptTower: promptTower, tinyDecoder: tiny,
                evaluator: evaluator, evaluationCLIP: clipTower.flatMap { t in clipText.map { (tower: t, text: $0) } })
            loaded = (l, found, dtype, engine)
        } catch {
            // The fingerprints matched, so these are the bytes the job was submitted with: a
            // loader error is in them and recurs on every worker, attempt after attempt. Only
            // a path that vanished during the load (an unmounted share) is worth a retry.
            let message = "cannot load the models (\(model)): \(error)"
            let optional = [head, promptTower, tiny, evalTower, evalHead, evalText, clipTower, clipText]
            let paths = [model, tower, text] + optional.compactMap { $0 }
            guard paths.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else { throw JobFailure(message) }
            unloadable = (l, job.content.models, message)
            throw JobFailure(message, permanent: true)
        }
        let seconds = Date().timeIntervalSince(began)
        log(
            String(
                format: "loaded %@ (%@ weights) with classifier %@ in %.1f s", model, dtype.rawValue,
                loaded!.engine.classifier.headDescription, seconds))
        return seconds
    }

    private func fingerprint(_ path: String) throws -> String {
        do { return try ModelFingerprint.compute(path: path) } catch {
            throw JobFailure("cannot read \(path): \(error)")
        }
    }

    private func engine() throws -> SynthesisEngine {
        guard let e = loaded?.engine else { throw JobFailure("internal error: models not loaded") }
        return e
    }

    /// The engine's job description; bad values are permanent failures (a retry cannot fix them).
    static func synthesisJob(_ job: PipelineJob) throws -> SynthesisJob {
        let synthesis = job.content.synthesis
        do { try synthesis.validate() } catch {
            throw JobFailure("invalid job settings: \(error)", permanent: true)
        }
        guard synthesis.isEdit == (job.content.kind == .edit) else {
            throw JobFailure(
                "invalid job: kind \(job.content.kind.rawValue) with strength \(synthesis.settings.strength.map { "\($0)" } ?? "none")",
                permanent: true)
        }
        return synthesis
    }

    public func begin(_ job: PipelineJob, image: RGBImage?) throws -> EngineSession {
        let engine = try engine()
        let sjob = try Self.synthesisJob(job)
        var input: Tensor?
        if sjob.isEdit {
            guard let image else { throw JobFailure("edit job without a source image") }
            let rgb = image.rgb()
            input = Tensor.fromRGBBytes(rgb.pixels, width: rgb.width, height: rgb.height)
        }
        do {
            return MUSESession(engine: engine, state: try engine.start(sjob, image: input))
        } catch {
            throw JobFailure("\(error)", permanent: error is SynthesisError || error is SettingsError)
        }
    }

    public func resume(_ job: PipelineJob, from payload: CheckpointPayload) throws -> EngineSession {
        let engine = try engine()
        let sjob = try Self.synthesisJob(job)
        var arrays: [String: [Float]] = [:]
        for a in payload.arrays { arrays[a.name] = a.values }
        let state: SynthesisState
        do { state = try SynthesisState(metadata: payload.metadata, arrays: arrays) } catch {
            throw CheckpointMismatch(message: "not a MUSE state: \(error)")
        }
        guard state.job == sjob else {
            throw CheckpointMismatch(message: "the saved state is for different job settings")
        }
        do { try engine.checkResumable(state) } catch {
            throw CheckpointMismatch(message: "\(error)")
        }
        return MUSESession(engine: engine, state: state)
    }
}

final class MUSESession: EngineSession {
    let engine: SynthesisEngine
    var state: SynthesisState

    init(engine: SynthesisEngine, state: SynthesisState) {
        self.engine = engine
        self.state = state
    }

    var step: Int { state.stepIndex }
    var totalSteps: Int { state.job.settings.steps }
    var isFinished: Bool { engine.isFinished(state) }

    /// A synthesis that leaves the finite range fails for good: the same settings would
    /// do the same on any worker.
    func advance() throws {
        do { state = try engine.advance(state) } catch let e as SynthesisError {
            throw JobFailure("\(e)", permanent: true)
        }
    }

    var lastInnerIterationSeconds: [Double] {
        state.trace.stepTraces.last?.inner.compactMap(\.seconds) ?? []
    }

    var lastStepSummary: String? {
        guard let s = state.trace.stepTraces.last else { return nil }
        var line = String(format: "step %d/%d s_t=%.4f", s.index + 1, state.job.settings.steps, s.promptScore)
        if s.guided, let last = s.inner.last, last.probabilities.count > state.job.emotion.index {
            line += String(
                format: " guided: loss %.3f p(%@) %.3f", last.loss, state.job.emotion.rawValue,
                last.probabilities[state.job.emotion.index])
        }
        return line + String(format: " (%.2f s)", s.seconds)
    }

    func checkpoint() throws -> CheckpointPayload {
        CheckpointPayload(
            metadata: try state.checkpointMetadata(),
            arrays: state.checkpointArrays().map { CheckpointPayload.FloatArray(name: $0.0, values: $0.1) })
    }

    func finish() throws -> EngineOutput {
        let result = engine.finish(state)
        var probabilities: [String: Double] = [:]
        for e in Emotion.allCases where e.index < result.probabilities.count {
            probabilities[e.rawValue] = Double(result.probabilities[e.index])
        }
        var phases: [String: Double]?
        if case .object(let o)? = try? JSONValue.from(result.trace.timings) {
            phases = o.compactMapValues(\.doubleValue).filter { $0.key != "total" }
        }
        return EngineOutput(
            rgb: result.rgb, width: result.width, height: result.height, probabilities: probabilities,
            engineSeconds: result.trace.timings.total, phases: phases, trace: Self.summary(result.trace),
            evaluation: result.trace.evaluation.map { TraceDocument.evaluation($0, target: state.job.emotion) },
            traceDocument: TraceDocument.make(result.trace))
    }

    /// The trace without per-iteration detail: what a manifest reader wants per job.
    static func summary(_ t: SynthesisTrace) -> JSONValue {
        var o = TraceDocument.guidance(t)
        o["guided_steps"] = .int(Int64(t.stepTraces.filter(\.guided).count))
        let losses = t.stepTraces.flatMap(\.inner).map(\.loss)
        if let first = losses.first, let last = losses.last {
            o["loss_first"] = .double(Double(first))
            o["loss_last"] = .double(Double(last))
        }
        if let r = t.previewCostRatio { o["preview_cost_ratio"] = .double(r) }
        return .object(o)
    }
}
