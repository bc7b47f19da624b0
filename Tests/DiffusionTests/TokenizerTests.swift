import Foundation
import XCTest

@testable import Diffusion

/// Parity of `CLIPTokenizer` with `transformers.CLIPTokenizer` (transformers 5 / tokenizers
/// 0.23, no ftfy) on the committed fixtures, plus the normalisation corner cases.
final class TokenizerTests: XCTestCase {
    struct Case: Decodable {
        let prompt: String
        let ids: [Int]
    }

    static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var fullFolder: String { repoRoot.appendingPathComponent("models/clip-bpe").path }
    static var tinyFolder: String { repoRoot.appendingPathComponent("models/tiny-sd/tokenizer").path }

    // Loading the full vocabulary once for the whole class keeps the suite quick.
    nonisolated(unsafe) static var fullTokenizer: CLIPTokenizer?

    func full() throws -> CLIPTokenizer {
        if let t = Self.fullTokenizer { return t }
        let t = try CLIPTokenizer(folder: Self.fullFolder)
        Self.fullTokenizer = t
        return t
    }

    func loadCases(_ name: String) throws -> [Case] {
        let url = Self.repoRoot.appendingPathComponent("Tests/Fixtures/\(name)")
        return try JSONDecoder().decode([Case].self, from: Data(contentsOf: url))
    }

