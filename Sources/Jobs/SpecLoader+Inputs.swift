import Foundation
import Imaging
import Support
import Vocabulary

/// The `generation:` and `editing:` sections and the source images they name.
extension SpecLoader {
    static let generationKeys = ["prompts", "prompts_file", "emotions", "seeds", "seed", "count", "width", "height"]
    static let editingKeys = ["images", "emotions", "source_prompt", "strength"]

    struct GenerationPlan {
        var prompts: [String] = []
        var emotions: [Emotion] = []
        /// Explicit seeds with their sample numbers; nil: derived from `batchSeed`.
        var seeds: [(sample: Int, seed: UInt64)]?
        var batchSeed: UInt64 = 0
        var count = 1
        var width: Int?
        var height: Int?
        var samples: Int { seeds?.count ?? count }
    }

    struct EditPlan {
        struct Source {
            var path: String
            var url: URL
            var node: SpecNode
            var index: Int
            /// This image's caption, overriding `editing.source_prompt`.
            var sourcePrompt: String?
        }
        var images: [Source] = []
        var emotions: [Emotion] = []
        var sourcePrompt = ""
        var strength: Float = 1
    }

    struct SourceImages {
        /// By SHA-256 (their blob names).
        var blobs: [String: Data] = [:]
        /// Width and height by SHA-256, for the cost estimate.
        var sizes: [String: (width: Int, height: Int)] = [:]
        /// Spec path → SHA-256.
        var hashes: [String: String] = [:]
    }

    func readGeneration(_ node: SpecNode?, sizeRules: ImageSizeRules?) -> GenerationPlan? {
        guard let g = r.map(node, "generation", allowed: Self.generationKeys) else { return nil }
        var plan = GenerationPlan()
        if g["prompts"] != nil || g["prompts_file"] == nil {
            plan.prompts = uniqueStrings(g["prompts"], "generation.prompts", what: "prompt", allowEmpty: true)
        }
        if let node = g["prompts_file"] { plan.prompts += promptsFile(node, already: plan.prompts) }
        plan.emotions = emotions(g["emotions"], "generation.emotions")
        if g["seeds"] != nil && (g["seed"] != nil || g["count"] != nil) {
            r.issue(
                "generation.seeds", "give either seeds (explicit list) or seed + count (derived seeds), not both",
                g["seeds"])
        }
        if g["seeds"] != nil { plan.seeds = readSeeds(g["seeds"]) }
        let seedRange = 0...Int64(SeedDerivation.maxSeed)
        if let v = r.int(g["seed"], "generation.seed", range: seedRange) { plan.batchSeed = UInt64(v) }
        if let v = r.int(g["count"], "generation.count", range: 1...10_000) { plan.count = Int(v) }
        let sides = Int64(JobSettings.sideRange.lowerBound)...Int64(JobSettings.sideRange.upperBound)
        if let v = r.int(g["width"], "generation.width", range: sides) { plan.width = Int(v) }
        if let v = r.int(g["height"], "generation.height", range: sides) { plan.height = Int(v) }
        if let sizeRules, plan.width != nil || plan.height != nil {
            let width = plan.width ?? sizeRules.nativeSide
            let height = plan.height ?? sizeRules.nativeSide
            let key = plan.width == nil ? "generation.height" : "generation.width"
            if let problem = sizeRules.problem(width: width, height: height) {
                r.issue(key, problem, g["width"] ?? g["height"])
            } else if let problem = sizeRules.memoryProblem(width: width, height: height, environment: environment) {
                r.issue(key, problem, g["width"] ?? g["height"])
            }
        }
        return plan
    }

    /// The prompts of `generation.prompts_file` (relative to the spec's folder), checked like
    /// the inline list: distinct, at most `JobSpec.maxJobs`.
    func promptsFile(_ node: SpecNode, already: [String]) -> [String] {
        guard let path = r.string(node, "generation.prompts_file", allowEmpty: false),
            let url = specPath(path, "generation.prompts_file", node)
        else { return [] }
        let prompts: [String]
        do { prompts = try PromptsFile.read(url) } catch {
            r.issue("generation.prompts_file", "\(error)", node)
            return []
        }
        if prompts.isEmpty { r.issue("generation.prompts_file", "\(path) holds no prompts", node) }
        if prompts.count > JobSpec.maxJobs {
            r.issue(
                "generation.prompts_file", "\(path) holds \(prompts.count) prompts (at most \(JobSpec.maxJobs))", node)
            return []
        }
        var seen = Set(already)
        for (i, p) in prompts.enumerated() where !seen.insert(p).inserted {
            r.issue("generation.prompts_file", "\(path) row \(i + 1): duplicate prompt '\(p.prefix(60))'", node)
            return []
        }
        return prompts
    }

    func readSeeds(_ node: SpecNode?) -> [(sample: Int, seed: UInt64)] {
        guard let items = r.list(node, "generation.seeds") else { return [] }
        if items.isEmpty { r.issue("generation.seeds", "must list at least one seed", node) }
        var list: [(sample: Int, seed: UInt64)] = []
        var seen: [UInt64: Int] = [:]
        for (i, item) in items.enumerated() {
            guard let v = r.int(item, "generation.seeds[\(i)]", range: 0...Int64(SeedDerivation.maxSeed)) else {
                continue
            }
            if let j = seen[UInt64(v)] {
                r.issue("generation.seeds[\(i)]", "duplicate of generation.seeds[\(j)]", item)
                continue
            }
            seen[UInt64(v)] = i
            list.append((sample: i, seed: UInt64(v)))
        }
        return list
    }

