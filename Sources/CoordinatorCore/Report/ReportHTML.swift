import Foundation
import Support

/// HTML escaping and relative image links.
enum HTML {
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    /// A path relative to the output folder as an href/src from a page `prefix` deep ("" or "../").
    static func link(_ rel: String, prefix: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let parts = rel.split(separator: "/").map {
            String($0).addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
        }
        return escape(prefix + parts.joined(separator: "/"))
    }
}

/// report.html (and per-job pages): tables whose number cells carry `data-metric` (the key
/// in report.json's `cells`) and `data-digits` (decimals shown), so ops/report-check can
/// compare the rendered page with report.json; inline SVG curves; a labelled contact sheet.
struct ReportHTML {
    let summary: ReportSummary
    /// Per-job sections on their own pages (report/<job id>.html) instead of inline.
    let jobPages: Bool

    static let emotionColors: [String: String] = [
        "amusement": "#e6a100", "awe": "#8e5bd9", "contentment": "#2ca02c", "excitement": "#ff6a1f",
        "anger": "#d62728", "disgust": "#8c564b", "fear": "#1f3a93", "sadness": "#4f9fd8",
    ]

    static let style = """
        body{font:14px/1.4 system-ui,sans-serif;margin:20px 28px;color:#222;max-width:1500px}
        h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
        h3{font-size:15px;margin:18px 0 6px}
        table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid #ccc;padding:3px 7px}
        th{background:#f2f2f2;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
        .warn{background:#fff1d6;border:1px solid #e0a030;padding:8px 12px;margin:10px 0}
        .warn.severe{background:#fbd9d9;border:2px solid #c0392b;font-weight:600;font-size:15px}
        .ci{color:#666;font-size:12px}td.resolved{font-weight:700}td.resolved .ci{color:#333}
        .notes li{color:#555}.muted{color:#777;font-size:12px}
        table.sheet td{vertical-align:top;text-align:center;padding:3px;width:132px}
        table.sheet img{width:128px;height:128px;object-fit:contain;display:block;margin:auto;image-rendering:auto}
        table.sheet th.row{text-align:left;font-weight:normal;max-width:180px;font-size:12px}
        .cap{font-size:11px;color:#555}.hit{color:#137a13;font-weight:600}.miss{color:#a33}
        td.failed{background:#f7d4d4;font-size:11px;color:#822;max-width:128px;word-break:break-word}
        td.absent{background:#eee}
        section.job{border-top:1px solid #ddd;padding-top:6px}
        .jobrow{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
        .jobrow figure{margin:0}.jobrow img{width:192px;height:192px;object-fit:contain;border:1px solid #ccc}
        .jobrow figcaption{font-size:12px;color:#555;text-align:center}
        table.facts td:first-child{color:#555}
        .charts{display:flex;gap:8px;flex-wrap:wrap}
        svg.chart text{font:10px system-ui,sans-serif;fill:#333}svg.chart text.ct{font-size:12px;font-weight:600}
        svg.chart text.yt{text-anchor:end}svg.chart text.xt{text-anchor:middle}
        dl.defs dt{font-weight:600;margin-top:6px}dl.defs dd{margin-left:18px}
        """

    // MARK: pages

    func page() -> String {
        var s = head("MUSE report")
        s += "<h1>MUSE report</h1>"
        s += #"<p class="muted">\#(HTML.escape(summary.folder)) · generated \#(HTML.escape(summary.generatedAt))"#
        if !summary.batches.isEmpty { s += " · batch " + summary.batches.map(HTML.escape).joined(separator: ", ") }
        s += " · data: <a href=\"\(Report.jsonName)\">\(Report.jsonName)</a></p>"
        if summary.evaluation.evaluatorIsGuide, let w = summary.evaluation.warnings.first {
            s += #"<div class="warn severe" id="evaluator-is-guide">⚠ \#(HTML.escape(w))</div>"#
        }
        s += summarySection()
        for section in [summary.generation, summary.editing].compactMap({ $0 }) { s += metricsSection(section) }
        s += definitionsSection()
        for section in [summary.generation, summary.editing].compactMap({ $0 }) { s += contactSheet(section) }
        s += "<h2 id=\"jobs\">Jobs</h2>"
        if jobPages {
            s += "<p>\(summary.jobs.count) jobs: each has its own page under \(Report.pagesFolder)/.</p>"
            s += jobIndex()
        } else {
            for job in summary.jobs { s += jobSection(job, prefix: "") }
        }
        return s + "</body></html>\n"
    }

