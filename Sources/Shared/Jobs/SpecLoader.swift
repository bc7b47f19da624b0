import DiffusersLayout
import Foundation
import Imaging
import Support
import Vocabulary

/// Reads one parsed spec section by section. Every reader records what is wrong (with the
/// field's path and line) and carries on, so one run reports every problem; `load` throws
/// them together once all sections are read.
final class SpecLoader {
    static let classifierKeys = ["tower", "head", "text", "prompt_tower"]
    static let evaluationKeys = ["tower", "head", "text", "clip_tower", "clip_text"]
    static let queueKeys = ["max_attempts", "lease_seconds"]

    /// A model as the spec named it (what workers get: `bundled:` names or absolute paths)
    /// and where it is on this machine; `fingerprint` when the spec gave one
    /// (`{path: …, fingerprint: …}`), which lets a machine without the weights submit.
    struct Location {
        var spec: String
        var path: String
        var fingerprint: String? = nil
        /// Whether the files are here (else only the spec's fingerprint speaks for them).
        var present = true
    }

    struct Models {
        var model: Location
        var tower: Location
        var head: Location?
        var text: Location
        var promptTower: Location?
        var tinyDecoder: Location?
        var evaluator: Evaluator?
        /// `evaluation.clip_tower`/`clip_text`: the CLIP pair that measures CLIP score, CLIP-I
        /// and Sem-D (nil: the prompt tower with `classifier.text`).
        var evaluationCLIP: (tower: Location, text: Location)?
        var sizeRules: ImageSizeRules
        var stepRules: StepRules
    }

    /// The `evaluation:` classifier: a tower with a head, or zero-shot with a text model.
    struct Evaluator {
        var tower: Location
        var head: Location?
        var text: Location?
    }

    let r = SpecReader()
    let file: String
    let fileURL: URL
    let specFolder: URL
    let environment: [String: String]

    init(file: String, fileURL: URL, environment: [String: String]) {
        self.file = file
        self.fileURL = fileURL
        specFolder = fileURL.deletingLastPathComponent()
        self.environment = environment
    }

    var failure: SpecError { SpecError(file: file, issues: r.issues) }

