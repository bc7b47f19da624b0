import Foundation
import Support
import SwiftCSV

/// `generation.prompts_file`: prompts for a dataset, one per row — `.jsonl` (objects with a
/// "prompt" string), `.csv` (a "prompt" column; SwiftCSV parses the quoting) or any other name as
/// plain text (one prompt per non-empty line). Errors name the file and the row.
enum PromptsFile {
    static let maxBytes = 64 << 20

    static func read(_ url: URL) throws -> [String] {
        let data: Data
        do { data = try RegularFile.read(url.path, limit: maxBytes) } catch {
            throw PromptsFileError("cannot read \(url.path): \(error)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw PromptsFileError("\(url.lastPathComponent) is not UTF-8 text")
        }
        switch url.pathExtension.lowercased() {
        case "jsonl":
            var out: [String] = []
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if trimmed.isEmpty { continue }
                guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any],
                    let prompt = object["prompt"] as? String
                else {
                    throw PromptsFileError(
                        "\(url.lastPathComponent) line \(i + 1): not a JSON object with a \"prompt\" string")
                }
                out.append(prompt)
            }
            return out
        case "csv":
            let csv: CSV<Named>
            do { csv = try CSV<Named>(string: text, delimiter: .comma, loadColumns: false) } catch {
                throw PromptsFileError("\(url.lastPathComponent): \(error)")
            }
            guard csv.header.contains("prompt") else {
                throw PromptsFileError(
                    "\(url.lastPathComponent): no \"prompt\" column (header: \(csv.header.joined(separator: ", ")))")
            }
            return csv.rows.map { $0["prompt"] ?? "" }
        default:
            return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                .filter { !$0.isEmpty }
        }
    }
}

struct PromptsFileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
