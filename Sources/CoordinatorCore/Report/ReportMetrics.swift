import Foundation
import Imaging
import Jobs
import Support
import Vocabulary

/// One job as the report shows it: the guide classifier's numbers beside the evaluator's, and
/// for edits the fidelity metrics computed here from the PNGs.
public struct ReportJob: Encodable {
    public var jobID: String
    public var kind: String
    public var method: String
    public var emotion: String
    public var prompt: String
    public var seed: UInt64?
    /// The line's status, or "unknown" when it has none (report.json).
    public var status: String
    public var output: String?
    /// Edits: the source PNG, relative to the output folder, and the image the spec named.
    public var source: String?
    public var sourceImage: String?
    public var error: String?
    public var evaluatorTop: String?
    public var evaluatorTargetProbability: Double?
    public var guideTop: String?
    public var guideTargetProbability: Double?
    public var clipScore: Double?
    public var clipI: Double?
    /// "manifest", or "trace" when CLIP-I was recomputed from the trace file's embeddings.
    public var clipIFrom: String?
    /// nil when identical (`psnrIdentical`: PSNR is infinite) or not computable (`fidelityNote`).
    public var psnr: Double?
    public var psnrIdentical: Bool?
    public var ssim: Double?
    public var fidelityNote: String?
    public var traceFile: String?
    public var startStep: Int?
    public var startReason: String?
    public var stopStep: Int?
    public var inherent: String?
    public var similar: [String]?

    // Kept for the HTML, not written to report.json.
    var embedding: [Double]?
    var trace: TraceFile?
    var summary: JSONValue?
    var order: Int
    /// The line's status as read (nil: it has none).
    var outcome: JobStatus?

    enum CodingKeys: String, CodingKey {
        case kind, method, emotion, prompt, seed, status, output, source, error, psnr, ssim, inherent, similar
        case jobID = "job_id"
        case evaluatorTop = "evaluator_top"
        case evaluatorTargetProbability = "evaluator_target_probability"
        case guideTop = "guide_top"
        case guideTargetProbability = "guide_target_probability"
        case clipScore = "clip_score"
        case clipI = "clip_i"
        case clipIFrom = "clip_i_from"
        case sourceImage = "source_image"
        case psnrIdentical = "psnr_identical"
        case fidelityNote = "fidelity_note"
        case traceFile = "trace_file"
        case startStep = "start_step"
        case startReason = "start_reason"
        case stopStep = "stop_step"
    }

    var isDone: Bool { outcome == .done }
    var evaluatorHit: Bool? { evaluatorTop.map { $0 == emotion } }
    var guideHit: Bool? { guideTop.map { $0 == emotion } }

    /// The job from its manifest line and trace file; for a done edit, PSNR and SSIM between
    /// its source and its PNG (a missing or unreadable file becomes `fidelityNote`).
    init(line: ReportLine, trace: TraceFile?, folder: URL, order: Int) {
        jobID = line.jobID
        kind = line.kind ?? "generate"
        method = line.method ?? trace?.method ?? "unknown"
        emotion = line.emotion ?? trace?.emotion ?? "unknown"
        prompt = line.prompt ?? trace?.prompt ?? ""
        seed = line.seed
        outcome = line.status
        status = line.status?.rawValue ?? "unknown"
        output = line.output
        error = line.error
        self.order = line.index ?? order
        self.trace = trace
        summary = line.trace
        traceFile = line.traceFile
        guideTop = line.topEmotion ?? Self.argmax(line.probabilities)
        guideTargetProbability = line.targetProbability ?? line.probabilities?[emotion]
        let ev = line.evaluation
        evaluatorTop = ev?.topEmotion ?? Self.argmax(ev?.probabilities)
        evaluatorTargetProbability = ev?.targetProbability ?? ev?.probabilities?[emotion]
        clipScore = ev?.clipScore
        embedding = trace?.embeddings?.image
        startStep = trace?.startStep ?? line.trace?["start_step"]?.doubleValue.map { Int($0) }
        startReason = trace?.startReason ?? line.trace?["start_reason"]?.stringValue
        stopStep = trace?.stopStep ?? line.trace?["stop_step"]?.doubleValue.map { Int($0) }
        inherent = trace?.inherent ?? line.trace?["inherent"]?.stringValue
        similar = trace?.similar ?? Self.strings(line.trace?["similar"])
        guard kind == "edit" else { return }
        source = line.sourceOutput ?? line.image?.sha256.map { "sources/\($0.prefix(16)).png" }
        sourceImage = line.image?.path
        if let c = ev?.clipI {
            clipI = c
            clipIFrom = "manifest"
        } else if let a = trace?.embeddings?.image, let b = trace?.embeddings?.source,
            let c = EmbeddingMetrics.cosine(a, b)
        {
            clipI = c
            clipIFrom = "trace"
        }
        if isDone { measureFidelity(folder: folder) }
    }