    func load(_ root: SpecNode, outputOverride: URL?) throws -> LoadedSpec {
        if case .null = root {
            r.issue("", "the spec is empty")
            throw failure
        }
        guard let top = r.map(root, "", allowed: JobSpec.topKeys) else { throw failure }
        let name =
            top["name"].flatMap { r.string($0, "name", allowEmpty: false) }
            ?? fileURL.deletingPathExtension().lastPathComponent
        let output = outputOverride ?? readOutput(top["output"])
        if let output, FileManager.default.fileExists(atPath: output.path), !JobSpec.isDirectory(output.path) {
            // Found at submit, not when `collect` first writes into it hours later.
            r.issue(
                outputOverride == nil ? "output" : "--output",
                "'\(output.path)' is an existing file; the output must be a folder (it holds the images and manifest.jsonl)",
                outputOverride == nil ? top["output"] : nil)
        }
        let models = readModels(top)
        let engine = readEngine(top["engine"])
        if let rules = models?.stepRules, let problem = rules.problem(steps: engine.settings.steps) {
            var node: SpecNode?
            if case .map(let pairs, _) = top["engine"] { node = pairs.first { $0.key == "steps" }?.value }
            r.issue("engine.steps", problem, node ?? top["engine"])
        }
        if engine.settings.muse.guidanceDecoder == .tiny, top["tiny_decoder"] == nil {
            r.issue(
                "engine.muse.guidance_decoder",
                "tiny needs tiny_decoder: a diffusers AutoencoderTiny folder (e.g. bundled:tiny-taesd for the tiny models)"
            )
        }
        let queue = readQueue(top["queue"])
        let imagesRoot = readImagesRoot(top["images_root"])
        let generation =
            top["generation"] == nil ? nil : readGeneration(top["generation"], sizeRules: models?.sizeRules)
        let editing =
            top["editing"] == nil
            ? nil : readEditing(top["editing"], imagesRoot: imagesRoot, sizeRules: models?.sizeRules)
        if top["generation"] == nil && top["editing"] == nil {
            r.issue("", "the spec has neither a generation nor an editing section: nothing to do")
        }
        let plan = ExpansionPlan(generation: generation, editing: editing, methods: engine.methods.count)
        // Counted before anything is expanded, so a huge spec is refused at once.
        if plan.jobCount > JobSpec.maxJobs {
            r.issue("", "the spec expands to \(plan.jobCount) jobs; split it (at most \(JobSpec.maxJobs) per batch)")
            throw failure
        }
        checkJobs(engine, generation: generation, editing: editing)
        if engine.settings.muse.preview == .latentRGB, let problem = models?.sizeRules.latentRGBProblem {
            r.issue("engine.muse.preview", problem)
        }
        if editing != nil && engine.settings.scheduler != .ddim {
            r.issue(
                "engine.scheduler",
                "edits use ddim (the source image is inverted with DDIM); run edits in their own spec")
        }
        let sources = editing.map { readSourceImages($0, sizeRules: models?.sizeRules) } ?? SourceImages()
        guard r.issues.isEmpty, let models else { throw failure }
        checkComponents(models)
        guard r.issues.isEmpty else { throw failure }
        let fingerprints = try fingerprint(models)
        let locations = ModelLocations(
            model: models.model.spec, tower: models.tower.spec, head: models.head?.spec, text: models.text.spec,
            promptTower: models.promptTower?.spec, tinyDecoder: models.tinyDecoder?.spec,
            evaluatorTower: models.evaluator?.tower.spec,
            evaluatorHead: models.evaluator?.head?.spec, evaluatorText: models.evaluator?.text?.spec,
            evaluationCLIPTower: models.evaluationCLIP?.tower.spec, evaluationCLIPText: models.evaluationCLIP?.text.spec
        )
        let jobs = try plan.expand(
            engine: engine, sources: sources, locations: locations, fingerprints: fingerprints, reader: r, file: file)
        let computeSeconds = checkCost(jobs, sources: sources, rules: models.sizeRules)
        guard r.issues.isEmpty else { throw failure }
        let batchHash = Hashing.sha256Hex(jobs.map(\.id).sorted().joined(separator: "\n"))
        let batchID = "\(Slug.make(name, maxLength: 32, fallback: "batch"))-\(batchHash.prefix(12))"
        let info = BatchInfo(
            name: name, specFile: fileURL.path, output: output?.path, jobs: jobs.count,
            sheetColumns: plan.sheetColumns, submittedBy: ProcessInfo.processInfo.hostName)
        var loaded = LoadedSpec(
            file: file, name: name, batchID: batchID, output: output, maxAttempts: queue.maxAttempts,
            leaseMs: queue.leaseMs, jobs: jobs, blobs: sources.blobs, info: info)
        loaded.computeSeconds = computeSeconds
        loaded.peakBytesPerWorker =
            jobs.map { job in
                let c = job.content
                let size =
                    c.imageSHA256.flatMap { sources.sizes[$0] }
                    ?? (
                        c.settings.width ?? models.sizeRules.nativeSide,
                        c.settings.height ?? models.sizeRules.nativeSide
                    )
                return models.sizeRules.estimatedPeakBytes(
                    width: size.width, height: size.height, weightsDType: c.settings.weightsDType)
            }.max() ?? 0
        return loaded
    }

    /// Refuses jobs whose estimated compute time is over the limit, once per distinct
    /// (method, size, kind): a batch shares its settings, so this is a handful of estimates.
    /// Returns the batch's estimated compute seconds.
    func checkCost(_ jobs: [PipelineJob], sources: SourceImages, rules: ImageSizeRules) -> Double {
        var seconds: [String: Double] = [:]
        var total = 0.0
        for job in jobs {
            let c = job.content
            let size =
                c.imageSHA256.flatMap { sources.sizes[$0] }
                ?? (c.settings.width ?? rules.nativeSide, c.settings.height ?? rules.nativeSide)
            let key = "\(c.synthesis.method.rawValue) \(size.width)x\(size.height) \(c.kind.rawValue)"
            if let known = seconds[key] {
                total += known
                continue
            }
            let cost = JobCostEstimate(
                settings: c.settings, method: c.synthesis.method, width: size.width, height: size.height, rules: rules,
                isEdit: c.imageSHA256 != nil)
            if let problem = cost.problem(environment: environment) {
                let place = job.imagePath.map { "'\($0)' " } ?? ""
                r.issue(
                    "engine",
                    "\(c.synthesis.method.rawValue) \(c.kind.rawValue) \(place)at \(size.width)×\(size.height) \(problem)"
                )
            }
            seconds[key] = cost.seconds
            total += cost.seconds
        }
        return total
    }