    func readEditing(_ node: SpecNode?, imagesRoot: URL) -> EditPlan? {
        guard let e = r.map(node, "editing", allowed: Self.editingKeys) else { return nil }
        var plan = EditPlan()
        if e["images"] == nil {
            r.issue("editing.images", "required (a list of PNG paths relative to images_root)")
        } else if let items = r.list(e["images"], "editing.images") {
            if items.isEmpty { r.issue("editing.images", "must list at least one image", e["images"]) }
            var seen: [String: Int] = [:]
            for (i, item) in items.enumerated() {
                let p = "editing.images[\(i)]"
                guard let (path, caption) = editImage(item, p) else { continue }
                if let j = seen[path] {
                    r.issue(p, "duplicate of editing.images[\(j)]", item)
                    continue
                }
                seen[path] = i
                do {
                    let url = try PathConfinement.resolve(path, under: imagesRoot)
                    plan.images.append(
                        EditPlan.Source(path: path, url: url, node: item, index: i, sourcePrompt: caption))
                } catch {
                    r.issue(p, "\(error)", item)
                }
            }
        }
        plan.emotions = emotions(e["emotions"], "editing.emotions")
        if let v = e["source_prompt"].flatMap({ r.string($0, "editing.source_prompt") }) { plan.sourcePrompt = v }
        if let v = r.double(e["strength"], "editing.strength", check: JobSettings.strengthRule.problem) {
            plan.strength = Float(v)
        }
        return plan
    }

    /// An `editing.images` entry: a path, or {path, source_prompt} giving the image its own caption.
    func editImage(_ item: SpecNode, _ p: String) -> (path: String, caption: String?)? {
        guard case .map = item else { return r.string(item, p, allowEmpty: false).map { ($0, nil) } }
        guard let m = r.map(item, p, allowed: ["path", "source_prompt"]) else { return nil }
        guard let pathNode = m["path"] else {
            r.issue("\(p).path", "required (the PNG's path relative to images_root)", item)
            return nil
        }
        guard let path = r.string(pathNode, "\(p).path", allowEmpty: false) else { return nil }
        return (path, m["source_prompt"].flatMap { r.string($0, "\(p).source_prompt") })
    }

    /// Reads, decodes and size-checks every source image.
    func readSourceImages(_ plan: EditPlan, sizeRules: ImageSizeRules?) -> SourceImages {
        var sources = SourceImages()
        for img in plan.images {
            let p = "editing.images[\(img.index)]"
            let bytes: Data
            do { bytes = try RegularFile.read(img.url.path, limit: JobSpec.maxImageBytes) } catch let e as FileReadError
            {
                r.issue(p, "cannot read '\(img.path)' (\(e.reason): \(img.url.path))", img.node)
                continue
            } catch {
                r.issue(p, "cannot read '\(img.path)' (\(error))", img.node)
                continue
            }
            let decoded: RGBImage
            do { decoded = try PNGCodec.decode(bytes) } catch {
                r.issue(p, "'\(img.path)' is not a readable PNG image: \(error)", img.node)
                continue
            }
            if let sizeRules, let problem = sizeRules.problem(width: decoded.width, height: decoded.height) {
                r.issue(p, "'\(img.path)': \(problem): resize or crop it first", img.node)
                continue
            }
            if let sizeRules,
                let problem = sizeRules.memoryProblem(
                    width: decoded.width, height: decoded.height, environment: environment)
            {
                r.issue(p, "'\(img.path)': \(problem): use a smaller image", img.node)
                continue
            }
            let sha = Hashing.sha256Hex(bytes)
            sources.blobs[sha] = bytes
            sources.sizes[sha] = (decoded.width, decoded.height)
            sources.hashes[img.path] = sha
        }
        return sources
    }

    /// A required, non-empty list of distinct strings.
    func uniqueStrings(_ node: SpecNode?, _ path: String, what: String, allowEmpty: Bool) -> [String] {
        guard node != nil else {
            r.issue(path, "required (a list of \(what)s)")
            return []
        }
        guard let items = r.list(node, path) else { return [] }
        if items.isEmpty { r.issue(path, "must list at least one \(what)", node) }
        var out: [String] = []
        var seen: [String: Int] = [:]
        for (i, item) in items.enumerated() {
            guard let text = r.string(item, "\(path)[\(i)]", allowEmpty: allowEmpty) else { continue }
            if let j = seen[text] {
                r.issue("\(path)[\(i)]", "duplicate of \(path)[\(j)]", item)
                continue
            }
            seen[text] = i
            out.append(text)
        }
        return out
    }

    /// A list of distinct emotions, or `all`.
    func emotions(_ node: SpecNode?, _ path: String) -> [Emotion] {
        guard let node else {
            r.issue(path, "required (a list of emotions, or all)")
            return []
        }
        if case .scalar(let s, _, _) = node, s.lowercased() == "all" { return Emotion.allCases }
        guard let items = r.list(node, path) else { return [] }
        if items.isEmpty { r.issue(path, "must list at least one emotion", node) }
        var out: [Emotion] = []
        for (i, item) in items.enumerated() {
            guard let text = r.string(item, "\(path)[\(i)]", allowEmpty: false) else { continue }
            let emotion: Emotion
            do { emotion = try Emotion.parse(text) } catch {
                r.issue("\(path)[\(i)]", "\(error)", item)
                continue
            }
            if let j = out.firstIndex(of: emotion) {
                r.issue("\(path)[\(i)]", "duplicate of \(path)[\(j)]", item)
                continue
            }
            out.append(emotion)
        }
        return out
    }
}
