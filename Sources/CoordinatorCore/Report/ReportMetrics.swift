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
    /// Edits: the source image's SHA-256 (`image.sha256`), which pairs an edit with muse's.
    public var sourceSHA256: String?
    public var error: String?
    public var evaluatorTop: String?
    public var evaluatorTargetProbability: Double?
    public var guideTop: String?
    public var guideTargetProbability: Double?
    /// Edits: Emo-S, p_edit(target) − p_source(target), by the evaluator
    /// (`evaluation.source_probabilities`) and by the guide classifier (`source_probabilities`).
    public var evaluatorEmoS: Double?
    public var guideEmoS: Double?
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
        case sourceSHA256 = "source_sha256"
        case evaluatorEmoS = "evaluator_emo_s"
        case guideEmoS = "guide_emo_s"
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

    /// The metrics whose value comes from the evaluator when a job has one, else the guide's.
    static let evaluatorMetrics: Set<String> = ["emo_a", "target_probability", "emo_s"]

    /// This job's value of a per-job metric (Emo-A as 1 or 0); `evaluator` picks the evaluator's
    /// value of an `evaluatorMetrics` one, else the guide classifier's. nil: not measured.
    func value(_ metric: String, evaluator: Bool = true) -> Double? {
        switch metric {
        case "emo_a": return (evaluator ? evaluatorHit : guideHit).map { $0 ? 1 : 0 }
        case "target_probability": return evaluator ? evaluatorTargetProbability : guideTargetProbability
        case "emo_s": return evaluator ? evaluatorEmoS : guideEmoS
        case "guide_emo_a": return guideHit.map { $0 ? 1 : 0 }
        case "guide_target_probability": return guideTargetProbability
        case "clip_score": return clipScore
        case "psnr": return psnr
        case "ssim": return ssim
        case "clip_i": return clipI
        default: return nil
        }
    }

    /// What pairs a job with muse's: generation (prompt, seed, emotion), edits (source SHA-256, emotion).
    var pairingKey: String? {
        if kind == "edit" { return sourceSHA256.map { "edit\u{0}\($0)\u{0}\(emotion)" } }
        return seed.map { "generate\u{0}\(prompt)\u{0}\($0)\u{0}\(emotion)" }
    }

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
        sourceSHA256 = line.image?.sha256.flatMap { $0.isEmpty ? nil : $0 }
        if let p = evaluatorTargetProbability, let q = ev?.sourceProbabilities?[emotion] { evaluatorEmoS = p - q }
        if let p = guideTargetProbability, let q = line.sourceProbabilities?[emotion] { guideEmoS = p - q }
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
/// - Emo-S (editing): the mean of p_edit(target) − p_source(target), by the evaluator over the
///   edits that have `evaluation.source_probabilities`; when none has, by the guide classifier
///   (`source_probabilities`; `emoSSource` "guide"). nil for edits of batches without either.
/// - clipScore: the mean of the manifest's CLIP scores (100·max(cos(image, prompt), 0)).
/// - Sem-D (generation): for each emotion of the group with ≥ 2 image embeddings (from the
///   trace files), the mean over unordered pairs i < j of 1 − cos(e_i, e_j); then the mean of
///   those per-emotion values. For a method × emotion group it is that emotion's own value.
/// - psnr, ssim (editing): means over done edits whose source and edit could be compared;
///   identical pairs (PSNR infinite) are counted in `psnrIdentical` and left out of the PSNR mean.
/// - clipI (editing): the mean of the manifest's CLIP-I (else recomputed from the trace's embeddings).
///
/// Every mean has a 95 % percentile bootstrap interval (`Bootstrap`) over the jobs behind it;
/// Sem-D's resamples the images of each emotion apart and leaves pairs of an image with its copy out.
public struct GroupMetrics: Encodable, Equatable {
    public var done = 0
    public var failed = 0
    public var emoA: Double?
    public var emoASource = "evaluator"
    public var emoAJobs = 0
    public var targetProbability: Double?
    public var guideEmoA: Double?
    public var guideTargetProbability: Double?
    public var emoS: Double?
    /// "evaluator", "guide" (no edit of the group has the evaluator's source probabilities), nil: no Emo-S.
    public var emoSSource: String?
    public var emoSJobs = 0
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
    /// 95 % bootstrap intervals, by metric name (report.json: `<metric>_ci_low`, `<metric>_ci_high`).
    public var intervals: [String: Interval] = [:]

