import Foundation
import Support

/// report.json: every number the HTML report shows, and what was missing to compute the rest.
public struct ReportSummary: Encodable {
    public struct Count: Encodable, Equatable {
        public var kind: String
        public var method: String
        public var done: Int
        public var failed: Int
    }

    public struct Evaluation: Encodable {
        /// "evaluator" (every done job has an evaluator result), "mixed", or "guide" (none has:
        /// Emo-A is the guide classifier's, which the token was optimised against — flattering).
        public var source: String
        /// The evaluator classifiers named by the manifest.
        public var classifiers: [String]
        /// The guide classifiers named by the trace summaries.
        public var guideClassifiers: [String]
        public var doneJobs: Int
        public var jobsWithEvaluator: Int
        /// The evaluator is the guide classifier itself: on some manifest line,
        /// `models.fingerprints` has `evaluator_tower` = `tower` and `evaluator_head` = `head`
        /// (both absent: zero-shot, the towers alone). Its Emo-A is then flattering.
        public var evaluatorIsGuide: Bool
        /// The lines where it is, and the lines with an evaluator fingerprint to compare.
        public var evaluatorIsGuideJobs: Int
        public var fingerprintedJobs: Int
        /// CLIP score, CLIP-I and Sem-D were measured in the guide classifier's own tower (no
        /// prompt tower and no `evaluation.clip_tower`) on this many manifest lines.
        public var clipIsGuideTowerJobs: Int
        /// The most important warning (the evaluator being the guide comes first), and all of them.
        public var warning: String?
        public var warnings: [String]

        enum CodingKeys: String, CodingKey {
            case source, classifiers, warning, warnings
            case guideClassifiers = "guide_classifiers"
            case doneJobs = "done_jobs"
            case jobsWithEvaluator = "jobs_with_evaluator"
            case evaluatorIsGuide = "evaluator_is_guide"
            case evaluatorIsGuideJobs = "evaluator_is_guide_jobs"
            case fingerprintedJobs = "fingerprinted_jobs"
            case clipIsGuideTowerJobs = "clip_is_guide_tower_jobs"
        }
    }

    public var folder: String
    public var generatedAt: String
    public var batches: [String]
    public var counts: [Count]
    public var evaluation: Evaluation
    /// What was missing or unreadable, in words.
    public var notes: [String]
    public var generation: KindSection?
    public var editing: KindSection?
    /// Every number of the HTML's metric tables, flat: `<kind>.<method>.<all|emotion>.<metric>`.
    public var cells: [String: JSONValue]
    public var definitions: [String: String]
    public var jobs: [ReportJob]

    enum CodingKeys: String, CodingKey {
        case folder, batches, counts, evaluation, notes, generation, editing, cells, definitions, jobs
        case generatedAt = "generated_at"
    }