    private mutating func measureFidelity(folder: URL) {
        guard let source, let output else {
            fidelityNote = source == nil ? "the manifest names no source image" : "no output PNG"
            return
        }
        /// The image, or why there is none.
        func load(_ rel: String) -> (image: RGBImage?, why: String) {
            guard let url = try? PathConfinement.resolve(rel, under: folder) else { return (nil, "\(rel): bad path") }
            guard let data = FileManager.default.contents(atPath: url.path) else { return (nil, "\(rel) not found") }
            do { return (try PNGCodec.decode(data), "") } catch { return (nil, "\(rel): \(error)") }
        }
        let (src, edit) = (load(source), load(output))
        guard let a = src.image, let b = edit.image else {
            fidelityNote = src.image == nil ? src.why : edit.why
            return
        }
        guard a.width == b.width, a.height == b.height else {
            fidelityNote = "sizes differ (source \(a.width)×\(a.height), edit \(b.width)×\(b.height)): no PSNR/SSIM"
            return
        }
        let p = ImageMetrics.psnr(a, b)
        psnrIdentical = p == .infinity
        psnr = p == .infinity ? nil : p
        ssim = ImageMetrics.ssim(a, b)
        if ssim == nil { fidelityNote = "image smaller than SSIM's 7×7 window: no SSIM" }
    }

    static func argmax(_ p: [String: Double]?) -> String? {
        p?.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key
    }

    static func strings(_ v: JSONValue?) -> [String]? {
        guard case .array(let a)? = v else { return nil }
        return a.compactMap(\.stringValue)
    }
}

/// The numbers of one group of jobs (a method, or a method × emotion).
///
/// - Emo-A: the fraction of done jobs whose evaluator top-1 emotion is the target, over the
///   done jobs that have an evaluator result; when none has, the guide classifier's top-1
///   (`emoASource` "guide": flattering, the token was optimised against that classifier).
/// - targetProbability: the mean probability of the target, from the same classifier.
/// - guideEmoA / guideTargetProbability: the guide classifier's, always.
/// - clipScore: the mean of the manifest's CLIP scores (100·max(cos(image, prompt), 0)).
/// - Sem-D (generation): for each emotion of the group with ≥ 2 image embeddings (from the
///   trace files), the mean over unordered pairs i < j of 1 − cos(e_i, e_j); then the mean of
///   those per-emotion values. For a method × emotion group it is that emotion's own value.
/// - psnr, ssim (editing): means over done edits whose source and edit could be compared;
///   identical pairs (PSNR infinite) are counted in `psnrIdentical` and left out of the PSNR mean.
/// - clipI (editing): the mean of the manifest's CLIP-I (else recomputed from the trace's embeddings).
public struct GroupMetrics: Encodable, Equatable {
    public var done = 0
    public var failed = 0
    public var emoA: Double?
    public var emoASource = "evaluator"
    public var emoAJobs = 0
    public var targetProbability: Double?
    public var guideEmoA: Double?
    public var guideTargetProbability: Double?
    public var clipScore: Double?
    public var clipScoreJobs = 0
    public var semD: Double?
    public var semDEmotions = 0
    public var psnr: Double?
    public var psnrJobs = 0
    public var psnrIdentical = 0
    public var ssim: Double?
    public var ssimJobs = 0
    public var clipI: Double?
    public var clipIJobs = 0

