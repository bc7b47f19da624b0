import Foundation
import XCTest

@testable import Diffusion

/// Long inputs: BPE is near-linear in a word's length and `tokenize` only looks at as much
/// text as can reach the kept tokens, with ids identical to before (expected values below
/// were computed with the earlier quadratic implementation).
final class TokenizerLongInputTests: XCTestCase {
    static let fullFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models/clip-bpe").path

    nonisolated(unsafe) static var shared: CLIPTokenizer?

    func tokenizer() throws -> CLIPTokenizer {
        if let t = Self.shared { return t }
        let t = try CLIPTokenizer(folder: Self.fullFolder)
        Self.shared = t
        return t
    }

    /// A deterministic generator (64-bit LCG, high bits).
    struct Generator {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    static let words = [
        "a", "photo", "of", "the", "cat", "dog", "mountain", "lake", "dawn", "highly", "detailed", "painting",
        "portrait", "quiet", "light", "forest", "city", "night", "sky", "river", "old", "house", "red", "blue",
    ]

    /// English words run together without spaces: one long pre-token with many merges.
    static func runTogether(_ count: Int, seed: UInt64) -> String {
        var g = Generator(state: seed)
        var s = ""
        while s.utf8.count < count { s += words[g.next(words.count)] }
        return String(s.utf8.prefix(count))!
    }

    /// Words, punctuation and spaces: a long prompt of many short pre-tokens.
    static func prompt(_ count: Int, seed: UInt64) -> String {
        var g = Generator(state: seed)
        let separators = [" ", " ", " ", ", ", ". ", "  ", "\t"]
        var s = ""
        while s.utf8.count < count { s += words[g.next(words.count)] + separators[g.next(separators.count)] }
        return String(s.utf8.prefix(count))!
    }

    /// FNV-1a over the ids: a compact fingerprint of a long id list.
    static func fingerprint(_ ids: [Int]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for id in ids {
            h ^= UInt64(id)
            h = h &* 0x100_0000_01b3
        }
        return h
    }

    /// Expected (count, fingerprint, first ids) of `encode` for the long single words, from the
    /// quadratic implementation (25 s and 150 s for the 40k and 100k words on the machine of
    /// the time; the linear one's figures are `muse bench-tokenizer`'s). A return to quadratic
    /// merging would take minutes here and trip the suite's time limit.
    func testLongWordsAreUnchanged() throws {
        let t = try tokenizer()
        let expected: [(length: Int, seed: UInt64, count: Int, fingerprint: UInt64, first: [Int])] = [
            (
                5_000, 3, 1279, 0x16d7_e9a3_478b_0bf2,
                [
                    49164, 5239, 49164, 1914, 72, 8767, 39312, 49164, 6441, 4326, 13525, 47124, 1251, 5239, 3075, 30590,
                    4107, 1893, 3870, 28967,
                ]
            ),
            (
                40_000, 1, 10364, 0x477f_d4ae_115f_909d,
                [
                    7510, 47124, 1251, 39312, 14547, 3075, 2141, 1310, 650, 9486, 1487, 1251, 1914, 72, 8767, 599, 1914,
                    72, 8767, 4175,
                ]
            ),
            (
                100_000, 2, 26009, 0x40e8_3f9a_591d_6220,
                [
                    1481, 3075, 594, 808, 77, 3829, 49164, 39312, 14547, 1487, 75, 5966, 3829, 684, 1914, 72, 8767,
                    1914, 72, 8767,
                ]
            ),
        ]
        for e in expected {
            let word = Self.runTogether(e.length, seed: e.seed)
            let ids = t.encode(word)
            XCTAssertEqual(ids.count, e.count, "\(e.length)-character word")
            XCTAssertEqual(Self.fingerprint(ids), e.fingerprint, "\(e.length)-character word")
            XCTAssertEqual(Array(ids.prefix(e.first.count)), e.first, "\(e.length)-character word")
            let framed = t.tokenize(word)
            XCTAssertEqual(framed, [t.bosID] + Array(ids.prefix(75)) + [t.eosID])
        }
    }

    /// A 1 MB prompt of ordinary words and a 1 MB single word tokenize to their first 77 ids
    /// (speed: `muse bench-tokenizer`).
    func testMegabytePromptsAreTruncated() throws {
        let t = try tokenizer()
        let prompt = Self.prompt(1 << 20, seed: 7)
        let ids = t.tokenize(prompt)
        XCTAssertEqual(ids, Self.expectedMegabytePrompt)

        let word = Self.runTogether(1 << 20, seed: 11)
        let wordIDs = t.tokenize(word)
        XCTAssertEqual(wordIDs.count, 77)
        XCTAssertEqual(wordIDs.last, t.eosID)
    }

