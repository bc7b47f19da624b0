import Foundation

/// A setting's value as specs and JSON carry it, before it is stored in its typed field.
public enum SettingValue: Equatable, Sendable {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case text(String)
    /// Target emotion name → emotion names (the similar emotions S).
    case emotionLists([String: [String]])
}

/// How floats are bounded. Every bound is finite, so no setting can carry NaN or ∞.
public enum FloatRule: Sendable {
    case positive(max: Double)
    case nonNegative(max: Double)
    /// [0, 1)
    case unitOpen
    /// [0, 1]
    case fraction
    case range(ClosedRange<Double>)

    /// nil when `v` is allowed, else what is wrong with it.
    public func problem(_ v: Double) -> String? {
        guard v.isFinite else { return "must be a finite number" }
        switch self {
        case .positive(let max): return v > 0 && v <= max ? nil : "must be in (0, \(max)]"
        case .nonNegative(let max): return v >= 0 && v <= max ? nil : "must be in [0, \(max)]"
        case .unitOpen: return v >= 0 && v < 1 ? nil : "must be in [0, 1)"
        case .fraction: return v >= 0 && v <= 1 ? nil : "must be in [0, 1]"
        case .range(let r): return r.contains(v) ? nil : "must be in [\(r.lowerBound), \(r.upperBound)]"
        }
    }
}

/// One named, typed, range-checked setting of `Root`: the single description that
/// decoding, encoding, spec reading and validation all use.
public struct SettingField<Root>: @unchecked Sendable {
    public enum Kind: Sendable {
        case int(ClosedRange<Int>)
        case float(FloatRule)
        case bool
        /// One of these names.
        case choice([String])
        case emotionLists
    }

    public let name: String
    public let kind: Kind
    public let get: (Root) -> SettingValue
    let store: (inout Root, SettingValue) throws -> Void

    /// Throws `SettingsError` naming this field when `value` has the wrong kind or range.
    public func check(_ value: SettingValue) throws {
        func fail(_ message: String) -> SettingsError { SettingsError(key: name, message) }
        switch (kind, value) {
        case (.int(let range), .int(let v)):
            guard range.contains(v) else { throw fail("\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
        case (.float(let rule), .float(let v)):
            if let problem = rule.problem(v) { throw fail("\(v) \(problem)") }
        case (.bool, .bool):
            break
        case (.choice(let names), .text(let v)):
            guard names.contains(v) else {
                throw fail("unknown value '\(v)' (valid: \(names.joined(separator: ", ")))")
            }
        case (.emotionLists, .emotionLists(let map)):
            _ = try Self.similarEmotions(map, over: .samePolarity, key: name)
        default:
            throw fail("must be \(kindDescription)")
        }
    }

    /// Checks `value`, then stores it.
    public func apply(_ value: SettingValue, to root: inout Root) throws {
        try check(value)
        try store(&root, value)
    }

    public var kindDescription: String {
        switch kind {
        case .int: return "an integer"
        case .float: return "a number"
        case .bool: return "true or false"
        case .choice(let names): return "one of \(names.joined(separator: ", "))"
        case .emotionLists: return "a map from emotion to a list of emotions"
        }
    }

    // MARK: constructors

    public static func int(_ name: String, _ path: WritableKeyPath<Root, Int>, _ range: ClosedRange<Int>) -> Self {
        Self(name: name, kind: .int(range), get: { .int($0[keyPath: path]) }) { root, value in
            if case .int(let v) = value { root[keyPath: path] = v }
        }
    }

    public static func float(_ name: String, _ path: WritableKeyPath<Root, Float>, _ rule: FloatRule) -> Self {
        Self(name: name, kind: .float(rule), get: { .float(Double($0[keyPath: path])) }) { root, value in
            if case .float(let v) = value { root[keyPath: path] = Float(v) }
        }
    }

    public static func bool(_ name: String, _ path: WritableKeyPath<Root, Bool>) -> Self {
        Self(name: name, kind: .bool, get: { .bool($0[keyPath: path]) }) { root, value in
            if case .bool(let v) = value { root[keyPath: path] = v }
        }
    }

    public static func choice<C: RawRepresentable & CaseIterable>(_ name: String, _ path: WritableKeyPath<Root, C>)
        -> Self
    where C.RawValue == String {
        Self(name: name, kind: .choice(C.allCases.map(\.rawValue)), get: { .text($0[keyPath: path].rawValue) }) {
            root, value in
            if case .text(let v) = value, let c = C(rawValue: v) { root[keyPath: path] = c }
        }
    }

    /// Entries given replace those targets' lists; other targets keep theirs.
    public static func emotionLists(_ name: String, _ path: WritableKeyPath<Root, SimilarEmotions>) -> Self {
        Self(
            name: name, kind: .emotionLists,
            get: { root in
                var raw: [String: [String]] = [:]
                for (target, list) in root[keyPath: path].neighbours { raw[target.rawValue] = list.map(\.rawValue) }
                return .emotionLists(raw)
            }
        ) { root, value in
            if case .emotionLists(let map) = value {
                root[keyPath: path] = try similarEmotions(map, over: root[keyPath: path], key: name)
            }
        }
    }

    static func similarEmotions(_ map: [String: [String]], over base: SimilarEmotions, key: String) throws
        -> SimilarEmotions
    {
        var result = base
        for (target, list) in map.sorted(by: { $0.key < $1.key }) {
            do {
                try result.set(try Emotion.parse(target), try list.map(Emotion.parse))
            } catch {
                throw SettingsError(key: key, "\(target): \(error)")
            }
        }
        return result
    }

    // MARK: coding

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Decodes the fields present in `decoder`'s object over `defaults`; unknown keys are errors.
    public static func decode(_ fields: [Self], into defaults: Root, from decoder: Decoder) throws -> Root {
        let c = try decoder.container(keyedBy: Key.self)
        let known = Set(fields.map(\.name))
        if let unknown = c.allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
            throw SettingsError(key: unknown, "unknown setting (known: \(fields.map(\.name).joined(separator: ", ")))")
        }
        var root = defaults
        for field in fields {
            let key = Key(field.name)
            guard c.contains(key), try !c.decodeNil(forKey: key) else { continue }
            let value: SettingValue
            do {
                switch field.kind {
                case .int: value = .int(try c.decode(Int.self, forKey: key))
                case .float: value = .float(try c.decode(Double.self, forKey: key))
                case .bool: value = .bool(try c.decode(Bool.self, forKey: key))
                case .choice: value = .text(try c.decode(String.self, forKey: key))
                case .emotionLists: value = .emotionLists(try c.decode([String: [String]].self, forKey: key))
                }
            } catch is DecodingError {
                throw SettingsError(key: field.name, "must be \(field.kindDescription)")
            }
            try field.apply(value, to: &root)
        }
        return root
    }

    /// Encodes every field (defaults included), so a stored job says exactly what it ran with.
    public static func encode(_ fields: [Self], of root: Root, to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        for field in fields {
            let key = Key(field.name)
            switch field.get(root) {
            case .int(let v): try c.encode(v, forKey: key)
            // Float, not Double: 0.02 is written as 0.02, not as its float32 expansion.
            case .float(let v): try c.encode(Float(v), forKey: key)
            case .bool(let v): try c.encode(v, forKey: key)
            case .text(let v): try c.encode(v, forKey: key)
            case .emotionLists(let v): try c.encode(v, forKey: key)
            }
        }
    }
}