    func assertAllCases(_ cases: [Case], _ tokenizer: CLIPTokenizer, file: StaticString = #filePath, line: UInt = #line)
    {
        var mismatches = 0
        for c in cases {
            let got = tokenizer.tokenize(c.prompt, length: c.ids.count)
            if got != c.ids {
                mismatches += 1
                XCTFail(
                    "prompt \(c.prompt.debugDescription):\n expected \(c.ids)\n got      \(got)", file: file, line: line
                )
            }
        }
        XCTAssertEqual(mismatches, 0, "\(mismatches) of \(cases.count) prompts differ", file: file, line: line)
    }

    // MARK: fixtures

    func testFullVocabularyFixture() throws {
        let cases = try loadCases("tokenizer_cases.json")
        XCTAssertGreaterThanOrEqual(cases.count, 250)
        XCTAssertTrue(cases.allSatisfy { $0.ids.count == 77 })
        assertAllCases(cases, try full())
    }

    func testTinyVocabularyFixture() throws {
        let cases = try loadCases("tokenizer_cases_tiny.json")
        XCTAssertFalse(cases.isEmpty)
        let tiny = try CLIPTokenizer(folder: Self.tinyFolder)
        XCTAssertEqual(tiny.bosID, 2512)
        XCTAssertEqual(tiny.eosID, 2513)
        XCTAssertEqual(tiny.padID, 2513)
        assertAllCases(cases, tiny)
    }

    // MARK: basics

    func testSpecialIDsAndLookups() throws {
        let t = try full()
        XCTAssertEqual(t.bosID, 49406)
        XCTAssertEqual(t.eosID, 49407)
        XCTAssertEqual(t.padID, 49407)
        XCTAssertEqual(t.vocabularySize, 49408)
        XCTAssertEqual(t.id(of: "cat</w>"), 2368)
        XCTAssertEqual(t.id(of: "<|endoftext|>"), 49407)
        XCTAssertNil(t.id(of: "definitely-not-a-token"))
        XCTAssertEqual(t.token(of: 2368), "cat</w>")
        XCTAssertEqual(t.tokenize("a photo of a cat", length: 7), [49406, 320, 1125, 539, 320, 2368, 49407])
        XCTAssertEqual(t.decode(t.encode("A Photo of a CAT!")), "a photo of a cat !")
    }

    func testEmptyPrompt() throws {
        let t = try full()
        XCTAssertEqual(t.encode(""), [])
        XCTAssertEqual(t.encode(" \t\n "), [])
        let ids = t.tokenize("")
        XCTAssertEqual(ids.count, 77)
        XCTAssertEqual(ids, [49406] + [Int](repeating: 49407, count: 76))
        XCTAssertEqual(t.tokenize("   "), ids)
    }

    func testOverlongPromptTruncation() throws {
        let t = try full()
        let prompt = Array(repeating: "a highly detailed photograph of a mountain,", count: 30).joined(separator: " ")
        let all = t.encode(prompt)
        XCTAssertGreaterThan(all.count, 75)
        let ids = t.tokenize(prompt)
        XCTAssertEqual(ids.count, 77)
        XCTAssertEqual(ids[0], t.bosID)
        XCTAssertEqual(ids[76], t.eosID)
        XCTAssertEqual(Array(ids[1..<76]), Array(all.prefix(75)))
        // Exactly 75 tokens: no padding, eos still last.
        let exact = Array(repeating: "cat", count: 75).joined(separator: " ")
        XCTAssertEqual(t.encode(exact).count, 75)
        XCTAssertEqual(t.tokenize(exact), [49406] + [Int](repeating: 2368, count: 75) + [49407])
        // Other lengths.
        XCTAssertEqual(t.tokenize(prompt, length: 5), [49406] + Array(all.prefix(3)) + [49407])
    }

    /// Ids checked against transformers 5.24 / tokenizers 0.23 by hand.
    func testNormalisationCornerCases() throws {
        let t = try full()
        let cases: [(String, [Int])] = [
            ("İstanbul", [328, 16384, 11231]),  // full lower-casing: i + U+0307
            ("caf\u{e9}", [15304]),  // precomposed
            ("cafe\u{301}", [15304]),  // NFC composes
            ("<|ENDOFTEXT|>x", [27, 347, 40786, 4160, 91, 285, 343]),  // look-alike split by the byte-level pattern
            ("x<|endoftext|>y", [343, 49407, 344]),  // special token in raw text
            // NBSP and ideographic space split, ZWSP does not
            ("a\u{a0}b\u{200b}c\u{3000}d", [320, 321, 9844, 322, 323]),
            // no NFKC; one digit per piece
            ("\u{ff11}\u{ff12}\u{ff13}", [171, 120, 495, 171, 120, 496, 171, 120, 497]),
            ("ΣΑΣ", [139, 225, 138, 109, 139, 481]),  // no final-sigma rule
            ("DON'T", [847, 713]),
            ("!'s", [13222, 338]),  // punctuation run swallows the apostrophe
            ("\u{116c}\u{307}\u{322}", [157, 227, 361, 136, 95, 16384]),  // canonical reordering of marks
            ("\u{116c}\u{322}\u{307}", [157, 227, 361, 136, 95, 16384]),
            ("a\u{307}\u{322}", [132, 356, 136, 351]),  // composes across a lower-class mark
            ("\u{1100}\u{1161}\u{11a8}", [21122, 479]),  // Hangul composition
            ("x\u{f75}\u{301}", [343, 39219, 109, 39219, 112, 136, 479]),  // decomposed starter with non-starter parts
            ("a\u{88f}b", [320, 156, 95, 493, 321]),  // Unicode 17 letter: unassigned for the reference
            ("a\u{7fd}\u{301}", [320, 155, 121, 136, 479]),  // Unicode 11 mark: class 0 for the reference's NFC
            ("e\u{301}\u{323}", [157, 118, 373, 136, 479]),
        ]
        for (prompt, expected) in cases {
            XCTAssertEqual(t.encode(prompt), expected, "prompt \(prompt.debugDescription)")
        }
    }

    /// SD 1.5's tokenizer_config.json marks `<|startoftext|>` as normalized (matched after
    /// lower-casing) while `<|endoftext|>` ends up raw (the plain-string pad token wins).
    func testSD15TokenizerConfig() throws {
        let dir = NSTemporaryDirectory() + "tokenizer-sd15-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["vocab.json", "merges.txt"] {
            try FileManager.default.createSymbolicLink(
                atPath: dir + "/" + f, withDestinationPath: Self.fullFolder + "/" + f)
        }
        let config = """
            {"add_prefix_space": false,
             "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
             "do_lower_case": true,
             "eos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
             "errors": "replace", "model_max_length": 77, "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
             "unk_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}}
            """
        try config.write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        let t = try CLIPTokenizer(folder: dir)
        XCTAssertEqual(t.padID, 49407)
        XCTAssertEqual(t.encode("<|STARTOFTEXT|>x"), [49406, 343])
        XCTAssertEqual(t.encode("<|ENDOFTEXT|>"), [27, 347, 40786, 4160, 91, 285])
        XCTAssertEqual(t.encode("a photo of a cat"), [320, 1125, 539, 320, 2368])

        // A different pad token is honoured.
        try #"{"pad_token": "!"}"#.write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        let bang = try CLIPTokenizer(folder: dir)
        XCTAssertEqual(bang.padID, 0)
        XCTAssertEqual(bang.tokenize("cat", length: 5), [49406, 2368, 49407, 0, 0])
    }