    /// The earlier quadratic loop, kept as the reference: merge the lowest-ranked adjacent
    /// pair, leftmost on ties, until none applies.
    static func referenceMerge(_ t: CLIPTokenizer, _ initial: [Int32]) -> [Int32] {
        var symbols = initial
        while symbols.count > 1 {
            var bestRank = Int32.max
            var bestIndex = -1
            var bestID: Int32 = 0
            for k in 0..<(symbols.count - 1) {
                if let m = t.merge(symbols[k], symbols[k + 1]), m.rank < bestRank {
                    bestRank = m.rank
                    bestIndex = k
                    bestID = m.id
                }
            }
            if bestIndex < 0 { break }
            symbols[bestIndex] = bestID
            symbols.remove(at: bestIndex + 1)
        }
        return symbols
    }

    /// Random words over several alphabets (letters, whole words, one repeated letter, pairs
    /// that compete for merges, multi-byte characters, punctuation) merge exactly as the
    /// quadratic reference does, with the real and the tiny vocabularies.
    func testMergesMatchTheQuadraticReference() throws {
        let tiny = try CLIPTokenizer(
            folder: URL(fileURLWithPath: Self.fullFolder).deletingLastPathComponent().path + "/tiny-sd/tokenizer")
        let alphabets: [[String]] = [
            (97...122).map { String(UnicodeScalar($0)!) }, Self.words, ["a"], ["ab", "ba", "a", "b"],
            ["e", "é", "ß", "日", "本", "🙂", "ñ"], ["!", "?", ".", "'", "-", "!!"], ["ing", "in", "g", "n", "i"],
        ]
        var g = Generator(state: 42)
        var compared = 0
        for t in [try tokenizer(), tiny] {
            for trial in 0..<350 {
                let alphabet = alphabets[trial % alphabets.count]
                let length = 1 + g.next(trial < 250 ? 40 : 1500)
                var word = ""
                while word.utf8.count < length { word += alphabet[g.next(alphabet.count)] }
                let initial = t.initialSymbols(Array(word.utf8))
                XCTAssertEqual(t.mergeSymbols(initial), Self.referenceMerge(t, initial), word)
                compared += 1
            }
        }
        XCTAssertEqual(compared, 700)
    }

    /// `tokenize` reads only the start of a long text; its ids must be those of encoding the
    /// whole text, truncated: random texts of words, specials, other whitespace (tabs, NBSP,
    /// ideographic space), combining marks right after spaces, contractions and digits.
    func testTokenizeEqualsTruncatedEncode() throws {
        let t = try tokenizer()
        let pieces = [
            "cat", "a", "photo", " ", " ", " ", "  ", "\t", "\n", "\u{a0}", "\u{3000}", " \u{301}", "\u{301}",
            "e\u{301}",
            "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "'s", "don't", "42", "!!", ", ", "İ", "日本",
            "\u{200b}", "\u{85}", "🙂", "a\u{88f}b",
        ]
        var g = Generator(state: 99)
        for trial in 0..<400 {
            var text = ""
            for _ in 0..<(1 + g.next(trial < 300 ? 40 : 400)) { text += pieces[g.next(pieces.count)] }
            let all = t.encode(text)
            for length in [2, 3, 4, 7, 20, 77] {
                let want = [t.bosID] + Array(all.prefix(length - 2)) + [t.eosID]
                let padded = want + [Int](repeating: t.padID, count: length - want.count)
                XCTAssertEqual(t.tokenize(text, length: length), padded, "\(text.debugDescription) length \(length)")
            }
        }
    }

    /// `tokenize` of `prompt(1 << 20, seed: 7)`, from the earlier implementation.
    static let expectedMegabytePrompt: [Int] = [
        49406, 1395, 269, 5302, 1125, 1305, 2473, 2473, 269, 7689, 1212, 1212, 5352, 1305, 736, 269, 1929, 267, 7689,
        1212, 1305, 1395, 267, 1929, 5302, 267, 2368, 267, 7557, 1305, 896, 320, 539, 896, 1929, 539, 1305, 267,
        2390, 2553, 3086, 3086, 5352, 7689, 5302, 1395, 269, 1305, 3965, 269, 539, 320, 7689, 1125, 269, 539, 1746,
        267, 1212, 7557, 267, 1305, 3086, 1212, 7689, 1212, 2473, 269, 518, 1395, 930, 5352, 7557, 539, 269, 1395,
        49407,
    ]
}
