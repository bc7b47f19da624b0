import CYaml
import Foundation
import Imaging
import RedisQueue
import Support
import Vocabulary
import Yams

/// A parsed job-spec document, independent of its format (YAML or JSON), keeping source
/// lines so errors can point at them.
public indirect enum SpecNode {
    case map([(key: String, value: SpecNode)], line: Int?)
    case list([SpecNode], line: Int?)
    /// `quoted`: written as a string for sure (quoted YAML, JSON string), so `"no"` stays text.
    case scalar(String, quoted: Bool, line: Int?)
    case null(line: Int?)

    public var line: Int? {
        switch self {
        case .map(_, let l), .list(_, let l), .scalar(_, _, let l), .null(let l): return l
        }
    }

    var kindName: String {
        switch self {
        case .map: return "a mapping"
        case .list: return "a list"
        case .scalar: return "a value"
        case .null: return "nothing (null)"
        }
    }

    /// Parses YAML (and anything else not ending in .json) or JSON. Documents nested deeper
    /// than `SpecLimits.maxDepth` or with more than `SpecLimits.maxNodes` values are refused
    /// before they are parsed into a tree (`SpecShape`).
    public static func parse(_ text: String, json: Bool) throws -> SpecNode {
        if json {
            if let issue = SpecShape.checkJSON(text) { throw issue }
            let value: JSONValue
            do { value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) } catch {
                throw SpecIssue(path: "", message: "not valid JSON: \(Self.describeJSONError(error))")
            }
            return from(json: value)
        }
        if let issue = SpecShape.checkYAML(text) { throw issue }
        let node: Node?
        // UTF-8 explicitly: the same bytes the shape check read, so the same events.
        do { node = try Yams.compose(yaml: text, .default, .default, .utf8) } catch let e as YamlError {
            let line = Self.yamlErrorLine(e)
            if let line, let length = Self.overlongKey(text, line: line) {
                // libyaml gives up on plain keys past 1024 characters with an unrelated message.
                throw SpecIssue(
                    path: "",
                    message: "a key of \(length) characters; YAML reads at most \(Self.maxPlainKey) in a plain key, "
                        + "and no spec field is that long", line: line)
            }
            throw SpecIssue(path: "", message: "not valid YAML: \(Self.describeYAMLError(e))", line: line)
        } catch {
            throw SpecIssue(path: "", message: "not valid YAML: \(error)")
        }
        guard let node else { return .null(line: 1) }
        return from(yaml: node)
    }

    static func from(json v: JSONValue) -> SpecNode {
        switch v {
        case .null: return .null(line: nil)
        case .bool(let b): return .scalar(b ? "true" : "false", quoted: false, line: nil)
        case .int(let i): return .scalar(String(i), quoted: false, line: nil)
        case .double(let d): return .scalar(String(d), quoted: false, line: nil)
        case .string(let s): return .scalar(s, quoted: true, line: nil)
        case .array(let a): return .list(a.map(from(json:)), line: nil)
        case .object(let o):
            // JSON objects arrive unordered: sort so messages come out in a stable order.
            return .map(o.keys.sorted().map { (key: $0, value: from(json: o[$0]!)) }, line: nil)
        }
    }

    static func from(yaml node: Node) -> SpecNode {
        switch node {
        case .scalar(let s):
            let line = s.mark?.line
            let quoted =
                [.singleQuoted, .doubleQuoted, .literal, .folded].contains(s.style)
                || s.tag.description == Tag.Name.str.rawValue
            if !quoted, ["", "~", "null", "Null", "NULL"].contains(s.string) { return .null(line: line) }
            return .scalar(s.string, quoted: quoted, line: line)
        case .mapping(let m):
            return .map(
                m.map { pair -> (key: String, value: SpecNode) in
                    // A list or mapping as a key is never valid; name its kind rather than
                    // printing it (it may be large).
                    let key =
                        pair.key.scalar?.string ?? (pair.key.mapping != nil ? "(a mapping as key)" : "(a list as key)")
                    return (key: key, value: from(yaml: pair.value))
                }, line: m.mark?.line)
        case .sequence(let seq):
            return .list(seq.map(from(yaml:)), line: seq.mark?.line)
        }
    }

    /// libyaml's limit on a plain (simple) key's length.
    static let maxPlainKey = 1024

    /// The length of the key on 1-based `line` when it is past libyaml's limit, else nil.
    static func overlongKey(_ text: String, line: Int) -> Int? {
        guard line >= 1 else { return nil }
        var current = 1
        for row in text.split(separator: "\n", omittingEmptySubsequences: false) {
            defer { current += 1 }
            guard current == line else { continue }
            let key = row.range(of: ":").map { row[..<$0.lowerBound] } ?? row[...]
            let length = key.trimmingCharacters(in: .whitespaces).count
            return length > maxPlainKey ? length : nil
        }
        return nil
    }

    static func describeYAMLError(_ e: YamlError) -> String {
        switch e {
        case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _),
            .composer(let context, let problem, _, _):
            let c = context.map { "\($0.text) " } ?? ""
            return c + problem
        default:
            return "\(e)"
        }
    }

    static func yamlErrorLine(_ e: YamlError) -> Int? {
        switch e {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    static func describeJSONError(_ error: Error) -> String {
        if case DecodingError.dataCorrupted(let ctx) = error {
            let underlying = (ctx.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return underlying ?? ctx.debugDescription
        }
        return "\(error)"
    }
}

/// One problem in a spec, located by its field path (`generation.emotions[2]`).
public struct SpecIssue: Error, Equatable, CustomStringConvertible, LocalizedError {
    public var path: String
    public var message: String
    public var line: Int?

    public init(path: String, message: String, line: Int? = nil) {
        self.path = path
        self.message = message
        self.line = line
    }

    public var description: String {
        let lineNote = line.map { " (line \($0))" } ?? ""
        return path.isEmpty ? message + lineNote : "\(path): \(message)\(lineNote)"
    }

    public var errorDescription: String? { description }
}

/// Every problem found in a spec (validation does not stop at the first one).
public struct SpecError: Error, CustomStringConvertible, LocalizedError {
    public var file: String
    public var issues: [SpecIssue]

    public init(file: String, issues: [SpecIssue]) {
        self.file = file
        self.issues = issues
    }

    public var description: String {
        let head =
            issues.count == 1 ? "invalid job spec \(file):" : "invalid job spec \(file) (\(issues.count) problems):"
        return ([head] + issues.map { "  " + $0.description }).joined(separator: "\n")
    }

    public var errorDescription: String? { description }
}

/// Reads typed fields out of a SpecNode, recording issues with their paths instead of
/// throwing, so one pass reports every problem.
public final class SpecReader {
    public private(set) var issues: [SpecIssue] = []

    public init() {}

    public func issue(_ path: String, _ message: String, _ node: SpecNode? = nil) {
        issues.append(SpecIssue(path: path, message: message, line: node?.line))
    }

    /// The entries of a mapping; keys outside `allowed` and duplicate keys are issues.
    public func map(_ node: SpecNode?, _ path: String, allowed: [String]) -> [String: SpecNode]? {
        guard let node else { return nil }
        guard case .map(let pairs, _) = node else {
            issue(path, "expected a mapping (key: value), got \(node.kindName)", node)
            return nil
        }
        var out: [String: SpecNode] = [:]
        for (key, value) in pairs {
            let p = path.isEmpty ? key : "\(path).\(key)"
            if !allowed.contains(key) {
                let hint = Self.closest(key, in: allowed).map { "; did you mean '\($0)'?" } ?? ""
                issue(p, "unknown key (valid here: \(allowed.joined(separator: ", ")))\(hint)", value)
                continue
            }
            if out[key] != nil {
                issue(p, "duplicate key", value)
                continue
            }
            out[key] = value
        }
        return out
    }

    public func list(_ node: SpecNode?, _ path: String, allowScalar: Bool = false) -> [SpecNode]? {
        guard let node else { return nil }
        switch node {
        case .list(let items, _): return items
        case .scalar where allowScalar: return [node]
        default:
            issue(path, "expected a list, got \(node.kindName)", node)
            return nil
        }
    }

    /// One of a closed set of names (`what` names the set in the message: "unknown scheduler 'x'
    /// (valid: ddim, dpmpp-2m)"); nil, with the issue recorded, when it is none of them.
    public func choice<T: RawRepresentable & CaseIterable>(_ node: SpecNode?, _ path: String, _ what: String) -> T?
    where T.RawValue == String {
        guard let node, let name = string(node, path, allowEmpty: false) else { return nil }
        if let value = T(rawValue: name) { return value }
        let valid = T.allCases.map(\.rawValue).joined(separator: ", ")
        issue(path, "unknown \(what) '\(name)' (valid: \(valid))", node)
        return nil
    }

    public func string(_ node: SpecNode?, _ path: String, allowEmpty: Bool = true) -> String? {
        guard let node else { return nil }
        switch node {
        case .scalar(let s, _, _):
            if !allowEmpty && s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                issue(path, "must not be empty", node)
                return nil
            }
            return s
        case .null where allowEmpty: return ""
        default:
            issue(path, "expected a string, got \(node.kindName)", node)
            return nil
        }
    }

    public func int(_ node: SpecNode?, _ path: String, range: ClosedRange<Int64>) -> Int64? {
        guard let node else { return nil }
        guard case .scalar(let s, let quoted, _) = node, !quoted,
            let v = Int64(s.replacingOccurrences(of: "_", with: ""))
        else {
            issue(path, "expected a whole number, got \(Self.show(node))", node)
            return nil
        }
        guard range.contains(v) else {
            issue(path, "\(v) is out of range \(range.lowerBound)...\(range.upperBound)", node)
            return nil
        }
        return v
    }

    public func double(_ node: SpecNode?, _ path: String, check: (Double) -> String?) -> Double? {
        guard let node else { return nil }
        guard case .scalar(let s, let quoted, _) = node, !quoted, let v = Double(s), v.isFinite else {
            issue(path, "expected a number, got \(Self.show(node))", node)
            return nil
        }
        if let problem = check(v) {
            issue(path, problem, node)
            return nil
        }
        return v
    }

    public func bool(_ node: SpecNode?, _ path: String) -> Bool? {
        guard let node else { return nil }
        if case .scalar(let s, false, _) = node {
            switch s.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        issue(path, "expected true or false, got \(Self.show(node))", node)
        return nil
    }

    static func show(_ node: SpecNode) -> String {
        switch node {
        case .scalar(let s, let quoted, _): return quoted ? "the string '\(s)'" : "'\(s)'"
        default: return node.kindName
        }
    }

    /// The allowed key nearest to a misspelt one (edit distance ≤ 2), for hints.
    static func closest(_ key: String, in allowed: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var prev = Array(0...b.count)
            for i in 1...max(a.count, 1) where !a.isEmpty {
                var cur = [i] + Array(repeating: 0, count: b.count)
                for j in 1...max(b.count, 1) where !b.isEmpty {
                    cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                }
                prev = cur
            }
            return a.isEmpty ? b.count : prev[b.count]
        }
        let k = Array(key.lowercased())
        let best = allowed.map { ($0, distance(k, Array($0))) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= 2 else { return nil }
        return best.0
    }
}
