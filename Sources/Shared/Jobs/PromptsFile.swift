import Foundation
import Support
import SwiftCSV
import Vocabulary

/// `generation.prompts_file`, read by its extension: `.jsonl`/`.ndjson` (one object per line),
/// `.json` (an array of such objects or of prompt strings), `.csv`/`.tsv` (a header row;
/// SwiftCSV parses the quoting), `.txt` (one prompt per non-empty line). Any other extension is
/// refused, naming these, rather than read as text (a `.json` array's brackets would become
/// prompts). Rows name their prompt `prompt` or `caption` (img2dataset's column; a row with both
/// is refused) and may carry `emotion`/`emotions`, `seed` and `id`; other keys and columns are
/// ignored (a dataset's own columns). Every row is checked here, and every problem is reported
/// with its line (JSONL, text), item (JSON, 1 = first) or row (CSV/TSV, 1 = first after the header).
enum PromptsFile {
    static let maxBytes = 64 << 20
    /// Problems listed before the rest are only counted.
    static let maxProblems = 20
    static let extensions = ["jsonl", "ndjson", "json", "csv", "tsv", "txt"]
    /// The keys a row's prompt may have.
    static let promptKeys = ["prompt", "caption"]

    struct Row: Equatable {
        /// "p.jsonl line 3", "p.csv row 2": where the row is, for messages.
        var place: String
        var prompt: String
        /// nil: the spec's `generation.emotions`.
        var emotions: [Emotion]?
        /// nil: the spec's seeds (explicit or derived); else this row's one sample.
        var seed: UInt64?
        /// The user's label, carried into the manifest; not part of the job's identity.
        var id: String?
    }

    struct Contents {
        var rows: [Row] = []
        var problems: [String] = []
    }