    func jobPage(_ job: ReportJob) -> String {
        var s = head("\(job.emotion) · \(job.method) · \(job.jobID)")
        s += #"<p><a href="../\#(Report.htmlName)">← report</a></p>"#
        s += jobSection(job, prefix: "../")
        return s + "</body></html>\n"
    }

    private func head(_ title: String) -> String {
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>\(HTML.escape(title))</title>"
            + "<style>\(Self.style)</style></head><body>"
    }

    private func jobLink(_ job: ReportJob, prefix: String) -> String {
        jobPages ? "\(prefix)\(Report.pagesFolder)/\(job.jobID).html" : "#job-\(job.jobID)"
    }

    // MARK: summary and metric tables

    private func summarySection() -> String {
        var s = "<h2>Summary</h2>"
        s += #"<table class="counts" data-table="counts"><tr><th>kind</th><th>method</th><th>done</th>"#
        s += "<th>failed</th></tr>"
        for c in summary.counts {
            s += "<tr><td>\(c.kind)</td><td>\(HTML.escape(c.method))</td>"
            s += #"<td class="num">\#(c.done)</td><td class="num">\#(c.failed)</td></tr>"#
        }
        s += "</table>"
        let ev = summary.evaluation
        let evaluator = ev.classifiers.isEmpty ? "none named" : ev.classifiers.map(HTML.escape).joined(separator: "; ")
        let guide =
            ev.guideClassifiers.isEmpty ? "not named" : ev.guideClassifiers.map(HTML.escape).joined(separator: "; ")
        s += "<p>Evaluated by: <b>\(ev.source == "guide" ? "guide classifier (flattering)" : evaluator)</b>"
        s +=
            " — \(ev.jobsWithEvaluator) of \(ev.doneJobs) done jobs have an evaluator result. Guide classifier: \(guide).</p>"
        for (n, w) in ev.warnings.enumerated() {
            let id = n == 0 ? #" id="evaluation-warning""# : ""
            s += #"<div class="warn"\#(id)>⚠ \#(HTML.escape(w))</div>"#
        }
        if !summary.notes.isEmpty {
            s += #"<p>Missing or unreadable:</p><ul class="notes">"#
            s += summary.notes.map { "<li>\(HTML.escape($0))</li>" }.joined()
            s += "</ul>"
        }
        return s
    }