    // MARK: sections

    /// A path a spec names: absolute (`/…`, `~/…`) as given, else confined to the spec's folder;
    /// a path that leaves it is an issue at `key` (with `hint` after the error), and nil.
    func specPath(_ text: String, _ key: String, _ node: SpecNode, hint: String = "") -> URL? {
        if text.hasPrefix("/") || text.hasPrefix("~/") { return PathConfinement.absolute(text, base: specFolder) }
        do { return try PathConfinement.resolve(text, under: specFolder) } catch {
            r.issue(key, "\(error)\(hint)", node)
            return nil
        }
    }

    func readOutput(_ node: SpecNode?) -> URL? {
        guard let node, let text = r.string(node, "output", allowEmpty: false) else { return nil }
        return specPath(
            text, "output", node,
            hint:
                " (relative to the spec's folder \(specFolder.path); use an absolute path or --output for elsewhere)")
    }

    func readImagesRoot(_ node: SpecNode?) -> URL {
        guard let node, let text = r.string(node, "images_root", allowEmpty: false) else { return specFolder }
        return specPath(text, "images_root", node) ?? specFolder
    }

    func readQueue(_ node: SpecNode?) -> (maxAttempts: Int, leaseMs: Int) {
        var result = (maxAttempts: 3, leaseMs: 30_000)
        guard let q = r.map(node, "queue", allowed: Self.queueKeys) else { return result }
        if let v = r.int(q["max_attempts"], "queue.max_attempts", range: 1...100) { result.maxAttempts = Int(v) }
        let leaseCheck: (Double) -> String? = { $0 >= 0.5 && $0 <= 86_400 ? nil : "must be in 0.5...86400" }
        if let v = r.double(q["lease_seconds"], "queue.lease_seconds", check: leaseCheck) {
            result.leaseMs = Int((v * 1000).rounded())
        }
        return result
    }

    // MARK: models

    func readModels(_ top: [String: SpecNode]) -> Models? {
        let model = location(top["model"], "model", required: true)
        var sizeRules: ImageSizeRules?
        var stepRules: StepRules?
        if let model, !model.present {
            // Not on this machine (submitted by fingerprint): SD 1.x's shape and scheduler
            // rules stand in; each worker checks the job against the model it loads.
            sizeRules = try? ImageSizeRules(unetSampleSize: 64, unetLevels: 4, vaeLevels: 4)
            stepRules = try? StepRules(trainSteps: 1000, spacing: "leading", stepsOffset: 1)
        } else if let model {
            do {
                // A folder, or a single .safetensors checkpoint with the bundled SD 1.5 configs;
                // a pickled checkpoint is refused here, with the command that converts it.
                let files = try StableDiffusionFiles.locate(model.path, environment: environment)
                sizeRules = try ImageSizeRules(model: files)
                stepRules = try StepRules(model: files)
            } catch {
                r.issue("model", "\(error)", top["model"])
            }
        }
        if top["classifier"] == nil { r.issue("classifier", "required (tower, head, text)") }
        guard let c = r.map(top["classifier"], "classifier", allowed: Self.classifierKeys) else { return nil }
        let tower = location(c["tower"], "classifier.tower", required: true)
        let head = headLocation(c["head"], "classifier.head")
        var text = location(c["text"], "classifier.text", required: false)
        if let tower { _ = isModelFolder(tower, "classifier.tower", kind: Self.towerKind, c["tower"]) }
        // A ViT image classifier is a whole classifier: no head, and no CLIP embedding of its own.
        let imageClassifier = tower.map { $0.present && DiffusersLayout.isImageClassifier($0.path) } ?? false
        if imageClassifier, let tower, let node = c["head"] {
            r.issue(
                "classifier.head",
                "'\(tower.spec)' is an image classifier (ViT) with its own head; remove classifier.head", node)
        }
        if text == nil, c["text"] == nil, let tower {
            if !imageClassifier && DiffusersLayout.isFullCLIP(tower.path) {
                text = tower
            } else {
                let what =
                    imageClassifier
                    ? "is an image classifier (ViT) without CLIP; name the CLIP text model with projection that, "
                        + "with classifier.prompt_tower, measures the prompt score s_t"
                    : "is vision-only; name the CLIP text model with projection (used for MUSE's timing and the "
                        + "zero-shot head)"
                r.issue("classifier.text", "required: the tower '\(tower.spec)' \(what)")
            }
        }
        var promptTower = readPromptTower(
            c, hasHead: c["head"] != nil, imageClassifierTower: imageClassifier || tower?.present == false)
        if imageClassifier, promptTower == nil, c["prompt_tower"] == nil, let tower, let text {
            // s_t compares CLIP image and text embeddings: the ViT has none, so the CLIP pair is needed.
            if text.present && DiffusersLayout.isFullCLIP(text.path) {
                promptTower = text
            } else {
                r.issue(
                    "classifier.prompt_tower",
                    "required: the tower '\(tower.spec)' is an image classifier (ViT) without CLIP; the prompt score s_t "
                        + "needs the vision half of classifier.text's CLIP pair (or make classifier.text a whole CLIPModel)"
                )
            }
        }
        guard let model, let tower, let text, let sizeRules, let stepRules else { return nil }
        var tinyDecoder = location(top["tiny_decoder"], "tiny_decoder", required: false)
        if let tiny = tinyDecoder, !isModelFolder(tiny, "tiny_decoder", kind: "AutoencoderTiny", top["tiny_decoder"]) {
            tinyDecoder = nil
        }
        // One read of the section (its keys checked once) serves both its readers.
        let evaluation = r.map(top["evaluation"], "evaluation", allowed: Self.evaluationKeys)
        return Models(
            model: model, tower: tower, head: head, text: text, promptTower: promptTower, tinyDecoder: tinyDecoder,
            evaluator: readEvaluator(evaluation), evaluationCLIP: readEvaluationCLIP(evaluation),
            sizeRules: sizeRules, stepRules: stepRules)
    }

