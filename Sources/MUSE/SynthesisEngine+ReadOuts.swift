import Diffusion
import Foundation
import Tensor
import Vocabulary

/// What a step reads from x̂0: the preview s_t is scored on and the classifier's view.
extension SynthesisEngine {
    func previewDescription(_ kind: PreviewKind) -> String {
        let size = promptScorer.tower.imageSize
        switch kind {
        case .latentRGB:
            return "latent-rgb: SD 1.x latent→RGB factors at latent resolution, CLIP preprocessing to \(size)×\(size)"
        case .vaeDecode: return "vae-decode: x̂0 through the full VAE, CLIP preprocessing to \(size)×\(size)"
        case .decoded:
            let decoder = previewDecoder(kind) == .tiny ? "the tiny decoder" : "the full VAE"
            return "decoded: x̂0 through \(decoder), CLIP preprocessing to \(size)×\(size)"
        }
    }

    /// The decoder a preview kind reads x̂0 through (latent-rgb uses none; nil).
    func previewDecoder(_ kind: PreviewKind) -> GuidanceDecoder? {
        switch kind {
        case .latentRGB: return nil
        case .vaeDecode: return .vae
        case .decoded: return tinyDecoder == nil ? .vae : .tiny
        }
    }

    /// s_t for a predicted x̂0 (scaled latent).
    func score(_ x0: Tensor, _ job: SynthesisJob, _ timings: inout PhaseTimings) -> Float {
        let preview: Tensor = timed(&timings.preview) {
            // start (and resume) refused latent-rgb for a latent space its factors do not fit.
            guard let decoder = previewDecoder(job.settings.muse.preview) else { return LatentPreview.rgb(x0) }
            return decodedImage(x0, decoder)
        }
        return timed(&timings.promptScore) { promptScorer(preview, prompt: job.prompt) }
    }

    /// x̂0 (scaled latent) → the image it stands for, clamped to [-1, 1] as the output image
    /// will be: the loss sees what the user gets (saturated pixels pass no gradient).
    /// `decoder` picks the full VAE or the tiny one (start checked that one is loaded).
    func decodedImage(_ x0: Tensor, _ decoder: GuidanceDecoder) -> Tensor {
        switch (decoder, tinyDecoder) {
        case (.tiny, let tiny?): return tiny.decodeSDLatent(x0, sdScalingFactor: sd.vae.scalingFactor).clamp(-1...1)
        case (.tiny, nil): preconditionFailure("guidance_decoder tiny without a tiny decoder (start checks this)")
        case (.vae, _): return sd.vae.decode(x0 * (1 / sd.vae.scalingFactor)).clamp(-1...1)
        }
    }

    /// Class probabilities of a scaled latent's image, through the job's guidance decoder.
    func classify(_ x0: Tensor, _ job: SynthesisJob, _ timings: inout PhaseTimings) -> [Float] {
        let image = timed(&timings.decode) { decodedImage(x0, job.settings.muse.guidanceDecoder) }
        return timed(&timings.classifier) { classifier.probabilities(images: image).data }
    }
}
