import Foundation

/// A job's compute time, estimated from the model configs and the job's settings before it
/// runs, so `submit` can refuse a job that would take days and `--dry-run` can say what a batch
/// costs. A rough model, stated rather than measured per machine: the unit costs are the
/// docs/PERFORMANCE.md's quiet K = 3 `bench-muse` run at full SD 1.5 size (512², UNet width 320; AMD EPYC,
/// 2 cores, AVX-512) and scale with the latent's pixel count and the square of the UNet's
/// width. Other machines differ by their core count and vector width; the estimate is for
/// ordering and refusing, not for promising.
public struct JobCostEstimate: Equatable, Sendable {
    /// One plain denoising step (both CFG branches, the s_t preview) at 64² latents, width 320.
    static let plainStepSeconds = 13.9
    /// One inner iteration (UNet forward+backward to the token, decoder forward+backward, CLIP
    /// tower + head) with the full VAE decoder in the loop, and with the tiny decoder.
    static let innerIterationSeconds = 60.5
    static let innerIterationTinySeconds = 25.8
    /// The s_t preview's decode per step (the plain step above had the decoder-free latent-rgb
    /// preview): VAE decoder forward 8.61 s, tiny decoder 0.90 s; one UNet forward 4.23 s and
    /// forward+backward 9.85 s (null-text inversion). `ops/bench-muse --phases-only --repeats 2`,
    /// AMD EPYC Zen 4, 2 threads, 2 December 2026.
    static let previewVAESeconds = 8.61
    static let previewTinySeconds = 0.90
    static let unetForwardSeconds = 4.23
    static let unetForwardBackwardSeconds = 9.85
    static let referenceLatentPixels = 64.0 * 64.0
    static let referenceWidth = 320.0

    public let seconds: Double
    /// Guided steps assumed: the widest window the timing rule allows (min start to stop).
    public let guidedSteps: Int

    public init(
        settings: JobSettings, method: SynthesisMethod, width: Int, height: Int, rules: ImageSizeRules,
        isEdit: Bool
    ) {
        let factor = Double(max(rules.vaeFactor, 1))
        let latent = (Double(width) / factor) * (Double(height) / factor)
        let scale = latent / Self.referenceLatentPixels * pow(Double(rules.unetWidth) / Self.referenceWidth, 2)
        let window = GuidanceWindow(settings: settings, method: method)
        let denoised = max(0, settings.steps - settings.firstStep)
        let guided = method.guides ? max(0, min(denoised, window.stop - (window.fixedStart ?? window.minStart))) : 0
        let inner =
            settings.muse.guidanceDecoder == .tiny ? Self.innerIterationTinySeconds : Self.innerIterationSeconds
        let perGuided: Double
        switch method {
        case .universalGuidance: perGuided = Double(settings.muse.universalRecurrence) * Self.innerIterationSeconds
        default: perGuided = Double(settings.muse.innerIterations) * inner
        }
        // An edit first inverts the part it denoises: one conditional UNet call per step.
        var inversion = isEdit ? Double(denoised) * Self.plainStepSeconds / 2 : 0
        // Null-text: at most null_text_steps UNet forward+backward passes per step, and the
        // conditional branch once.
        if isEdit && settings.inversion == .nullText {
            inversion +=
                Double(denoised)
                * (Double(settings.nullTextSteps) * Self.unetForwardBackwardSeconds + Self.unetForwardSeconds)
        }
        let preview: Double
        switch settings.muse.preview {
        case .latentRGB: preview = 0
        case .vaeDecode: preview = Self.previewVAESeconds
        // A tiny decoder is surely loaded when guidance uses it; else the full VAE is assumed.
        case .decoded:
            preview = settings.muse.guidanceDecoder == .tiny ? Self.previewTinySeconds : Self.previewVAESeconds
        }
        let total =
            Double(denoised) * (Self.plainStepSeconds + preview) + Double(guided) * perGuided + inversion
        seconds = total * scale
        guidedSteps = guided
    }

    /// `MUSE_MAX_JOB_HOURS` when set (0.001...100000), else 24 hours.
    public static func limitSeconds(environment: [String: String] = ProcessInfo.processInfo.environment) -> Double {
        if let text = environment["MUSE_MAX_JOB_HOURS"], let h = Double(text), h >= 0.001, h <= 100_000 {
            return h * 3600
        }
        return 24 * 3600
    }

    /// Hours or minutes, whichever reads better.
    public static func format(seconds: Double) -> String {
        if seconds >= 5400 { return String(format: "%.1f h", seconds / 3600) }
        if seconds >= 90 { return String(format: "%.0f min", seconds / 60) }
        return String(format: "%.0f s", seconds)
    }

    /// nil when the job fits the limit, else what it would take and the limit.
    public func problem(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        let limit = Self.limitSeconds(environment: environment)
        guard seconds > limit else { return nil }
        return
            "would take about \(Self.format(seconds: seconds)) on a 2-core worker (up to \(guidedSteps) guided steps), "
            + "over the limit of \(Self.format(seconds: limit)) per job (MUSE_MAX_JOB_HOURS; default 24): "
            + "use fewer steps, fewer inner_iterations, a smaller image or guidance_decoder: tiny"
    }
}