    /// The metrics that have an interval.
    static let intervalMetrics = [
        "emo_a", "target_probability", "guide_emo_a", "guide_target_probability", "emo_s", "clip_score", "sem_d",
        "psnr", "ssim", "clip_i",
    ]

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.init(stringValue) }
        init?(intValue: Int) { nil }
    }

    /// Every key, missing values as null: a reader sees what could not be computed.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(done, forKey: Key("done"))
        try c.encode(failed, forKey: Key("failed"))
        try c.encode(emoA, forKey: Key("emo_a"))
        try c.encode(emoASource, forKey: Key("emo_a_source"))
        try c.encode(emoAJobs, forKey: Key("emo_a_jobs"))
        try c.encode(targetProbability, forKey: Key("target_probability"))
        try c.encode(guideEmoA, forKey: Key("guide_emo_a"))
        try c.encode(guideTargetProbability, forKey: Key("guide_target_probability"))
        try c.encode(emoS, forKey: Key("emo_s"))
        try c.encode(emoSSource, forKey: Key("emo_s_source"))
        try c.encode(emoSJobs, forKey: Key("emo_s_jobs"))
        try c.encode(clipScore, forKey: Key("clip_score"))
        try c.encode(clipScoreJobs, forKey: Key("clip_score_jobs"))
        try c.encode(semD, forKey: Key("sem_d"))
        try c.encode(semDEmotions, forKey: Key("sem_d_emotions"))
        try c.encode(psnr, forKey: Key("psnr"))
        try c.encode(psnrJobs, forKey: Key("psnr_jobs"))
        try c.encode(psnrIdentical, forKey: Key("psnr_identical"))
        try c.encode(ssim, forKey: Key("ssim"))
        try c.encode(ssimJobs, forKey: Key("ssim_jobs"))
        try c.encode(clipI, forKey: Key("clip_i"))
        try c.encode(clipIJobs, forKey: Key("clip_i_jobs"))
        for m in Self.intervalMetrics {
            try c.encode(intervals[m]?.low, forKey: Key("\(m)_ci_low"))
            try c.encode(intervals[m]?.high, forKey: Key("\(m)_ci_high"))
        }
    }

    /// The metrics of `jobs` (done and failed; only done ones are measured). `method` and
    /// `group` name the bootstrap streams (`<kind>.<method>.<group>.<metric>`; Sem-D's per
    /// emotion `<kind>.<method>.<emotion>.sem_d`, shared by the method's row and the emotion's).
    init(_ jobs: [ReportJob], method: String = "", group: String = "all") {
        let done = jobs.filter(\.isDone)
        self.done = done.count
        failed = jobs.filter { $0.outcome == .failed }.count
        var ci: [String: Interval] = [:]
        func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
        /// The mean of `values`, and its interval into `ci`.
        func measure(_ metric: String, _ values: [Double]) -> Double? {
            ci[metric] = Bootstrap.meanInterval(values, key: "\(method).\(group).\(metric)")
            return mean(values)
        }
        func values(_ metric: String, evaluator: Bool = true) -> [Double] {
            done.compactMap { $0.value(metric, evaluator: evaluator) }
        }
        let guideHits = values("guide_emo_a")
        guideEmoA = measure("guide_emo_a", guideHits)
        guideTargetProbability = measure("guide_target_probability", values("guide_target_probability"))
        let evalHits = values("emo_a")
        if evalHits.isEmpty {
            emoASource = "guide"
            emoA = guideEmoA
            emoAJobs = guideHits.count
            targetProbability = guideTargetProbability
            ci["emo_a"] = ci["guide_emo_a"]
            ci["target_probability"] = ci["guide_target_probability"]
        } else {
            emoA = measure("emo_a", evalHits)
            emoAJobs = evalHits.count
            targetProbability = measure("target_probability", values("target_probability"))
        }
        let evalEmoS = values("emo_s")
        let emoSValues = evalEmoS.isEmpty ? values("emo_s", evaluator: false) : evalEmoS
        emoS = measure("emo_s", emoSValues)
        emoSJobs = emoSValues.count
        emoSSource = emoSValues.isEmpty ? nil : evalEmoS.isEmpty ? "guide" : "evaluator"
        let scores = values("clip_score")
        clipScore = measure("clip_score", scores)
        clipScoreJobs = scores.count
        var perEmotion: [Double] = []
        var distributions: [[Double?]] = []
        for emotion in Set(done.map(\.emotion)).sorted() {
            let embeddings = done.filter { $0.emotion == emotion }.compactMap(\.embedding)
            guard let d = EmbeddingMetrics.meanPairwiseDistance(embeddings) else { continue }
            perEmotion.append(d)
            if let b = Bootstrap.pairwiseDistribution(embeddings, key: "\(method).\(emotion).sem_d") {
                distributions.append(b)
            }
        }
        semD = mean(perEmotion)
        semDEmotions = perEmotion.count
        if let semD {
            // Each emotion resampled apart; a resample's Sem-D is the mean over the emotions it defines.
            let stats = (0..<Bootstrap.resamples).compactMap { b in mean(distributions.compactMap { $0[b] }) }
            ci["sem_d"] = Bootstrap.percentile(stats) ?? Interval(low: semD, high: semD)
        }
        let psnrs = values("psnr")
        psnr = measure("psnr", psnrs)
        psnrJobs = psnrs.count
        psnrIdentical = done.filter { $0.psnrIdentical == true }.count
        let ssims = values("ssim")
        ssim = measure("ssim", ssims)
        ssimJobs = ssims.count
        let clipIs = values("clip_i")
        clipI = measure("clip_i", clipIs)
        clipIJobs = clipIs.count
        intervals = ci
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
        case "emo_s": return emoS
        case "clip_score": return clipScore
        case "sem_d": return semD
        case "psnr": return psnr
        case "ssim": return ssim
        case "clip_i": return clipI
        default: return nil
        }
    }
}

