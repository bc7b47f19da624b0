import Foundation
import Imaging
import Support
import XCTest

@testable import CoordinatorCore

/// A synthetic output folder in the manifest format the engine will write (evaluation,
/// trace_file, source_output), with one old-style edit line among them, and the numbers a
/// report of it must show — computed by hand below, not by the code under test.
struct ReportFixture {
    let folder: URL

    /// The PNGs of Tests/Fixtures/report, and their skimage numbers.
    static let fixtures = ReportMetricsTests.fixtures

    struct Gen {
        var id: String
        var method: String
        var prompt: String
        var emotion: String
        var status = "done"
        var evalTop = ""
        var evalP = 0.0
        var guideTop = ""
        var guideP = 0.0
        var clip = 0.0
        var embedding: [Double] = []
        var error: String?
    }

    // Emo-A etc. by hand:
    //   muse:        awe g1 hit (.60) g2 hit (.50); fear g3 hit (.40) g4 miss (.20)
    //                → Emo-A 3/4, target prob .425; guide all hit → 1, guide prob .75; CLIP 27
    //                Sem-D: awe 1 − cos([1,0,0],[0,1,0]) = 1; fear 1 − cos([1,0,0],[.6,.8,0]) = .4 → .7
    //   prompt-only: g5 hit (.30), g6 miss (.10), g7 miss (.05), g8 failed
    //                → Emo-A 1/3, target prob .15; guide g5 hit, g6 miss, g7 hit → 2/3, .30; CLIP 29
    //                Sem-D: awe 1 − cos(same) = 0; fear has one image (left out) → 0
    static let generation: [Gen] = [
        Gen(
            id: "g1", method: "muse", prompt: "a lake", emotion: "awe", evalTop: "awe", evalP: 0.60,
            guideTop: "awe", guideP: 0.90, clip: 30, embedding: [1, 0, 0]),
        Gen(
            id: "g2", method: "muse", prompt: "a street", emotion: "awe", evalTop: "awe", evalP: 0.50,
            guideTop: "awe", guideP: 0.80, clip: 28, embedding: [0, 1, 0]),
        Gen(
            id: "g3", method: "muse", prompt: "a lake", emotion: "fear", evalTop: "fear", evalP: 0.40,
            guideTop: "fear", guideP: 0.70, clip: 26, embedding: [1, 0, 0]),
        Gen(
            id: "g4", method: "muse", prompt: "a street", emotion: "fear", evalTop: "sadness", evalP: 0.20,
            guideTop: "fear", guideP: 0.60, clip: 24, embedding: [0.6, 0.8, 0]),
        Gen(
            id: "g5", method: "prompt-only", prompt: "a lake", emotion: "awe", evalTop: "awe", evalP: 0.30,
            guideTop: "awe", guideP: 0.35, clip: 31, embedding: [1, 0, 0]),
        Gen(
            id: "g6", method: "prompt-only", prompt: "a street", emotion: "awe", evalTop: "contentment",
            evalP: 0.10, guideTop: "contentment", guideP: 0.15, clip: 29, embedding: [1, 0, 0]),
        Gen(
            id: "g7", method: "prompt-only", prompt: "a lake", emotion: "fear", evalTop: "anger", evalP: 0.05,
            guideTop: "fear", guideP: 0.40, clip: 27, embedding: [0, 0, 1]),
        Gen(
            id: "g8", method: "prompt-only", prompt: "a street", emotion: "fear", status: "failed",
            error: "out of memory"),
    ]

    static let emotions = ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"]

    /// Probabilities with `p` on the target and `top` the largest.
    static func probabilities(target: String, p: Double, top: String) -> [String: Double] {
        var out: [String: Double] = [:]
        if top == target {
            for e in emotions { out[e] = (1 - p) / 7 }
        } else {
            for e in emotions { out[e] = (1 - p) * 0.3 / 6 }
            out[top] = (1 - p) * 0.7
        }
        out[target] = p
        return out
    }

