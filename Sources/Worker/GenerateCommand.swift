import ArgumentParser
import Diffusion
import Foundation
import MUSE
import Shared
import Tensor

/// Model and engine options shared by `generate` and `edit`.
struct MUSEEngineOptions: ParsableArguments {
    @Option(name: .customLong("emotion"), help: "Target emotion: \(Emotion.validNames).")
    var emotionName: String?

    @Option(name: .customLong("method"), help: "Synthesis method: \(SynthesisMethod.validNames).")
    var methodName = "muse"

    @Option(help: "Stable Diffusion 1.x folder (diffusers layout). Default: the bundled models/tiny-sd.")
    var model: String?

    @Option(name: .customLong("classifier-tower"),
            help: "CLIP vision tower folder (CLIPVisionModelWithProjection or CLIPModel). Default: models/tiny-clip-vision.")
    var tower: String?

    @Option(name: .customLong("classifier-head"),
            help: "Linear emotion head (.safetensors with weight [8, D], bias [8]). Default: models/tiny-emotion-head.safetensors with the bundled tower; with --classifier-tower and no head, a zero-shot head.")
    var head: String?

    @Option(name: .customLong("clip-text"),
            help: "CLIP text model with projection, for timing and the zero-shot head. Default: the tower folder if it is a full CLIPModel, else models/tiny-clip-text.")
    var clipText: String?

    @Flag(name: .customLong("zero-shot"), help: "Use the zero-shot head built from --clip-text instead of a linear head.")
    var zeroShot = false

    @Option(help: "Seed of the initial noise.")
    var seed: UInt64 = 0

    @Option(help: "DDIM steps. Default: 20 on the bundled tiny model, 50 otherwise.")
    var steps: Int?

    @Option(help: "Classifier-free guidance scale.")
    var guidance: Float = 7.5

    @Option(name: .customLong("negative-prompt"), help: "Prompt of the unconditional branch.")
    var negativePrompt = ""

    @Option(help: "MUSE settings as JSON (inline or @FILE); missing keys keep their defaults, e.g. '{\"inner_iterations\": 2}' (the spec's snake_case names, or camelCase).")
    var settings: String?

    @Option(help: "Similar emotions S for the target, comma separated (overrides the similarity map's entry; empty: none).")
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
                guard let d = FileManager.default.contents(atPath: path) else { throw EngineCLI.Failure("cannot read settings file \(path)") }
                data = d
            } else {
                data = Data(text.utf8)
            }
            // The spec's snake_case names and the engine's camelCase ones both decode; a name
            // that is neither is an error, not silently a default.
            if let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
                let known = Set(MUSESettings.settingNames)
                for key in object.keys.sorted() where !known.contains(camelCase(key)) {
                    throw EngineCLI.Failure("--settings: unknown setting '\(key)' (known: \(known.sorted().joined(separator: ", ")))")
                }
            }
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            do { s = try decoder.decode(MUSESettings.self, from: data) } catch {
                throw EngineCLI.Failure("--settings is not valid MUSE settings JSON: \(error)")
            }
        }
        if let similar {
            let names = similar.split(separator: ",").map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            try s.similarity.set(target, try names.map(Emotion.parse))
        }
        try s.validate()
        return s
    }

    func checkOutput() throws {
        let dir = (out as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir, isDirectory: &isDir), isDir.boolValue else {
            throw EngineCLI.Failure("output folder \(dir) does not exist (for --out \(out))")
        }
    }

    /// Resolved model paths; bundled defaults are searched for only when needed.
    func paths() throws -> (model: String, tower: String, head: String?, text: String, tiny: Bool) {
        func bundled(_ relative: String) throws -> String { try EngineCLI.BundledModels.root() + "/" + relative }
        let model = try self.model ?? bundled("models/tiny-sd")
        let tower = try self.tower ?? bundled("models/tiny-clip-vision")
        var head: String? = nil
        if !zeroShot { head = try self.head ?? (self.tower == nil ? bundled("models/tiny-emotion-head.safetensors") : nil) }
        let text: String
        if let clipText {
            text = clipText
        } else if self.tower != nil, EngineCLI.BundledModels.isFullCLIP(tower) {
            text = tower
        } else if self.tower == nil {
            text = try bundled("models/tiny-clip-text")
        } else {
            throw EngineCLI.Failure("\(tower) is a vision-only CLIP model; pass --clip-text with the matching CLIP text model (with projection)")
        }
        for (what, path) in [("model folder", model), ("classifier tower", tower), ("CLIP text model", text)] + (head.map { [("classifier head", $0)] } ?? [])
        where !FileManager.default.fileExists(atPath: path) {
            throw EngineCLI.Failure("\(what) \(path) does not exist")
        }
        return (model, tower, head, text, self.model == nil)
    }

    func loadEngine() throws -> (SynthesisEngine, tiny: Bool) {
        let p = try paths()
        let began = Date()
        EngineCLI.log("BLAS: \(BLAS.ensureConfigured())")
        let engine = try SynthesisEngine.load(model: p.model, tower: p.tower, head: p.head, text: p.text)
        EngineCLI.log(String(format: "loaded %@ and the classifier (%@) in %.1f s", p.model, engine.classifier.headDescription,
                   Date().timeIntervalSince(began)))
        return (engine, p.tiny)
    }

    func defaultSteps(tiny: Bool) -> Int { steps ?? (tiny ? 20 : 50) }
}