/// One metric's mean paired difference (this method − muse) with its 95 % paired bootstrap
/// interval (the pairs resampled), over the pairs where both jobs have a value.
public struct PairedMetric: Encodable, Equatable {
    public var diff: Double?
    public var interval: Interval?
    public var pairs: Int
    /// Emo-A, target prob, Emo-S: "evaluator" (pairs where both jobs have the evaluator's value),
    /// or "guide" when no pair has (flattering); nil for the other metrics.
    public var source: String?

    enum CodingKeys: String, CodingKey {
        case diff, pairs, source
        case ciLow = "ci_low"
        case ciHigh = "ci_high"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(diff, forKey: .diff)
        try c.encode(interval?.low, forKey: .ciLow)
        try c.encode(interval?.high, forKey: .ciHigh)
        try c.encode(pairs, forKey: .pairs)
        try c.encode(source, forKey: .source)
    }
}

/// A group of one method's jobs paired with muse's: each done job with the done muse job of
/// the same kind and (prompt, seed, emotion) for generation, (source SHA-256, emotion) for edits.
public struct PairedGroup: Encodable {
    /// Done jobs with a muse partner, and without one.
    public var pairs: Int
    public var unpaired: Int
    public var metrics: [String: PairedMetric]

    init(_ jobs: [ReportJob], muse: [String: ReportJob], metrics names: [String], key: String) {
        var paired: [(ReportJob, ReportJob)] = []
        for j in jobs where j.isDone {
            if let k = j.pairingKey, let m = muse[k] { paired.append((j, m)) }
        }
        pairs = paired.count
        unpaired = jobs.filter(\.isDone).count - paired.count
        var out: [String: PairedMetric] = [:]
        for metric in names {
            func diffs(evaluator: Bool) -> [Double] {
                paired.compactMap { a, b in
                    guard let x = a.value(metric, evaluator: evaluator), let y = b.value(metric, evaluator: evaluator)
                    else { return nil }
                    return x - y
                }
            }
            var source: String?
            var d = diffs(evaluator: true)
            if ReportJob.evaluatorMetrics.contains(metric) {
                source = "evaluator"
                if d.isEmpty {
                    d = diffs(evaluator: false)
                    source = d.isEmpty ? nil : "guide"
                }
            }
            out[metric] = PairedMetric(
                diff: d.isEmpty ? nil : d.reduce(0, +) / Double(d.count),
                interval: Bootstrap.meanInterval(d, key: "\(key).\(metric).diff"), pairs: d.count, source: source)
        }
        metrics = out
    }
}

