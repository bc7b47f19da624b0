import Foundation
import XCTest

@testable import Diffusion

/// A tokenizer folder holding only `tokenizer.json` (what transformers 5's `save_pretrained`
/// writes) tokenizes as the vocab.json + merges.txt pair does: the same ids as transformers.
final class TokenizerJSONTests: XCTestCase {
    var dir: URL!
    let fm = FileManager.default

    override func setUpWithError() throws {
        dir = fm.temporaryDirectory.appendingPathComponent("tokjson-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? fm.removeItem(at: dir) }

    func cases(_ name: String) throws -> [TokenizerTests.Case] {
        let url = TokenizerTests.repoRoot.appendingPathComponent("Tests/Fixtures/\(name)")
        return try JSONDecoder().decode([TokenizerTests.Case].self, from: Data(contentsOf: url))
    }

    func mismatches(_ cases: [TokenizerTests.Case], _ tokenizer: CLIPTokenizer) -> [String] {
        cases.filter { tokenizer.tokenize($0.prompt, length: $0.ids.count) != $0.ids }.map(\.prompt)
    }

    /// The tiny model's tokenizer.json as transformers wrote it (merges as [a, b] pairs), alone.
    func testTransformersWrittenTokenizerJSONAloneGivesTransformersIDs() throws {
        let source = URL(fileURLWithPath: TokenizerTests.tinyFolder)
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            try fm.copyItem(at: source.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        let tokenizer = try CLIPTokenizer(folder: dir.path)
        let fixture = try cases("tokenizer_cases_tiny.json")
        XCTAssertFalse(fixture.isEmpty)
        XCTAssertEqual(mismatches(fixture, tokenizer), [])
    }

    /// The full CLIP BPE as a tokenizer.json, in both merge spellings tokenizers has written
    /// ("a b" strings before 0.20, [a, b] pairs since): the 265 prompts' transformers ids.
    func testFullVocabularyAsTokenizerJSONInBothMergeSpellings() throws {
        let folder = URL(fileURLWithPath: TokenizerTests.fullFolder)
        let vocab = try JSONSerialization.jsonObject(
            with: Data(contentsOf: folder.appendingPathComponent("vocab.json")))
        let lines = try String(contentsOf: folder.appendingPathComponent("merges.txt"), encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#version") }.map(String.init)
        let fixture = try cases("tokenizer_cases.json")
        XCTAssertGreaterThanOrEqual(fixture.count, 250)
        for merges in [lines as [Any], lines.map { $0.split(separator: " ").map(String.init) } as [Any]] {
            let json: [String: Any] = ["version": "1.0", "model": ["type": "BPE", "vocab": vocab, "merges": merges]]
            try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("tokenizer.json"))
            XCTAssertEqual(mismatches(fixture, try CLIPTokenizer(folder: dir.path)), [])
        }
    }

    func testBrokenTokenizerJSONIsRefusedByName() throws {
        let path = dir.appendingPathComponent("tokenizer.json")
        for (text, expected) in [
            (#"{"model": {"type": "WordPiece", "vocab": {}}}"#, "not the BPE"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}}"#, "model.merges[0]"),
            (
                #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "<|startoftext|>": 2, "<|endoftext|>": 3}, "#
                    + #""merges": ["a b"]}}"#, "model.merges[0] merge 'a b'"
            ),
            (#"{"model": {"type": "BPE", "vocab": {"a": 2147483647}, "merges": []}}"#, "far beyond"),
            (#"{"vocab": {}}"#, "no \"model\""),
        ] {
            try Data(text.utf8).write(to: path)
            XCTAssertThrowsError(try CLIPTokenizer(folder: dir.path)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("tokenizer.json") && message.contains(expected), message)
            }
        }
    }
}