    static func read(_ url: URL, maxRows: Int) throws -> Contents {
        let data: Data
        do { data = try RegularFile.read(url.path, limit: maxBytes) } catch {
            throw PromptsFileError("cannot read \(url.path): \(error)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw PromptsFileError("\(url.lastPathComponent) is not UTF-8 text")
        }
        let name = url.lastPathComponent
        var out = Contents()
        switch url.pathExtension.lowercased() {
        case "jsonl", "ndjson":
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if trimmed.isEmpty { continue }
                let place = "\(name) line \(i + 1)"
                if out.rows.count >= maxRows { throw PromptsFileError("\(name) holds more than \(maxRows) rows") }
                guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(trimmed.utf8))
                else {
                    out.problems.append("\(place): not a JSON object with a \"prompt\" string")
                    continue
                }
                if let row = jsonRow(object, place: place, problems: &out.problems) { out.rows.append(row) }
            }
        case "json":
            guard case .array(let items)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
                throw PromptsFileError(
                    "\(name): not a JSON array of prompts (strings) or rows (objects with a \"prompt\"); "
                        + "one object per line is .jsonl")
            }
            if items.count > maxRows { throw PromptsFileError("\(name) holds more than \(maxRows) rows") }
            for (i, item) in items.enumerated() {
                let place = "\(name) item \(i + 1)"
                switch item {
                case .string(let prompt) where !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty:
                    out.rows.append(Row(place: place, prompt: prompt))
                case .object(let object):
                    if let row = jsonRow(object, place: place, problems: &out.problems) { out.rows.append(row) }
                default:
                    out.problems.append("\(place): expected a prompt string or an object, got \(show(item))")
                }
            }
        case "csv", "tsv":
            let csv: CSV<Named>
            let delimiter: CSVDelimiter = url.pathExtension.lowercased() == "tsv" ? .tab : .comma
            do { csv = try CSV<Named>(string: text, delimiter: delimiter, loadColumns: false) } catch {
                throw PromptsFileError("\(name): \(error)")
            }
            guard csv.header.contains(where: promptKeys.contains) else {
                throw PromptsFileError(
                    "\(name): no \"prompt\" or \"caption\" column (header: \(csv.header.joined(separator: ", ")))")
            }
            if csv.header.contains("prompt") && csv.header.contains("caption") {
                throw PromptsFileError("\(name): has both a \"prompt\" and a \"caption\" column; keep one")
            }
            if csv.header.contains("emotion") && csv.header.contains("emotions") {
                throw PromptsFileError("\(name): has both an \"emotion\" and an \"emotions\" column; keep one")
            }
            if csv.rows.count > maxRows { throw PromptsFileError("\(name) holds more than \(maxRows) rows") }
            for (i, cells) in csv.rows.enumerated() {
                if let row = csvRow(cells, place: "\(name) row \(i + 1)", problems: &out.problems) {
                    out.rows.append(row)
                }
            }
        case "txt":
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let prompt = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if prompt.isEmpty { continue }
                if out.rows.count >= maxRows { throw PromptsFileError("\(name) holds more than \(maxRows) rows") }
                out.rows.append(Row(place: "\(name) line \(i + 1)", prompt: prompt))
            }
        default:
            throw PromptsFileError(
                "\(name): unknown prompts file type '.\(url.pathExtension)' (accepted: "
                    + extensions.map { "." + $0 }.joined(separator: ", ") + ")")
        }
        checkDuplicates(&out)
        return out
    }

    static func jsonRow(_ object: [String: JSONValue], place: String, problems: inout [String]) -> Row? {
        if object["prompt"] != nil && object["caption"] != nil {
            problems.append("\(place): give \"prompt\" or \"caption\", not both")
            return nil
        }
        guard case .string(let prompt)? = object["prompt"] ?? object["caption"] else {
            problems.append("\(place): not a JSON object with a \"prompt\" (or \"caption\") string")
            return nil
        }
        var row = Row(place: place, prompt: prompt)
        var ok = true
        func fail(_ message: String) {
            problems.append("\(place): \(message)")
            ok = false
        }
        if object["emotion"] != nil && object["emotions"] != nil { fail("give \"emotion\" or \"emotions\", not both") }
        for key in ["emotion", "emotions"] {
            guard let value = object[key] else { continue }
            switch value {
            case .string(let s):
                do { row.emotions = try emotionList([s]) } catch { fail("\(key): \(error)") }
            case .array(let items) where key == "emotions":
                var names: [String] = []
                for item in items {
                    guard case .string(let s) = item else {
                        fail("emotions: expected a list of emotion names, got \(show(item)) in it")
                        break
                    }
                    names.append(s)
                }
                if names.count == items.count {
                    do { row.emotions = try emotionList(names) } catch { fail("emotions: \(error)") }
                }
            default:
                fail(
                    "\(key): expected \(key == "emotion" ? "an emotion name" : "a list of emotion names"), got \(show(value))"
                )
            }
        }
        switch object["seed"] {
        case nil, .null?: break
        case .int(let v)?:
            if v < 0 || UInt64(v) > SeedDerivation.maxSeed {
                fail("seed \(v) is out of range 0...\(SeedDerivation.maxSeed)")
            } else {
                row.seed = UInt64(v)
            }
        case let other?: fail("seed: expected a whole number, got \(show(other))")
        }
        switch object["id"] {
        case nil, .null?: break
        case .string(let s)?:
            if s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { fail("id: must not be empty") }
            row.id = s
        case .int(let v)?: row.id = String(v)
        case let other?: fail("id: expected a string or a whole number, got \(show(other))")
        }
        return ok ? row : nil
    }

    static func csvRow(_ cells: [String: String], place: String, problems: inout [String]) -> Row? {
        var row = Row(place: place, prompt: cells["prompt"] ?? cells["caption"] ?? "")
        var ok = true
        func cell(_ key: String) -> String? {
            guard let v = cells[key]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }
        if let text = cell("emotions") ?? cell("emotion") {
            let names = text.split(whereSeparator: { $0 == ";" || $0 == "|" }).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            do { row.emotions = try emotionList(names) } catch {
                problems.append("\(place): \(cells["emotions"] == nil ? "emotion" : "emotions"): \(error)")
                ok = false
            }
        }
        if let text = cell("seed") {
            if let v = UInt64(text), v <= SeedDerivation.maxSeed {
                row.seed = v
            } else {
                problems.append(
                    "\(place): seed '\(text.prefix(40))' is not a whole number in 0...\(SeedDerivation.maxSeed)")
                ok = false
            }
        }
        row.id = cell("id")
        return ok ? row : nil
    }

    /// Distinct emotions by name, or `all`; throws with the offending name.
    static func emotionList(_ names: [String]) throws -> [Emotion] {
        if names.count == 1, names[0].lowercased() == "all" { return Emotion.allCases }
        if names.isEmpty || names.contains(where: { $0.isEmpty }) {
            throw PromptsFileError("an empty emotion name")
        }
        var out: [Emotion] = []
        for name in names {
            let e = try Emotion.parse(name)
            if out.contains(e) { throw PromptsFileError("'\(name)' is listed twice") }
            out.append(e)
        }
        return out
    }

    /// Two rows with the same prompt and seed (or both without a seed) would be the same jobs;
    /// two rows with the same id would make the label ambiguous.
    static func checkDuplicates(_ contents: inout Contents) {
        var byKey: [String: String] = [:]
        var byID: [String: String] = [:]
        for row in contents.rows {
            let key = "\(row.seed.map(String.init) ?? "-")\n\(row.prompt)"
            if let first = byKey[key] {
                let seed = row.seed.map { " and seed \($0)" } ?? ""
                contents.problems.append(
                    "\(row.place): duplicate of \(first) (prompt '\(row.prompt.prefix(60))'\(seed))")
            } else {
                byKey[key] = row.place
            }
            if let id = row.id {
                if let first = byID[id] {
                    contents.problems.append("\(row.place): id '\(id.prefix(60))' is already used by \(first)")
                } else {
                    byID[id] = row.place
                }
            }
        }
    }

    static func show(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .int(let i): return "\(i)"
        case .double(let d): return "\(d)"
        case .string(let s): return "the string '\(s.prefix(40))'"
        case .array: return "a list"
        case .object: return "an object"
        }
    }
}

struct PromptsFileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