    private func metricsSection(_ k: KindSection) -> String {
        var s = "<h2 id=\"\(k.name)\">\(k.name == "generation" ? "Generation" : "Editing")</h2>"
        s += "<h3>\(k.methods.count > 1 ? "Method comparison" : "Overall")</h3>"
        s += #"<table class="metrics" data-table="\#(k.name)-methods"><tr><th>method</th>"#
        s += k.columns.map { "<th>\($0.title)</th>" }.joined() + "</tr>"
        for m in k.methods {
            s += "<tr><th>\(HTML.escape(m.method))\(m.overall.emoASource == "guide" ? " †" : "")</th>"
            s += cells(k, method: m.method, group: "all", m.overall) + "</tr>"
        }
        s += "</table>"
        s += #"<p class="muted">Each mean with its 95 % bootstrap interval [low, high] (definitions below).</p>"#
        s += footnotes(k.methods.map(\.overall))
        s += differenceTable(k)
        s += startReasonTable(k)
        for m in k.methods {
            s += "<h3>\(HTML.escape(m.method)) by emotion</h3>"
            s +=
                #"<table class="metrics" data-table="\#(k.name)-\#(HTML.escape(m.method))-emotions"><tr><th>emotion</th>"#
            s += k.columns.map { "<th>\($0.title)</th>" }.joined() + "</tr>"
            for e in k.emotions {
                guard let g = m.emotions[e] else { continue }
                s += "<tr><th>\(HTML.escape(e))\(g.emoASource == "guide" ? " †" : "")</th>"
                s += cells(k, method: m.method, group: e, g) + "</tr>"
            }
            s += "</table>"
            if let d = m.difference {
                s += "<h3>\(HTML.escape(m.method)) − \(KindSection.reference) by emotion</h3>"
                s +=
                    #"<table class="metrics diff" data-table="\#(k.name)-\#(HTML.escape(m.method))-difference-emotions">"#
                s += "<tr><th>emotion</th><th>pairs</th>" + k.pairedColumns.map { "<th>\($0.title)</th>" }.joined()
                s += "</tr>"
                for e in k.emotions {
                    guard let p = d.emotions[e] else { continue }
                    s += "<tr><th>\(HTML.escape(e))</th>" + differenceCells(k, method: m.method, group: e, p) + "</tr>"
                }
                s += "</table>"
            }
        }
        return s
    }

    /// This method − muse, paired, per method (all emotions together).
    private func differenceTable(_ k: KindSection) -> String {
        guard k.hasDifferences else { return "" }
        var s = "<h3>Difference against \(KindSection.reference)</h3>"
        s +=
            #"<table class="metrics diff" data-table="\#(k.name)-difference"><tr><th>method − \#(KindSection.reference)</th>"#
        s += "<th>pairs</th>" + k.pairedColumns.map { "<th>\($0.title)</th>" }.joined() + "</tr>"
        for m in k.methods {
            guard let d = m.difference else { continue }
            s += "<tr><th>\(HTML.escape(m.method))</th>" + differenceCells(k, method: m.method, group: "all", d.overall)
            s += "</tr>"
        }
        s += "</table>"
        let what = k.name == "generation" ? "(prompt, seed, emotion)" : "(source image, emotion)"
        s += #"<p class="muted">Each job paired with the \#(KindSection.reference) job of the same \#(what): "#
        s += "the mean of (method − \(KindSection.reference)) with its 95 % paired bootstrap interval. Bold: the "
        s += "interval excludes 0, the two methods differ."
        let guide = k.methods.contains { m in
            guard let d = m.difference else { return false }
            return ([d.overall] + Array(d.emotions.values)).contains {
                $0.metrics.values.contains { $0.source == "guide" }
            }
        }
        if guide { s += "<br>† no pair has the evaluator's values: the guide classifier's (flattering)." }
        return s + "</p>"
    }

    private func differenceCells(_ k: KindSection, method: String, group: String, _ p: PairedGroup) -> String {
        let pairsKey = HTML.escape("\(k.name).\(method).\(group).pairs")
        var s = #"<td class="num" data-metric="\#(pairsKey)" data-digits="0">\#(p.pairs)</td>"#
        for col in k.pairedColumns {
            let key = "\(k.name).\(method).\(group).\(col.metric)"
            let metric = p.metrics[col.metric]
            let resolved = metric?.interval.map { $0.low > 0 || $0.high < 0 } ?? false
            s += #"<td class="num\#(resolved ? " resolved" : "")" data-metric="\#(HTML.escape(key)).diff" "#
            s += #"data-digits="\#(col.digits)">\#(KindSection.format(metric?.diff, col.digits) ?? "—")"#
            if metric?.diff != nil, let i = metric?.interval {
                s += interval(i, key: key, low: "diff_low", high: "diff_high", digits: col.digits)
            }
            if metric?.source == "guide" { s += "<sup>†</sup>" }
            s += "</td>"
        }
        return s
    }

