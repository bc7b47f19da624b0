import ArgumentParser
import Foundation
import Imaging
import MUSE
import Support
import Tensor
import Vocabulary

extension InversionKind: ExpressibleByArgument {}

/// `muse edit`: make an existing image evoke an emotion (inversion, then MUSE).
struct EditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit",
        abstract:
            "Edit an image to evoke an emotion: VAE-encode, invert with the source prompt, then guided denoising.")

    @Option(
        help:
            "Input PNG; its size must suit the model (multiples of the model's size step, e.g. 64×64 for the bundled model)."
    )
    var image: String

    @Option(name: .customLong("source-prompt"), help: "Prompt describing the input, used to invert and denoise it.")
    var sourcePrompt = ""

    @Option(
        help: "How far to invert, in (0, 1]: 1 = the whole schedule (z_T), 0.5 = half of it (keeps more of the input).")
    var strength: Float = 1

    @Option(
        help: ArgumentHelp(
            "How the source is inverted: negative-prompt (the source prompt is the unconditional branch), null-text "
                + "(per-step optimised unconditional embeddings) or ddim (plain; does not reconstruct at CFG > 1).",
            valueName: "kind"))
    var inversion: InversionKind = JobSettings.defaultInversion

    @Option(name: .customLong("null-text-steps"), help: "Null-text inversion: at most this many Adam steps per step.")
    var nullTextSteps = 10

    @OptionGroup var engine: MUSEEngineOptions

    func run() throws {
        if engine.emotionName == nil { throw EngineCLI.Failure("edit needs --emotion (\(Emotion.validNames))") }
        let checked = try engine.check(strength: strength, inversion: inversion, nullTextSteps: nullTextSteps)
        guard let emotion = checked.emotion else { return }
        let job = SynthesisJob(
            prompt: sourcePrompt, emotion: emotion, method: checked.method, seed: engine.seed,
            settings: checked.settings)
        do { try job.validate() } catch let e as SettingsError where e.key == "source_prompt" {
            throw EngineCLI.Failure("--source-prompt: \(e.message)")
        }
        // Read and decode the image before loading any model: a bad input fails fast.
        let data: Data
        do { data = try RegularFile.read(image, limit: 128 << 20) } catch let e as FileReadError {
            throw EngineCLI.Failure("cannot read image \(image): \(e.reason)")
        }
        let decoded: RGBImage
        do { decoded = try PNGCodec.decode(data).rgb() } catch {
            throw EngineCLI.Failure("cannot read image \(image): \(error)")
        }
        // Size rules come from the configs, so a wrong size fails before the weights load.
        let rules = try ImageSizeRules(model: checked.paths.modelFiles)
        if let problem = rules.problem(width: decoded.width, height: decoded.height) {
            throw EngineCLI.Failure("image \(image): \(problem) — resize or crop it first")
        }
        let museEngine = try engine.loadEngine(checked)
        let input = Tensor.fromRGBBytes(decoded.pixels, width: decoded.width, height: decoded.height)
        try EngineCLI.runJob(museEngine, job, image: input, options: engine)
    }
}
