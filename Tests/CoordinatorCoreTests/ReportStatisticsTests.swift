import Foundation
import Support
import XCTest

@testable import CoordinatorCore

/// The method table that resolves: bootstrap intervals, paired differences against muse, Emo-S
/// from the source probabilities, start-reason counts and the fingerprint check of "the
/// evaluator is the guide" — on ReportFixture's folder and on small batches built here.
final class ReportStatisticsTests: XCTestCase {
    var folders: [URL] = []

    override func tearDown() {
        for f in folders { try? FileManager.default.removeItem(at: f) }
    }

    // MARK: helpers

    /// A report of manifest lines given as dictionaries (no files: generation needs none).
    static func summary(_ lines: [[String: Any]]) throws -> ReportSummary {
        let decoded = try lines.map {
            try JSONDecoder().decode(ReportLine.self, from: try JSONSerialization.data(withJSONObject: $0))
        }
        let input = ReportInput(
            folder: URL(fileURLWithPath: "/nonexistent"), lines: decoded, traces: [:], notes: [])
        return Report.build(input, now: Date(timeIntervalSince1970: 0))
    }

    static func json(_ s: ReportSummary) throws -> [String: Any] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: try encoder.encode(s)) as? [String: Any])
    }

    /// A done generation line; `evalP` the evaluator's target probability (top-1 the target when ≥ 0.5).
    static func gen(
        _ id: String, method: String, prompt: String, seed: Int, emotion: String, evalP: Double, clip: Double = 25,
        startReason: String? = nil
    ) -> [String: Any] {
        let top = evalP >= 0.5 ? emotion : (emotion == "sadness" ? "fear" : "sadness")
        var line: [String: Any] = [
            "job_id": id, "status": "done", "kind": "generate", "method": method, "prompt": prompt, "seed": seed,
            "emotion": emotion,
            "probabilities": ReportFixture.probabilities(target: emotion, p: evalP, top: top),
            "evaluation": [
                "probabilities": ReportFixture.probabilities(target: emotion, p: evalP, top: top), "clip_score": clip,
            ],
        ]
        if let startReason { line["trace"] = ["start_reason": startReason] }
        return line
    }

    // MARK: SplitMix64 and the bootstrap

    func testSplitMix64MatchesTheReferenceSequence() {
        // Steele, Lea and Flood's splitmix64 from seed 0 (the same numbers from a Python transcription).
        var rng = SplitMix64(seed: 0)
        XCTAssertEqual(rng.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(rng.next(), 0x6E78_9E6A_A1B9_65F4)
        XCTAssertEqual(rng.next(), 0x06C4_5D18_8009_454F)
        var r = SplitMix64(seed: 42)
        var seen = Set<Int>()
        for _ in 0..<1000 {
            let i = r.index(7)
            XCTAssertTrue((0..<7).contains(i))
            seen.insert(i)
        }
        XCTAssertEqual(seen.count, 7)
    }

    func testMeanIntervalBracketsTheMeanAndIsDeterministic() throws {
        let values = (0..<40).map { Double(($0 * 37) % 11) / 10 }
        let mean = values.reduce(0, +) / Double(values.count)
        let a = try XCTUnwrap(Bootstrap.meanInterval(values, key: "k"))
        let b = try XCTUnwrap(Bootstrap.meanInterval(values, key: "k"))
        XCTAssertEqual(a, b, "same key, same values: the same interval")
        XCTAssertTrue(a.low < mean && mean < a.high, "\(a) around \(mean)")
        // The standard error of the mean is ≈ sd/√n; the 95 % interval ≈ ±1.96 of it.
        let sd = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
        let half = 1.96 * sd / Double(values.count).squareRoot()
        XCTAssertEqual(a.high - a.low, 2 * half, accuracy: 0.25 * half)
        XCTAssertNotEqual(Bootstrap.meanInterval(values, key: "other"), a, "another cell draws another stream")
        XCTAssertNil(Bootstrap.meanInterval([], key: "k"))
        XCTAssertEqual(Bootstrap.meanInterval([0.3], key: "k"), Interval(low: 0.3, high: 0.3))
    }

    /// ReportFixture's report: every mean lies in its interval, and two runs give the same cells.
    func testIntervalsContainTheMeanAndAreTheSameOnEveryRun() throws {
        var runs: [[String: Any]] = []
        for _ in 0..<2 {
            let fixture = try ReportFixture.make()
            folders.append(fixture.folder)
            let url = try Report.write(folder: fixture.folder).json
            let json = try XCTUnwrap(
                try JSONSerialization.jsonObject(with: try Data(contentsOf: url)) as? [String: Any])
            runs.append(try XCTUnwrap(json["cells"] as? [String: Any]))
        }
        let cells = runs[0]
        XCTAssertEqual(cells as NSDictionary, runs[1] as NSDictionary, "the same numbers on every run")
        var checked = 0
        for (key, value) in cells where key.hasSuffix(".ci_low") {
            let base = String(key.dropLast(".ci_low".count))
            let mean = try XCTUnwrap(cells[base] as? Double, base)
            let low = try XCTUnwrap(value as? Double, key)
            let high = try XCTUnwrap(cells[base + ".ci_high"] as? Double, base)
            XCTAssertLessThanOrEqual(low, mean + 1e-12, key)
            XCTAssertLessThanOrEqual(mean, high + 1e-12, key)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 40)
        // muse's generation Emo-A: 3 hits of 4 → bootstrap means in {0, .25, .5, .75, 1}.
        let low = try XCTUnwrap(cells["generation.muse.all.emo_a.ci_low"] as? Double)
        let high = try XCTUnwrap(cells["generation.muse.all.emo_a.ci_high"] as? Double)
        XCTAssertTrue([0.25, 0.5].contains(low) && high == 1, "[\(low), \(high)]")
        // Sem-D has one too: the emotions resampled apart.
        XCTAssertNotNil(cells["generation.muse.all.sem_d.ci_low"] as? Double)
        XCTAssertNil(cells["editing.muse.fear.psnr.ci_low"], "no value, no interval")
        // The same in the markdown: "0.750 [0.250, 1.000]".
        let fixture = try ReportFixture.make()
        folders.append(fixture.folder)
        let md = Report.markdown(try Report.write(folder: fixture.folder).summary)
        XCTAssertTrue(
            md.contains(String(format: "| muse | 0.750 [%.3f, %.3f] | ", low, high)), md)
    }

    // MARK: paired differences

    /// Method "better" beats muse on every (prompt, seed, emotion): its paired interval lies above 0.
    func testAMethodThatBeatsMuseOnEveryPairHasAPairedIntervalAbove0() throws {
        var lines: [[String: Any]] = []
        var n = 0
        let emotions = ["awe", "fear", "sadness"]
        for prompt in ["a lake", "a street", "a house"] {
            for seed in [1, 2, 3] {
                for emotion in emotions {
                    // muse's target probability varies; "better" is 0.05–0.25 above it, always.
                    let p = 0.2 + 0.05 * Double((n * 7) % 5)
                    let gain = 0.05 + 0.05 * Double(n % 5)
                    lines.append(
                        Self.gen("m\(n)", method: "muse", prompt: prompt, seed: seed, emotion: emotion, evalP: p))
                    lines.append(
                        Self.gen(
                            "b\(n)", method: "better", prompt: prompt, seed: seed, emotion: emotion, evalP: p + gain,
                            clip: 25 + gain))
                    n += 1
                }
            }
        }
        // A job of "better" muse has no partner for (other seed): unpaired.
        lines.append(Self.gen("b-extra", method: "better", prompt: "a lake", seed: 99, emotion: "awe", evalP: 0.9))
        let s = try Self.summary(lines)
        let better = try XCTUnwrap(s.generation?.methods.first { $0.method == "better" })
        let muse = try XCTUnwrap(s.generation?.methods.first { $0.method == "muse" })
        XCTAssertNil(muse.difference, "muse is not compared with itself")
        let d = try XCTUnwrap(better.difference?.overall)
        XCTAssertEqual(d.pairs, 27)
        XCTAssertEqual(d.unpaired, 1)
        let target = try XCTUnwrap(d.metrics["target_probability"])
        let gains = (0..<27).map { 0.05 + 0.05 * Double($0 % 5) }
        XCTAssertEqual(try XCTUnwrap(target.diff), gains.reduce(0, +) / 27, accuracy: 1e-12)
        XCTAssertEqual(target.pairs, 27)
        XCTAssertEqual(target.source, "evaluator")
        let i = try XCTUnwrap(target.interval)
        XCTAssertGreaterThan(i.low, 0, "every pair favours 'better': the interval excludes 0")
        XCTAssertTrue(i.contains(try XCTUnwrap(target.diff)))
        let clip = try XCTUnwrap(d.metrics["clip_score"]?.interval)
        XCTAssertGreaterThan(clip.low, 0)
        // Per emotion too: 9 pairs each.
        XCTAssertEqual(better.difference?.emotions["fear"]?.pairs, 9)
        XCTAssertGreaterThan(
            try XCTUnwrap(better.difference?.emotions["fear"]?.metrics["target_probability"]?.interval?.low), 0)
        // Sem-D is not a per-job number: no difference.
        XCTAssertNil(d.metrics["sem_d"])
        // In cells, markdown and notes.
        let cells = s.cells
        XCTAssertEqual(cells["generation.better.all.pairs"], .double(27))
        XCTAssertEqual(cells["generation.better.all.target_probability.diff_low"], .double(i.low))
        XCTAssertNil(cells["generation.muse.all.target_probability.diff"])
        let md = try XCTUnwrap(s.generation?.differenceMarkdown)
        XCTAssertTrue(md.contains("| generation method − muse | pairs | Emo-A |"), md)
        XCTAssertTrue(md.contains("| better | 27 | "), md)
        XCTAssertTrue(
            s.notes.contains {
                $0.contains("1 done better job(s) have no muse job with the same (prompt, seed, emotion)")
            },
            "\(s.notes)")
        let html = ReportHTML(summary: s, jobPages: false).page()
        XCTAssertTrue(html.contains("Difference against muse"))
        XCTAssertTrue(html.contains(#"data-table="generation-difference""#))
        XCTAssertTrue(
            html.contains(#"<td class="num resolved" data-metric="generation.better.all.target_probability.diff""#))
        // The paired JSON: diff, ci_low, ci_high, pairs, source.
        let json = try Self.json(s)
        let methods = try XCTUnwrap((json["generation"] as? [String: Any])?["methods"] as? [[String: Any]])
        let diff = try XCTUnwrap(methods.first { $0["method"] as? String == "better" }?["difference"] as? [String: Any])
        XCTAssertEqual(diff["against"] as? String, "muse")
        let metric = try XCTUnwrap(
            ((diff["overall"] as? [String: Any])?["metrics"] as? [String: Any])?["target_probability"] as? [String: Any]
        )
        // (JSONSerialization's parser may differ from the encoder's shortest form in the last bit.)
        XCTAssertEqual(try XCTUnwrap(metric["ci_low"] as? Double), i.low, accuracy: 1e-15)
        XCTAssertEqual(metric["pairs"] as? Int, 27)
    }

    /// Without muse there is nothing to subtract: no differences, and a note says so.
    func testNoMuseNoDifferences() throws {
        let s = try Self.summary([
            Self.gen("a", method: "none", prompt: "p", seed: 1, emotion: "awe", evalP: 0.3),
            Self.gen("b", method: "prompt-only", prompt: "p", seed: 1, emotion: "awe", evalP: 0.6),
        ])
        XCTAssertFalse(try XCTUnwrap(s.generation).hasDifferences)
        XCTAssertTrue(s.notes.contains { $0.contains("no done muse jobs") }, "\(s.notes)")
    }

    // MARK: Emo-S

    func testEmoSFromTheSourceProbabilities() throws {
        func edit(
            _ id: String, method: String, sha: String, emotion: String, p: Double, evalSource: Double?,
            guideSource: Double?, guideP: Double = 0.5
        ) -> [String: Any] {
            var evaluation: [String: Any] = [
                "probabilities": ReportFixture.probabilities(target: emotion, p: p, top: emotion)
            ]
            if let evalSource {
                evaluation["source_probabilities"] = ReportFixture.probabilities(
                    target: emotion, p: evalSource, top: "contentment")
            }
            var line: [String: Any] = [
                "job_id": id, "status": "done", "kind": "edit", "method": method, "prompt": "a photo", "seed": 0,
                "emotion": emotion, "image": ["path": "images/\(sha).png", "sha256": sha], "output": "x/\(id).png",
                "probabilities": ReportFixture.probabilities(target: emotion, p: guideP, top: emotion),
                "evaluation": evaluation,
            ]
            if let guideSource {
                line["source_probabilities"] = ReportFixture.probabilities(
                    target: emotion, p: guideSource, top: "contentment")
            }
            return line
        }
        let s = try Self.summary([
            // muse: evaluator Emo-S .6 − .1 = .5 and .4 − .2 = .2 (the guide's are ignored: the evaluator's exist).
            edit("m1", method: "muse", sha: "aa", emotion: "awe", p: 0.6, evalSource: 0.1, guideSource: 0.3),
            edit("m2", method: "muse", sha: "bb", emotion: "awe", p: 0.4, evalSource: 0.2, guideSource: 0.3),
            // prompt-only: only the guide's source probabilities: .5 − .4 = .1 → guide Emo-S, flagged.
            edit("p1", method: "prompt-only", sha: "aa", emotion: "awe", p: 0.3, evalSource: nil, guideSource: 0.4),
            // none: an older batch, no source probabilities at all: no Emo-S.
            edit("n1", method: "none", sha: "aa", emotion: "awe", p: 0.2, evalSource: nil, guideSource: nil),
            // universal-guidance: evaluator Emo-S .7 − .1 = .6 on source bb, paired with m2 (.2).
            edit(
                "u1", method: "universal-guidance", sha: "bb", emotion: "awe", p: 0.7, evalSource: 0.1, guideSource: nil
            ),
        ])
        let k = try XCTUnwrap(s.editing)
        XCTAssertTrue(k.columns.contains { $0.metric == "emo_s" })
        func method(_ m: String) throws -> KindSection.Method { try XCTUnwrap(k.methods.first { $0.method == m }) }
        let muse = try method("muse").overall
        XCTAssertEqual(try XCTUnwrap(muse.emoS), 0.35, accuracy: 1e-12)
        XCTAssertEqual(muse.emoSSource, "evaluator")
        XCTAssertEqual(muse.emoSJobs, 2)
        let interval = try XCTUnwrap(muse.intervals["emo_s"])
        XCTAssertTrue(interval.low >= 0.2 - 1e-12 && interval.high <= 0.5 + 1e-12 && interval.contains(0.35))
        let prompt = try method("prompt-only").overall
        XCTAssertEqual(try XCTUnwrap(prompt.emoS), 0.1, accuracy: 1e-12)
        XCTAssertEqual(prompt.emoSSource, "guide")
        XCTAssertNil(try method("none").overall.emoS)
        XCTAssertNil(try method("none").overall.emoSSource)
        // Paired against muse on (source, emotion): u1 − m2 = .6 − .2 by the evaluator.
        let paired = try XCTUnwrap(try method("universal-guidance").difference?.overall.metrics["emo_s"])
        XCTAssertEqual(try XCTUnwrap(paired.diff), 0.4, accuracy: 1e-12)
        XCTAssertEqual(paired.pairs, 1)
        XCTAssertEqual(paired.source, "evaluator")
        // prompt-only's p1 pairs with m1 (source aa): no evaluator pair → the guide's, .1 − .2.
        let guidePaired = try XCTUnwrap(try method("prompt-only").difference?.overall.metrics["emo_s"])
        XCTAssertEqual(guidePaired.source, "guide")
        XCTAssertEqual(try XCTUnwrap(guidePaired.diff), 0.1 - 0.2, accuracy: 1e-12)
        // Notes, per-job JSON and the HTML's mark.
        let notes = s.notes.joined(separator: "\n")
        XCTAssertTrue(notes.contains("1 of 5 done job(s) (edits) have no source probabilities"), notes)
        XCTAssertTrue(notes.contains("1 of 5 done job(s) (edits) have only the guide classifier's"), notes)
        let job = try XCTUnwrap(s.jobs.first { $0.jobID == "m1" })
        XCTAssertEqual(try XCTUnwrap(job.evaluatorEmoS), 0.5, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(job.guideEmoS), 0.5 - 0.3, accuracy: 1e-12)
        XCTAssertEqual(s.cells["editing.muse.all.emo_s"], .double(muse.emoS!))
        let html = ReportHTML(summary: s, jobPages: false).page()
        XCTAssertTrue(html.contains(#"data-metric="editing.prompt-only.all.emo_s""#))
        XCTAssertTrue(html.contains("‡ Emo-S from the guide classifier"), "the guide fallback is flagged")
        XCTAssertTrue(html.contains("Emo-S (editing): mean of p_edit(target) − p_source(target)"))
    }

    // MARK: start reasons

    func testStartReasonCountsPerMethod() throws {
        let s = try Self.summary([
            Self.gen("a", method: "muse", prompt: "p", seed: 1, emotion: "awe", evalP: 0.5, startReason: "settled"),
            Self.gen("b", method: "muse", prompt: "p", seed: 2, emotion: "awe", evalP: 0.5, startReason: "settled"),
            Self.gen("c", method: "muse", prompt: "p", seed: 3, emotion: "awe", evalP: 0.5, startReason: "latest"),
            Self.gen(
                "d", method: "muse-fixed-timing", prompt: "p", seed: 1, emotion: "awe", evalP: 0.5, startReason: "fixed"
            ),
            Self.gen("e", method: "none", prompt: "p", seed: 1, emotion: "awe", evalP: 0.5),
            Self.gen("f", method: "none", prompt: "p", seed: 2, emotion: "awe", evalP: 0.5),
        ])
        let k = try XCTUnwrap(s.generation)
        func method(_ m: String) throws -> KindSection.Method { try XCTUnwrap(k.methods.first { $0.method == m }) }
        XCTAssertEqual(try method("muse").startReasons, ["settled": 2, "latest": 1])
        XCTAssertEqual(try method("muse").startReasonAbsent, 0)
        XCTAssertEqual(try method("muse-fixed-timing").startReasons, ["fixed": 1])
        XCTAssertEqual(try method("none").startReasons, [:])
        XCTAssertEqual(try method("none").startReasonAbsent, 2)
        XCTAssertEqual(s.cells["generation.muse.all.start_reason.settled"], .double(2))
        XCTAssertEqual(s.cells["generation.none.all.start_reason.absent"], .double(2))
        let md = try XCTUnwrap(k.startReasonMarkdown)
        XCTAssertTrue(md.contains("| generation method | settled | latest | fixed | no start reason |"), md)
        XCTAssertTrue(md.contains("| muse | 2 | 1 | 0 | 0 |"), md)
        XCTAssertTrue(md.contains("| none | 0 | 0 | 0 | 2 |"), md)
        let json = try Self.json(s)
        let methods = try XCTUnwrap((json["generation"] as? [String: Any])?["methods"] as? [[String: Any]])
        let muse = try XCTUnwrap(methods.first { $0["method"] as? String == "muse" })
        XCTAssertEqual(muse["start_reasons"] as? [String: Int], ["settled": 2, "latest": 1])
        XCTAssertTrue(
            ReportHTML(summary: s, jobPages: false).page().contains(#"data-table="generation-start-reasons""#))
    }

    // MARK: the evaluator is the guide

    func testEvaluatorIsGuideByFingerprints() throws {
        func line(_ id: String, _ fingerprints: [String: Any]) -> [String: Any] {
            var l = Self.gen(id, method: "muse", prompt: "p", seed: 1, emotion: "awe", evalP: 0.7)
            // A prompt tower: CLIP score is not measured in the guide's tower (tested below).
            l["models"] = [
                "fingerprints": fingerprints.merging(["model": "sd", "text": "clip-text", "prompt_tower": "P"]) {
                    a, _ in a
                }
            ]
            var ev = l["evaluation"] as! [String: Any]
            ev["classifier"] = "evaluator: CLIP ViT-B/32 + head (description)"
            l["evaluation"] = ev
            l["trace"] = ["classifier": "guide: tiny-clip-vision + head (another description)"]
            return l
        }
        let cases: [(String, [String: Any], Bool)] = [
            ("same tower and head", ["tower": "T", "head": "H", "evaluator_tower": "T", "evaluator_head": "H"], true),
            ("another head", ["tower": "T", "head": "H", "evaluator_tower": "T", "evaluator_head": "H2"], false),
            ("another tower", ["tower": "T", "head": "H", "evaluator_tower": "T2", "evaluator_head": "H"], false),
            ("zero-shot, same tower", ["tower": "T", "evaluator_tower": "T", "evaluator_text": "X"], true),
            ("zero-shot, another tower", ["tower": "T", "evaluator_tower": "T2"], false),
            ("zero-shot evaluator, guide with a head", ["tower": "T", "head": "H", "evaluator_tower": "T"], false),
            ("no evaluator", ["tower": "T", "head": "H"], false),
        ]
        for (name, fingerprints, fires) in cases {
            let s = try Self.summary([line("a", fingerprints), line("b", ["tower": "T", "head": "H"])])
            let ev = s.evaluation
            XCTAssertEqual(ev.evaluatorIsGuide, fires, name)
            XCTAssertEqual(ev.evaluatorIsGuideJobs, fires ? 1 : 0, name)
            XCTAssertEqual(ev.fingerprintedJobs, name == "no evaluator" ? 0 : 1, name)
            let html = ReportHTML(summary: s, jobPages: false).page()
            let md = Report.markdown(s)
            if fires {
                let w = try XCTUnwrap(ev.warning, name)
                XCTAssertTrue(w.hasPrefix("the evaluator is the guide classifier itself"), w)
                XCTAssertTrue(html.contains(#"<div class="warn severe" id="evaluator-is-guide">"#), name)
                XCTAssertTrue(md.hasPrefix("> **⚠ Warning:** the evaluator is the guide classifier itself"), md)
                let json = try Self.json(s)
                let e = try XCTUnwrap(json["evaluation"] as? [String: Any])
                XCTAssertEqual(e["evaluator_is_guide"] as? Bool, true)
                XCTAssertTrue((e["warning"] as? String ?? "").contains("same model fingerprints"))
            } else {
                XCTAssertNil(ev.warning, "\(name): \(ev.warnings)")
                XCTAssertFalse(html.contains("evaluator-is-guide"), name)
                XCTAssertFalse(md.contains("Warning"), name)
            }
        }
    }

    /// CLIP score, CLIP-I and Sem-D measured in the guide's own tower are flagged (after the
    /// evaluator warnings); a prompt tower or an evaluation CLIP clears it.
    func testCLIPMeasuredInTheGuideTowerIsFlagged() throws {
        func line(_ id: String, _ fingerprints: [String: String]) -> [String: Any] {
            var l = Self.gen(id, method: "muse", prompt: "p", seed: 1, emotion: "awe", evalP: 0.7)
            l["models"] = ["fingerprints": fingerprints.merging(["model": "sd", "text": "X"]) { a, _ in a }]
            return l
        }
        let cases: [(String, [String: String], Int)] = [
            ("zero-shot guide, no evaluation CLIP", ["tower": "T"], 2),
            ("guide with a head, no prompt tower", ["tower": "T", "head": "H"], 2),
            ("prompt tower", ["tower": "T", "head": "H", "prompt_tower": "P"], 0),
            ("evaluation CLIP", ["tower": "T", "evaluation_clip_tower": "C", "evaluation_clip_text": "X2"], 0),
            ("evaluation CLIP is the guide's tower", ["tower": "T", "evaluation_clip_tower": "T"], 2),
        ]
        for (name, fingerprints, flagged) in cases {
            let s = try Self.summary([line("a", fingerprints), line("b", fingerprints)])
            XCTAssertEqual(s.evaluation.clipIsGuideTowerJobs, flagged, name)
            let clipWarning = s.evaluation.warnings.first { $0.hasPrefix("CLIP score, CLIP-I and Sem-D were measured") }
            XCTAssertEqual(clipWarning != nil, flagged > 0, "\(name): \(s.evaluation.warnings)")
            XCTAssertEqual(
                Report.markdown(s).contains("measured in the guide classifier's own tower"), flagged > 0, name)
            let e = try XCTUnwrap(try Self.json(s)["evaluation"] as? [String: Any])
            XCTAssertEqual(e["clip_is_guide_tower_jobs"] as? Int, flagged, name)
        }
    }
}
