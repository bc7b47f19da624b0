import Foundation
import TestSupport
import XCTest

@testable import Jobs

/// MUSE on the trained miniature world (models/miniworld): the evaluator — a classifier the
/// token is never optimised against — has to see the effect. The margin is set from
/// measurement (`testMeasured`, MUSE_MINIWORLD_MEASURE=1) well below the measured gaps; see
/// docs/MINIWORLD.md for what the world does and does not show yet.
final class MiniworldTests: XCTestCase {
    static let models = """
        model: bundled:miniworld/sd
        classifier:
          tower: bundled:miniworld/guide-vision
          head: bundled:miniworld/emotion-head.safetensors
          text: bundled:miniworld/clip-text
          prompt_tower: bundled:miniworld/clip-vision
        evaluation:
          tower: bundled:miniworld/evaluator-vision
          head: bundled:miniworld/evaluator-head.safetensors
        """
    static let prompts = [
        "a brown house in the middle, with two trees, by the sea, among mountains, cloudy, in the morning, spring",
        "a yellow boat on the right, and a house, a cat, by a lake, below hills, clear sky, winter, at dawn",
    ]

    /// One finished job as the manifest and the report give it.
    struct Line {
        var method: String
        var kind: String
        var prompt: String
        var emotion: String
        var seed: UInt64
        var evaluator: [String: Double]
        /// The guide classifier's probabilities on the final image.
        var guide: [String: Double]
        /// The guide's probabilities on x̂0 at the last inner iteration of the last guided step:
        /// what the loss terms act on (the trace file's steps).
        var lastGuided: [String: Double]
        var evaluatorTop: String?
        var inherent: String?
        var similar: [String]
        var startReason: String?
        var psnr: Double?
        var clipI: Double?
        var key: String { "\(kind)|\(prompt)|\(seed)|\(emotion)" }
    }

    /// The demo's MUSE settings (manifests/demo.yaml; docs/MINIWORLD.md says why).
    static let museSettings = "{learning_rate: 0.01, stop_fraction: 1.0}"
    static var muse: String { ProcessInfo.processInfo.environment["MUSE_MINIWORLD_MUSE"] ?? museSettings }
    /// The engine's defaults (overridable for measurement).
    static var defaults: String { ProcessInfo.processInfo.environment["MUSE_MINIWORLD_MUSE_DEFAULTS"] ?? "{}" }

    /// Finished generation batches by their `engine` block (each runs once per test process).
    static var generations: [String: [Line]] = [:]
    static var editLines: [Line]?