    /// `classifier.prompt_tower`: the vision half of `text`'s CLIP pair, for a guide tower that
    /// is not (the bundled miniature world's is fine-tuned for robustness) or has no CLIP
    /// embedding at all (an image classifier). With a CLIP tower, only with a linear head: a
    /// zero-shot head compares the tower with `text` directly, so they must be a pair.
    /// `imageClassifierTower` also covers a tower that is not on this machine (the workers check).
    func readPromptTower(_ c: [String: SpecNode], hasHead: Bool, imageClassifierTower: Bool) -> Location? {
        guard let node = c["prompt_tower"] else { return nil }
        guard let promptTower = location(node, "classifier.prompt_tower", required: false) else { return nil }
        guard hasHead || imageClassifierTower else {
            r.issue(
                "classifier.prompt_tower",
                "needs classifier.head: a zero-shot head compares the tower with classifier.text directly, so the "
                    + "tower must be text's CLIP pair already", node)
            return nil
        }
        return isModelFolder(promptTower, "classifier.prompt_tower", kind: "CLIP model", node) ? promptTower : nil
    }

    /// What a classifier or evaluation tower may be, in messages.
    static let towerKind = "CLIP model or ViT image classifier"

    /// A diffusers/transformers model folder has a config.json (a file path has none); records
    /// the issue under `key` when not.
    func isModelFolder(_ location: Location, _ key: String, kind: String, _ node: SpecNode?) -> Bool {
        if !location.present || FileManager.default.fileExists(atPath: DiffusersLayout.configPath(location.path)) {
            return true
        }
        r.issue(key, "'\(location.spec)' is not a \(kind) folder (needs config.json and weights)", node)
        return false
    }