    /// The metric definitions, stated once for report.json and the HTML.
    public static let definitions: [String: String] = [
        "emo_a":
            "Emo-A: fraction of done jobs whose evaluator top-1 emotion is the target, over the done jobs with an "
            + "evaluator result; when a group has none, the guide classifier's top-1 (flattering: the emotion token "
            + "was optimised against it).",
        "target_probability": "Mean probability of the target emotion, from the same classifier as Emo-A.",
        "guide_emo_a": "Emo-A by the guide classifier (the one guidance optimised against), always.",
        "clip_score": "Mean CLIP score: 100·max(cos(CLIP image embedding, CLIP text embedding of the prompt), 0), "
            + "computed by the worker.",
        "sem_d":
            "Sem-D (generation): for each (method, emotion) group with at least 2 images, the mean over unordered "
            + "pairs i<j of 1 − cos(e_i, e_j) of the CLIP image embeddings from the trace files; then the mean of "
            + "those values over the emotions. A (method, emotion) row shows its own group's value.",
        "psnr":
            "PSNR (editing): 10·log10(255² / MSE) over the 8-bit RGB channels of source and edit; identical pairs "
            + "have infinite PSNR, are counted apart and left out of the mean (null when all are identical).",
        "ssim":
            "SSIM (editing): as skimage.metrics.structural_similarity(channel_axis=2, data_range=255): uniform 7×7 "
            + "window, sample covariance, K1=0.01, K2=0.03, averaged over the pixels at least 3 from the border, "
            + "per channel, then over R, G, B. Source and edit must have the same size.",
        "clip_i": "CLIP-I (editing): mean cosine between the CLIP image embeddings of source and edit (from the "
            + "manifest; else from the trace file's embeddings).",
        "emo_s":
            "Emo-S (editing): mean of p_edit(target) − p_source(target), by the evaluator (its probabilities on the "
            + "edit and on the source, `evaluation.source_probabilities`); when no edit of a group has those, by the "
            + "guide classifier (`source_probabilities`, flattering, marked ‡). Edits without source probabilities "
            + "(batches before Emo-S) are left out.",
        "interval":
            "[low, high]: 95 % percentile bootstrap interval of the mean: \(Bootstrap.resamples) resamples with "
            + "replacement of the group's jobs, the 2.5 % and 97.5 % quantiles of the resampled means (linear "
            + "interpolation); a fixed-seed SplitMix64 stream per cell, so the numbers are the same on every run. "
            + "Sem-D: the images of each emotion resampled apart, pairs of an image with its own copy left out.",
        "difference":
            "Difference against muse: jobs of a method paired with the muse job of the same kind and the same "
            + "(prompt, seed, emotion) for generation, (source image SHA-256, emotion) for edits; the mean of "
            + "(method − muse) over the pairs where both have a value, with a 95 % paired bootstrap interval (the "
            + "pairs resampled, as above). An interval entirely above or below 0 tells the two methods apart. "
            + "Emo-A, target prob and Emo-S use the evaluator's values (the guide's when no pair has them).",
        "start_reason":
            "Guidance start reason per done job (`trace.start_reason`): settled (s_t settled), latest (the "
            + "latest allowed step), fixed (fixed_start_fraction); none for methods without guidance.",
    ]
}

/// `muse-coordinator report OUTPUT_DIR`: report.json and a self-contained report.html beside
/// the manifest (images by relative path, charts as inline SVG, no script).
public enum Report {
    public static let jsonName = "report.json"
    public static let htmlName = "report.html"
    /// Per-job pages, when there are more jobs than one page should hold.
    public static let pagesFolder = "report"

    public struct Written {
        public var json: URL
        public var html: URL
        public var pages: Int
        public var summary: ReportSummary
    }

    /// Reads the folder, computes every metric and writes the report. More than `pagesAbove`
    /// jobs: per-job sections go to report/<job id>.html instead of into report.html.
    public static func write(folder: URL, pagesAbove: Int = 60) throws -> Written {
        let input = try ReportInput.load(folder: folder)
        let summary = build(input)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let json = folder.appendingPathComponent(jsonName)
        try Collector.writeDurably(try encoder.encode(summary) + Data("\n".utf8), to: json)
        let usePages = summary.jobs.count > pagesAbove
        let html = ReportHTML(summary: summary, jobPages: usePages)
        var pages = 0
        if usePages {
            for job in summary.jobs {
                let url = folder.appendingPathComponent("\(pagesFolder)/\(job.jobID).html")
                try Collector.writeDurably(Data(html.jobPage(job).utf8), to: url)
                pages += 1
            }
        }
        let page = folder.appendingPathComponent(htmlName)
        try Collector.writeDurably(Data(html.page().utf8), to: page)
        return Written(json: json, html: page, pages: pages, summary: summary)
    }

