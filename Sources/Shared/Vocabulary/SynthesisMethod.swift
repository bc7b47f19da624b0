import Foundation

/// MUSE and the baselines/ablations the same engine runs (docs/METHOD.md), selected by name.
public enum SynthesisMethod: String, CaseIterable, Codable, Sendable {
    /// Full MUSE: emotion token optimized at test time, CLIP-timed, L_emo with inherent and similar terms.
    case muse
    /// The emotion described in words after the prompt (`Emotion.descriptivePrompt`); no optimization.
    case promptOnly = "prompt-only"
    /// Universal guidance (Bansal et al. 2023): forward guidance with self-recurrence, the
    /// target's −log p differentiated w.r.t. z_t through the UNet, x̂0 and the decoder; no token.
    case universalGuidance = "universal-guidance"
    /// MUSE without the inherent-emotion term (λ_inh = 0).
    case museNoInh = "muse-no-inh"
    /// MUSE without the similar-emotion terms (λ_sim = 0).
    case museNoSim = "muse-no-sim"
    /// MUSE with guidance from a fixed step instead of the CLIP-settling rule.
    case museFixedTiming = "muse-fixed-timing"
    /// The emotion token inserted at its initial value and never optimized.
    case museNoTokenOpt = "muse-no-token-opt"
    /// No emotion at all: plain DDIM on the prompt (reconstruction checks, references).
    case none

    public static func parse(_ text: String) throws -> SynthesisMethod {
        guard let m = SynthesisMethod(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased()) else {
            throw MethodError.unknown(text)
        }
        return m
    }

    public static var validNames: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The learnable token sits in the conditioning.
    public var insertsToken: Bool { [.muse, .museNoInh, .museNoSim, .museFixedTiming, .museNoTokenOpt].contains(self) }
    /// The token is optimized on guided steps.
    public var optimizesToken: Bool { [.muse, .museNoInh, .museNoSim, .museFixedTiming].contains(self) }
    /// Any guidance (token or latent) happens on guided steps.
    public var guides: Bool { optimizesToken || self == .universalGuidance }
    public var usesInherent: Bool { self != .museNoInh }
    public var usesSimilar: Bool { self != .museNoSim }
    /// Guidance starts when s_t settles (WHEN); the others start at a configured step.
    public var adaptiveTiming: Bool { optimizesToken && self != .museFixedTiming }
}

public enum MethodError: Error, Equatable, CustomStringConvertible {
    case unknown(String)
    public var description: String {
        switch self {
        case .unknown(let name): return "unknown method '\(name)'; valid methods: \(SynthesisMethod.validNames)"
        }
    }
}

extension MethodError: LocalizedError {
    public var errorDescription: String? { description }
}