    enum CodingKeys: String, CodingKey {
        case done, failed, psnr, ssim
        case emoA = "emo_a"
        case emoASource = "emo_a_source"
        case emoAJobs = "emo_a_jobs"
        case targetProbability = "target_probability"
        case guideEmoA = "guide_emo_a"
        case guideTargetProbability = "guide_target_probability"
        case clipScore = "clip_score"
        case clipScoreJobs = "clip_score_jobs"
        case semD = "sem_d"
        case semDEmotions = "sem_d_emotions"
        case psnrJobs = "psnr_jobs"
        case psnrIdentical = "psnr_identical"
        case ssimJobs = "ssim_jobs"
        case clipI = "clip_i"
        case clipIJobs = "clip_i_jobs"
    }

    /// Every key, missing values as null: a reader sees what could not be computed.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(done, forKey: .done)
        try c.encode(failed, forKey: .failed)
        try c.encode(emoA, forKey: .emoA)
        try c.encode(emoASource, forKey: .emoASource)
        try c.encode(emoAJobs, forKey: .emoAJobs)
        try c.encode(targetProbability, forKey: .targetProbability)
        try c.encode(guideEmoA, forKey: .guideEmoA)
        try c.encode(guideTargetProbability, forKey: .guideTargetProbability)
        try c.encode(clipScore, forKey: .clipScore)
        try c.encode(clipScoreJobs, forKey: .clipScoreJobs)
        try c.encode(semD, forKey: .semD)
        try c.encode(semDEmotions, forKey: .semDEmotions)
        try c.encode(psnr, forKey: .psnr)
        try c.encode(psnrJobs, forKey: .psnrJobs)
        try c.encode(psnrIdentical, forKey: .psnrIdentical)
        try c.encode(ssim, forKey: .ssim)
        try c.encode(ssimJobs, forKey: .ssimJobs)
        try c.encode(clipI, forKey: .clipI)
        try c.encode(clipIJobs, forKey: .clipIJobs)
    }

    /// The metrics of `jobs` (done and failed; only done ones are measured).
    init(_ jobs: [ReportJob]) {
        let done = jobs.filter(\.isDone)
        self.done = done.count
        failed = jobs.filter { $0.outcome == .failed }.count
        func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
        func rate(_ hits: [Bool]) -> Double? {
            hits.isEmpty ? nil : Double(hits.filter { $0 }.count) / Double(hits.count)
        }
        let guideHits = done.compactMap(\.guideHit)
        guideEmoA = rate(guideHits)
        guideTargetProbability = mean(done.compactMap(\.guideTargetProbability))
        let evalHits = done.compactMap(\.evaluatorHit)
        if evalHits.isEmpty {
            emoASource = "guide"
            emoA = guideEmoA
            emoAJobs = guideHits.count
            targetProbability = guideTargetProbability
        } else {
            emoA = rate(evalHits)
            emoAJobs = evalHits.count
            targetProbability = mean(done.compactMap(\.evaluatorTargetProbability))
        }
        let scores = done.compactMap(\.clipScore)
        clipScore = mean(scores)
        clipScoreJobs = scores.count
        var perEmotion: [Double] = []
        for emotion in Set(done.map(\.emotion)).sorted() {
            let embeddings = done.filter { $0.emotion == emotion }.compactMap(\.embedding)
            if let d = EmbeddingMetrics.meanPairwiseDistance(embeddings) { perEmotion.append(d) }
        }
        semD = mean(perEmotion)
        semDEmotions = perEmotion.count
        let psnrs = done.compactMap(\.psnr)
        psnr = mean(psnrs)
        psnrJobs = psnrs.count
        psnrIdentical = done.filter { $0.psnrIdentical == true }.count
        let ssims = done.compactMap(\.ssim)
        ssim = mean(ssims)
        ssimJobs = ssims.count
        let clipIs = done.compactMap(\.clipI)
        clipI = mean(clipIs)
        clipIJobs = clipIs.count
    }

    /// A metric by its report.json name (the keys of `cells`).
    func value(_ metric: String) -> Double? {
        switch metric {
        case "done": return Double(done)
        case "failed": return Double(failed)
        case "emo_a": return emoA
        case "target_probability": return targetProbability
        case "guide_emo_a": return guideEmoA
        case "guide_target_probability": return guideTargetProbability
        case "clip_score": return clipScore
        case "sem_d": return semD
        case "psnr": return psnr
        case "ssim": return ssim
        case "clip_i": return clipI
        default: return nil
        }
    }
}