    /// The summary of what `input` holds (no files written).
    public static func build(_ input: ReportInput, now: Date = Date()) -> ReportSummary {
        let jobs = input.lines.enumerated().map {
            ReportJob(line: $0.element, trace: input.traces[$0.element.jobID], folder: input.folder, order: $0.offset)
        }.sorted { ($0.kind == "generate" ? 0 : 1, $0.order) < ($1.kind == "generate" ? 0 : 1, $1.order) }
        let generate = jobs.filter { $0.kind == "generate" }
        let edit = jobs.filter { $0.kind == "edit" }
        let generation = generate.isEmpty ? nil : KindSection(name: "generation", jobs: generate)
        let editing = edit.isEmpty ? nil : KindSection(name: "editing", jobs: edit)
        var cells: [String: JSONValue] = [:]
        var pairing: [String] = []
        for section in [generation, editing].compactMap({ $0 }) {
            cells.merge(section.cells) { a, _ in a }
            pairing += section.notes
        }
        var counts: [ReportSummary.Count] = []
        for (kind, group) in [("generate", generate), ("edit", edit)] {
            for m in ReportOrder.methods(group.map(\.method)) {
                let mine = group.filter { $0.method == m }
                counts.append(
                    .init(
                        kind: kind, method: m, done: mine.filter(\.isDone).count,
                        failed: mine.filter { $0.outcome == .failed }.count))
            }
        }
        let f = ISO8601DateFormatter()
        return ReportSummary(
            folder: input.folder.path, generatedAt: f.string(from: now),
            batches: Array(Set(input.lines.compactMap(\.batchID))).sorted(), counts: counts,
            evaluation: evaluation(input.lines, jobs), notes: input.notes + missing(input, jobs) + pairing,
            generation: generation, editing: editing, cells: cells, definitions: ReportSummary.definitions,
            jobs: jobs)
    }

    static func evaluation(_ lines: [ReportLine], _ jobs: [ReportJob]) -> ReportSummary.Evaluation {
        let done = jobs.filter(\.isDone)
        let withEvaluator = done.filter { $0.evaluatorTop != nil }.count
        let classifiers = Set(lines.compactMap { $0.evaluation?.classifier }).sorted()
        let guides = Set(lines.compactMap { $0.trace?["classifier"]?.stringValue }).sorted()
        let fingerprinted = lines.compactMap { $0.models?.fingerprints }.filter { $0.evaluatorTower != nil }
        let same = fingerprinted.filter(evaluatorIsGuide).count
        let clipInGuide = lines.compactMap { $0.models?.fingerprints }.filter {
            $0.tower != nil && $0.measuringCLIPTower == $0.tower
        }.count
        var e = ReportSummary.Evaluation(
            source: withEvaluator == 0 ? "guide" : withEvaluator == done.count ? "evaluator" : "mixed",
            classifiers: classifiers, guideClassifiers: guides, doneJobs: done.count, jobsWithEvaluator: withEvaluator,
            evaluatorIsGuide: same > 0, evaluatorIsGuideJobs: same, fingerprintedJobs: fingerprinted.count,
            clipIsGuideTowerJobs: clipInGuide, warning: nil, warnings: [])
        if same > 0 {
            e.warnings.append(
                "the evaluator is the guide classifier itself (same model fingerprints: evaluator_tower = tower and "
                    + "evaluator_head = head) on \(same) of \(lines.count) job(s): its Emo-A, target probability and "
                    + "Emo-S are flattering — the emotion token was optimised against that classifier")
        }
        if done.isEmpty {
            e.warnings.append("no done jobs: nothing was evaluated")
        } else if withEvaluator == 0 {
            e.warnings.append(
                "no job has an evaluator result: Emo-A and the target probability are the guide classifier's "
                    + "(flattering — the emotion token was optimised against it)")
        } else if withEvaluator < done.count {
            e.warnings.append(
                "only \(withEvaluator) of \(done.count) done jobs have an evaluator result: a group's Emo-A counts "
                    + "those; groups without any fall back to the guide classifier (flattering)")
        }
        if clipInGuide > 0 {
            e.warnings.append(
                "CLIP score, CLIP-I and Sem-D were measured in the guide classifier's own tower on \(clipInGuide) of "
                    + "\(lines.count) job(s) (no classifier.prompt_tower or evaluation.clip_tower/clip_text): the guide "
                    + "shaped those images, so its space may flatter them")
        }
        e.warning = e.warnings.first
        return e
    }

