import Foundation

/// Mikels' eight emotion categories, in EmoSet's label order: a classifier head's output
/// `i` is `Emotion.allCases[i]` (EmoGen's classifier is trained on EmoSet with this order).
public enum Emotion: String, CaseIterable, Codable, Sendable, Comparable {
    case amusement, awe, contentment, excitement
    case anger, disgust, fear, sadness

    public enum Polarity: String, Codable, Sendable { case positive, negative }

    /// Position in EmoSet's label order (the classifier's output index).
    public var index: Int {
        switch self {
        case .amusement: return 0
        case .awe: return 1
        case .contentment: return 2
        case .excitement: return 3
        case .anger: return 4
        case .disgust: return 5
        case .fear: return 6
        case .sadness: return 7
        }
    }

    /// nil outside 0..<8.
    public init?(index: Int) {
        guard Emotion.allCases.indices.contains(index) else { return nil }
        self = Emotion.allCases[index]
    }

    public var polarity: Polarity { index < 4 ? .positive : .negative }

    /// The word used to initialise the emotion token.
    public var word: String { rawValue }

    /// The prompt-only baseline's prompt: the emotion described in words after the prompt, as
    /// text-to-image emotion baselines do (EmoGen's comparisons), naming the feeling and the
    /// look that evokes it. manifests/SPEC.md lists these templates.
    public func descriptivePrompt(_ prompt: String) -> String {
        let description: String
        switch self {
        case .amusement: description = "amusing, playful and funny, bright cheerful colours"
        case .awe: description = "awe-inspiring, vast and majestic, a wide bright sky"
        case .contentment: description = "content, calm and peaceful, warm soft light"
        case .excitement: description = "exciting, thrilling and energetic, vivid colours"
        case .anger: description = "angry, furious and violent, harsh red light"
        case .disgust: description = "disgusting, filthy and repulsive, murky sickly colours"
        case .fear: description = "frightening, scary and ominous, dark shadows"
        case .sadness: description = "sad, gloomy and melancholic, cold muted colours"
        }
        return prompt.isEmpty ? description : "\(prompt), \(description)"
    }

    public static func < (a: Emotion, b: Emotion) -> Bool { a.index < b.index }

    /// Case-insensitive, surrounding whitespace ignored; anything else is an error listing
    /// the valid names.
    public static func parse(_ text: String) throws -> Emotion {
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard let emotion = Emotion(rawValue: key) else { throw EmotionError.unknown(text) }
        return emotion
    }

    public static var validNames: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

public enum EmotionError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case unknown(String)
    case badSimilarEmotions(String)

    public var description: String {
        switch self {
        case .unknown(let name):
            return "unknown emotion '\(name)'; valid emotions: \(Emotion.validNames)"
        case .badSimilarEmotions(let reason):
            return "similar_emotions: \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

/// For each target emotion, the "similar" emotions whose probabilities L_sim pushes down
/// (docs/METHOD.md, WHICH).
///
/// Default: the other three emotions of the target's polarity. Why not a smaller curated
/// set: the confusions an emotion classifier makes are overwhelmingly within a polarity
/// (EmoSet's confusion matrices show this), and which pairs dominate depends on the
/// classifier, so a hand-picked subset would encode one classifier's habits. λ_sim weighs
/// each similar term, so a smaller set can be configured per target where it helps.
public struct SimilarEmotions: Codable, Equatable, Sendable {
    /// Keyed by target; entries never contain the target itself.
    public private(set) var neighbours: [Emotion: [Emotion]]

    public init(_ neighbours: [Emotion: [Emotion]]) throws {
        for (target, list) in neighbours {
            if list.contains(target) {
                throw EmotionError.badSimilarEmotions("\(target) lists itself as a similar emotion")
            }
            if Set(list).count != list.count {
                throw EmotionError.badSimilarEmotions("\(target) lists an emotion twice")
            }
        }
        self.neighbours = neighbours
    }

    public static let samePolarity: SimilarEmotions = {
        var map: [Emotion: [Emotion]] = [:]
        for e in Emotion.allCases {
            map[e] = Emotion.allCases.filter { $0 != e && $0.polarity == e.polarity }
        }
        return SimilarEmotions(checked: map)
    }()

    /// For maps correct by construction.
    private init(checked neighbours: [Emotion: [Emotion]]) { self.neighbours = neighbours }

    /// The similar emotions of `target`, in EmoSet order; none when the map has no entry.
    public func similar(to target: Emotion) -> [Emotion] { (neighbours[target] ?? []).sorted() }

    /// Replace one target's entry (e.g. from a command-line list).
    public mutating func set(_ target: Emotion, _ similar: [Emotion]) throws {
        var copy = neighbours
        copy[target] = similar
        self = try SimilarEmotions(copy)
    }

    /// Codable as {"awe": ["amusement", ...], ...} (string keys, readable in job specs).
    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode([String: [String]].self)
        var map: [Emotion: [Emotion]] = [:]
        for (key, list) in raw { map[try Emotion.parse(key)] = try list.map(Emotion.parse) }
        try self.init(map)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        var raw: [String: [String]] = [:]
        for (key, list) in neighbours { raw[key.rawValue] = list.map(\.rawValue) }
        try container.encode(raw)
    }
}
