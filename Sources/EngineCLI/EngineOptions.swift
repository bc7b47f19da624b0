import ArgumentParser
import Diffusion
import Foundation
import Imaging
import MUSE
import Support
import Tensor
import Vocabulary

/// Model and engine options shared by `generate` and `edit`.
struct MUSEEngineOptions: ParsableArguments {
    @Option(name: .customLong("emotion"), help: "Target emotion: \(Emotion.validNames).")
    var emotionName: String?

    @Option(name: .customLong("method"), help: "Synthesis method: \(SynthesisMethod.validNames).")
    var methodName = "muse"

    @Option(help: "Stable Diffusion 1.x folder (diffusers layout). Default: the bundled models/tiny-sd.")
    var model: String?

    @Option(
        name: .customLong("classifier-tower"),
        help: "CLIP vision tower folder (CLIPVisionModelWithProjection or CLIPModel). Default: models/tiny-clip-vision."
    )
    var tower: String?

    @Option(
        name: .customLong("classifier-head"),
        help:
            "Linear emotion head (.safetensors with weight [8, D], bias [8]). Default: models/tiny-emotion-head.safetensors with the bundled tower; with --classifier-tower and no head, a zero-shot head."
    )
    var head: String?

    @Option(
        name: .customLong("clip-text"),
        help:
            "CLIP text model with projection, for timing and the zero-shot head. Default: the tower folder if it is a full CLIPModel, else models/tiny-clip-text."
    )
    var clipText: String?

    @Flag(
        name: .customLong("zero-shot"), help: "Use the zero-shot head built from --clip-text instead of a linear head.")
    var zeroShot = false

    @Option(help: "Cores the engine uses (sets MUSE_THREADS; default: all).")
    var threads: Int?

    @Option(help: "Seed of the initial noise.")
    var seed: UInt64 = 0

    @Option(help: "DDIM steps. Default: 20 on the bundled tiny model, 50 otherwise.")
    var steps: Int?

    @Option(help: "Sampler: ddim, or dpmpp-2m (DPM-Solver++(2M); generation only).")
    var scheduler = "ddim"

    @Option(help: "Classifier-free guidance scale.")
    var guidance: Float = 7.5

    @Option(name: .customLong("negative-prompt"), help: "Prompt of the unconditional branch.")
    var negativePrompt = ""

    @Option(
        help:
            "MUSE settings as JSON (inline or @FILE) with the spec's names; missing keys keep their defaults, e.g. '{\"inner_iterations\": 2}'."
    )
    var settings: String?

    @Option(
        help: "Similar emotions S for the target, comma separated (overrides the similarity map's entry; empty: none).")
    var similar: String?

    @Option(help: "Write the trace (s_t per step, probabilities per inner iteration, timings, …) as JSON here.")
    var trace: String?

    @Option(help: "Output PNG.")
    var out: String

    func emotion() throws -> Emotion? { try emotionName.map(Emotion.parse) }
    func method() throws -> SynthesisMethod { try SynthesisMethod.parse(methodName) }

    /// Settings from --settings and --similar (validated before any model is loaded).
    func museSettings(target: Emotion) throws -> MUSESettings {
        var s = MUSESettings()
        if let text = settings {
            let data: Data
            if text.hasPrefix("@") {
                let path = String(text.dropFirst())
                guard let d = FileManager.default.contents(atPath: path) else {
                    throw EngineCLI.Failure("cannot read settings file \(path)")
                }
                data = d
            } else {
                data = Data(text.utf8)
            }
            // Unknown names and out-of-range values are errors, never silently defaults.
            do { s = try JSONDecoder().decode(MUSESettings.self, from: data) } catch {
                throw EngineCLI.Failure("--settings: \(error)")
            }
        }
        if let similar {
            let names = similar.split(separator: ",").map(String.init).filter {
                !$0.trimmingCharacters(in: .whitespaces).isEmpty
            }
            try s.similarEmotions.set(target, try names.map(Emotion.parse))
        }
        try s.validate()
        return s
    }

    /// The job's settings from the command line.
    func jobSettings(target: Emotion, tiny: Bool, strength: Float? = nil) throws -> JobSettings {
        guard let kind = SchedulerKind(rawValue: scheduler) else {
            throw EngineCLI.Failure("--scheduler must be one of \(SchedulerKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let settings = JobSettings(
            steps: defaultSteps(tiny: tiny), guidance: guidance, negativePrompt: negativePrompt,
            strength: strength, scheduler: kind, muse: try museSettings(target: target))
        try settings.validate()
        return settings
    }

    func checkOutput() throws {
        let dir = (out as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir, isDirectory: &isDir), isDir.boolValue
        else {
            throw EngineCLI.Failure("output folder \(dir) does not exist (for --out \(out))")
        }
    }

    /// Resolved model paths; bundled defaults are searched for only when needed.
    func paths() throws -> (model: String, tower: String, head: String?, text: String, tiny: Bool) {
        func bundled(_ relative: String) throws -> String { try EngineCLI.BundledModels.root() + "/" + relative }
        let model = try self.model ?? bundled("models/tiny-sd")
        let tower = try self.tower ?? bundled("models/tiny-clip-vision")
        var head: String? = nil
        if !zeroShot {
            head = try self.head ?? (self.tower == nil ? bundled("models/tiny-emotion-head.safetensors") : nil)
        }
        let text: String
        if let clipText {
            text = clipText
        } else if self.tower != nil, EngineCLI.BundledModels.isFullCLIP(tower) {
            text = tower
        } else if self.tower == nil {
            text = try bundled("models/tiny-clip-text")
        } else {
            throw EngineCLI.Failure(
                "\(tower) is a vision-only CLIP model; pass --clip-text with the matching CLIP text model (with projection)"
            )
        }
        for (what, path) in [("model folder", model), ("classifier tower", tower), ("CLIP text model", text)]
            + (head.map { [("classifier head", $0)] } ?? [])
        where !FileManager.default.fileExists(atPath: path) {
            throw EngineCLI.Failure("\(what) \(path) does not exist")
        }
        return (model, tower, head, text, self.model == nil)
    }

    /// Applies --threads before the engine first looks at its thread count.
    func applyThreads() throws {
        guard let threads else { return }
        guard (1...1024).contains(threads) else { throw EngineCLI.Failure("--threads must be in 1...1024, got \(threads)") }
        setenv("MUSE_THREADS", String(threads), 1)
    }

    func loadEngine() throws -> (SynthesisEngine, tiny: Bool) {
        try applyThreads()
        let p = try paths()
        let began = Date()
        EngineCLI.log("BLAS: \(BLAS.ensureConfigured())")
        let engine = try SynthesisEngine.load(model: p.model, tower: p.tower, head: p.head, text: p.text)
        EngineCLI.log(
            String(
                format: "loaded %@ and the classifier (%@) in %.1f s", p.model, engine.classifier.headDescription,
                Date().timeIntervalSince(began)))
        return (engine, p.tiny)
    }

    func defaultSteps(tiny: Bool) -> Int { steps ?? (tiny ? 20 : 50) }
}
