import Foundation

/// Batch-level settings stored with the batch in Redis (the `spec` field of its meta hash):
/// what `watch`, `status` and `collect` need to know without the spec file.
public struct BatchInfo: Codable, Equatable, Sendable {
    public var name: String
    /// The spec file as submitted (absolute path on the submitting machine).
    public var specFile: String
    /// Absolute output folder on the submitting machine; nil if the spec named none.
    public var output: String?
    public var jobs: Int
    public var sheetColumns: Int
    public var submittedBy: String

    public init(name: String, specFile: String, output: String?, jobs: Int, sheetColumns: Int, submittedBy: String) {
        self.name = name
        self.specFile = specFile
        self.output = output
        self.jobs = jobs
        self.sheetColumns = sheetColumns
        self.submittedBy = submittedBy
    }

    enum CodingKeys: String, CodingKey {
        case name, output, jobs
        case specFile = "spec_file"
        case sheetColumns = "sheet_columns"
        case submittedBy = "submitted_by"
    }
}

/// A validated, expanded job spec: the batch id, the jobs, and the input blobs to upload.
public struct LoadedSpec: Sendable {
    public var file: String
    public var name: String
    public var batchID: String
    public var output: URL?
    public var maxAttempts: Int
    public var leaseMs: Int
    public var jobs: [PipelineJob]
    /// Source images by SHA-256 (their blob names).
    public var blobs: [String: Data]
    public var info: BatchInfo
}

/// The job spec format (manifests/SPEC.md): parsing, validation with field paths, path
/// confinement, model fingerprints and the expansion into content-addressed jobs.
public enum JobSpec {
    public static let topKeys = ["name", "model", "classifier", "output", "images_root", "engine", "queue", "generation", "editing"]
    static let classifierKeys = ["tower", "head", "text"]
    static let engineKeys = ["method", "steps", "guidance", "negative_prompt", "checkpoint_every", "muse"]
    static let queueKeys = ["max_attempts", "lease_seconds"]
    static let generationKeys = ["prompts", "emotions", "seeds", "seed", "count", "width", "height"]
    static let editingKeys = ["images", "emotions", "source_prompt", "strength"]
    public static let maxJobs = 100_000