/// One kind's (generation's or editing's) metrics, per method, overall and per emotion.
public struct KindSection: Encodable {
    public struct Method: Encodable {
        public var method: String
        public var overall: GroupMetrics
        public var emotions: [String: GroupMetrics]
    }

    /// "generation" or "editing".
    public var name: String
    public var methods: [Method]
    /// The emotions present, in the canonical order.
    public var emotions: [String]

    /// The columns of this kind's tables: report.json metric name, heading, decimals shown.
    var columns: [(metric: String, title: String, digits: Int)] {
        var c: [(String, String, Int)] = [
            ("emo_a", "Emo-A", 3), ("target_probability", "target prob", 3), ("clip_score", "CLIP score", 2),
        ]
        if name == "generation" {
            c.append(("sem_d", "Sem-D", 4))
        } else {
            c += [("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4), ("clip_i", "CLIP-I", 4)]
        }
        c += [
            ("guide_emo_a", "guide Emo-A", 3), ("guide_target_probability", "guide target prob", 3),
            ("done", "done", 0), ("failed", "failed", 0),
        ]
        return c
    }

    /// The per-method table (all emotions together) as Markdown, the columns of the HTML's.
    public var markdown: String {
        let cols = columns
        var lines = [
            "| \(name) method | " + cols.map(\.title).joined(separator: " | ") + " |",
            "|---|" + cols.map { _ in "---:|" }.joined(),
        ]
        for m in methods {
            let cells = cols.map { c in
                m.overall.value(c.metric).map { String(format: "%.\(c.digits)f", $0) } ?? "–"
            }
            lines.append("| \(m.method) | " + cells.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n")
    }

    init(name: String, jobs: [ReportJob]) {
        self.name = name
        emotions = ReportOrder.emotions(jobs.map(\.emotion))
        methods = ReportOrder.methods(jobs.map(\.method)).map { method in
            let mine = jobs.filter { $0.method == method }
            var per: [String: GroupMetrics] = [:]
            for e in Set(mine.map(\.emotion)) { per[e] = GroupMetrics(mine.filter { $0.emotion == e }) }
            return Method(method: method, overall: GroupMetrics(mine), emotions: per)
        }
    }

    /// `<kind>.<method>.<all|emotion>.<metric>` → value: every number the HTML tables show,
    /// flat, so ops/report-check can find each one in the rendered page with grep.
    var cells: [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for m in methods {
            var groups = [("all", m.overall)]
            for e in emotions { if let g = m.emotions[e] { groups.append((e, g)) } }
            for (group, metrics) in groups {
                for col in columns {
                    out["\(name).\(m.method).\(group).\(col.metric)"] =
                        metrics.value(col.metric).map { .double($0) } ?? .null
                }
            }
        }
        return out
    }
}

/// Display order: the canonical emotion order, the methods as the paper lists them; anything
/// unknown after, alphabetically.
enum ReportOrder {
    static let knownMethods = [
        "muse", "prompt-only", "universal-guidance", "muse-no-token-opt", "muse-no-inherent", "muse-no-inh",
        "muse-no-similar", "muse-no-sim", "muse-fixed-timing", "none",
    ]

    static func emotions(_ names: [String]) -> [String] {
        let present = Set(names)
        let known = Emotion.allCases.map(\.rawValue)
        return known.filter(present.contains) + present.subtracting(known).sorted()
    }

    static func methods(_ names: [String]) -> [String] {
        let present = Set(names)
        return knownMethods.filter(present.contains) + present.subtracting(knownMethods).sorted()
    }
}