/// One kind's (generation's or editing's) metrics, per method, overall and per emotion.
public struct KindSection: Encodable {
    public struct Method: Encodable {
        public var method: String
        public var overall: GroupMetrics
        public var emotions: [String: GroupMetrics]
        /// Done jobs by their `trace.start_reason` (settled / latest / fixed); done jobs without
        /// one (methods without guidance, older manifests) are counted in `startReasonAbsent`.
        public var startReasons: [String: Int]
        public var startReasonAbsent: Int
        /// This method − muse, paired (nil for muse itself, and when the kind has no muse jobs).
        public var difference: Difference?

        enum CodingKeys: String, CodingKey {
            case method, overall, emotions, difference
            case startReasons = "start_reasons"
            case startReasonAbsent = "start_reason_absent"
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(method, forKey: .method)
            try c.encode(overall, forKey: .overall)
            try c.encode(emotions, forKey: .emotions)
            try c.encode(startReasons, forKey: .startReasons)
            try c.encode(startReasonAbsent, forKey: .startReasonAbsent)
            try c.encode(difference, forKey: .difference)
        }
    }

    public struct Difference: Encodable {
        /// The method subtracted: "muse".
        public var against: String
        public var overall: PairedGroup
        public var emotions: [String: PairedGroup]
    }

    /// The method the differences are taken against.
    public static let reference = "muse"
    /// The start reasons always shown, in this order; others after, alphabetically.
    static let knownStartReasons = ["settled", "latest", "fixed"]

    /// "generation" or "editing".
    public var name: String
    public var methods: [Method]
    /// The emotions present, in the canonical order.
    public var emotions: [String]
    /// What the pairing could not do, in words (merged into report.json's `notes`).
    var notes: [String] = []

    enum CodingKeys: String, CodingKey { case name, methods, emotions }

    /// The columns of this kind's tables: report.json metric name, heading, decimals shown.
    var columns: [(metric: String, title: String, digits: Int)] { Self.columns(name) }