    /// " [low, high]", each end a checkable cell of its own.
    private func interval(_ i: Interval, key: String, low: String, high: String, digits: Int) -> String {
        let d = KindSection.intervalDigits(digits)
        let k = HTML.escape(key)
        return
            #"<span class="ci"> [<span data-metric="\#(k).\#(low)" data-digits="\#(d)">\#(KindSection.format(i.low, d)!)"#
            + #"</span>, <span data-metric="\#(k).\#(high)" data-digits="\#(d)">\#(KindSection.format(i.high, d)!)</span>]"#
            + "</span>"
    }

    /// Done jobs per method by guidance start reason.
    private func startReasonTable(_ k: KindSection) -> String {
        guard k.methods.contains(where: { !$0.startReasons.isEmpty }) else { return "" }
        let reasons = k.startReasonColumns
        var s = "<h3>Guidance start</h3>"
        s += #"<table class="metrics" data-table="\#(k.name)-start-reasons"><tr><th>method</th>"#
        s += reasons.map { "<th>\(HTML.escape($0))</th>" }.joined() + "<th>no start reason</th></tr>"
        for m in k.methods {
            s += "<tr><th>\(HTML.escape(m.method))</th>"
            for (r, n) in reasons.map({ ($0, m.startReasons[$0] ?? 0) }) + [("absent", m.startReasonAbsent)] {
                let key = HTML.escape("\(k.name).\(m.method).all.start_reason.\(r)")
                s += #"<td class="num" data-metric="\#(key)" data-digits="0">\#(n)</td>"#
            }
            s += "</tr>"
        }
        s += "</table>"
        s += #"<p class="muted">Done jobs by why guidance started (trace.start_reason); none: methods "#
        s += "without guidance, or manifests without a trace summary.</p>"
        return s
    }

    private func cells(_ k: KindSection, method: String, group: String, _ g: GroupMetrics) -> String {
        k.columns.map { col in
            let key = "\(k.name).\(method).\(group).\(col.metric)"
            let value = g.value(col.metric)
            var s = #"<td class="num" data-metric="\#(HTML.escape(key))" data-digits="\#(col.digits)">"#
            s += KindSection.format(value, col.digits) ?? "—"
            if value != nil, let i = g.intervals[col.metric] {
                s += interval(i, key: key, low: "ci_low", high: "ci_high", digits: col.digits)
            }
            if col.metric == "emo_s" && g.emoSSource == "guide" { s += "<sup>‡</sup>" }
            return s + "</td>"
        }.joined()
    }

    private func footnotes(_ groups: [GroupMetrics]) -> String {
        var notes: [String] = []
        if groups.contains(where: { $0.emoASource == "guide" && $0.done > 0 }) {
            notes.append("† no evaluator result: Emo-A and target prob are the guide classifier's (flattering).")
        }
        if groups.contains(where: { $0.emoSSource == "guide" }) {
            notes.append(
                "‡ Emo-S from the guide classifier's probabilities on source and edit (no evaluator source "
                    + "probabilities): flattering.")
        }
        let identical = groups.map(\.psnrIdentical).reduce(0, +)
        if identical > 0 {
            notes.append(
                "PSNR: \(identical) edit(s) identical to their source (PSNR = ∞) are left out of the PSNR mean.")
        }
        return notes.isEmpty ? "" : #"<p class="muted">\#(notes.map(HTML.escape).joined(separator: "<br>"))</p>"#
    }

    private func definitionsSection() -> String {
        let order = [
            "emo_a", "target_probability", "guide_emo_a", "emo_s", "clip_score", "sem_d", "psnr", "ssim", "clip_i",
            "interval", "difference", "start_reason",
        ]
        var s = #"<h2>Metric definitions</h2><dl class="defs">"#
        for key in order {
            guard let d = summary.definitions[key] else { continue }
            s += "<dt>\(key)</dt><dd>\(HTML.escape(d))</dd>"
        }
        return s + "</dl>"
    }

    // MARK: contact sheet

