import ArgumentParser
import DiffusersLayout
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

    @Option(
        help:
            "Stable Diffusion 1.x: a diffusers folder, or a single-file .safetensors checkpoint in the original layout (with SD 1.5's configs, models/sd15-config). Default: the bundled models/miniworld/sd."
    )
    var model: String?

    @Option(
        name: .customLong("model-config"),
        help:
            "For a single-file --model: the diffusers config folder that describes it (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/; no weights). Default: models/sd15-config."
    )
    var modelConfig: String?

    @Option(
        name: .customLong("classifier-tower"),
        help:
            "The guide's CLIP vision tower folder (CLIPVisionModelWithProjection or CLIPModel). Default: models/miniworld/guide-vision (clip-vision with --zero-shot)."
    )
    var tower: String?

    @Option(
        name: .customLong("prompt-tower"),
        help:
            "The vision half of --clip-text's CLIP pair (s_t and CLIP score), when the classifier tower is another model; needs a linear head. Default: models/miniworld/clip-vision with the bundled tower, else the classifier tower."
    )
    var promptTower: String?

    @Option(
        name: .customLong("classifier-head"),
        help:
            "Linear emotion head (.safetensors with weight [8, D], bias [8]). Default: models/miniworld/emotion-head.safetensors with the bundled tower; with --classifier-tower and no head, a zero-shot head."
    )
    var head: String?

    @Option(
        name: .customLong("clip-text"),
        help:
            "CLIP text model with projection, for timing and the zero-shot head. Default: the tower folder if it is a full CLIPModel, else models/miniworld/clip-text."
    )
    var clipText: String?

    @Flag(
        name: .customLong("zero-shot"), help: "Use the zero-shot head built from --clip-text instead of a linear head.")
    var zeroShot = false

    @Option(help: "Seed of the initial noise.")
    var seed: UInt64 = 0

    @Option(help: "DDIM steps. Default: 50.")
    var steps: Int?

    @Option(
        name: .customLong("tiny-decoder"),
        help:
            "AutoencoderTiny (TAESD) folder: the decoded s_t preview reads x̂0 through it and guidance_decoder tiny guides with it (models/tiny-taesd suits models/tiny-sd)."
    )
    var tinyDecoder: String?

    @Option(help: "Sampler: ddim, or dpmpp-2m (DPM-Solver++(2M); generation only).")
    var scheduler = "ddim"

    @Option(help: "Cores the engine uses (sets MUSE_THREADS; default: all).")
    var threads: Int?

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

    /// Everything `generate` and `edit` take from the command line, checked.
    struct Checked {
        var emotion: Emotion?
        var method: SynthesisMethod
        var settings: JobSettings
        var paths: ModelPaths
        /// Loaded when given: the decoded preview and guidance_decoder tiny use it.
        var tinyDecoder: String?
    }

    /// The one place the command line is checked, before any model is loaded: the emotion
    /// and method, the settings by the rules a job spec's are checked with (`JobSettings` and
    /// `MUSESettings` validation, the model scheduler's `StepRules`), the model folders (only
    /// regular files and folders), and the output paths. Errors name the option.
    func check(
        strength: Float? = nil, inversion: InversionKind = JobSettings.defaultInversion, nullTextSteps: Int = 10
    ) throws -> Checked {
        try applyThreads()
        guard let schedulerKind = SchedulerKind(rawValue: scheduler) else {
            let valid = SchedulerKind.allCases.map(\.rawValue).joined(separator: ", ")
            throw EngineCLI.Failure("--scheduler: unknown scheduler '\(scheduler)' (valid: \(valid))")
        }
        let emotion = try emotion()
        if emotion != nil && model != nil && tower == nil {
            throw EngineCLI.Failure(
                "--model \(model ?? "") needs its classifier too: --classifier-tower (and --classifier-head, or "
                    + "--zero-shot with --clip-text); the bundled classifier belongs to the bundled model only"
            )
        }
        let method = try method()
        if emotion == nil && methodName != "muse" { throw EngineCLI.Failure("--method needs --emotion") }
        let muse = try emotion.map { try museSettings(target: $0) } ?? MUSESettings()
        let paths = try paths()
        let settings = JobSettings(
            steps: steps ?? 50, guidance: guidance, negativePrompt: negativePrompt,
            strength: strength, scheduler: schedulerKind, inversion: inversion, nullTextSteps: nullTextSteps,
            muse: muse)
        do { try settings.validate() } catch let e as SettingsError {
            let option = [
                "steps": "--steps", "guidance": "--guidance", "strength": "--strength", "scheduler": "--scheduler",
                "null_text_steps": "--null-text-steps", "negative_prompt": "--negative-prompt",
            ][
                e.key ?? ""]
            throw EngineCLI.Failure(option.map { "\($0): \(e.message)" } ?? "--settings: \(e)")
        }
        if emotion != nil, let problem = GuidanceWindow(settings: settings, method: method).problem {
            throw EngineCLI.Failure("--method \(method.rawValue): \(problem)")
        }
        let rules: StepRules
        do { rules = try StepRules(model: paths.modelFiles) } catch {
            throw EngineCLI.Failure("model \(paths.model): \(error)")
        }
        // StepRules is DDIM's schedule; the engine checks DPM-Solver++'s at start.
        if schedulerKind == .ddim, let problem = rules.problem(steps: settings.steps) {
            throw EngineCLI.Failure("--steps: \(problem)\(steps == nil ? " (the default for this model)" : "")")
        }
        try checkOutput()
        if let tiny = tinyDecoder, !FileManager.default.fileExists(atPath: DiffusersLayout.configPath(tiny)) {
            throw EngineCLI.Failure("--tiny-decoder: \(tiny) has no config.json (an AutoencoderTiny folder)")
        }
        if settings.muse.guidanceDecoder == .tiny && tinyDecoder == nil {
            throw EngineCLI.Failure(
                "--settings: guidance_decoder tiny needs --tiny-decoder (an AutoencoderTiny folder)")
        }
        return Checked(emotion: emotion, method: method, settings: settings, paths: paths, tinyDecoder: tinyDecoder)
    }

    /// Settings from --settings and --similar (validated before any model is loaded).
    func museSettings(target: Emotion) throws -> MUSESettings {
        var s = MUSESettings()
        if let text = settings {
            let data: Data
            if text.hasPrefix("@") {
                let path = String(text.dropFirst())
                do { data = try RegularFile.read(path, limit: 1 << 20) } catch let e as FileReadError {
                    throw EngineCLI.Failure("--settings: cannot read the settings file \(path): \(e.reason)")
                }
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
            do { try s.similarEmotions.set(target, try names.map(Emotion.parse)) } catch {
                throw EngineCLI.Failure("--similar: \(error)")
            }
        }
        do { try s.validate() } catch { throw EngineCLI.Failure("--settings: \(error)") }
        return s
    }

    /// Applies --threads before the engine first looks at its thread count.
    func applyThreads() throws {
        guard let threads else { return }
        guard (1...1024).contains(threads) else {
            throw EngineCLI.Failure("--threads must be in 1...1024, got \(threads)")
        }
        setenv("MUSE_THREADS", String(threads), 1)
    }

    /// --out (and --trace) must name a file to write in an existing folder: not a folder,
    /// FIFO or device, so nothing is computed only to fail at the end.
    func checkOutput() throws {
        try Self.checkWritable(out, option: "--out", what: "PNG")
        if let trace { try Self.checkWritable(trace, option: "--trace", what: "JSON") }
    }

    static func checkWritable(_ path: String, option: String, what: String) throws {
        var st = stat()
        if stat(path, &st) == 0, let kind = RegularFile.kindName(mode: st.st_mode) {
            let example = st.st_mode & S_IFMT == S_IFDIR ? " (e.g. \(path)/out.\(what.lowercased()))" : ""
            throw EngineCLI.Failure(
                "\(option) \(path) is \(kind); give the path of the \(what) file to write\(example)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        let folder = dir.isEmpty ? "." : dir
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw EngineCLI.Failure("output folder \(folder) does not exist (for \(option) \(path))")
        }
        guard access(folder, W_OK) == 0 else {
            throw EngineCLI.Failure("\(option) \(path): cannot write into \(folder) (permission denied)")
        }
    }

    struct ModelPaths {
        var model: String
        /// Where `model`'s weights and configs are (a folder, or a single file and its configs).
        var modelFiles: StableDiffusionFiles
        var tower: String
        var head: String?
        var text: String
        var promptTower: String?
    }

    /// Resolved model paths; bundled defaults are searched for only when needed.
    func paths() throws -> ModelPaths {
        func bundled(_ relative: String) throws -> String { try EngineCLI.BundledModels.root() + "/" + relative }
        let model = try self.model ?? bundled("models/miniworld/sd")
        // The bundled guide tower is fine-tuned for robustness, away from clip-text's space, so
        // it comes with clip-vision as its prompt tower; a zero-shot head needs that pair itself.
        let bundledGuide = self.tower == nil && !zeroShot
        let tower =
            try self.tower ?? bundled(zeroShot ? "models/miniworld/clip-vision" : "models/miniworld/guide-vision")
        var head: String? = nil
        if !zeroShot {
            head = try self.head ?? (self.tower == nil ? bundled("models/miniworld/emotion-head.safetensors") : nil)
        }
        // A ViT image-classification folder is a whole classifier without CLIP: s_t needs the CLIP pair.
        let imageClassifier = self.tower != nil && DiffusersLayout.isImageClassifier(tower)
        if promptTower != nil && head == nil && !imageClassifier {
            throw EngineCLI.Failure(
                "--prompt-tower needs a linear head (--classifier-head): the zero-shot head compares the classifier tower with --clip-text directly"
            )
        }
        let promptTower = try self.promptTower ?? (bundledGuide ? bundled("models/miniworld/clip-vision") : nil)
        let text: String
        if let clipText {
            text = clipText
        } else if self.tower != nil, !imageClassifier, DiffusersLayout.isFullCLIP(tower) {
            text = tower
        } else if self.tower == nil {
            text = try bundled("models/miniworld/clip-text")
        } else {
            throw EngineCLI.Failure(
                imageClassifier
                    ? "\(tower) is an image classifier (ViT) without CLIP; pass --clip-text and --prompt-tower, the CLIP pair that measures the prompt score s_t"
                    : "\(tower) is a vision-only CLIP model; pass --clip-text with the matching CLIP text model (with projection)"
            )
        }
        if imageClassifier && promptTower == nil && !DiffusersLayout.isFullCLIP(text) {
            throw EngineCLI.Failure(
                "\(tower) is an image classifier (ViT) without CLIP; pass --prompt-tower, the vision half of \(text)'s CLIP pair, for the prompt score s_t"
            )
        }
        for (what, path) in [("model", model), ("classifier tower", tower), ("CLIP text model", text)]
            + (head.map { [("classifier head", $0)] } ?? []) + (promptTower.map { [("prompt tower", $0)] } ?? [])
            + (modelConfig.map { [("model config folder", $0)] } ?? [])
        {
            guard FileManager.default.fileExists(atPath: path) else {
                throw EngineCLI.Failure("\(what) \(path) does not exist")
            }
            // A FIFO or device would block or never end when the weights are read.
            if let bad = RegularFile.irregularEntries(under: path).first {
                let name = bad.path == path ? path : "\(path)/\(bad.path)"
                throw EngineCLI.Failure("\(what): \(name) is \(bad.kind), not a regular file")
            }
        }
        // A single file gets its configs; a pickled checkpoint is refused before anything reads it.
        let modelFiles: StableDiffusionFiles
        do { modelFiles = try StableDiffusionFiles.locate(model, configFolder: modelConfig) } catch {
            throw EngineCLI.Failure("\(error)")
        }
        return ModelPaths(
            model: model, modelFiles: modelFiles, tower: tower, head: head, text: text, promptTower: promptTower)
    }

    func loadEngine(_ checked: Checked) throws -> SynthesisEngine {
        let p = checked.paths
        let began = Date()
        EngineCLI.log("BLAS: \(BLAS.ensureConfigured())")
        let engine = try SynthesisEngine.load(
            model: p.model, modelConfig: p.modelFiles.isSingleFile ? p.modelFiles.configFolder : nil, tower: p.tower,
            head: p.head, text: p.text, promptTower: p.promptTower,
            tinyDecoder: checked.tinyDecoder)
        EngineCLI.log(
            String(
                format: "loaded %@ and the classifier (%@) in %.1f s", p.model, engine.classifier.headDescription,
                Date().timeIntervalSince(began)))
        return engine
    }

}
