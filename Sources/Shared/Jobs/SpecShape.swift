import CYaml
import Foundation

/// Bounds on a spec document. A real spec is a few levels deep (`engine.muse.similar_emotions.awe`
/// is 4) and holds at most a few hundred thousand values (100,000 jobs' prompts and seeds).
public enum SpecLimits {
    /// Larger spec files are refused unread.
    public static let maxFileBytes = 16 << 20
    /// Lists and mappings inside each other, the outermost one counting 1.
    public static let maxDepth = 64
    /// Values (scalars, lists, mappings, keys included) after expanding every YAML alias.
    public static let maxNodes = 1_000_000
}

/// Checks a spec's nesting depth and size before it becomes a tree.
///
/// Why before: Yams' composer (`Yams.compose`) builds its node tree recursively, about 3.5 KB
/// of stack per level, so `[[[[…` 2,400 deep already overflows the main thread's 8 MB stack
/// inside Yams, where nothing can catch it; and it keeps YAML aliases shared, so expanding
/// them into `SpecNode`s (billion laughs: nine lines, 10^9 values) is what would exhaust
/// memory. Counting brackets and indentation in the text cannot tell structure from quoted
/// or block-scalar text exactly (YAML's quoting rules depend on context), and a pre-scan that
/// is fooled once is a crash. So the YAML check runs libyaml itself — the parser inside Yams
/// (`CYaml`), which is event-based and not recursive — over the same bytes, and tracks depth
/// and the expanded size of every anchor as the events arrive, stopping at the first event
/// over a limit. Only a document that passes reaches `Yams.compose`, whose recursion is then
/// at most `maxDepth` deep. A syntax error stops the check where it stops Yams, so the depth
/// Yams reaches is checked either way, and Yams reports the error as before.
///
/// JSON has no context-dependent quoting: a scan of brackets outside strings is exact.
enum SpecShape {
    static func deepIssue(line: Int?) -> SpecIssue {
        SpecIssue(
            path: "",
            message: "the spec nests lists and mappings more than \(SpecLimits.maxDepth) levels deep; "
                + "no job spec needs that", line: line)
    }

    static func largeIssue(line: Int?) -> SpecIssue {
        SpecIssue(
            path: "",
            message: "the spec holds more than \(SpecLimits.maxNodes) values (each use of a YAML alias "
                + "counts its whole expansion); split it", line: line)
    }

    /// nil when the YAML document is within the limits (or has a syntax error, which the
    /// parser then reports).
    static func checkYAML(_ text: String) -> SpecIssue? {
        let bytes = Array(text.utf8)
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) == 1 else { return nil }
        defer { yaml_parser_delete(parser) }
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
        return bytes.withUnsafeBufferPointer { buffer -> SpecIssue? in
            yaml_parser_set_input_string(parser, buffer.baseAddress, buffer.count)
            return walkEvents(parser)
        }
    }

    /// A list or mapping being read: the values in it so far (itself included) and how many
    /// levels of lists and mappings it spans.
    private struct Open {
        var size = 1
        var height = 1
        var anchor: String?
    }

    private static func walkEvents(_ parser: UnsafeMutablePointer<yaml_parser_t>) -> SpecIssue? {
        var open: [Open] = []
        var anchors: [String: (size: Int, height: Int)] = [:]
        var total = 0
        var event = yaml_event_t()
        func name(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? { p.map { String(cString: $0) } }
        /// A finished value (scalar, alias or closed collection) joins its parent.
        func finish(size: Int, height: Int, anchor: String?) {
            if let anchor { anchors[anchor] = (size, height) }
            guard !open.isEmpty else { return }
            open[open.count - 1].size += size
            open[open.count - 1].height = max(open[open.count - 1].height, height + 1)
        }
        while true {
            guard yaml_parser_parse(parser, &event) == 1 else { return nil }
            defer { yaml_event_delete(&event) }
            let line = Int(event.start_mark.line) + 1
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return nil
            case YAML_SCALAR_EVENT:
                total += 1
                if total > SpecLimits.maxNodes { return largeIssue(line: line) }
                finish(size: 1, height: 0, anchor: name(event.data.scalar.anchor))
            case YAML_ALIAS_EVENT:
                // An unknown anchor is a syntax error Yams reports; count it as one value.
                let target = name(event.data.alias.anchor).flatMap { anchors[$0] } ?? (size: 1, height: 0)
                total += target.size
                if total > SpecLimits.maxNodes { return largeIssue(line: line) }
                if open.count + target.height > SpecLimits.maxDepth { return deepIssue(line: line) }
                finish(size: target.size, height: target.height, anchor: nil)
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                total += 1
                if total > SpecLimits.maxNodes { return largeIssue(line: line) }
                if open.count + 1 > SpecLimits.maxDepth { return deepIssue(line: line) }
                let anchor =
                    event.type == YAML_SEQUENCE_START_EVENT
                    ? name(event.data.sequence_start.anchor) : name(event.data.mapping_start.anchor)
                open.append(Open(anchor: anchor))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                guard let closed = open.popLast() else { continue }
                finish(size: closed.size, height: closed.height, anchor: closed.anchor)
            default:
                continue
            }
        }
    }

    /// nil when the JSON text is within the limits and no object repeats a key. Values are
    /// over-counted a little (one per `[`, `{`, `,` and `:` outside strings, plus one), which
    /// only matters near the limit. A repeated key is found here because JSON decoding keeps
    /// one of the two silently (YAML's reader reports it); keys compare as written, so `"a"`
    /// and `"\u0061"` count as two.
    static func checkJSON(_ text: String) -> SpecIssue? {
        var depth = 0
        var values = 1
        var line = 1
        var inString = false
        var escaped = false
        // Per open bracket: the keys seen so far in an object, nil for an array.
        var objects: [Set<[UInt8]>?] = []
        var string: [UInt8] = []
        var lastString: [UInt8]?
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\n") { line += 1 }
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                    lastString = string
                    continue
                }
                string.append(byte)
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
                string = []
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                values += 1
                if depth > SpecLimits.maxDepth { return deepIssue(line: line) }
                objects.append(byte == UInt8(ascii: "{") ? [] : nil)
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth = max(0, depth - 1)
                _ = objects.popLast()
            case UInt8(ascii: ":"):
                values += 1
                if let key = lastString, let keys = objects.last, var seen = keys {
                    if seen.contains(key) {
                        let name = String(decoding: key.prefix(80), as: UTF8.self)
                        return SpecIssue(
                            path: "", message: "duplicate key \"\(name)\" in one object (JSON would keep one silently)",
                            line: line)
                    }
                    seen.insert(key)
                    objects[objects.count - 1] = seen
                }
            case UInt8(ascii: ","):
                values += 1
            default:
                break
            }
            if byte != UInt8(ascii: " ") && byte != UInt8(ascii: "\t") && byte != UInt8(ascii: "\n")
                && byte != UInt8(ascii: "\r") && byte != UInt8(ascii: "\"")
            {
                lastString = nil
            }
            if values > SpecLimits.maxNodes { return largeIssue(line: line) }
        }
        return nil
    }
}
