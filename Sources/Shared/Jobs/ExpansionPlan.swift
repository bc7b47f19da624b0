import Foundation
import Support
import Vocabulary

/// The spec's generation and editing sections as a grid of jobs: one row per (prompt, seed)
/// or source image, one column per emotion (edits leave column 0 for the source image).
struct ExpansionPlan {
    var generation: SpecLoader.GenerationPlan?
    var editing: SpecLoader.EditPlan?
    /// Every job runs under each method.
    var methods = 1

    /// How many jobs `expand` makes, computed without making them.
    var jobCount: Int {
        var n = 0
        if let g = generation {
            // Each row is at most 10,000 samples × 8 emotions, and rows at most a few × maxJobs.
            n = g.rows.reduce(0) { $0 + g.samples(of: $1) * g.emotions(of: $1).count }
        }
        if let e = editing {
            let (c, o) = e.images.count.multipliedReportingOverflow(by: e.emotions.count)
            n = o ? Int.max : n.addingReportingOverflow(c).overflow ? Int.max : n + c
        }
        let (all, o) = n.multipliedReportingOverflow(by: max(methods, 1))
        return o ? Int.max : all
    }

    var sheetColumns: Int {
        let editColumns = (editing?.emotions.count ?? 0) + 1
        return max(generation?.columns.count ?? 0, editing == nil ? 0 : editColumns, 1)
    }

    func expand(
        engine: SpecLoader.EngineSection, sources: SpecLoader.SourceImages, locations: ModelLocations,
        fingerprints: ModelFingerprints, reader: SpecReader, file: String
    ) throws -> [PipelineJob] {
        var jobs: [PipelineJob] = []
        var row = 0
        // Rows that come out as the same job (a prompts-file row whose seed another row derives,
        // say) are refused by name: a batch never holds one job twice.
        var firstRow: [String: String] = [:]
        func add(
            _ content: JobContent, imagePath: String?, sourceID: String? = nil, sharedSources: String? = nil,
            column: Int, origin: String, name: (String) -> String
        ) throws {
            let id = try content.jobID()
            if let first = firstRow[id] {
                if reader.issues.count < PromptsFile.maxProblems {
                    reader.issue(
                        origin, "makes the same job (\(content.emotion.rawValue), seed \(content.seed)) as \(first)")
                }
                return
            }
            firstRow[id] = origin
            let output = "\(content.emotion.rawValue)/\(name(String(id.prefix(8)))).png"
            var job = PipelineJob(
                id: id, content: content, locations: locations, checkpointEvery: engine.checkpointEvery,
                index: jobs.count, output: output, imagePath: imagePath, sheetRow: row, sheetColumn: column)
            job.sourceID = sourceID
            job.sharedSources = sharedSources
            jobs.append(job)
        }
        do {
            // Several methods: one sheet row per method, and the method in the file name.
            let tagged = engine.methods.count > 1
            func tag(_ m: SynthesisMethod) -> String { tagged ? "-\(m.rawValue)" : "" }
            if let g = generation {
                var settings = engine.settings
                settings.width = g.width
                settings.height = g.height
                let columns = g.columns
                for (r, genRow) in g.rows.enumerated() {
                    let prompt = genRow.prompt
                    let origin =
                        genRow.sourceID.map { "generation (prompt '\(prompt.prefix(40))', id '\($0)')" }
                        ?? "generation (prompt \(r + 1), '\(prompt.prefix(40))')"
                    for seed in seeds(g, row: genRow) {
                        for method in engine.methods {
                            for emotion in g.emotions(of: genRow) {
                                let job = SynthesisJob(
                                    prompt: prompt, emotion: emotion, method: method, seed: seed, settings: settings)
                                let content = JobContent(
                                    kind: .generate, synthesis: job, imageSHA256: nil, models: fingerprints)
                                try add(
                                    content, imagePath: nil, sourceID: genRow.sourceID,
                                    column: columns.firstIndex(of: emotion) ?? 0, origin: origin
                                ) {
                                    "\(Slug.make(prompt))-\(seed)\(tag(method))-\($0)"
                                }
                            }
                            row += 1
                        }
                    }
                }
            }
            if let e = editing {
                let settings = e.settings(engine.settings)
                for img in e.images {
                    let stem = Slug.make(((img.path as NSString).lastPathComponent as NSString).deletingPathExtension)
                    for method in engine.methods {
                        for (column, emotion) in e.emotions.enumerated() {
                            let job = SynthesisJob(
                                prompt: img.sourcePrompt ?? e.sourcePrompt, emotion: emotion, method: method, seed: 0,
                                settings: settings)
                            let content = JobContent(
                                kind: .edit, synthesis: job, imageSHA256: sources.hashes[img.path],
                                models: fingerprints)
                            try add(
                                content, imagePath: img.path, sharedSources: e.sharedSources, column: column + 1,
                                origin: "\(img.place) '\(img.path)'"
                            ) {
                                "edit-\(stem)\(tag(method))-\($0)"
                            }
                        }
                        row += 1
                    }
                }
            }
        } catch {
            reader.issue("", "cannot encode a job: \(error)")
            throw SpecError(file: file, issues: reader.issues)
        }
        if !reader.issues.isEmpty { throw SpecError(file: file, issues: reader.issues) }
        return jobs
    }

    /// A row's seeds: its own one, the explicit list, or `count` seeds derived from the batch seed.
    func seeds(_ g: SpecLoader.GenerationPlan, row: SpecLoader.GenerationRow) -> [UInt64] {
        if let own = row.seed { return [own] }
        if let explicit = g.seeds { return explicit.map(\.seed) }
        return (0..<g.count).map { SeedDerivation.seed(batchSeed: g.batchSeed, prompt: row.prompt, sample: $0) }
    }
}