    /// `evaluation:` {tower, head} or {tower, text} (zero-shot; text may be omitted when the
    /// tower folder is a whole CLIPModel), or {tower} alone naming a ViT image-classification
    /// folder. Optional: without it, reports fall back to the guide.
    func readEvaluator(_ e: [String: SpecNode]?) -> Evaluator? {
        guard let e else { return nil }
        // An evaluation section may name only the measuring CLIP (no evaluator classifier).
        if e["tower"] == nil && e["head"] == nil && e["text"] == nil && (e["clip_tower"] ?? e["clip_text"]) != nil {
            return nil
        }
        guard let tower = location(e["tower"], "evaluation.tower", required: true) else { return nil }
        guard isModelFolder(tower, "evaluation.tower", kind: Self.towerKind, e["tower"]) else { return nil }
        if tower.present && DiffusersLayout.isImageClassifier(tower.path) {
            // A ViT image classifier evaluates on its own: the worker loads it from the folder.
            for (key, node) in [("head", e["head"]), ("text", e["text"])] {
                guard let node else { continue }
                r.issue(
                    "evaluation.\(key)",
                    "'\(tower.spec)' is an image classifier (ViT) with its own head; remove evaluation.\(key)", node)
                return nil
            }
            return Evaluator(tower: tower, head: nil, text: nil)
        }
        let head = headLocation(e["head"], "evaluation.head")
        if e["head"] != nil && head == nil { return nil }
        var text = location(e["text"], "evaluation.text", required: false)
        if head == nil && text == nil {
            guard e["head"] == nil, e["text"] == nil else { return nil }
            // Not on this machine: the workers tell a ViT folder from a whole CLIPModel.
            if !tower.present { return Evaluator(tower: tower, head: nil, text: nil) }
            guard DiffusersLayout.isFullCLIP(tower.path) else {
                r.issue(
                    "evaluation.head", "required: give a head (.safetensors) or a CLIP text model for zero-shot (text)")
                return nil
            }
            text = tower
        }
        return Evaluator(tower: tower, head: head, text: head == nil ? text : nil)
    }

    /// `evaluation.clip_tower` + `evaluation.clip_text`, both or neither: a CLIP pair (vision
    /// and text with projections) that measures CLIP score, CLIP-I and Sem-D instead of the
    /// prompt tower, e.g. to keep those measurements away from a zero-shot guide's own CLIP.
    func readEvaluationCLIP(_ e: [String: SpecNode]?) -> (tower: Location, text: Location)? {
        switch (e?["clip_tower"], e?["clip_text"]) {
        case (nil, nil): return nil
        case (.some, nil):
            r.issue("evaluation.clip_text", "required with evaluation.clip_tower: the text half of that CLIP pair")
            return nil
        case (nil, .some):
            r.issue("evaluation.clip_tower", "required with evaluation.clip_text: the vision half of that CLIP pair")
            return nil
        case (.some(let towerNode), .some(let textNode)):
            guard let tower = location(towerNode, "evaluation.clip_tower", required: true),
                isModelFolder(tower, "evaluation.clip_tower", kind: "CLIP vision model", towerNode),
                let text = location(textNode, "evaluation.clip_text", required: true),
                isModelFolder(text, "evaluation.clip_text", kind: "CLIP text model", textNode)
            else { return nil }
            return (tower, text)
        }
    }

    /// An optional linear head: a .safetensors file, never a folder.
    func headLocation(_ node: SpecNode?, _ path: String) -> Location? {
        guard let head = location(node, path, required: false) else { return nil }
        guard !JobSpec.isDirectory(head.path) else {
            r.issue(
                path, "'\(head.spec)' is a folder; expected a .safetensors file with weight [8, D] and bias [8]", node)
            return nil
        }
        return head
    }

