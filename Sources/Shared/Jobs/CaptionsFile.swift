import Foundation
import Support
import SwiftCSV

/// `editing.captions`: a sidecar file giving source images their captions, in the layout of a
/// Hugging Face `imagefolder` metadata file — `.jsonl` objects or `.csv` rows with
/// `file_name` (relative to the captions file's folder) and one of `source_prompt`, `caption`
/// (img2dataset's column) or `text` (imagefolder's); a row with several is refused rather than
/// one silently winning. Other keys and columns are ignored. Problems are reported per line (JSONL) or row (CSV).
enum CaptionsFile {
    struct Row: Equatable {
        var place: String
        /// Normalised (no `.` or empty components), relative to the captions file's folder.
        var fileName: String
        var caption: String
    }

    static func read(_ url: URL, maxRows: Int) throws -> (rows: [Row], problems: [String]) {
        let data: Data
        do { data = try RegularFile.read(url.path, limit: PromptsFile.maxBytes) } catch {
            throw PromptsFileError("cannot read \(url.path): \(error)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw PromptsFileError("\(url.lastPathComponent) is not UTF-8 text")
        }
        let name = url.lastPathComponent
        var raw: [(place: String, fields: [String: String])] = []
        var problems: [String] = []
        switch url.pathExtension.lowercased() {
        case "jsonl":
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if trimmed.isEmpty { continue }
                if raw.count >= maxRows { throw PromptsFileError("\(name) holds more than \(maxRows) rows") }
                let place = "\(name) line \(i + 1)"
                guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(trimmed.utf8))
                else {
                    problems.append("\(place): not a JSON object")
                    continue
                }
                var fields: [String: String] = [:]
                var ok = true
                for key in ["file_name"] + captionKeys {
                    switch object[key] {
                    case nil, .null?: break
                    case .string(let s)?: fields[key] = s
                    case let other?:
                        problems.append("\(place): \(key): expected a string, got \(PromptsFile.show(other))")
                        ok = false
                    }
                }
                if ok { raw.append((place, fields)) }
            }
        case "csv":
            let csv: CSV<Named>
            do { csv = try CSV<Named>(string: text, delimiter: .comma, loadColumns: false) } catch {
                throw PromptsFileError("\(name): \(error)")
            }
            guard csv.header.contains("file_name") else {
                throw PromptsFileError(
                    "\(name): no \"file_name\" column (header: \(csv.header.joined(separator: ", ")))")
            }
            if csv.rows.count > maxRows { throw PromptsFileError("\(name) holds more than \(maxRows) rows") }
            for (i, cells) in csv.rows.enumerated() {
                raw.append(("\(name) row \(i + 1)", cells.filter { !$0.value.isEmpty }))
            }
        default:
            throw PromptsFileError("\(name): captions must be a .jsonl or .csv file")
        }
        var rows: [Row] = []
        var seen: [String: String] = [:]
        for (place, fields) in raw {
            guard let file = fields["file_name"], !file.isEmpty else {
                problems.append("\(place): no \"file_name\"")
                continue
            }
            let given = captionKeys.filter { fields[$0] != nil }
            if given.count > 1 {
                problems.append(
                    "\(place): give one of \(captionKeyList), not several (\(given.map { "\"\($0)\"" }.joined(separator: ", ")))"
                )
                continue
            }
            guard let caption = given.first.flatMap({ fields[$0] }),
                !caption.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
            else {
                problems.append("\(place): no caption (a non-empty \(captionKeyList))")
                continue
            }
            let normal: String
            do {
                try PathConfinement.checkRelative(file)
                normal = normalised(file)
            } catch {
                problems.append("\(place): file_name \(error)")
                continue
            }
            if let first = seen[normal] {
                problems.append("\(place): file_name '\(normal)' already has a caption at \(first)")
                continue
            }
            seen[normal] = place
            rows.append(Row(place: place, fileName: normal, caption: caption))
        }
        return (rows, problems)
    }

    static let captionKeys = ["source_prompt", "caption", "text"]
    static let captionKeyList = "\"source_prompt\", \"caption\" or \"text\""

    /// `./a//b.png` → `a/b.png`, so spellings of one path match.
    static func normalised(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }.joined(separator: "/")
    }
}
