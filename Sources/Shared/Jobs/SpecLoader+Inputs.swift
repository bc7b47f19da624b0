import Foundation
import Imaging
import Support
import Vocabulary

/// The `generation:` and `editing:` sections and the source images they name.
extension SpecLoader {
    static let generationKeys = ["prompts", "prompts_file", "emotions", "seeds", "seed", "count", "width", "height"]
    static let editingKeys = [
        "images", "images_glob", "captions", "fit", "width", "height", "emotions", "source_prompt", "strength",
        "inversion", "null_text_steps", "shared_sources",
    ]

    /// One prompt of the batch: an inline prompt, or a prompts-file row with what it overrides.
    struct GenerationRow {
        var prompt: String
        /// nil: `generation.emotions`.
        var emotions: [Emotion]?
        /// nil: the spec's seeds; else this row's one sample.
        var seed: UInt64?
        /// The prompts file's `id`: a label carried into the manifest, not part of the job.
        var sourceID: String?
    }

    struct GenerationPlan {
        var rows: [GenerationRow] = []
        /// The spec's emotions (empty when every row names its own).
        var emotions: [Emotion] = []
        /// Explicit seeds with their sample numbers; nil: derived from `batchSeed`.
        var seeds: [(sample: Int, seed: UInt64)]?
        var batchSeed: UInt64 = 0
        var count = 1
        var width: Int?
        var height: Int?

        func emotions(of row: GenerationRow) -> [Emotion] { row.emotions ?? emotions }
        func samples(of row: GenerationRow) -> Int { row.seed == nil ? seeds?.count ?? count : 1 }

        /// Contact-sheet columns: the spec's emotions, then those only rows name, in first use.
        var columns: [Emotion] {
            var out = emotions
            for row in rows { for e in row.emotions ?? [] where !out.contains(e) { out.append(e) } }
            return out
        }
    }

    struct EditPlan {
        struct Source {
            var path: String
            var url: URL
            var node: SpecNode?
            /// Where the spec names it, for messages: `editing.images[2]`, `editing.images_glob[0]`.
            var place: String
            /// This image's caption, overriding `editing.source_prompt`.
            var sourcePrompt: String?
            /// The caption is the image's own entry's (`{path, source_prompt}`): a captions file
            /// does not replace it.
            var inlineCaption = false
        }
        var images: [Source] = []
        var emotions: [Emotion] = []
        var sourcePrompt = ""
        var strength: Float = 1
        var inversion = JobSettings.defaultInversion
        var nullTextSteps = 10
        var fit = ImageFit.refuse
        var width: Int?
        var height: Int?
        /// `editing.shared_sources`: an absolute folder every host mounts (nil: Redis blobs).
        var sharedSources: String?

        /// The engine section's settings as this section's edits run them.
        func settings(_ engine: JobSettings) -> JobSettings {
            var settings = engine
            settings.strength = strength
            settings.inversion = inversion
            settings.nullTextSteps = nullTextSteps
            return settings
        }
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
            plan.rows = uniqueStrings(g["prompts"], "generation.prompts", what: "prompt", allowEmpty: true).map {
                GenerationRow(prompt: $0)
            }
        }
        if let node = g["prompts_file"] { plan.rows += promptsFile(node, inline: plan.rows.map(\.prompt)) }
        // Rows of a prompts file may all name their own emotions; anything else needs the spec's.
        let rowsWithout = plan.rows.filter { $0.emotions == nil }.count
        if g["emotions"] != nil || g["prompts_file"] == nil {
            plan.emotions = emotions(g["emotions"], "generation.emotions")
        } else if rowsWithout > 0 {
            r.issue(
                "generation.emotions",
                "required: \(rowsWithout) prompt\(rowsWithout == 1 ? "" : "s") name no emotions of their own")
        }
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

    /// The rows of `generation.prompts_file` (relative to the spec's folder), every row checked:
    /// at most `JobSpec.maxJobs`, no (prompt, seed) twice, none repeating an inline prompt
    /// without a seed of its own.
    func promptsFile(_ node: SpecNode, inline: [String]) -> [GenerationRow] {
        guard let path = r.string(node, "generation.prompts_file", allowEmpty: false),
            let url = specPath(path, "generation.prompts_file", node)
        else { return [] }
        var contents: PromptsFile.Contents
        do { contents = try PromptsFile.read(url, maxRows: JobSpec.maxJobs) } catch {
            r.issue("generation.prompts_file", "\(error)", node)
            return []
        }
        if contents.rows.isEmpty && contents.problems.isEmpty {
            r.issue("generation.prompts_file", "\(path) holds no prompts", node)
        }
        let inlineIndex = Dictionary(inline.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        for row in contents.rows where row.seed == nil {
            if let j = inlineIndex[row.prompt] {
                contents.problems.append("\(row.place): duplicate of generation.prompts[\(j)]")
            }
        }
        reportProblems(contents.problems, "generation.prompts_file", node)
        guard contents.problems.isEmpty else { return [] }
        return contents.rows.map {
            GenerationRow(prompt: $0.prompt, emotions: $0.emotions, seed: $0.seed, sourceID: $0.id)
        }
    }

    /// A data file's problems as issues at `key`: the first `PromptsFile.maxProblems`, then a count.
    func reportProblems(_ problems: [String], _ key: String, _ node: SpecNode?) {
        for problem in problems.prefix(PromptsFile.maxProblems) { r.issue(key, problem, node) }
        if problems.count > PromptsFile.maxProblems {
            r.issue(key, "… and \(problems.count - PromptsFile.maxProblems) more problems", node)
        }
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