/// `muse-worker generate`: text-to-image with an emotion (MUSE or a baseline), or plain
/// text-to-image without --emotion.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate an image evoking an emotion (MUSE), or a plain text-to-image without --emotion.")

    @Option(help: "Text prompt.")
    var prompt: String

    @OptionGroup var engine: MUSEEngineOptions

    func run() throws {
        let emotion = try engine.emotion()
        let method = try engine.method()
        let settings = try emotion.map { try engine.museSettings(target: $0) }
        try engine.checkOutput()
        guard let emotion, let settings else {
            if engine.methodName != "muse" { throw EngineCLI.Failure("--method needs --emotion") }
            try plain()
            return
        }
        let (museEngine, tiny) = try engine.loadEngine()
        let job = SynthesisJob(prompt: prompt, emotion: emotion, method: method, seed: engine.seed,
                               steps: engine.defaultSteps(tiny: tiny), guidanceScale: engine.guidance,
                               negativePrompt: engine.negativePrompt, settings: settings)
        try EngineCLI.runJob(museEngine, job, image: nil, options: engine)
    }

    /// Plain DDIM text-to-image through StableDiffusion.denoise.
    func plain() throws {
        let p = try engine.paths()
        EngineCLI.log("BLAS: \(BLAS.ensureConfigured())")
        let sd = try StableDiffusion(folder: p.model)
        let steps = engine.defaultSteps(tiny: p.tiny)
        let unet = try ModelConfig(path: p.model + "/unet/config.json")
        let side = try unet.int("sample_size", default: 64) * sd.vae.downsampleFactor
        let began = Date()
        let z = Tensor.randomNormal(sd.latentShape(height: side, width: side), seed: engine.seed)
        let latent = sd.denoise(from: z, prompt: prompt, negativePrompt: engine.negativePrompt, steps: steps,
                                guidance: engine.guidance) { done, total in EngineCLI.log("step \(done)/\(total)") }
        let (w, h, bytes) = sd.decodeToImage(latent).rgbBytes()
        try EngineCLI.writePNG(bytes, width: w, height: h, to: engine.out)
        let seconds = Date().timeIntervalSince(began)
        if let tracePath = engine.trace {
            let summary: [String: String] = ["mode": "plain", "prompt": prompt, "seed": "\(engine.seed)", "steps": "\(steps)",
                                             "guidance": "\(engine.guidance)", "seconds": String(format: "%.3f", seconds)]
            try EngineCLI.writeJSON(summary, to: tracePath)
        }
        EngineCLI.log(String(format: "wrote %@ (%d×%d) in %.1f s", engine.out, w, h, seconds))
    }
}