    private func contactSheet(_ k: KindSection) -> String {
        let jobs = summary.jobs.filter { ($0.kind == "generate") == (k.name == "generation") }
        var s = "<h2>Contact sheet: \(k.name)</h2>"
        let by =
            switch summary.evaluation.source {
            case "guide": "the guide classifier (no evaluator result)"
            case "mixed": "the evaluator; ᵍ: the guide classifier, where a job has no evaluator result"
            default: "the evaluator"
            }
        s += #"<p class="muted">Each cell: p(target) · top-1 emotion (green: the target), by \#(by).</p>"#
        for m in k.methods {
            if k.methods.count > 1 { s += "<h3>\(HTML.escape(m.method))</h3>" }
            let mine = jobs.filter { $0.method == m.method }
            // One row per (prompt, seed), or per source image; in the manifest's order.
            var rows: [(key: String, jobs: [ReportJob])] = []
            for j in mine {
                let key = k.name == "generation" ? "\(j.prompt)\u{0}\(j.seed ?? 0)" : (j.source ?? j.prompt)
                if let i = rows.firstIndex(where: { $0.key == key }) {
                    rows[i].jobs.append(j)
                } else {
                    rows.append((key, [j]))
                }
            }
            s += #"<table class="sheet" data-table="sheet-\#(k.name)-\#(HTML.escape(m.method))"><tr>"#
            s += k.name == "generation" ? "<th>prompt · seed</th>" : "<th>source</th>"
            s += k.emotions.map { "<th>\(HTML.escape($0))</th>" }.joined() + "</tr>"
            for row in rows {
                let first = row.jobs[0]
                s += "<tr>"
                if k.name == "generation" {
                    s +=
                        #"<th class="row">\#(HTML.escape(first.prompt))<br><span class="muted">seed \#(first.seed ?? 0)</span></th>"#
                } else if let src = first.source {
                    s += #"<td><img src="\#(HTML.link(src, prefix: ""))" alt="source" loading="lazy">"#
                    s += #"<div class="cap">\#(HTML.escape(first.sourceImage ?? src))</div></td>"#
                } else {
                    s += #"<td class="absent">no source</td>"#
                }
                for e in k.emotions {
                    guard let j = row.jobs.first(where: { $0.emotion == e }) else {
                        s += #"<td class="absent"></td>"#
                        continue
                    }
                    s += sheetCell(j)
                }
                s += "</tr>"
            }
            s += "</table>"
        }
        return s
    }

    private func sheetCell(_ j: ReportJob) -> String {
        let link = jobLink(j, prefix: "")
        guard j.isDone, let out = j.output else {
            let why = j.error ?? j.status
            return #"<td class="failed"><a href="\#(link)">failed</a><br>\#(HTML.escape(String(why.prefix(160))))</td>"#
        }
        let fromEvaluator = j.evaluatorTop != nil
        let top = j.evaluatorTop ?? j.guideTop
        let p = fromEvaluator ? j.evaluatorTargetProbability : j.guideTargetProbability
        let hit = top == j.emotion
        var cap = "p " + (p.map { String(format: "%.2f", $0) } ?? "—")
        cap += #" · <span class="\#(hit ? "hit" : "miss")">\#(HTML.escape(top ?? "—"))</span>"#
        // Only worth a mark when some cells are the evaluator's: otherwise the sheet's caption says it.
        if !fromEvaluator && summary.evaluation.source != "guide" { cap += " ᵍ" }
        return #"<td><a href="\#(link)"><img src="\#(HTML.link(out, prefix: ""))" alt="\#(HTML.escape(j.emotion))" "#
            + #"loading="lazy"></a><div class="cap">\#(cap)</div></td>"#
    }