    /// Writes the folder; returns the fixture (folder removed by the caller).
    static func make() throws -> ReportFixture {
        let fm = FileManager.default
        let folder = fm.temporaryDirectory.appendingPathComponent("report-\(UUID().uuidString)")
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        var lines: [[String: Any]] = []
        var index = 0
        func write(_ data: Data, _ rel: String) throws {
            let url = folder.appendingPathComponent(rel)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: url)
        }
        func json(_ o: Any) throws -> Data { try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) }
        let png = try Data(contentsOf: fixtures.appendingPathComponent("a64.png"))
        for g in generation {
            var line: [String: Any] = [
                "job_id": g.id, "batch_id": "synthetic-000000000000", "status": g.status, "index": index,
                "kind": "generate", "prompt": g.prompt, "emotion": g.emotion, "method": g.method, "seed": 7,
                "sheet": ["row": 0, "column": 0], "attempts": 1,
            ]
            index += 1
            if g.status == "failed" {
                line["error"] = g.error
                lines.append(line)
                continue
            }
            let out = "\(g.emotion)/\(g.id).png"
            try write(png, out)
            line["output"] = out
            line["probabilities"] = probabilities(target: g.emotion, p: g.guideP, top: g.guideTop)
            line["target_probability"] = g.guideP
            line["top_emotion"] = g.guideTop
            line["evaluation"] = [
                "classifier": "evaluator: CLIP ViT-B/32 + linear probe (synthetic)",
                "probabilities": probabilities(target: g.emotion, p: g.evalP, top: g.evalTop),
                "target_probability": g.evalP, "top_emotion": g.evalTop, "clip_score": g.clip,
            ]
            line["trace"] = ["classifier": "guide: tiny-clip-vision + head", "s_t": [0.1, 0.2]]
            let traceRel = "traces/\(g.emotion)/\(g.id).json"
            line["trace_file"] = traceRel
            var trace: [String: Any] = [
                "job_id": g.id, "method": g.method, "emotion": g.emotion, "prompt": g.prompt, "steps": 10,
                "first_step": 0, "stop_step": 8, "similar": ["amusement", "contentment"], "emotions": emotions,
                "final_probabilities": emotions.map {
                    probabilities(target: g.emotion, p: g.guideP, top: g.guideTop)[$0]!
                },
                "embeddings": ["image": g.embedding],
            ]
            if g.id == "g1" { trace.merge(fullTrace()) { _, b in b } }
            try write(try json(trace), traceRel)
            lines.append(line)
        }
        // Editing, method muse: e1 and e2 in the new format (e2's edit is identical to its
        // source: infinite PSNR); e3 an old-style line (no evaluation, no source_output, no
        // trace file); e4 failed. Emo-S: e1 by the evaluator .7 − .2 = .5 (e2 has only the
        // guide's source probabilities: .6 − .4; e3 none) → the group's Emo-S .5, from e1.
        let sources = ["a64.png", "c48x40.png"]
        var sourceSHA: [String: String] = [:]
        for s in sources {
            let data = try Data(contentsOf: fixtures.appendingPathComponent(s))
            let sha = Hashing.sha256Hex(data)
            sourceSHA[s] = sha
            try write(data, "sources/\(sha.prefix(16)).png")
        }
        let edits:
            [(
                id: String, emotion: String, source: String, edit: String?, eval: [String: Any]?,
                guide: (String, Double)
            )] =
                [
                    (
                        "e1", "awe", "a64.png", "b64.png",
                        [
                            "top_emotion": "awe", "target_probability": 0.7, "clip_score": 30.0, "clip_i": 0.9,
                            "source_probabilities": probabilities(target: "awe", p: 0.2, top: "contentment"),
                        ],
                        ("awe", 0.8)
                    ),
                    (
                        "e2", "fear", "a64.png", "a64.png",
                        [
                            "probabilities": probabilities(target: "fear", p: 0.2, top: "sadness"), "clip_score": 28.0,
                            "clip_i": 1.0,
                        ], ("fear", 0.6)
                    ),
                    ("e3", "awe", "c48x40.png", "d48x40.png", nil, ("awe", 0.75)),
                    ("e4", "fear", "c48x40.png", nil, nil, ("", 0)),
                ]
        for e in edits {
            let sha = sourceSHA[e.source]!
            var line: [String: Any] = [
                "job_id": e.id, "batch_id": "synthetic-000000000000", "status": e.edit == nil ? "failed" : "done",
                "index": index, "kind": "edit", "prompt": "a photo", "emotion": e.emotion, "method": "muse", "seed": 0,
                "image": ["path": "images/\(e.source)", "sha256": sha],
            ]
            index += 1
            guard let edit = e.edit else {
                line["error"] = "worker lost"
                lines.append(line)
                continue
            }
            let out = "\(e.emotion)/edit-\(e.id).png"
            try write(try Data(contentsOf: fixtures.appendingPathComponent(edit)), out)
            line["output"] = out
            line["probabilities"] = probabilities(target: e.emotion, p: e.guide.1, top: e.guide.0)
            line["target_probability"] = e.guide.1
            line["top_emotion"] = e.guide.0
            if let ev = e.eval {
                // The guide's probabilities on the source (Emo-S's fallback): p_source(target) .3 for e1, .4 for e2.
                line["source_probabilities"] = probabilities(
                    target: e.emotion, p: e.id == "e1" ? 0.3 : 0.4, top: "contentment")
                line["evaluation"] = ev.merging(["classifier": "evaluator: CLIP ViT-B/32 + linear probe (synthetic)"]) {
                    a, _ in a
                }
                line["source_output"] = "sources/\(sha.prefix(16)).png"
                let traceRel = "traces/\(e.emotion)/\(e.id).json"
                line["trace_file"] = traceRel
                try write(
                    try json([
                        "job_id": e.id, "method": "muse", "emotion": e.emotion, "steps": 10, "first_step": 4,
                        "start_step": 4, "start_reason": "latest", "stop_step": 8,
                        "embeddings": ["image": [1, 0, 0], "source": [0.9, 0.435889894354067, 0]],
                    ]), traceRel)
            }
            lines.append(line)
        }
        let manifest = try lines.map { String(decoding: try json($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
        try write(Data(manifest.utf8), "manifest.jsonl")
        return ReportFixture(folder: folder)
    }

    /// g1's trace: 10 steps, guided 2..<8 with 2 inner iterations each, s_t settling at step 2.
    static func fullTrace() -> [String: Any] {
        var steps: [[String: Any]] = []
        for i in 0..<10 {
            let guided = (2..<8).contains(i)
            let inner: [[String: Any]] =
                guided
                ? (0..<2).map { k in
                    let p = 0.2 + 0.08 * Double(i - 2) + 0.03 * Double(k)
                    return ["loss": 1.5 - p, "probabilities": emotions.map { $0 == "awe" ? p : (1 - p) / 7 }]
                } : []
            steps.append([
                "index": i, "timestep": 999 - 100 * i, "s_t": 0.18 + 0.1 * (1 - exp(-Double(i))), "guided": guided,
                "inner": inner, "seconds": 0.5,
            ])
        }
        return [
            "start_step": 2, "start_reason": "settled", "stop_step": 8, "inherent": "contentment",
            "inherent_probabilities": emotions.map { $0 == "contentment" ? 0.3 : 0.1 }, "steps_trace": steps,
            "token_drift": (0..<10).map { Double($0) * 0.01 },
        ]
    }

    /// skimage's numbers for a fixture pair.
    static func skimage(_ a: String, _ b: String) throws -> (psnr: Double?, ssim: Double) {
        let pairs = try XCTUnwrap(try ReportMetricsTests.expected()["pairs"] as? [[String: Any]])
        let p = try XCTUnwrap(pairs.first { $0["a"] as? String == a && $0["b"] as? String == b })
        return (p["psnr"] as? Double, try XCTUnwrap(p["ssim"] as? Double))
    }
}