    /// A model location: a path or `bundled:` name, or `{path: …, fingerprint: …}` (the value
    /// `muse fingerprint` prints). With a fingerprint the files need not be on this machine;
    /// where they are, they must match it.
    func location(_ node: SpecNode?, _ path: String, required: Bool) -> Location? {
        guard let node else {
            if required { r.issue(path, "required (a folder path, or bundled:NAME for the repository's models/)") }
            return nil
        }
        var textNode = node
        var fingerprint: String?
        if case .map = node {
            guard let fields = r.map(node, path, allowed: Self.locationKeys) else { return nil }
            guard let p = fields["path"] else {
                r.issue(path + ".path", "required (a folder path, or bundled:NAME)", node)
                return nil
            }
            textNode = p
            if let f = fields["fingerprint"] {
                guard let given = r.string(f, path + ".fingerprint", allowEmpty: false) else { return nil }
                guard given.count == 32, given.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                    r.issue(
                        path + ".fingerprint",
                        "'\(given)' is not a fingerprint (32 lowercase hex digits, "
                            + "as `muse fingerprint PATH` prints)", f)
                    return nil
                }
                fingerprint = given
            }
        }
        guard let text = r.string(textNode, path, allowEmpty: false) else { return nil }
        let resolved: String
        do { resolved = try ModelLocation.resolve(text, specFolder: specFolder, environment: environment) } catch {
            // A bundled: name this machine cannot find, given with its fingerprint: the workers resolve it.
            if let fingerprint, ModelLocation.isBundled(text) {
                return Location(spec: text, path: text, fingerprint: fingerprint, present: false)
            }
            r.issue(path, "\(error)", node)
            return nil
        }
        guard FileManager.default.fileExists(atPath: resolved) else {
            if let fingerprint {
                return Location(spec: resolved, path: resolved, fingerprint: fingerprint, present: false)
            }
            r.issue(path, "'\(text)' does not exist (\(resolved))", node)
            return nil
        }
        do {
            // Before any of its files is read: a FIFO or device in a model folder is refused
            // by name here instead of blocking the configuration reads or the fingerprint.
            _ = try ModelFingerprint.files(path: resolved)
        } catch {
            r.issue(path, "\(error)", node)
            return nil
        }
        // Workers get bundled: names (resolved on each machine) or absolute paths.
        return Location(spec: ModelLocation.isBundled(text) ? text : resolved, path: resolved, fingerprint: fingerprint)
    }

    static let locationKeys = ["path", "fingerprint"]

    /// What can be told of each model on this machine without loading it (`ComponentChecks`):
    /// weights present, tokenizers complete, heads naming their emotions.
    func checkComponents(_ m: Models) {
        func check(_ location: Location?, _ key: String, _ problems: (String) -> [String]) {
            guard let location, location.present else { return }
            for problem in problems(location.path) { r.issue(key, problem) }
        }
        check(m.model, "model", ComponentChecks.stableDiffusion)
        check(m.tower, "classifier.tower") { ComponentChecks.modelFolder($0) }
        check(m.head, "classifier.head", ComponentChecks.head)
        if m.text.path != m.tower.path || !m.text.present {
            check(m.text, "classifier.text") { ComponentChecks.modelFolder($0, needsTokenizer: true) }
        } else {
            check(m.text, "classifier.text") { ComponentChecks.tokenizer($0) }
        }
        check(m.promptTower, "classifier.prompt_tower") { ComponentChecks.modelFolder($0) }
        check(m.tinyDecoder, "tiny_decoder") { ComponentChecks.modelFolder($0) }
        check(m.evaluator?.tower, "evaluation.tower") { ComponentChecks.modelFolder($0) }
        check(m.evaluator?.head, "evaluation.head", ComponentChecks.head)
        check(m.evaluator?.text, "evaluation.text") { ComponentChecks.modelFolder($0, needsTokenizer: true) }
        check(m.evaluationCLIP?.tower, "evaluation.clip_tower") { ComponentChecks.modelFolder($0) }
        check(m.evaluationCLIP?.text, "evaluation.clip_text") { ComponentChecks.modelFolder($0, needsTokenizer: true) }
    }

    /// Reads model files: only once everything else is fine. A location with a fingerprint
    /// from the spec and no files here takes it as given; with files, they must match it.
    func fingerprint(_ m: Models) throws -> ModelFingerprints {
        var mismatches: [String] = []
        func of(_ location: Location) throws -> String {
            guard location.present else { return location.fingerprint ?? "" }
            let computed = try ModelFingerprint.compute(path: location.path)
            if let given = location.fingerprint, given != computed {
                mismatches.append("\(location.spec) has fingerprint \(computed), the spec says \(given)")
            }
            return computed
        }
        let result: ModelFingerprints
        do {
            result = ModelFingerprints(
                model: try of(m.model), tower: try of(m.tower), head: try m.head.map(of), text: try of(m.text),
                promptTower: try m.promptTower.map(of), tinyDecoder: try m.tinyDecoder.map(of),
                evaluatorTower: try m.evaluator.map { try of($0.tower) },
                evaluatorHead: try m.evaluator?.head.map(of), evaluatorText: try m.evaluator?.text.map(of),
                evaluationCLIPTower: try m.evaluationCLIP.map { try of($0.tower) },
                evaluationCLIPText: try m.evaluationCLIP.map { try of($0.text) })
        } catch {
            r.issue("model", "cannot fingerprint the models: \(error)")
            throw failure
        }
        for mismatch in mismatches { r.issue("model", mismatch + ": not the model the spec was written for") }
        guard mismatches.isEmpty else { throw failure }
        return result
    }
}