    func run(_ body: String, name: String) throws -> [Line] {
        let dir = makeTempDir("miniworld")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        try copyDemoImages(to: dir)
        let spec = try writeSpec(Self.models + "\n" + body, in: dir, name: "\(name).yaml")
        let out = dir.appendingPathComponent("out")
        let r = try runTool(
            "muse-coordinator", ["run", spec, "--local-workers", "2", "--output", out.path], dir: dir, timeout: 900)
        XCTAssertEqual(r.code, 0, r.stderr)
        let report = try runTool("muse-coordinator", ["report", out.path], dir: dir, timeout: 120)
        XCTAssertEqual(report.code, 0, report.stderr)
        let json = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("report.json")))
                as? [String: Any])
        var fromReport: [String: [String: Any]] = [:]
        for job in json["jobs"] as? [[String: Any]] ?? [] {
            if let id = job["job_id"] as? String { fromReport[id] = job }
        }
        var lines: [Line] = []
        let text = try String(contentsOf: out.appendingPathComponent("manifest.jsonl"), encoding: .utf8)
        for raw in text.split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: Any])
            XCTAssertEqual(o["status"] as? String, "done", "\(o["error"] ?? "")")
            let evaluation = o["evaluation"] as? [String: Any]
            let trace = o["trace"] as? [String: Any]
            let report = fromReport[o["job_id"] as? String ?? ""] ?? [:]
            lines.append(
                Line(
                    method: o["method"] as? String ?? "", kind: o["kind"] as? String ?? "",
                    prompt: o["prompt"] as? String ?? "", emotion: o["emotion"] as? String ?? "",
                    seed: (o["seed"] as? NSNumber)?.uint64Value ?? 0,
                    evaluator: evaluation?["probabilities"] as? [String: Double] ?? [:],
                    guide: o["probabilities"] as? [String: Double] ?? [:],
                    lastGuided: try Self.lastGuidedProbabilities(out, o["trace_file"] as? String),
                    evaluatorTop: evaluation?["top_emotion"] as? String, inherent: trace?["inherent"] as? String,
                    similar: trace?["similar"] as? [String] ?? [], startReason: trace?["start_reason"] as? String,
                    psnr: report["psnr"] as? Double, clipI: report["clip_i"] as? Double))
        }
        return lines
    }

    static func lastGuidedProbabilities(_ out: URL, _ file: String?) throws -> [String: Double] {
        guard let file else { return [:] }
        let trace = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(file)))
        guard let t = trace as? [String: Any], let names = t["emotions"] as? [String],
            let steps = t["steps_trace"] as? [[String: Any]],
            let last = steps.last(where: { ($0["guided"] as? Bool) == true }),
            let inner = (last["inner"] as? [[String: Any]])?.last,
            let p = inner["probabilities"] as? [Double]
        else { return [:] }
        return Dictionary(uniqueKeysWithValues: zip(names, p))
    }

    /// The two held-out prompts × 8 emotions under `methods`, with `muse` settings, for each
    /// of `seeds` (MUSE_MINIWORLD_SEED replaces them with one).
    func generation(_ methods: String, muse: String, seeds: String = "1") throws -> [Line] {
        let seeds = ProcessInfo.processInfo.environment["MUSE_MINIWORLD_SEED"] ?? seeds
        let engine = "  methods: [\(methods)]\n  checkpoint_every: 0\n  muse: \(muse)"
        if let g = Self.generations[engine + seeds] { return g }
        let prompts = Self.prompts.map { "    - \($0)" }.joined(separator: "\n")
        let g = try run(
            """
            engine:
            \(engine)
            generation:
              prompts:
            \(prompts)
              emotions: all
              seeds: [\(seeds)]
            """, name: "generation")
        Self.generations[engine + seeds] = g
        return g
    }

    /// The demo's settings: the token against its unoptimised self and prompt-only.
    func tokenBatch() throws -> [Line] { try generation("muse, prompt-only, muse-no-token-opt", muse: Self.muse) }

    /// The engine's defaults (K = 3, lr 0.002, guidance stops at 80 %): MUSE and its two loss
    /// ablations, seeds 1–3 (48 jobs each: 16 left the terms' direction to a coin's spread). At
    /// the demo's lr 0.01 the token travels far enough that where it ends, not the extra terms,
    /// decides p(e_inh).
    func lossTermBatch() throws -> [Line] {
        try generation("muse, muse-no-inh, muse-no-sim", muse: Self.defaults, seeds: "1, 2, 3")
    }

    /// Optimising the token raises the evaluator's p(target) over the same token unoptimised
    /// (demo settings). Measured on 16 held-out jobs with the robust guide (run 6, 2 December):
    /// +0.160 / +0.079 / +0.202 with seeds 1 / 2 / 3; the margin is 0.05. Above prompt-only it
    /// is on seed 3 only (muse 0.276 / 0.204 / 0.327 against 0.303 / 0.259 / 0.253): docs/MINIWORLD.md.
    func testTokenOptimisationRaisesTheEvaluatorsTarget() throws {
        let by = Dictionary(grouping: try tokenBatch(), by: \.method)
        let target = { (m: String) in Self.mean((by[m] ?? []).map { $0.evaluator[$0.emotion] ?? 0 }) }
        XCTAssertEqual(by["muse"]?.count, 16)
        XCTAssertEqual(by["muse-no-token-opt"]?.count, 16)
        XCTAssertGreaterThan(
            target("muse"), target("muse-no-token-opt") + 0.05,
            "evaluator p(target): muse \(target("muse")), no token optimisation \(target("muse-no-token-opt"))")
        XCTAssertGreaterThanOrEqual(Self.emoA(by["muse"] ?? []), Self.emoA(by["muse-no-token-opt"] ?? []))
    }

    /// L_inh and L_sim push down what they name: the guide classifier's probabilities on the
    /// final image, p(e_inh) against muse-no-inh and Σ p(S) against muse-no-sim, on the same
    /// jobs (e_inh is never the target), engine defaults, 48 jobs (seeds 1–3). Measured with the
    /// robust guide (run 6, 2 December), seeds 1 / 2 / 3: p(e_inh) 0.312 / 0.320 / 0.297 against
    /// 0.349 / 0.398 / 0.301, lower on 13 / 10 / 10 of 16 (33 of 48); Σ p(S) 0.084 / 0.150 /
    /// 0.161 against 0.090 / 0.159 / 0.165, lower on 11 / 13 / 14 (38 of 48). Margins: p(e_inh)
    /// lower by 0.02 on average (measured 0.040) and on ≥ 29 of 48 jobs (a coin: p ≈ 0.09);
    /// Σ p(S) — already small without L_sim — lower on average (0.006) and on ≥ 32 of 48 (a
    /// coin: p ≈ 0.015).
    func testInherentAndSimilarTermsLowerTheirEmotions() throws {
        try XCTSkipIf(
            ProcessInfo.processInfo.environment["MUSE_MINIWORLD_SEED"] != nil,
            "the margins are for seeds 1–3 pooled; MUSE_MINIWORLD_SEED narrows the batch to one (testMeasured prints it)"
        )
        let (inherent, similar) = Self.inherentAndSimilar(try lossTermBatch(), at: \.guide)
        let lower = { (pairs: [(muse: Double, ablation: Double)]) in pairs.filter { $0.muse < $0.ablation }.count }
        let figures =
            "p(e_inh) muse \(Self.mean(inherent.map(\.muse))) / no-inh \(Self.mean(inherent.map(\.ablation))), "
            + "lower on \(lower(inherent)) of \(inherent.count); Σp(S) muse \(Self.mean(similar.map(\.muse))) / no-sim "
            + "\(Self.mean(similar.map(\.ablation))), lower on \(lower(similar)) of \(similar.count)"
        XCTAssertEqual(inherent.count, 48, figures)
        XCTAssertEqual(similar.count, 48, figures)
        XCTAssertLessThan(Self.mean(inherent.map(\.muse)), Self.mean(inherent.map(\.ablation)) - 0.02, figures)
        XCTAssertGreaterThanOrEqual(lower(inherent), 29, figures)
        XCTAssertLessThan(Self.mean(similar.map(\.muse)), Self.mean(similar.map(\.ablation)), figures)
        XCTAssertGreaterThanOrEqual(lower(similar), 32, figures)
    }

    /// A MUSE edit moves the evaluator toward the target and keeps the source close (engine
    /// defaults: negative-prompt inversion, edit_token_drift_bound 0.7). Measured on the demo's
    /// two sources × 8 emotions (16 jobs per method), strength 0.6, 8 December: evaluator
    /// p(target) muse 0.179 against 0.096 without token optimisation (Emo-A 0.19 against 0.06);
    /// PSNR to the source 18.5 dB against the reconstruction's (method none) 20.1 dB — within 1 dB
    /// of the VAE's own round trip since the matched inversion (before it: 15.9 against 17.4) —
    /// and CLIP-I 0.68 against 0.77 (at the 7 December bound 0.6: 0.164, 18.8 dB, 0.71). Margins:
    /// +0.05 in p(target), at most 2 dB below the reconstruction, CLIP-I above 0.45. The timing
    /// rule started guidance from a settled s_t on 15 of the 16 MUSE jobs: at least 12 must.
    func testEditMovesTheEvaluatorAndKeepsTheSource() throws {
        let lines = try run(
            """
            engine:
              methods: [muse, muse-no-token-opt, none]
              checkpoint_every: 0
              muse: \(Self.defaults)
            editing:
              images:
                - path: images/miniworld-house.png
                  source_prompt: \(Self.editCaptions[0])
                - path: images/miniworld-boat.png
                  source_prompt: \(Self.editCaptions[1])
              emotions: all
              strength: 0.6
            """, name: "edit")
        let by = Dictionary(grouping: lines, by: \.method)
        for method in ["muse", "muse-no-token-opt", "none"] { XCTAssertEqual(by[method]?.count, 16, method) }
        let target = { (m: String) in Self.mean((by[m] ?? []).map { $0.evaluator[$0.emotion] ?? 0 }) }
        let psnr = { (m: String) in Self.mean((by[m] ?? []).compactMap(\.psnr)) }
        let clipI = { (m: String) in Self.mean((by[m] ?? []).compactMap(\.clipI)) }
        let figures =
            "p(target) muse \(target("muse")) / no-token-opt \(target("muse-no-token-opt")); PSNR \(psnr("muse")) / "
            + "none \(psnr("none")); CLIP-I \(clipI("muse")) / none \(clipI("none"))"
        let settled = (by["muse"] ?? []).filter { $0.startReason == "settled" }.count
        print(
            "miniworld edit: \(figures); Emo-A muse \(Self.emoA(by["muse"] ?? [])) / no-token-opt "
                + "\(Self.emoA(by["muse-no-token-opt"] ?? [])); settled \(settled) of 16")
        XCTAssertGreaterThan(target("muse"), target("muse-no-token-opt") + 0.05, figures)
        XCTAssertGreaterThan(Self.emoA(by["muse"] ?? []), Self.emoA(by["muse-no-token-opt"] ?? []), figures)
        XCTAssertGreaterThan(psnr("muse"), psnr("none") - 2, figures)
        XCTAssertGreaterThan(clipI("muse"), 0.45, figures)
        XCTAssertGreaterThanOrEqual(settled, 12, "guidance started from a settled s_t on \(settled) of 16")
    }

    static let editCaptions = [
        "a brown house in the middle, with two trees, by the sea, among mountains, cloudy, in the morning, spring",
        "a blue boat on the right, and a house, two trees, a sheep, by a lake, among hills, cloudy, at noon, summer",
    ]

    /// Pairs (muse, its ablation) of the guide's probability of what each term pushes down:
    /// p(e_inh) against muse-no-inh where e_inh is not the target, Σ p(S) against muse-no-sim.
    static func inherentAndSimilar(_ lines: [Line], at read: KeyPath<Line, [String: Double]> = \.guide) -> (
        inherent: [(muse: Double, ablation: Double)], similar: [(muse: Double, ablation: Double)]
    ) {
        let by = Dictionary(grouping: lines, by: \.method)
        let muse = Dictionary(uniqueKeysWithValues: (by["muse"] ?? []).map { ($0.key, $0) })
        var inherent: [(muse: Double, ablation: Double)] = []
        for l in by["muse-no-inh"] ?? [] {
            guard let m = muse[l.key], let e = m.inherent, e != m.emotion else { continue }
            inherent.append((m[keyPath: read][e] ?? 0, l[keyPath: read][e] ?? 0))
        }
        var similar: [(muse: Double, ablation: Double)] = []
        for l in by["muse-no-sim"] ?? [] {
            guard let m = muse[l.key], !m.similar.isEmpty else { continue }
            similar.append(
                (
                    m.similar.map { m[keyPath: read][$0] ?? 0 }.reduce(0, +),
                    m.similar.map { l[keyPath: read][$0] ?? 0 }.reduce(0, +)
                ))
        }
        return (inherent, similar)
    }

    static func emoA(_ lines: [Line]) -> Double {
        Double(lines.filter { $0.evaluatorTop == $0.emotion }.count) / Double(max(lines.count, 1))
    }

    static func mean(_ xs: [Double]) -> Double { xs.isEmpty ? .nan : xs.reduce(0, +) / Double(xs.count) }

    /// Prints the figures the margins come from (MUSE_MINIWORLD_MEASURE=1; not part of CI).
    func testMeasured() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["MUSE_MINIWORLD_MEASURE"] != nil)
        let g = try lossTermBatch()
        for (settings, batch) in [("demo settings", try tokenBatch()), ("engine defaults", g)] {
            let methods = Dictionary(grouping: batch, by: \.method)
            for (m, lines) in methods.sorted(by: { $0.key < $1.key }) {
                let target = Self.mean(lines.map { $0.evaluator[$0.emotion] ?? 0 })
                print(
                    String(
                        format: "miniworld %@ (%@): %d jobs, evaluator Emo-A %.3f, p(target) %.3f", m, settings,
                        lines.count, Self.emoA(lines), target))
            }
            let reasons = Dictionary(grouping: methods["muse"] ?? [], by: { $0.startReason ?? "none" })
            print("miniworld muse start reasons (\(settings)): \(reasons.mapValues(\.count))")
        }
        let readings: [(String, KeyPath<Line, [String: Double]>)] = [
            ("evaluator, final image", \.evaluator), ("guide, final image", \.guide),
            ("guide, last guided step", \.lastGuided),
        ]
        for (name, read) in readings {
            let (inh, sim) = Self.inherentAndSimilar(g, at: read)
            let lower = { (pairs: [(muse: Double, ablation: Double)]) in pairs.filter { $0.muse < $0.ablation }.count }
            print(
                String(
                    format: "miniworld %@: p(inherent) muse %.3f vs muse-no-inh %.3f over %d (lower on %d); "
                        + "Σp(similar) muse %.3f vs muse-no-sim %.3f over %d (lower on %d)",
                    name, Self.mean(inh.map(\.muse)), Self.mean(inh.map(\.ablation)), inh.count, lower(inh),
                    Self.mean(sim.map(\.muse)), Self.mean(sim.map(\.ablation)), sim.count, lower(sim)))
        }
    }
}
