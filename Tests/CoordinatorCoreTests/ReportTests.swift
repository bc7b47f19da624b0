import Foundation
import XCTest

@testable import CoordinatorCore

/// `muse-coordinator report` on a synthetic output folder (ReportFixture): report.json holds
/// the numbers computed by hand, report.html shows them in its tables, and an old manifest
/// (no evaluation, no trace files) gives a report that says what it lacks.
final class ReportTests: XCTestCase {
    var folders: [URL] = []

    override func tearDown() {
        for f in folders { try? FileManager.default.removeItem(at: f) }
    }

    func report(_ fixture: ReportFixture, pagesAbove: Int = 60) throws -> (json: [String: Any], html: String) {
        folders.append(fixture.folder)
        let written = try Report.write(folder: fixture.folder, pagesAbove: pagesAbove)
        let json = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: try Data(contentsOf: written.json)) as? [String: Any])
        return (json, try String(contentsOf: written.html, encoding: .utf8))
    }

    func testNumbersInJSONAndHTMLMatchTheHandComputedOnes() throws {
        let (json, html) = try report(try ReportFixture.make())
        let cells = try XCTUnwrap(json["cells"] as? [String: Any])
        func cell(_ key: String) -> Double? { cells[key] as? Double }
        let (ab, cd) = (
            try ReportFixture.skimage("a64.png", "b64.png"), try ReportFixture.skimage("c48x40.png", "d48x40.png")
        )
        let expected: [String: Double] = [
            "generation.muse.all.emo_a": 0.75, "generation.muse.all.target_probability": 0.425,
            "generation.muse.all.guide_emo_a": 1, "generation.muse.all.guide_target_probability": 0.75,
            "generation.muse.all.clip_score": 27, "generation.muse.all.sem_d": 0.7,
            "generation.muse.all.done": 4, "generation.muse.all.failed": 0,
            "generation.muse.awe.emo_a": 1, "generation.muse.awe.sem_d": 1, "generation.muse.fear.emo_a": 0.5,
            "generation.muse.fear.target_probability": 0.3, "generation.muse.fear.sem_d": 0.4,
            "generation.prompt-only.all.emo_a": 1.0 / 3, "generation.prompt-only.all.target_probability": 0.15,
            "generation.prompt-only.all.guide_emo_a": 2.0 / 3,
            "generation.prompt-only.all.guide_target_probability": 0.3,
            "generation.prompt-only.all.clip_score": 29, "generation.prompt-only.all.sem_d": 0,
            "generation.prompt-only.all.done": 3, "generation.prompt-only.all.failed": 1,
            "generation.prompt-only.fear.failed": 1,
            // Editing: e1, e2 have evaluator results (e1 hit, e2 miss); e3 only the guide's.
            "editing.muse.all.emo_a": 0.5, "editing.muse.all.target_probability": 0.45,
            "editing.muse.all.guide_emo_a": 1, "editing.muse.all.guide_target_probability": (0.8 + 0.6 + 0.75) / 3,
            "editing.muse.all.clip_score": 29, "editing.muse.all.clip_i": 0.95,
            "editing.muse.all.psnr": (ab.psnr! + cd.psnr!) / 2, "editing.muse.all.ssim": (ab.ssim + 1 + cd.ssim) / 3,
            "editing.muse.all.done": 3, "editing.muse.all.failed": 1,
            "editing.muse.awe.psnr": (ab.psnr! + cd.psnr!) / 2, "editing.muse.awe.emo_a": 1,
            "editing.muse.all.emo_s": 0.5, "editing.muse.fear.emo_s": 0.6 - 0.4,
            // prompt-only − muse, paired on (prompt, seed, emotion): g5−g1, g6−g2, g7−g3.
            "generation.prompt-only.all.pairs": 3,
            "generation.prompt-only.all.target_probability.diff": ((0.30 - 0.60) + (0.10 - 0.50) + (0.05 - 0.40)) / 3,
            "generation.prompt-only.all.clip_score.diff": ((31.0 - 30) + (29 - 28) + (27 - 26)) / 3,
            "generation.muse.all.start_reason.settled": 1, "generation.muse.all.start_reason.absent": 3,
            "editing.muse.all.start_reason.latest": 2, "editing.muse.all.start_reason.absent": 1,
        ]
        for (key, want) in expected {
            let got = try XCTUnwrap(cell(key), "\(key) missing or null")
            XCTAssertEqual(got, want, accuracy: 1e-9, key)
        }
        // All of e2's PSNR is infinite: null, and counted apart.
        XCTAssertTrue(cells["editing.muse.fear.psnr"] is NSNull)
        XCTAssertTrue(cells["generation.prompt-only.fear.sem_d"] is NSNull, "one image: no Sem-D")
        let editing = try XCTUnwrap(json["editing"] as? [String: Any])
        let muse = try XCTUnwrap((editing["methods"] as? [[String: Any]])?.first?["overall"] as? [String: Any])
        XCTAssertEqual(muse["psnr_identical"] as? Int, 1)
        XCTAssertEqual(muse["emo_a_jobs"] as? Int, 2)
        XCTAssertEqual(muse["emo_a_source"] as? String, "evaluator")
        let evaluation = try XCTUnwrap(json["evaluation"] as? [String: Any])
        XCTAssertEqual(evaluation["source"] as? String, "mixed")
        XCTAssertEqual(evaluation["jobs_with_evaluator"] as? Int, 9)
        let notes = try XCTUnwrap(json["notes"] as? [String]).joined(separator: "\n")
        XCTAssertTrue(notes.contains("1 of 10 done job(s) have no `evaluation` field"), notes)
        XCTAssertTrue(notes.contains("1 of 3 done job(s) (edits) have no `source_output`"), notes)

        // The HTML tables show the same numbers, with the decimals their cells declare (the
        // interval follows the mean in the same cell, in its own checkable spans).
        for (key, digits, text) in [
            ("generation.muse.all.emo_a", 3, "0.750"), ("generation.muse.all.sem_d", 4, "0.7000"),
            ("generation.prompt-only.all.emo_a", 3, "0.333"), ("generation.muse.all.clip_score", 2, "27.00"),
            ("editing.muse.all.clip_i", 4, "0.9500"), ("editing.muse.fear.psnr", 2, "—"),
            ("editing.muse.all.psnr", 2, String(format: "%.2f", (ab.psnr! + cd.psnr!) / 2)),
            ("editing.muse.all.ssim", 4, String(format: "%.4f", (ab.ssim + 1 + cd.ssim) / 3)),
        ] {
            let td = #"<td class="num" data-metric="\#(key)" data-digits="\#(digits)">\#(text)<"#
            XCTAssertTrue(html.contains(td), "report.html lacks \(td)")
        }
        for needle in [
            "Method comparison", #"data-table="generation-methods""#, #"data-table="editing-methods""#,
            #"data-table="sheet-generation-muse""#, "<th>awe</th>", "<th>fear</th>", "out of memory", "worker lost",
            "start (settled)", "<polyline", "class probabilities per inner iteration", "token drift",
            "evaluator: CLIP ViT-B/32 + linear probe (synthetic)", "PSNR: 1 edit(s) identical", "∞ (identical)",
            "Sem-D (generation): for each (method, emotion) group with at least 2 images",
            #"src="awe/g1.png""#, "sources/",
        ] {
            XCTAssertTrue(html.contains(needle), "report.html lacks \(needle)")
        }
        XCTAssertFalse(html.contains("<script"), "no script in the report")
        XCTAssertFalse(html.contains("http://") && html.contains("src=\"http"), "no network images")
    }

    /// What ops/report-check does in Chromium, on the page's source: every number of report.json's
    /// `cells` (means, interval ends, differences, pairs, start reasons) is in the element that
    /// names it, printed with its declared decimals, and the page names no cell report.json lacks.
    func testEveryCellIsOnThePageWithItsDecimals() throws {
        let (json, html) = try report(try ReportFixture.make())
        let cells = try XCTUnwrap(json["cells"] as? [String: Any])
        let pattern = try NSRegularExpression(pattern: #"data-metric="([^"]+)" data-digits="([0-9]+)">([^<]*)<"#)
        var shown: [String: String] = [:]
        let ns = html as NSString
        for m in pattern.matches(in: html, range: NSRange(location: 0, length: ns.length)) {
            let key = ns.substring(with: m.range(at: 1))
            let digits = Int(ns.substring(with: m.range(at: 2)))!
            let text = ns.substring(with: m.range(at: 3))
            XCTAssertNil(shown[key], "\(key) is on the page twice")
            shown[key] = text
            let value = try XCTUnwrap(cells[key], "the page shows \(key), which report.json lacks")
            let want = (value as? Double).map { String(format: "%.\(digits)f", $0) } ?? "—"
            XCTAssertEqual(text, want, key)
        }
        for key in cells.keys { XCTAssertNotNil(shown[key], "\(key) is not on the page") }
        XCTAssertTrue(cells.keys.contains { $0.hasSuffix(".ci_low") })
        XCTAssertTrue(cells.keys.contains { $0.hasSuffix(".start_reason.settled") })
    }

    /// `report --markdown`: the table of docs/MINIWORLD.md, one row per method, the same numbers as the cells.
    func testMarkdownTableHasARowPerMethodWithTheCellValues() throws {
        let fixture = try ReportFixture.make()
        folders.append(fixture.folder)
        let summary = try Report.write(folder: fixture.folder).summary
        let lines = try XCTUnwrap(summary.generation?.markdown).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 4, lines.joined(separator: "\n"))
        XCTAssertTrue(lines[0].hasPrefix("| generation method | Emo-A | target prob | CLIP score | Sem-D |"), lines[0])
        // Each mean with its interval, "0.750 [0.250, 1.000]"; the counts without.
        let muse = try XCTUnwrap(summary.generation?.methods.first).overall
        func cell(_ metric: String, _ digits: Int) throws -> String {
            let i = try XCTUnwrap(muse.intervals[metric], metric)
            return String(
                format: "%.\(digits)f [%.\(digits)f, %.\(digits)f]", muse.value(metric)!, i.low, i.high)
        }
        let want =
            "| muse | \(try cell("emo_a", 3)) | \(try cell("target_probability", 3)) | \(try cell("clip_score", 2)) | "
            + "\(try cell("sem_d", 4)) | \(try cell("guide_emo_a", 3)) | \(try cell("guide_target_probability", 3)) | 4 | 0 |"
        XCTAssertEqual(lines[2], want, lines.joined(separator: "\n"))
        XCTAssertTrue(lines[2].hasPrefix("| muse | 0.750 [0.") && lines[2].contains("| 27.00 ["), lines[2])
        XCTAssertTrue(lines[3].hasPrefix("| prompt-only | 0.333 ["), lines[3])
        XCTAssertTrue(lines[3].contains("| 0.0000 [0.0000, 0.0000] |"), lines[3])
        let editing = try XCTUnwrap(summary.editing?.markdown)
        XCTAssertTrue(editing.contains("| editing method | Emo-A | target prob | Emo-S | CLIP score |"), editing)
        XCTAssertTrue(editing.contains("| muse | 0.500 ["), editing)
    }

    func testManyJobsGoToTheirOwnPages() throws {
        let fixture = try ReportFixture.make()
        let (json, html) = try report(fixture, pagesAbove: 3)
        let jobs = try XCTUnwrap(json["jobs"] as? [[String: Any]])
        XCTAssertEqual(jobs.count, 12)
        for job in jobs {
            let id = try XCTUnwrap(job["job_id"] as? String)
            let page = fixture.folder.appendingPathComponent("report/\(id).html")
            let text = try String(contentsOf: page, encoding: .utf8)
            XCTAssertTrue(text.contains(#"href="../report.html""#), id)
            XCTAssertTrue(html.contains(#"href="report/\#(id).html""#), id)
            if let out = job["output"] as? String { XCTAssertTrue(text.contains(#"src="../\#(out)""#), id) }
        }
        XCTAssertFalse(html.contains("<section class=\"job\""), "job sections are on their own pages")
    }

    /// Today's manifest: no evaluation, no trace files, no source_output. The report still
    /// comes out, falls back to the guide classifier with a warning, and lists what is missing.
    func testOldManifestDegradesGracefully() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("report-old-\(UUID().uuidString)")
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent("awe"), withIntermediateDirectories: true)
        try Data(contentsOf: ReportFixture.fixtures.appendingPathComponent("a64.png"))
            .write(to: folder.appendingPathComponent("awe/x.png"))
        let line: [String: Any] = [
            "job_id": "old1", "batch_id": "demo-1", "status": "done", "index": 0, "kind": "generate",
            "prompt": "a lake", "emotion": "awe", "method": "muse", "seed": 3, "output": "awe/x.png",
            "probabilities": ReportFixture.probabilities(target: "awe", p: 0.4, top: "awe"),
            "target_probability": 0.4, "top_emotion": "awe", "sheet": ["row": 0, "column": 1],
            "trace": [
                "start_step": 0, "start_reason": "latest", "stop_step": 8, "steps": 10, "first_step": 0,
                "s_t": [0.1, 0.12, 0.13, 0.131, 0.131, 0.13, 0.13, 0.13, 0.13, 0.13], "classifier": "guide",
            ],
        ]
        let old2: [String: Any] = [
            "job_id": "old2", "status": "failed", "kind": "edit", "prompt": "a photo", "emotion": "fear",
            "method": "muse", "error": "boom", "image": ["path": "images/x.png", "sha256": "ab"],
        ]
        let text = try [line, old2].map {
            String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self)
        }
        try Data((text.joined(separator: "\n") + "\nnot json\n").utf8).write(
            to: folder.appendingPathComponent("manifest.jsonl"))
        let (json, html) = try report(ReportFixture(folder: folder))
        let cells = try XCTUnwrap(json["cells"] as? [String: Any])
        XCTAssertEqual(cells["generation.muse.all.emo_a"] as? Double, 1)
        XCTAssertEqual(cells["generation.muse.all.target_probability"] as? Double, 0.4)
        XCTAssertTrue(cells["generation.muse.all.clip_score"] is NSNull)
        XCTAssertTrue(cells["generation.muse.all.sem_d"] is NSNull)
        XCTAssertEqual(cells["editing.muse.all.failed"] as? Double, 1)
        let evaluation = try XCTUnwrap(json["evaluation"] as? [String: Any])
        XCTAssertEqual(evaluation["source"] as? String, "guide")
        XCTAssertTrue((evaluation["warning"] as? String ?? "").contains("flattering"))
        let notes = try XCTUnwrap(json["notes"] as? [String]).joined(separator: "\n")
        XCTAssertTrue(notes.contains("manifest line 3 is unreadable"), notes)
        XCTAssertTrue(notes.contains("1 of 1 done job(s) have no `trace_file`"), notes)
        XCTAssertTrue(html.contains("guide classifier (flattering)"))
        XCTAssertTrue(html.contains(#"id="evaluation-warning""#))
        XCTAssertTrue(html.contains("start (latest)"), "s_t from the manifest's trace summary")
        XCTAssertTrue(html.contains("muse †"))
    }

    func testMissingManifestIsAnError() {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("report-none-\(UUID().uuidString)")
        XCTAssertThrowsError(try Report.write(folder: folder)) { XCTAssertTrue("\($0)".contains("no manifest.jsonl")) }
    }
}