    // MARK: errors

    func testMissingFilesNameThePath() throws {
        let dir = NSTemporaryDirectory() + "tokenizer-missing-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "#version: 0.2\n".write(toFile: dir + "/merges.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(folder: dir)) { error in
            XCTAssertTrue("\(error)".contains(dir + "/vocab.json"), "\(error)")
        }
        XCTAssertThrowsError(
            try CLIPTokenizer(vocabPath: Self.fullFolder + "/vocab.json", mergesPath: dir + "/nope.txt")
        ) { error in
            XCTAssertTrue("\(error)".contains(dir + "/nope.txt"), "\(error)")
        }
        XCTAssertThrowsError(try CLIPTokenizer(folder: dir + "/no-such-folder")) { error in
            XCTAssertTrue("\(error)".contains(dir + "/no-such-folder"), "\(error)")
        }
        // Malformed files are errors too, naming the file.
        try "{\"a\": 0,".write(toFile: dir + "/vocab.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(folder: dir)) { error in
            XCTAssertTrue("\(error)".contains(dir + "/vocab.json"), "\(error)")
        }
        try #"{"a": 0, "b": 1, "<|startoftext|>": 2, "<|endoftext|>": 3}"#.write(
            toFile: dir + "/vocab.json", atomically: true, encoding: .utf8)
        try "#version: 0.2\na b\n".write(toFile: dir + "/merges.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(folder: dir)) { error in
            XCTAssertTrue("\(error)".contains(dir + "/merges.txt") && "\(error)".contains("line 2"), "\(error)")
        }
    }

    // MARK: cold caches and concurrency

    /// 200 cold-cache prompts tokenize as the shared tokenizer does (their speed is
    /// `muse bench-tokenizer`'s, not a test's: wall clocks on shared machines are noise).
    func testFreshTokenizerAgreesWithTheShared() throws {
        let cases = try loadCases("tokenizer_cases.json")
        let prompts = (0..<200).map { cases[$0 % cases.count].prompt + " \($0)" }
        let fresh = try CLIPTokenizer(folder: Self.fullFolder)
        let shared = try full()
        for p in prompts { XCTAssertEqual(fresh.tokenize(p), shared.tokenize(p), p) }
    }

    func testConcurrentEncodingIsConsistent() throws {
        let t = try full()
        let cases = try loadCases("tokenizer_cases.json")
        let results = UnsafeMutableBufferPointer<[Int]>.allocate(capacity: cases.count)
        results.initialize(repeating: [])
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: cases.count) { i in
            results[i] = t.tokenize(cases[i].prompt)
        }
        for (i, c) in cases.enumerated() { XCTAssertEqual(results[i], c.ids, c.prompt) }
    }
}