    /// The evaluator is the guide when its tower and head have the guide's fingerprints; two
    /// zero-shot classifiers (no heads) are the same when their towers are.
    static func evaluatorIsGuide(_ f: ReportLine.Fingerprints) -> Bool {
        guard let tower = f.evaluatorTower else { return false }
        return tower == f.tower && f.evaluatorHead == f.head
    }

    /// `report --markdown`: the warnings, then per kind the method table (means with their 95 %
    /// intervals), the differences against muse and the guidance start reasons.
    public static func markdown(_ summary: ReportSummary) -> String {
        var parts: [String] = []
        for w in summary.evaluation.warnings { parts.append("> **⚠ Warning:** \(w)") }
        for k in [summary.generation, summary.editing].compactMap({ $0 }) {
            parts.append(k.markdown)
            if let d = k.differenceMarkdown { parts.append(d) }
            if let r = k.startReasonMarkdown { parts.append(r) }
        }
        return parts.joined(separator: "\n\n")
    }

    /// What the manifest and trace files lacked, counted: old manifests are reported, not refused.
    static func missing(_ input: ReportInput, _ jobs: [ReportJob]) -> [String] {
        var notes: [String] = []
        let byID = Dictionary(input.lines.map { ($0.jobID, $0) }, uniquingKeysWith: { a, _ in a })
        let done = jobs.filter(\.isDone)
        func note(_ count: Int, of total: Int, _ what: String) {
            if count > 0 { notes.append("\(count) of \(total) done job(s) \(what)") }
        }
        note(done.filter { byID[$0.jobID]?.evaluation == nil }.count, of: done.count, "have no `evaluation` field")
        note(done.filter { $0.clipScore == nil }.count, of: done.count, "have no CLIP score")
        note(
            done.filter { byID[$0.jobID]?.traceFile == nil }.count, of: done.count,
            "have no `trace_file`: no probability curves or embeddings for them")
        note(
            done.filter { $0.trace != nil && $0.embedding == nil }.count, of: done.count,
            "have a trace file without `embeddings.image`: left out of Sem-D")
        let edits = done.filter { $0.kind == "edit" }
        note(
            edits.filter { byID[$0.jobID]?.sourceOutput == nil }.count, of: edits.count,
            "(edits) have no `source_output`: the source is looked up as sources/<sha256-16>.png")
        note(edits.filter { $0.clipI == nil }.count, of: edits.count, "(edits) have no CLIP-I")
        note(
            edits.filter { $0.evaluatorEmoS == nil && $0.guideEmoS == nil }.count, of: edits.count,
            "(edits) have no source probabilities (`evaluation.source_probabilities`, `source_probabilities`): "
                + "no Emo-S for them")
        note(
            edits.filter { $0.evaluatorEmoS == nil && $0.guideEmoS != nil }.count, of: edits.count,
            "(edits) have only the guide classifier's `source_probabilities`: their Emo-S is the guide's")
        var reasons: [String: Int] = [:]
        for e in edits { if let why = e.fidelityNote { reasons[why, default: 0] += 1 } }
        let sorted = reasons.sorted { $0.key < $1.key }
        for (why, n) in sorted.prefix(8) { notes.append("PSNR/SSIM not computed for \(n) edit(s): \(why)") }
        if sorted.count > 8 {
            let rest = sorted.dropFirst(8).map(\.value).reduce(0, +)
            notes.append(
                "PSNR/SSIM not computed for \(rest) more edit(s), for other reasons (see jobs[].fidelity_note)")
        }
        return notes
    }
}