/// Helpers of the engine commands (generate, edit), namespaced to stay clear of the
/// pipeline commands' names.
enum EngineCLI {
    /// Runs a job step by step with progress on stderr, then writes the PNG (and trace).
    static func runJob(_ engine: SynthesisEngine, _ job: SynthesisJob, image: Tensor?, options: MUSEEngineOptions) throws {
        var state = try engine.start(job, image: image)
        if job.isEdit {
            EngineCLI.log(String(format: "inverted to step %d of %d in %.1f s", state.stepIndex, job.steps, state.trace.timings.inversion))
        }
        while !engine.isFinished(state) {
            state = engine.advance(state)
            let step = state.trace.stepTraces.last!
            var line = String(format: "step %d/%d t=%d s_t=%.4f", step.index + 1, job.steps, step.timestep, step.similarity)
            if step.guided, let last = step.inner.last {
                line += String(format: " guided: loss %.3f p(%@) %.3f", last.loss, job.emotion.rawValue, last.probabilities[job.emotion.index])
            }
            line += String(format: " (%.2f s)", step.seconds)
            EngineCLI.log(line)
        }
        let result = engine.finish(state)
        try EngineCLI.writePNG(result.rgb, width: result.width, height: result.height, to: options.out)
        if let tracePath = options.trace { try EngineCLI.writeJSON(result.trace, to: tracePath) }
        let p = result.probabilities
        let top = Emotion.allCases.max { p[$0.index] < p[$1.index] }!
        var summary = String(format: "wrote %@: p(%@) = %.3f, top %@ %.3f", options.out, job.emotion.rawValue, p[job.emotion.index],
                             top.rawValue, p[top.index])
        if let start = result.trace.startStep {
            summary += ", guided steps \(start)..<\(result.trace.stopStep)"
            if let inherent = result.trace.inherent { summary += ", e_inh \(inherent.rawValue)" }
        }
        if let ratio = result.trace.previewCostRatio { summary += String(format: ", preview cost %.1f%% of a plain step", ratio * 100) }
        summary += String(format: ", %.1f s", result.trace.timings.total)
        EngineCLI.log(summary)
    }

    struct Failure: Error, CustomStringConvertible, LocalizedError {
        let message: String
        init(_ message: String) { self.message = message }
        var description: String { message }
        var errorDescription: String? { message }
    }

    static func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Atomic: the file appears whole or not at all.
    static func writePNG(_ rgb: [UInt8], width: Int, height: Int, to path: String) throws {
        let data = try PNGCodec.encode(RGBImage(width: width, height: height, channels: 3, pixels: rgb))
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw EngineCLI.Failure("cannot write \(path): \(error.localizedDescription)")
        }
    }

    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw EngineCLI.Failure("cannot write \(path): \(error.localizedDescription)")
        }
    }

    /// Finds the repository folder holding the bundled tiny models: upward from the current
    /// directory, then upward from the executable's location.
    enum BundledModels {
        static func root() throws -> String {
            if let cached = cache { return cached }
            let fm = FileManager.default
            var starts = [fm.currentDirectoryPath]
            let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            starts.append(exe.deletingLastPathComponent().path)
            if let bundled = Bundle.main.executablePath { starts.append(URL(fileURLWithPath: bundled).deletingLastPathComponent().path) }
            for start in starts {
                var dir = URL(fileURLWithPath: start).standardizedFileURL
                while true {
                    if fm.fileExists(atPath: dir.path + "/models/tiny-sd/model_index.json") {
                        cache = dir.path
                        return dir.path
                    }
                    let parent = dir.deletingLastPathComponent()
                    if parent.path == dir.path { break }
                    dir = parent
                }
            }
            throw EngineCLI.Failure("cannot find the bundled tiny models (a folder containing models/tiny-sd) above the current directory or the executable; pass --model, --classifier-tower and --classifier-head/--clip-text explicitly")
        }

        nonisolated(unsafe) static var cache: String?

        /// A full CLIPModel config has both towers' settings.
        static func isFullCLIP(_ folder: String) -> Bool {
            guard let data = FileManager.default.contents(atPath: folder + "/config.json"),
                  let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
            return json["text_config"] != nil && json["vision_config"] != nil
        }
    }
}

/// snake_case → camelCase, as JSONDecoder's convertFromSnakeCase does for plain names.
func camelCase(_ name: String) -> String {
    let parts = name.split(separator: "_", omittingEmptySubsequences: true)
    guard let first = parts.first else { return name }
    return String(first) + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
}
