import Foundation
import MUSE
import Support
import Vocabulary

/// The JSON a job's trace file holds and the manifest's `evaluation` object (formats:
/// manifests/SPEC.md, "Trace files"). Probability arrays are in `emotions` order (EmoSet's).
enum TraceDocument {
    /// What the manifest's inline summary and the trace file both say about the guidance.
    static func guidance(_ t: SynthesisTrace) -> [String: JSONValue] {
        var o: [String: JSONValue] = [
            "method": .string(t.method.rawValue),
            "preview": .string(t.preview),
            "classifier": .string(t.classifier),
            "steps": .int(Int64(t.steps)),
            "first_step": .int(Int64(t.firstStep)),
            "stop_step": .int(Int64(t.stopStep)),
            "similar": .array(t.similar.map { .string($0.rawValue) }),
        ]
        if let s = t.startStep { o["start_step"] = .int(Int64(s)) }
        if let r = t.startReason { o["start_reason"] = .string(r.rawValue) }
        if let e = t.inherent { o["inherent"] = .string(e.rawValue) }
        if let i = t.inversion { o["inversion"] = .string(i.rawValue) }
        return o
    }

    static func make(_ t: SynthesisTrace) -> JSONValue {
        var o = guidance(t)
        o["emotion"] = .string(t.emotion.rawValue)
        o["prompt"] = .string(t.prompt)
        o["seed"] = .string(String(t.seed))
        o["emotions"] = .array(Emotion.allCases.map { .string($0.rawValue) })
        o["steps_trace"] = .array(t.stepTraces.map(step))
        if let p = t.inherentProbabilities { o["inherent_probabilities"] = floats(p) }
        if let p = t.startProbabilities { o["start_probabilities"] = floats(p) }
        if let p = t.finalProbabilities { o["final_probabilities"] = floats(p) }
        if let p = t.sourceProbabilities { o["source_probabilities"] = floats(p) }
        if let n = t.tokenNorm { o["token_norm"] = .double(Double(n)) }
        let drift = t.stepTraces.compactMap(\.tokenDrift)
        if !drift.isEmpty { o["token_drift"] = floats(drift) }
        if let e = t.evaluation {
            var embeddings: [String: JSONValue] = ["image": floats(e.imageEmbedding)]
            if let s = e.sourceEmbedding { embeddings["source"] = floats(s) }
            o["embeddings"] = .object(embeddings)
        }
        return .object(o)
    }

    static func step(_ s: StepTrace) -> JSONValue {
        var o: [String: JSONValue] = [
            "index": .int(Int64(s.index)),
            "timestep": .int(Int64(s.timestep)),
            "s_t": .double(Double(s.promptScore)),
            "guided": .bool(s.guided),
            "seconds": .double(s.seconds),
            "inner": .array(
                s.inner.map { .object(["loss": .double(Double($0.loss)), "probabilities": floats($0.probabilities)]) }
            ),
        ]
        if let p = s.probabilities { o["probabilities"] = floats(p) }
        if let d = s.tokenDrift { o["token_drift"] = .double(Double(d)) }
        if let n = s.nullText {
            o["null_text"] = .object([
                "iterations": .int(Int64(n.iterations)), "loss_first": .double(Double(n.lossFirst)),
                "loss_last": .double(Double(n.lossLast)),
            ])
        }
        return .object(o)
    }

    /// The manifest's `evaluation`: evaluator probabilities by name, CLIP score, CLIP-I.
    static func evaluation(_ e: ImageEvaluation, target: Emotion) -> JSONValue {
        var o: [String: JSONValue] = ["clip_score": .double(Double(e.clipScore))]
        if let c = e.clipI { o["clip_i"] = .double(Double(c)) }
        if let name = e.evaluator { o["classifier"] = .string(name) }
        if let p = e.sourceProbabilities, p.count == Emotion.allCases.count { o["source_probabilities"] = named(p) }
        if let p = e.probabilities, p.count == Emotion.allCases.count {
            o["probabilities"] = named(p)
            o["target_probability"] = .double(Double(p[target.index]))
            let top = Emotion.allCases.max { p[$0.index] < p[$1.index] }!
            o["top_emotion"] = .string(top.rawValue)
        }
        return .object(o)
    }

    static func floats(_ values: [Float]) -> JSONValue { .array(values.map { .double(Double($0)) }) }

    /// Probabilities in EmoSet order as an object by emotion name.
    static func named(_ p: [Float]) -> JSONValue {
        .object(Dictionary(uniqueKeysWithValues: Emotion.allCases.map { ($0.rawValue, .double(Double(p[$0.index]))) }))
    }
}