    private func jobIndex() -> String {
        var s = #"<table class="jobs"><tr><th>job</th><th>kind</th><th>method</th><th>emotion</th><th>prompt</th>"#
        s += "<th>status</th><th>p(target) · top-1</th></tr>"
        for j in summary.jobs {
            s += #"<tr><td><a href="\#(jobLink(j, prefix: ""))">\#(j.jobID.prefix(12))</a></td><td>\#(j.kind)</td>"#
            s += "<td>\(HTML.escape(j.method))</td><td>\(HTML.escape(j.emotion))</td><td>\(HTML.escape(j.prompt))</td>"
            let p = j.evaluatorTop != nil ? j.evaluatorTargetProbability : j.guideTargetProbability
            let top = j.evaluatorTop ?? j.guideTop
            let result = j.isDone ? "\(p.map { String(format: "%.2f", $0) } ?? "—") · \(top ?? "—")" : ""
            s += "<td>\(HTML.escape(j.status))</td><td>\(HTML.escape(result))</td></tr>"
        }
        return s + "</table>"
    }

    // MARK: one job

    func jobSection(_ j: ReportJob, prefix: String) -> String {
        var s = #"<section class="job" id="job-\#(j.jobID)"><h3>\#(HTML.escape(j.emotion)) · \#(HTML.escape(j.method))"#
        s += " · “\(HTML.escape(j.prompt))”\(j.kind == "generate" ? " · seed \(j.seed ?? 0)" : " (edit)")"
        s += #" <span class="muted">\#(j.jobID)</span></h3><div class="jobrow">"#
        if let out = j.output, j.isDone {
            s += #"<figure><img src="\#(HTML.link(out, prefix: prefix))" alt="output"><figcaption>result</figcaption>"#
            s += "</figure>"
        }
        if let src = j.source {
            s += #"<figure><img src="\#(HTML.link(src, prefix: prefix))" alt="source"><figcaption>source</figcaption>"#
            s += "</figure>"
        }
        s += facts(j, prefix: prefix) + "</div>"
        s += #"<div class="charts">"# + Self.charts(j).joined() + "</div></section>"
        return s
    }