    static func columns(_ name: String) -> [(metric: String, title: String, digits: Int)] {
        var c: [(String, String, Int)] = [("emo_a", "Emo-A", 3), ("target_probability", "target prob", 3)]
        if name != "generation" { c.append(("emo_s", "Emo-S", 3)) }
        c.append(("clip_score", "CLIP score", 2))
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

    /// The columns of the difference table: the per-job metrics (not Sem-D, not the counts).
    var pairedColumns: [(metric: String, title: String, digits: Int)] { Self.pairedColumns(name) }

    static func pairedColumns(_ name: String) -> [(metric: String, title: String, digits: Int)] {
        columns(name).filter { GroupMetrics.intervalMetrics.contains($0.metric) && $0.metric != "sem_d" }
    }

    /// Decimals of an interval's ends: the mean's ("0.312 [0.251, 0.380]"; fewer would hide the
    /// differences the intervals are there to show).
    static func intervalDigits(_ digits: Int) -> Int { digits }

    static func format(_ v: Double?, _ digits: Int) -> String? { v.map { String(format: "%.\(digits)f", $0) } }

    /// "0.312 [0.251, 0.380]", "0.312" (no interval) or nil (no value).
    static func withInterval(_ v: Double?, _ i: Interval?, digits: Int) -> String? {
        guard let text = format(v, digits) else { return nil }
        guard let i else { return text }
        let d = intervalDigits(digits)
        return "\(text) [\(format(i.low, d)!), \(format(i.high, d)!)]"
    }

    /// The start reasons of this kind's table columns.
    var startReasonColumns: [String] {
        let present = Set(methods.flatMap(\.startReasons.keys))
        return Self.knownStartReasons + present.subtracting(Self.knownStartReasons).sorted()
    }

    /// Whether any method has a difference against muse.
    var hasDifferences: Bool { methods.contains { $0.difference != nil } }

    /// The per-method table (all emotions together) as Markdown, the columns of the HTML's,
    /// each mean with its 95 % interval.
    public var markdown: String {
        let cols = columns
        var lines = [
            "| \(name) method | " + cols.map(\.title).joined(separator: " | ") + " |",
            "|---|" + cols.map { _ in "---:|" }.joined(),
        ]
        for m in methods {
            let cells = cols.map { c in
                Self.withInterval(m.overall.value(c.metric), m.overall.intervals[c.metric], digits: c.digits) ?? "–"
            }
            lines.append("| \(m.method) | " + cells.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n")
    }

    /// The paired differences against muse as Markdown (nil when there are none).
    public var differenceMarkdown: String? {
        guard hasDifferences else { return nil }
        let cols = pairedColumns
        var lines = [
            "| \(name) method − \(Self.reference) | pairs | " + cols.map(\.title).joined(separator: " | ") + " |",
            "|---|---:|" + cols.map { _ in "---:|" }.joined(),
        ]
        for m in methods {
            guard let d = m.difference else { continue }
            let cells = cols.map { c in
                let p = d.overall.metrics[c.metric]
                return Self.withInterval(p?.diff, p?.interval, digits: c.digits) ?? "–"
            }
            lines.append("| \(m.method) | \(d.overall.pairs) | " + cells.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n")
    }

    /// Done jobs per method by guidance start reason, as Markdown (nil when no job has one).
    public var startReasonMarkdown: String? {
        guard methods.contains(where: { !$0.startReasons.isEmpty }) else { return nil }
        let reasons = startReasonColumns
        var lines = [
            "| \(name) method | " + reasons.joined(separator: " | ") + " | no start reason |",
            "|---|" + (reasons + ["none"]).map { _ in "---:|" }.joined(),
        ]
        for m in methods {
            let counts = reasons.map { "\(m.startReasons[$0] ?? 0)" } + ["\(m.startReasonAbsent)"]
            lines.append("| \(m.method) | " + counts.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n")
    }

    init(name: String, jobs: [ReportJob]) {
        self.name = name
        emotions = ReportOrder.emotions(jobs.map(\.emotion))
        let what = name == "generation" ? "(prompt, seed, emotion)" : "(source image, emotion)"
        // muse's done jobs by pairing key; a key taken twice keeps its first job.
        var muse: [String: ReportJob] = [:]
        var duplicates = 0
        for j in jobs where j.method == Self.reference && j.isDone {
            guard let k = j.pairingKey else { continue }
            if muse[k] == nil { muse[k] = j } else { duplicates += 1 }
        }
        let hasMuse = jobs.contains { $0.method == Self.reference && $0.isDone }
        var notes: [String] = []
        if duplicates > 0 {
            notes.append(
                "\(name): \(duplicates) \(Self.reference) job(s) share their \(what) with an earlier one: "
                    + "differences pair with the first")
        }
        let paired = Self.pairedColumns(name).map(\.metric)
        methods = ReportOrder.methods(jobs.map(\.method)).map { method in
            let mine = jobs.filter { $0.method == method }
            var per: [String: GroupMetrics] = [:]
            for e in Set(mine.map(\.emotion)) {
                per[e] = GroupMetrics(mine.filter { $0.emotion == e }, method: "\(name).\(method)", group: e)
            }
            var reasons: [String: Int] = [:]
            var absent = 0
            for j in mine where j.isDone {
                if let r = j.startReason { reasons[r, default: 0] += 1 } else { absent += 1 }
            }
            var difference: Difference?
            if method != Self.reference && hasMuse {
                let overall = PairedGroup(mine, muse: muse, metrics: paired, key: "\(name).\(method).all")
                var byEmotion: [String: PairedGroup] = [:]
                for e in Set(mine.map(\.emotion)) {
                    byEmotion[e] = PairedGroup(
                        mine.filter { $0.emotion == e }, muse: muse, metrics: paired, key: "\(name).\(method).\(e)")
                }
                difference = Difference(against: Self.reference, overall: overall, emotions: byEmotion)
                if overall.unpaired > 0 {
                    notes.append(
                        "\(name): \(overall.unpaired) done \(method) job(s) have no \(Self.reference) job with the "
                            + "same \(what): left out of its differences")
                }
            }
            return Method(
                method: method, overall: GroupMetrics(mine, method: "\(name).\(method)"), emotions: per,
                startReasons: reasons, startReasonAbsent: absent, difference: difference)
        }
        if !hasMuse && methods.count > 1 {
            notes.append("\(name): no done \(Self.reference) jobs: no differences against \(Self.reference)")
        }
        self.notes = notes
    }

    /// `<kind>.<method>.<all|emotion>.<metric>` → value: every number the HTML tables show,
    /// flat, so ops/report-check can find each one in the rendered page with grep. A mean's
    /// interval is `<…>.<metric>.ci_low`/`.ci_high`; a difference against muse
    /// `<…>.<metric>.diff`, `.diff_low`, `.diff_high` and `<…>.pairs`; the start reasons
    /// `<kind>.<method>.all.start_reason.<reason|absent>`. Intervals and differences are
    /// keyed only where their value exists.
    var cells: [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        func put(_ key: String, _ v: Double?) { out[key] = v.map { .double($0) } ?? .null }
        for m in methods {
            var groups = [("all", m.overall)]
            for e in emotions { if let g = m.emotions[e] { groups.append((e, g)) } }
            for (group, metrics) in groups {
                for col in columns {
                    let key = "\(name).\(m.method).\(group).\(col.metric)"
                    put(key, metrics.value(col.metric))
                    if metrics.value(col.metric) != nil, let i = metrics.intervals[col.metric] {
                        put("\(key).ci_low", i.low)
                        put("\(key).ci_high", i.high)
                    }
                }
            }
            if let d = m.difference {
                var pairedGroups = [("all", d.overall)]
                for e in emotions { if let g = d.emotions[e] { pairedGroups.append((e, g)) } }
                for (group, p) in pairedGroups {
                    put("\(name).\(m.method).\(group).pairs", Double(p.pairs))
                    for col in pairedColumns {
                        let key = "\(name).\(m.method).\(group).\(col.metric)"
                        let metric = p.metrics[col.metric]
                        put("\(key).diff", metric?.diff)
                        if metric?.diff != nil, let i = metric?.interval {
                            put("\(key).diff_low", i.low)
                            put("\(key).diff_high", i.high)
                        }
                    }
                }
            }
            if methods.contains(where: { !$0.startReasons.isEmpty }) {
                for r in startReasonColumns {
                    put("\(name).\(m.method).all.start_reason.\(r)", Double(m.startReasons[r] ?? 0))
                }
                put("\(name).\(m.method).all.start_reason.absent", Double(m.startReasonAbsent))
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