    /// Loads, validates and expands the spec at `path`. `outputOverride` (a command-line
    /// path, relative to the current folder) replaces the spec's `output`.
    public static func load(path: String, outputOverride: String? = nil,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> LoadedSpec {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        let fileURL = PathConfinement.absolute(path, base: cwd)
        guard let data = FileManager.default.contents(atPath: fileURL.path) else {
            var isDir: ObjCBool = false
            let why = FileManager.default.fileExists(atPath: fileURL.path, isDirectory: &isDir)
                ? (isDir.boolValue ? "it is a folder" : "permission denied") : "no such file"
            throw SpecError(file: path, issues: [SpecIssue(path: "", message: "cannot read the spec: \(why)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SpecError(file: path, issues: [SpecIssue(path: "", message: "the spec is not UTF-8 text")])
        }
        let root: SpecNode
        do { root = try SpecNode.parse(text, json: fileURL.pathExtension.lowercased() == "json") } catch let issue as SpecIssue {
            throw SpecError(file: path, issues: [issue])
        }
        return try load(root: root, file: path, fileURL: fileURL, outputOverride: outputOverride.map {
            PathConfinement.absolute($0, base: cwd)
        }, environment: environment)
    }

    static func load(root: SpecNode, file: String, fileURL: URL, outputOverride: URL?,
                     environment: [String: String]) throws -> LoadedSpec {
        let r = SpecReader()
        let specFolder = fileURL.deletingLastPathComponent()
        func fail() -> SpecError { SpecError(file: file, issues: r.issues) }

        if case .null = root { r.issue("", "the spec is empty") ; throw fail() }
        guard let top = r.map(root, "", allowed: topKeys) else { throw fail() }

        // name
        let defaultName = fileURL.deletingPathExtension().lastPathComponent
        let name = top["name"].flatMap { r.string($0, "name", allowEmpty: false) } ?? defaultName

        // output
        var output: URL? = outputOverride
        if output == nil, let node = top["output"], let text = r.string(node, "output", allowEmpty: false) {
            if text.hasPrefix("/") || text.hasPrefix("~/") {
                output = PathConfinement.absolute(text, base: specFolder)
            } else {
                do { output = try PathConfinement.resolve(text, under: specFolder) } catch {
                    r.issue("output", "\(error) (relative to the spec's folder \(specFolder.path); use an absolute path or --output for elsewhere)", node)
                }
            }
        }

        // models
        func location(_ node: SpecNode?, _ path: String, required: Bool) -> (spec: String, path: String)? {
            guard let node else {
                if required { r.issue(path, "required (a folder path, or bundled:NAME for the repository's models/)") }
                return nil
            }
            guard let text = r.string(node, path, allowEmpty: false) else { return nil }
            do {
                let resolved = try ModelLocation.resolve(text, specFolder: specFolder, environment: environment)
                guard FileManager.default.fileExists(atPath: resolved) else {
                    r.issue(path, "'\(text)' does not exist (\(resolved))", node)
                    return nil
                }
                // Workers get bundled: names (resolved on each machine) or absolute paths.
                return (ModelLocation.isBundled(text) ? text : resolved, resolved)
            } catch {
                r.issue(path, "\(error)", node)
                return nil
            }
        }
        let model = location(top["model"], "model", required: true)
        var geometry: SDModelGeometry?
        if let model {
            do { geometry = try SDModelGeometry(folder: model.path) } catch { r.issue("model", "\(error)", top["model"]) }
        }
        var tower: (spec: String, path: String)?, head: (spec: String, path: String)?, textModel: (spec: String, path: String)?
        if top["classifier"] == nil { r.issue("classifier", "required (tower, head, text)") }
        if let c = r.map(top["classifier"], "classifier", allowed: classifierKeys) {
            tower = location(c["tower"], "classifier.tower", required: true)
            head = location(c["head"], "classifier.head", required: false)
            textModel = location(c["text"], "classifier.text", required: false)
            if let tower, !isDirectory(tower.path) || !FileManager.default.fileExists(atPath: tower.path + "/config.json") {
                r.issue("classifier.tower", "'\(tower.spec)' is not a CLIP model folder (needs config.json and weights)", c["tower"])
            }
            if let head, isDirectory(head.path) {
                r.issue("classifier.head", "'\(head.spec)' is a folder; expected a .safetensors file with weight [8, D] and bias [8]", c["head"])
            }
            if textModel == nil, c["text"] == nil, let tower {
                if isFullCLIP(tower.path) {
                    textModel = tower
                } else {
                    r.issue("classifier.text", "required: the tower '\(tower.spec)' is vision-only; name the CLIP text model with projection (used for MUSE's timing and the zero-shot head)")
                }
            }
        }

        // engine
        var method = "muse", steps = 50, guidance = 7.5, negative = "", checkpointEvery = 5
        var muse: [String: JSONValue] = [:]
        if let e = r.map(top["engine"], "engine", allowed: engineKeys) {
            if let node = e["method"], let m = r.string(node, "engine.method", allowEmpty: false) {
                if EngineVocabulary.methods.contains(m) { method = m } else {
                    r.issue("engine.method", "unknown method '\(m)' (valid: \(EngineVocabulary.methods.joined(separator: ", ")))", node)
                }
            }
            if let v = r.int(e["steps"], "engine.steps", range: 1...1000) { steps = Int(v) }
            if let v = r.double(e["guidance"], "engine.guidance", check: { $0 >= 0 && $0 <= 100 ? nil : "must be in 0...100" }) { guidance = v }
            if let v = e["negative_prompt"].flatMap({ r.string($0, "engine.negative_prompt") }) { negative = v }
            if let v = r.int(e["checkpoint_every"], "engine.checkpoint_every", range: 0...1000) { checkpointEvery = Int(v) }
            if let node = e["muse"] { muse = museSettings(node, r) }
        }

        // queue
        var maxAttempts = 3, leaseMs = 30_000
        if let q = r.map(top["queue"], "queue", allowed: queueKeys) {
            if let v = r.int(q["max_attempts"], "queue.max_attempts", range: 1...100) { maxAttempts = Int(v) }
            if let v = r.double(q["lease_seconds"], "queue.lease_seconds", check: { $0 >= 0.5 && $0 <= 86_400 ? nil : "must be in 0.5...86400" }) {
                leaseMs = Int((v * 1000).rounded())
            }
        }

        // images root
        var imagesRoot = specFolder
        if let node = top["images_root"], let text = r.string(node, "images_root", allowEmpty: false) {
            if text.hasPrefix("/") || text.hasPrefix("~/") {
                imagesRoot = PathConfinement.absolute(text, base: specFolder)
            } else {
                do { imagesRoot = try PathConfinement.resolve(text, under: specFolder) } catch { r.issue("images_root", "\(error)", node) }
            }
        }

        // generation
        struct GenerationPlan { var prompts: [String]; var emotions: [String]; var seeds: [(sample: Int, seed: UInt64)]?
                                var batchSeed: UInt64; var count: Int; var width: Int?; var height: Int?
                                var widthNode: SpecNode?; var heightNode: SpecNode? }
        var generation: GenerationPlan?
        if top["generation"] != nil, let g = r.map(top["generation"], "generation", allowed: generationKeys) {
            var plan = GenerationPlan(prompts: [], emotions: [], seeds: nil, batchSeed: 0, count: 1, width: nil, height: nil)
            if g["prompts"] == nil { r.issue("generation.prompts", "required (a list of prompts)") }
            if let items = r.list(g["prompts"], "generation.prompts") {
                if items.isEmpty { r.issue("generation.prompts", "must list at least one prompt", g["prompts"]) }
                var seen: [String: Int] = [:]
                for (i, node) in items.enumerated() {
                    guard let p = r.string(node, "generation.prompts[\(i)]", allowEmpty: true) else { continue }
                    if let j = seen[p] { r.issue("generation.prompts[\(i)]", "duplicate of generation.prompts[\(j)]", node); continue }
                    seen[p] = i
                    plan.prompts.append(p)
                }
            }
            plan.emotions = emotions(g["emotions"], "generation.emotions", r)
            let hasSeeds = g["seeds"] != nil
            if hasSeeds && (g["seed"] != nil || g["count"] != nil) {
                r.issue("generation.seeds", "give either seeds (explicit list) or seed + count (derived seeds), not both", g["seeds"])
            }
            if hasSeeds, let items = r.list(g["seeds"], "generation.seeds") {
                if items.isEmpty { r.issue("generation.seeds", "must list at least one seed", g["seeds"]) }
                var list: [(Int, UInt64)] = []
                for (i, node) in items.enumerated() {
                    guard let v = r.int(node, "generation.seeds[\(i)]", range: 0...Int64(SeedDerivation.maxSeed)) else { continue }
                    if let j = list.firstIndex(where: { $0.1 == UInt64(v) }) {
                        r.issue("generation.seeds[\(i)]", "duplicate of generation.seeds[\(j)]", node); continue
                    }
                    list.append((i, UInt64(v)))
                }
                plan.seeds = list.map { (sample: $0.0, seed: $0.1) }
            }
            if let v = r.int(g["seed"], "generation.seed", range: 0...Int64(SeedDerivation.maxSeed)) { plan.batchSeed = UInt64(v) }
            if let v = r.int(g["count"], "generation.count", range: 1...10_000) { plan.count = Int(v) }
            if let v = r.int(g["width"], "generation.width", range: 8...4096) { plan.width = Int(v); plan.widthNode = g["width"] }
            if let v = r.int(g["height"], "generation.height", range: 8...4096) { plan.height = Int(v); plan.heightNode = g["height"] }
            generation = plan
        }

        // editing
        struct EditPlan { var images: [(path: String, url: URL, node: SpecNode, index: Int)]; var emotions: [String]
                          var sourcePrompt: String; var strength: Double }
        var editing: EditPlan?
        if top["editing"] != nil, let e = r.map(top["editing"], "editing", allowed: editingKeys) {
            var plan = EditPlan(images: [], emotions: [], sourcePrompt: "", strength: 1)
            if e["images"] == nil { r.issue("editing.images", "required (a list of PNG paths relative to images_root)") }
            if let items = r.list(e["images"], "editing.images") {
                if items.isEmpty { r.issue("editing.images", "must list at least one image", e["images"]) }
                var seen: [String: Int] = [:]
                for (i, node) in items.enumerated() {
                    let p = "editing.images[\(i)]"
                    guard let rel = r.string(node, p, allowEmpty: false) else { continue }
                    if let j = seen[rel] { r.issue(p, "duplicate of editing.images[\(j)]", node); continue }
                    seen[rel] = i
                    do { plan.images.append((rel, try PathConfinement.resolve(rel, under: imagesRoot), node, i)) } catch {
                        r.issue(p, "\(error)", node)
                    }
                }
            }
            plan.emotions = emotions(e["emotions"], "editing.emotions", r)
            if let v = e["source_prompt"].flatMap({ r.string($0, "editing.source_prompt") }) { plan.sourcePrompt = v }
            if let v = r.double(e["strength"], "editing.strength", check: { $0 > 0 && $0 <= 1 ? nil : "must be in (0, 1]" }) { plan.strength = v }
            editing = plan
        }
        if top["generation"] == nil && top["editing"] == nil {
            r.issue("", "the spec has neither a generation nor an editing section: nothing to do")
        }

        // Size checks need the model's geometry.
        if let geometry, let g = generation {
            for (value, node, key) in [(g.width, g.widthNode, "width"), (g.height, g.heightNode, "height")] {
                if let value, value % geometry.sizeMultiple != 0 {
                    r.issue("generation.\(key)", "\(value) is not a multiple of \(geometry.sizeMultiple), which this model needs (native size \(geometry.nativeWidth)×\(geometry.nativeHeight))", node)
                }
            }
        }

        // Source images: read, decode, check size.
        var blobs: [String: Data] = [:]
        var imageHashes: [String: String] = [:]
        if let plan = editing {
            for img in plan.images {
                let p = "editing.images[\(img.index)]"
                guard let bytes = FileManager.default.contents(atPath: img.url.path) else {
                    let exists = FileManager.default.fileExists(atPath: img.url.path)
                    r.issue(p, "cannot read '\(img.path)' (\(exists ? "permission denied or a folder" : "no such file"): \(img.url.path))", img.node)
                    continue
                }
                let decoded: RGBImage
                do { decoded = try PNGCodec.decode(bytes) } catch {
                    r.issue(p, "'\(img.path)' is not a readable PNG image: \(error)", img.node)
                    continue
                }
                if let geometry, decoded.width % geometry.sizeMultiple != 0 || decoded.height % geometry.sizeMultiple != 0 {
                    r.issue(p, "'\(img.path)' is \(decoded.width)×\(decoded.height); this model needs sides that are multiples of \(geometry.sizeMultiple) (native size \(geometry.nativeWidth)×\(geometry.nativeHeight)): resize or crop it first", img.node)
                    continue
                }
                let sha = SHA256.hexDigest(bytes)
                blobs[sha] = bytes
                imageHashes[img.path] = sha
            }
        }

        guard r.issues.isEmpty, let model, let tower, let textModel else { throw fail() }

        // Fingerprints (reads model files: only once everything else is fine).
        let fingerprints: ModelFingerprints
        do {
            fingerprints = ModelFingerprints(model: try ModelFingerprint.compute(path: model.path),
                                             tower: try ModelFingerprint.compute(path: tower.path),
                                             head: try head.map { try ModelFingerprint.compute(path: $0.path) },
                                             text: try ModelFingerprint.compute(path: textModel.path))
        } catch {
            r.issue("model", "cannot fingerprint the models: \(error)")
            throw fail()
        }
        let locations = ModelLocations(model: model.spec, tower: tower.spec, head: head?.spec, text: textModel.spec)

        // Expansion.
        var jobs: [PipelineJob] = []
        var row = 0
        let editColumns = (editing?.emotions.count ?? 0) + 1
        let sheetColumns = max(generation?.emotions.count ?? 0, editing == nil ? 0 : editColumns, 1)
        func add(_ content: JobContent, imagePath: String?, column: Int, name: (String) -> String) throws {
            let id = try content.jobID()
            let output = "\(content.emotion)/\(name(String(id.prefix(8)))).png"
            jobs.append(PipelineJob(id: id, content: content, locations: locations, checkpointEvery: checkpointEvery,
                                    index: jobs.count, output: output, imagePath: imagePath, sheetRow: row, sheetColumn: column))
        }
        do {
            if let g = generation {
                let seeds = g.seeds ?? (0..<g.count).map { (sample: $0, seed: SeedDerivation.seed(batchSeed: g.batchSeed, prompt: "", sample: $0)) }
                for prompt in g.prompts {
                    for s in seeds {
                        let seed = g.seeds == nil ? SeedDerivation.seed(batchSeed: g.batchSeed, prompt: prompt, sample: s.sample) : s.seed
                        for (column, emotion) in g.emotions.enumerated() {
                            let content = JobContent(kind: .generate, prompt: prompt, emotion: emotion, method: method, seed: seed,
                                                     steps: steps, guidance: guidance, negativePrompt: negative,
                                                     width: g.width, height: g.height, strength: nil, imageSHA256: nil,
                                                     muse: muse, models: fingerprints)
                            try add(content, imagePath: nil, column: column) { "\(Slug.make(prompt))-\(seed)-\($0)" }
                        }
                        row += 1
                    }
                }
            }
            if let e = editing {
                for img in e.images {
                    let stem = Slug.make(((img.path as NSString).lastPathComponent as NSString).deletingPathExtension)
                    for (column, emotion) in e.emotions.enumerated() {
                        let content = JobContent(kind: .edit, prompt: e.sourcePrompt, emotion: emotion, method: method, seed: 0,
                                                 steps: steps, guidance: guidance, negativePrompt: negative, width: nil, height: nil,
                                                 strength: e.strength, imageSHA256: imageHashes[img.path], muse: muse,
                                                 models: fingerprints)
                        try add(content, imagePath: img.path, column: column + 1) { "edit-\(stem)-\($0)" }
                    }
                    row += 1
                }
            }
        } catch {
            r.issue("", "cannot encode a job: \(error)")
            throw fail()
        }
        if jobs.count > maxJobs {
            r.issue("", "the spec expands to \(jobs.count) jobs; split it (at most \(maxJobs) per batch)")
            throw fail()
        }
        let batchHash = SHA256.hexDigest(jobs.map(\.id).sorted().joined(separator: "\n"))
        let batchID = "\(Slug.make(name, maxLength: 32, fallback: "batch"))-\(batchHash.prefix(12))"
        let info = BatchInfo(name: name, specFile: fileURL.path, output: output?.path, jobs: jobs.count,
                             sheetColumns: sheetColumns, submittedBy: ProcessInfo.processInfo.hostName)
        return LoadedSpec(file: file, name: name, batchID: batchID, output: output, maxAttempts: maxAttempts,
                          leaseMs: leaseMs, jobs: jobs, blobs: blobs, info: info)
    }

    static func emotions(_ node: SpecNode?, _ path: String, _ r: SpecReader) -> [String] {
        guard let node else {
            r.issue(path, "required (a list of emotions, or all)")
            return []
        }
        if case let .scalar(s, _, _) = node, s.lowercased() == "all" { return EngineVocabulary.emotions }
        guard let items = r.list(node, path) else { return [] }
        if items.isEmpty { r.issue(path, "must list at least one emotion", node) }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard let text = r.string(item, "\(path)[\(i)]", allowEmpty: false) else { continue }
            let key = text.trimmingCharacters(in: .whitespaces).lowercased()
            guard EngineVocabulary.emotions.contains(key) else {
                r.issue("\(path)[\(i)]", "unknown emotion '\(text)' (valid: \(EngineVocabulary.emotions.joined(separator: ", ")))", item)
                continue
            }
            if let j = out.firstIndex(of: key) { r.issue("\(path)[\(i)]", "duplicate of \(path)[\(j)]", item); continue }
            out.append(key)
        }
        return out
    }

    /// engine.muse → the engine's settings JSON (engine key names). Ranges mirror
    /// MUSESettings.validate so a bad value is reported before anything is submitted.
    static func museSettings(_ node: SpecNode, _ r: SpecReader) -> [String: JSONValue] {
        let vocabulary = EngineVocabulary.museSettings
        guard let m = r.map(node, "engine.muse", allowed: vocabulary.map(\.spec)) else { return [:] }
        var out: [String: JSONValue] = [:]
        var fractions: [String: Double] = [:]
        for entry in vocabulary {
            guard let value = m[entry.spec] else { continue }
            let p = "engine.muse.\(entry.spec)"
            switch entry.kind {
            case .int:
                if let v = r.int(value, p, range: 1...1000) { out[entry.engine] = .int(v) }
            case .bool:
                if let v = r.bool(value, p) { out[entry.engine] = .bool(v) }
            case .preview:
                if let v = r.string(value, p, allowEmpty: false) {
                    if EngineVocabulary.previews.contains(v) { out[entry.engine] = .string(v) } else {
                        r.issue(p, "unknown preview '\(v)' (valid: \(EngineVocabulary.previews.joined(separator: ", ")))", value)
                    }
                }
            case .float:
                let check: (Double) -> String?
                switch entry.spec {
                case "learning_rate", "adam_epsilon", "settle_delta": check = { $0 > 0 ? nil : "must be positive" }
                case "adam_beta1", "adam_beta2": check = { $0 >= 0 && $0 < 1 ? nil : "must be in [0, 1)" }
                case "lambda_inherent", "lambda_similar": check = { $0 >= 0 ? nil : "must not be negative" }
                case let k where k.hasSuffix("_fraction"): check = { (0...1).contains($0) ? nil : "must be in [0, 1]" }
                default: check = { _ in nil }
                }
                if let v = r.double(value, p, check: check) {
                    out[entry.engine] = .double(v)
                    if entry.spec.hasSuffix("_fraction") { fractions[entry.spec] = v }
                }
            case .similarity:
                // Entries replace the default (same-polarity) neighbours of the targets they name.
                var map: [String: [String]] = [:]
                let emotions = EngineVocabulary.emotions
                for (i, e) in emotions.enumerated() { map[e] = emotions.enumerated().filter { $0.offset != i && ($0.offset < 4) == (i < 4) }.map(\.element) }
                if let entries = r.map(value, p, allowed: emotions) {
                    for (target, listNode) in entries.sorted(by: { $0.key < $1.key }) {
                        let lp = "\(p).\(target)"
                        guard let items = r.list(listNode, lp) else { continue }
                        var list: [String] = []
                        for (i, item) in items.enumerated() {
                            guard let name = r.string(item, "\(lp)[\(i)]", allowEmpty: false) else { continue }
                            guard emotions.contains(name) else {
                                r.issue("\(lp)[\(i)]", "unknown emotion '\(name)' (valid: \(emotions.joined(separator: ", ")))", item); continue
                            }
                            if name == target { r.issue("\(lp)[\(i)]", "an emotion cannot be similar to itself", item); continue }
                            if list.contains(name) { r.issue("\(lp)[\(i)]", "listed twice", item); continue }
                            list.append(name)
                        }
                        map[target] = list
                    }
                    out[entry.engine] = .object(map.mapValues { .array($0.map(JSONValue.string)) })
                }
            }
        }
        let minStart = fractions["min_start_fraction"] ?? 0.2, latest = fractions["latest_start_fraction"] ?? 0.5
        if minStart > latest {
            r.issue("engine.muse.min_start_fraction", "\(minStart) exceeds latest_start_fraction \(latest)", m["min_start_fraction"] ?? m["latest_start_fraction"])
        }
        return out
    }

    static func isDirectory(_ path: String) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
    }

    static func isFullCLIP(_ folder: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: folder + "/config.json"),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
        return json["text_config"] != nil && json["vision_config"] != nil
    }
}
