import Foundation
import Vocabulary

/// The `engine:` section: method, the shared settings and `engine.muse`, all checked by the
/// rules in Vocabulary (the same ones the engine applies), reported with their spec paths.
extension SpecLoader {
    static let engineKeys = [
        "method", "methods", "scheduler", "steps", "guidance", "negative_prompt", "checkpoint_every", "weights_dtype",
        "muse",
    ]

    struct EngineSection {
        /// Every job runs under each of these (one method, or `methods:` for a comparison batch).
        var methods: [SynthesisMethod] = [.muse]
        /// Steps, guidance, negative prompt and MUSE settings; sizes and strength come from
        /// the generation and editing sections.
        var settings = JobSettings()
        var checkpointEvery = 5
    }

    func readEngine(_ node: SpecNode?) -> EngineSection {
        var section = EngineSection()
        guard let e = r.map(node, "engine", allowed: Self.engineKeys) else { return section }
        if e["method"] != nil && e["methods"] != nil {
            r.issue("engine.methods", "give either method (one) or methods (a list), not both", e["methods"])
        }
        if let node = e["method"], let m = r.string(node, "engine.method", allowEmpty: false) {
            do { section.methods = [try SynthesisMethod.parse(m)] } catch { r.issue("engine.method", "\(error)", node) }
        }
        if let node = e["methods"] { section.methods = readMethods(node) }
        if let kind: SchedulerKind = r.choice(e["scheduler"], "engine.scheduler", "scheduler") {
            section.settings.scheduler = kind
        }
        if let dtype: WeightsDType = r.choice(e["weights_dtype"], "engine.weights_dtype", "weights dtype") {
            section.settings.weightsDType = dtype
        }
        let steps = JobSettings.stepsRange
        if let v = r.int(e["steps"], "engine.steps", range: Int64(steps.lowerBound)...Int64(steps.upperBound)) {
            section.settings.steps = Int(v)
        }
        if let v = r.double(e["guidance"], "engine.guidance", check: JobSettings.guidanceRule.problem) {
            section.settings.guidance = Float(v)
        }
        if let v = e["negative_prompt"].flatMap({ r.string($0, "engine.negative_prompt") }) {
            section.settings.negativePrompt = v
        }
        if let v = r.int(e["checkpoint_every"], "engine.checkpoint_every", range: 0...1000) {
            section.checkpointEvery = Int(v)
        }
        if let node = e["muse"] { section.settings.muse = readMUSE(node) }
        return section
    }

    /// `engine.methods`: a non-empty list of distinct method names.
    func readMethods(_ node: SpecNode) -> [SynthesisMethod] {
        guard let items = r.list(node, "engine.methods") else { return [] }
        if items.isEmpty { r.issue("engine.methods", "must list at least one method", node) }
        var methods: [SynthesisMethod] = []
        for (i, item) in items.enumerated() {
            let path = "engine.methods[\(i)]"
            guard let name = r.string(item, path, allowEmpty: false) else { continue }
            do {
                let m = try SynthesisMethod.parse(name)
                if let j = methods.firstIndex(of: m) {
                    r.issue(path, "duplicate of engine.methods[\(j)]", item)
                } else {
                    methods.append(m)
                }
            } catch {
                r.issue(path, "\(error)", item)
            }
        }
        return methods
    }

    /// Each method's guidance window against the generation and editing schedules, and the
    /// source prompts MUSE edits need (`SynthesisJob.validate`, the engine's own check).
    func checkJobs(_ engine: EngineSection, generation: GenerationPlan?, editing: EditPlan?) {
        if let editing, editing.inversion != .ddim, !engine.settings.negativePrompt.isEmpty {
            r.issue(
                "engine.negative_prompt",
                "edits with editing.inversion \(editing.inversion.rawValue) denoise against the source prompt (or "
                    + "its optimised null text), so the negative prompt would be ignored: drop it, or set "
                    + "editing.inversion: ddim")
        }
        for method in engine.methods {
            if generation != nil {
                let job = SynthesisJob(prompt: "", emotion: .awe, method: method, settings: engine.settings)
                if let problem = GuidanceWindow(settings: job.settings, method: method).problem {
                    r.issue("engine.muse", "\(method.rawValue): \(problem)")
                }
            }
            guard let editing else { continue }
            let settings = editing.settings(engine.settings)
            if let problem = GuidanceWindow(settings: settings, method: method).problem {
                r.issue("editing.strength", "\(method.rawValue): \(problem)")
            }
            var uncaptioned = 0
            for img in editing.images {
                let job = SynthesisJob(
                    prompt: img.sourcePrompt ?? editing.sourcePrompt, emotion: .awe, method: method, settings: settings)
                do { try job.validate() } catch let e as SettingsError where e.key == "source_prompt" {
                    uncaptioned += 1
                    guard uncaptioned <= PromptsFile.maxProblems else { continue }
                    r.issue(
                        img.place,
                        "'\(img.path)': \(e.message); give editing.source_prompt, a captions row or this image's "
                            + "source_prompt", img.node)
                } catch {}
            }
            if uncaptioned > PromptsFile.maxProblems {
                r.issue("editing", "… and \(uncaptioned - PromptsFile.maxProblems) more images without a caption")
            }
        }
    }

    /// `engine.muse`: every key is a field of `MUSESettings.fields`; values are read by kind
    /// and checked by the field itself.
    func readMUSE(_ node: SpecNode) -> MUSESettings {
        var settings = MUSESettings()
        guard let m = r.map(node, "engine.muse", allowed: MUSESettings.settingNames) else { return settings }
        for field in MUSESettings.fields {
            guard let valueNode = m[field.name] else { continue }
            let path = "engine.muse.\(field.name)"
            guard let value = settingValue(field.kind, valueNode, path) else { continue }
            do { try field.apply(value, to: &settings) } catch let e as SettingsError {
                r.issue(path, e.message, valueNode)
            } catch {
                r.issue(path, "\(error)", valueNode)
            }
        }
        do { try settings.validateRelations() } catch let e as SettingsError {
            let key = e.key ?? ""
            r.issue("engine.muse.\(key)", e.message, m[key])
        } catch {
            r.issue("engine.muse", "\(error)", node)
        }
        return settings
    }

    /// A spec node as the kind of value `kind` wants (nil, with an issue, when it is not one).
    func settingValue(_ kind: SettingField<MUSESettings>.Kind, _ node: SpecNode, _ path: String) -> SettingValue? {
        switch kind {
        case .int:
            return r.int(node, path, range: Int64(Int32.min)...Int64(Int32.max)).map { .int(Int($0)) }
        case .float:
            return r.double(node, path, check: { _ in nil }).map { .float($0) }
        case .bool:
            return r.bool(node, path).map { .bool($0) }
        case .choice:
            return r.string(node, path, allowEmpty: false).map { .text($0) }
        case .emotionLists:
            let names = Emotion.allCases.map(\.rawValue)
            guard let entries = r.map(node, path, allowed: names) else { return nil }
            var lists: [String: [String]] = [:]
            for (target, listNode) in entries.sorted(by: { $0.key < $1.key }) {
                guard let items = r.list(listNode, "\(path).\(target)") else { continue }
                lists[target] = items.enumerated().compactMap { i, item in
                    r.string(item, "\(path).\(target)[\(i)]", allowEmpty: false)
                }
            }
            return .emotionLists(lists)
        }
    }
}