    private func facts(_ j: ReportJob, prefix: String) -> String {
        func num(_ v: Double?, _ digits: Int) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "—" }
        var rows: [(String, String)] = [("status", HTML.escape(j.status))]
        if let e = j.error { rows.append(("error", HTML.escape(e))) }
        let reason = j.startReason.map { " (\(HTML.escape($0)))" } ?? ""
        rows.append(("start step", (j.startStep.map(String.init) ?? "—") + reason))
        rows.append(("stop step (excl.)", j.stopStep.map(String.init) ?? "—"))
        rows.append(("inherent e_inh", HTML.escape(j.inherent ?? "—")))
        rows.append(
            ("similar S", HTML.escape(j.similar.map { $0.isEmpty ? "none" : $0.joined(separator: ", ") } ?? "—")))
        rows.append(
            ("guide top-1 · p(target)", "\(HTML.escape(j.guideTop ?? "—")) · \(num(j.guideTargetProbability, 3))"))
        rows.append(
            (
                "evaluator top-1 · p(target)",
                "\(HTML.escape(j.evaluatorTop ?? "—")) · \(num(j.evaluatorTargetProbability, 3))"
            ))
        rows.append(("CLIP score", num(j.clipScore, 2)))
        if j.kind == "edit" {
            let psnr = j.psnrIdentical == true ? "∞ (identical)" : num(j.psnr, 2)
            rows.append(("PSNR · SSIM", "\(psnr) dB · \(num(j.ssim, 4))"))
            rows.append(("CLIP-I", num(j.clipI, 4) + (j.clipIFrom == "trace" ? " (from trace)" : "")))
            rows.append(("Emo-S evaluator · guide", "\(num(j.evaluatorEmoS, 3)) · \(num(j.guideEmoS, 3))"))
            if let n = j.fidelityNote { rows.append(("fidelity", HTML.escape(n))) }
        }
        if let t = j.traceFile {
            rows.append(("trace", #"<a href="\#(HTML.link(t, prefix: prefix))">\#(HTML.escape(t))</a>"#))
        }
        return #"<table class="facts">"# + rows.map { "<tr><td>\($0.0)</td><td>\($0.1)</td></tr>" }.joined()
            + "</table>"
    }

    /// Fig. 2 of the paper, per job: class probabilities per inner iteration across the guided
    /// steps, and s_t per step with the start and stop of guidance.
    static func charts(_ j: ReportJob) -> [String] {
        var out: [String] = []
        let steps = (j.trace?.stepsTrace ?? []).sorted { $0.index < $1.index }
        let names =
            j.trace?.emotions ?? [
                "amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness",
            ]
        func series(_ rows: [(x: Double, p: [Double])]) -> [SVGChart.Series] {
            names.enumerated().map { k, name in
                SVGChart.Series(
                    name: name, color: emotionColors[name] ?? "#777",
                    points: rows.compactMap { k < $0.p.count ? ($0.x, $0.p[k]) : nil }, bold: name == j.emotion)
            }
        }
        // Probabilities per inner iteration, across the guided steps; boundaries between steps marked.
        var rows: [(x: Double, p: [Double])] = []
        var markers: [SVGChart.Marker] = []
        let guided = steps.filter { $0.guided == true && !($0.inner ?? []).isEmpty }
        let every = max(1, Int((Double(guided.count) / 10).rounded(.up)))
        for (n, step) in guided.enumerated() {
            markers.append(
                .init(x: Double(rows.count), label: n % every == 0 ? "\(step.index)" : "", color: "#bbb"))
            for inner in step.inner ?? [] { if let p = inner.probabilities { rows.append((Double(rows.count), p)) } }
        }
        if !rows.isEmpty {
            out.append(
                SVGChart(
                    title: "class probabilities per inner iteration (guided steps)",
                    xLabel: "inner iteration (dashed: a new step, labelled by its index)",
                    yLabel: "probability", series: series(rows), markers: markers, yRange: 0...1
                ).render())
        } else {
            let perStep = steps.compactMap { s in s.probabilities.map { (x: Double(s.index), p: $0) } }
            if !perStep.isEmpty {
                out.append(
                    SVGChart(
                        title: "class probabilities per step", xLabel: "step", yLabel: "probability",
                        series: series(perStep), yRange: 0...1
                    ).render())
            } else {
                out.append(
                    #"<p class="nochart muted">no per-iteration probabilities (no trace file, or no guided step)</p>"#)
            }
        }
        // s_t per step: from the trace file, else from the manifest's summary.
        var st = steps.compactMap { s in s.sT.map { (x: Double(s.index), y: $0) } }
        if st.isEmpty, case .array(let a)? = j.summary?["s_t"] {
            let first = j.summary?["first_step"]?.doubleValue ?? 0
            st = a.enumerated().compactMap { i, v in v.doubleValue.map { (x: first + Double(i), y: $0) } }
        }
        var stMarkers: [SVGChart.Marker] = []
        if let s = j.startStep {
            stMarkers.append(
                .init(x: Double(s), label: "start (\(j.startReason ?? "?"))", color: "#1a7f1a", dashed: false))
        }
        if let s = j.stopStep { stMarkers.append(.init(x: Double(s), label: "stop", color: "#b22", dashed: false)) }
        var band: ClosedRange<Double>?
        if let a = j.startStep, let b = j.stopStep, b > a { band = Double(a)...Double(b) }
        out.append(
            SVGChart(
                title: "s_t: CLIP similarity of the x̂0 preview with the prompt", xLabel: "step", yLabel: "s_t",
                series: [.init(name: "s_t", color: "#333", points: st)], markers: stMarkers, band: band,
                width: 440, legend: false
            ).render())
        if let drift = j.trace?.tokenDrift, !drift.isEmpty {
            // One value per step: line it up with the steps (or the guided steps) it belongs to.
            let xs =
                drift.count == steps.count
                ? steps.map(\.index) : drift.count == guided.count ? guided.map(\.index) : nil
            let pts = drift.enumerated().map { (x: Double(xs?[$0.offset] ?? $0.offset), y: $0.element) }
            out.append(
                SVGChart(
                    title: "token drift per step", xLabel: "step", yLabel: "drift",
                    series: [.init(name: "drift", color: "#555", points: pts)], width: 360, legend: false
                ).render())
        }
        return out
    }
}
