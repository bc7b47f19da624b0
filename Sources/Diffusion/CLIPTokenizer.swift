import DiffusersLayout
import Foundation

/// A problem loading tokenizer files; names the file (or folder) concerned.
public struct CLIPTokenizerError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "tokenizer file '\(path)': \(reason)" }
    public var errorDescription: String? { description }
}

/// The CLIP byte-level BPE tokenizer as Stable Diffusion 1.x uses it, reproducing
/// `transformers.CLIPTokenizer` (transformers 5, backed by `tokenizers`) without ftfy:
///
/// 1. Special tokens (`<|startoftext|>`, `<|endoftext|>`, and any other configured special
///    token) are cut out of the raw text first, by exact, case-sensitive match. A special
///    token configured with `"normalized": true` (SD 1.5's `tokenizer_config.json` does so
///    for `<|startoftext|>`) is instead matched after normalisation, so also in other cases.
/// 2. The rest is normalised: Unicode NFC, every run of White_Space characters to one
///    space, then per-character full lower-casing (`İ` becomes `i` + U+0307; no final-sigma
///    rule, no NFKC: full-width digits stay full-width).
/// 3. Pre-tokenisation with the CLIP pattern
///    `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
///    (whitespace dropped), then the GPT-2 byte-level pattern inside each piece (which only
///    matters for special-token look-alikes such as `<|ENDOFTEXT|>`: `<|`, `endoftext`, `|>`).
/// 4. Each piece's UTF-8 bytes through the byte-to-unicode table, `</w>` on the last
///    symbol, BPE merges applied lowest rank first (leftmost on ties), ids from vocab.json.
public struct CLIPTokenizer: @unchecked Sendable {
    public let bosID: Int
    public let eosID: Int
    public let padID: Int
    public let unkID: Int
    public let bosToken: String
    public let eosToken: String
    public let padToken: String
    /// Number of ids (vocab.json entries).
    public var vocabularySize: Int { tokens.count }

    private let vocab: [[UInt8]: Int32]
    private let tokens: [[UInt8]]  // id -> token bytes (empty for unused ids)
    private let merges: [UInt64: Merge]
    private let byteIDs: [Int32]  // byte -> id of its symbol
    private let byteEndIDs: [Int32]  // byte -> id of its symbol + "</w>"
    private let rawSpecials: [Special]  // matched on raw text
    private let normalizedSpecials: [Special]  // matched on normalised text
    /// No special token (raw or normalised) contains a space: `tokenize` may then stop at one.
    private let specialsLackSpaces: Bool
    private let cache = WordCache()

    private struct Merge {
        let rank: Int32
        let id: Int32
    }
    private struct Special {
        let bytes: [UInt8]
        let id: Int
    }

    static let endOfWord = Array("</w>".utf8)

    // MARK: - Loading

    /// Load a tokenizer folder (diffusers/transformers layout): `vocab.json` and `merges.txt`,
    /// or, when that pair is incomplete, the BPE model inside `tokenizer.json` (all transformers 5's
    /// `save_pretrained` writes). Special tokens and their matching rules come from
    /// `tokenizer_config.json`, `special_tokens_map.json` and `tokenizer.json` when present, as
    /// transformers reads them.
    public init(folder: String) throws {
        let url = URL(fileURLWithPath: folder)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIPTokenizerError(path: folder, reason: "tokenizer folder does not exist")
        }
        let config = try SpecialTokenConfig(folder: url)
        let vocabPath = url.appendingPathComponent(DiffusersLayout.vocabulary).path
        let mergesPath = url.appendingPathComponent(DiffusersLayout.merges).path
        let tokenizerJSON = url.appendingPathComponent(DiffusersLayout.tokenizerJSON).path
        if !(ModelFile.exists(vocabPath) && ModelFile.exists(mergesPath)) && ModelFile.exists(tokenizerJSON) {
            let (members, merges) = try Self.readTokenizerJSON(tokenizerJSON)
            try self.init(vocabulary: members, vocabPath: tokenizerJSON, merges: merges, specials: config)
            return
        }
        try self.init(vocabPath: vocabPath, mergesPath: mergesPath, specials: config)
    }

    /// Load from explicit files, with the CLIP defaults for special tokens (bos
    /// `<|startoftext|>`, eos = unk = pad `<|endoftext|>`, all matched on raw text).
    public init(vocabPath: String, mergesPath: String) throws {
        try self.init(vocabPath: vocabPath, mergesPath: mergesPath, specials: SpecialTokenConfig())
    }

    private init(vocabPath: String, mergesPath: String, specials config: SpecialTokenConfig) throws {
        let members = try Self.readVocabulary(vocabPath)
        let merges = try Self.readMergesFile(mergesPath)
        try self.init(vocabulary: members, vocabPath: vocabPath, merges: merges, specials: config)
    }

    /// One merge rule as read, with where it came from for messages ("line 12 of merges.txt").
    struct MergeRule {
        let left: [UInt8]
        let right: [UInt8]
        let source: String
        let place: String
    }

    /// vocab.json: an object of token -> id.
    static func readVocabulary(_ path: String) throws -> [(String, JSONValue)] {
        guard case .object(let members) = try parseJSON(path) else {
            throw CLIPTokenizerError(path: path, reason: "not a JSON object of token -> id")
        }
        return members
    }

    private static func parseJSON(_ path: String) throws -> JSONValue {
        let bytes = try readFile(path)
        do {
            return try bytes.withUnsafeBufferPointer { buffer in
                var parser = MiniJSONParser(bytes: buffer)
                return try parser.parseDocument()
            }
        } catch let error as MiniJSONParser.Failure {
            throw CLIPTokenizerError(path: path, reason: "not valid JSON: \(error.message)")
        }
    }

    /// merges.txt, read as tokenizers' BPE::read_file does.
    static func readMergesFile(_ path: String) throws -> [MergeRule] {
        let data = try readFile(path)
        var rules: [MergeRule] = []
        var lineNumber = 0
        var lineStart = 0
        let n = data.count
        while lineStart < n {
            var lineEnd = lineStart
            while lineEnd < n && data[lineEnd] != 0x0A { lineEnd += 1 }
            lineNumber += 1
            var contentEnd = lineEnd
            if contentEnd > lineStart && data[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            let line = data[lineStart..<contentEnd]
            lineStart = lineEnd + 1
            if line.starts(with: Array("#version".utf8)) { continue }
            let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw CLIPTokenizerError(path: path, reason: "line \(lineNumber) is not two space-separated symbols")
            }
            rules.append(
                MergeRule(left: Array(parts[0]), right: Array(parts[1]), source: path, place: "line \(lineNumber)"))
        }
        return rules
    }

    /// tokenizer.json's `model`: a BPE whose `vocab` is token -> id and whose `merges` are
    /// "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs (later).
    static func readTokenizerJSON(_ path: String) throws -> (vocabulary: [(String, JSONValue)], merges: [MergeRule]) {
        guard case .object(let top) = try parseJSON(path),
            case .object(let model)? = top.first(where: { $0.0 == "model" })?.1
        else { throw CLIPTokenizerError(path: path, reason: "has no \"model\" object") }
        func member(_ name: String) -> JSONValue? { model.first(where: { $0.0 == name })?.1 }
        if case .string(let type)? = member("type"), type != "BPE" {
            throw CLIPTokenizerError(path: path, reason: "model type is \(type), not the BPE a CLIP tokenizer uses")
        }
        guard case .object(let vocabulary)? = member("vocab") else {
            throw CLIPTokenizerError(path: path, reason: "model.vocab is not an object of token -> id")
        }
        guard case .array(let list)? = member("merges") else {
            throw CLIPTokenizerError(path: path, reason: "model.merges is not a list")
        }
        var rules: [MergeRule] = []
        rules.reserveCapacity(list.count)
        for (i, entry) in list.enumerated() {
            let place = "model.merges[\(i)]"
            switch entry {
            case .string(let text):
                let parts = Array(text.utf8).split(separator: 0x20, omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw CLIPTokenizerError(path: path, reason: "\(place) is not two space-separated symbols")
                }
                rules.append(MergeRule(left: Array(parts[0]), right: Array(parts[1]), source: path, place: place))
            case .array(let pair):
                guard pair.count == 2, case .string(let a) = pair[0], case .string(let b) = pair[1] else {
                    throw CLIPTokenizerError(path: path, reason: "\(place) is not a pair of strings")
                }
                rules.append(MergeRule(left: Array(a.utf8), right: Array(b.utf8), source: path, place: place))
            default:
                throw CLIPTokenizerError(path: path, reason: "\(place) is \(entry.summary), not a merge")
            }
        }
        return (vocabulary, rules)
    }

    // Long on purpose: checks the vocabulary, merges and special tokens in order, each check
    // beside the field it guards; split up, the list of fields would only move elsewhere.
    private init(
        vocabulary members: [(String, JSONValue)], vocabPath: String, merges rules: [MergeRule],
        specials config: SpecialTokenConfig
    ) throws {
        // Keyed by exact bytes (Swift String equality is canonical equivalence).
        var vocab: [[UInt8]: Int32] = [:]
        vocab.reserveCapacity(members.count)
        var maxID = -1
        for (token, value) in members {
            guard case .number(let text) = value, let id = Int32(text), id >= 0 else {
                throw CLIPTokenizerError(
                    path: vocabPath, reason: "id of token '\(token)' is \(value.summary), not a non-negative integer")
            }
            vocab[Array(token.utf8)] = id
            maxID = max(maxID, Int(id))
        }
        guard !vocab.isEmpty else { throw CLIPTokenizerError(path: vocabPath, reason: "vocabulary is empty") }
        // Ids index a table: a sparse one (an id of 2^31 in a small file) would allocate without bound.
        guard maxID < 4 * vocab.count + 1024 else {
            throw CLIPTokenizerError(
                path: vocabPath, reason: "id \(maxID) is far beyond the vocabulary's \(vocab.count) tokens")
        }
        var tokens = [[UInt8]](repeating: [], count: maxID + 1)
        for (bytes, id) in vocab { tokens[Int(id)] = bytes }

        func lookup(_ token: String, role: String) throws -> Int {
            guard let id = vocab[Array(token.utf8)] else {
                throw CLIPTokenizerError(path: vocabPath, reason: "\(role) token '\(token)' is not in the vocabulary")
            }
            return Int(id)
        }
        let unkID = try lookup(config.unk, role: "unk")
        let bosID = try lookup(config.bos, role: "bos")
        let eosID = try lookup(config.eos, role: "eos")
        let padID = try lookup(config.pad, role: "pad")

        var merges: [UInt64: Merge] = [:]
        for (rank, rule) in rules.enumerated() {
            guard let aID = vocab[rule.left], let bID = vocab[rule.right], let newID = vocab[rule.left + rule.right]
            else {
                let text = String(decoding: rule.left + [0x20] + rule.right, as: UTF8.self)
                throw CLIPTokenizerError(
                    path: rule.source,
                    reason: "\(rule.place) merge '\(text)' uses or makes a token that is not in the vocabulary")
            }
            merges[UInt64(UInt32(aID)) << 32 | UInt64(UInt32(bID))] = Merge(rank: Int32(rank), id: newID)
        }

        var byteIDs = [Int32](repeating: Int32(unkID), count: 256)
        var byteEndIDs = [Int32](repeating: Int32(unkID), count: 256)
        for b in 0..<256 {
            let symbol = Array(String(Self.byteToUnicode[b]).utf8)
            if let id = vocab[symbol] { byteIDs[b] = id }
            if let id = vocab[symbol + Self.endOfWord] { byteEndIDs[b] = id }
        }

        var raw: [Special] = []
        var normalized: [Special] = []
        for special in config.specialTokens {
            guard let id = vocab[Array(special.content.utf8)] else {
                throw CLIPTokenizerError(
                    path: vocabPath, reason: "special token '\(special.content)' is not in the vocabulary")
            }
            if special.normalized {
                normalized.append(Special(bytes: Array(Self.normalize(special.content).utf8), id: Int(id)))
            } else {
                raw.append(Special(bytes: Array(special.content.utf8), id: Int(id)))
            }
        }

        self.vocab = vocab
        self.tokens = tokens
        self.merges = merges
        self.byteIDs = byteIDs
        self.byteEndIDs = byteEndIDs
        self.rawSpecials = raw.filter { !$0.bytes.isEmpty }
        self.normalizedSpecials = normalized.filter { !$0.bytes.isEmpty }
        self.specialsLackSpaces = (raw + normalized).allSatisfy { !$0.bytes.contains(0x20) }
        self.unkID = unkID
        self.bosID = bosID
        self.eosID = eosID
        self.padID = padID
        self.bosToken = config.bos
        self.eosToken = config.eos
        self.padToken = config.pad
    }

    /// Tokenizer files larger than this are refused (CLIP's tokenizer.json is 3.5 MB).
    static let maxFileBytes = 256 << 20

    /// The bytes of a tokenizer file, which must be a regular file (a FIFO or a device is
    /// refused before it is opened).
    static func readFile(_ path: String) throws -> [UInt8] {
        guard ModelFile.exists(path) else { throw CLIPTokenizerError(path: path, reason: "file does not exist") }
        do {
            return try ModelFile.contents(path, limit: maxFileBytes)
        } catch let failure as ModelFile.Failure {
            throw CLIPTokenizerError(path: path, reason: failure.reason)
        }
    }

    // MARK: - Encoding

    /// The vocabulary id of a token string (exact match, e.g. "cat</w>"), or nil.
    public func id(of token: String) -> Int? {
        vocab[Array(token.utf8)].map(Int.init)
    }

    /// The token string of an id, or nil.
    public func token(of id: Int) -> String? {
        guard id >= 0, id < tokens.count, !tokens[id].isEmpty else { return nil }
        return String(decoding: tokens[id], as: UTF8.self)
    }

    /// BPE ids of `text`, without bos/eos.
    public func encode(_ text: String) -> [Int] {
        encode(Array(text.utf8)[...], limit: .max)
    }

    /// The first ids of `bytes`' encoding: all of them, or at least `limit` (a prefix of the
    /// whole encoding either way; the text after the piece that reaches `limit` is not looked at).
    private func encode(_ bytes: ArraySlice<UInt8>, limit: Int) -> [Int] {
        var ids: [Int] = []
        guard limit > 0 else { return ids }
        Self.splitOnSpecials(bytes, rawSpecials) { piece in
            guard ids.count < limit else { return }
            switch piece {
            case .special(let id): ids.append(id)
            case .text(let segment):
                let normalized = Array(Self.normalize(String(decoding: segment, as: UTF8.self)).utf8)
                Self.splitOnSpecials(normalized[...], normalizedSpecials) { inner in
                    guard ids.count < limit else { return }
                    switch inner {
                    case .special(let id): ids.append(id)
                    case .text(let t): encodeNormalized(String(decoding: t, as: UTF8.self), limit: limit, into: &ids)
                    }
                }
            }
        }
        return ids
    }

    /// `bos + encode(text) (truncated to length - 2) + eos`, padded to `length` with `padID`.
    /// Only the start of the text that can reach the kept tokens is encoded (see
    /// `relevantLength`), so a huge prompt costs no more than its first words.
    public func tokenize(_ text: String, length: Int = 77) -> [Int] {
        precondition(length >= 2, "a token sequence needs room for bos and eos")
        let keep = length - 2
        let bytes = Array(text.utf8)
        var ids = [bosID]
        if keep > 0 { ids += encode(bytes[..<relevantLength(bytes, tokens: keep)], limit: keep).prefix(keep) }
        ids.append(eosID)
        ids += [Int](repeating: padID, count: length - ids.count)
        return ids
    }

    /// How many leading bytes of `bytes` decide its first `tokens` ids: up to the ASCII space
    /// that ends the `tokens`-th space-delimited chunk holding a non-whitespace ASCII byte, or
    /// all of them. Why that is exact: every such chunk yields at least one id of its own (its
    /// ASCII character lands in a special token or a pre-token, and neither spans a space), so
    /// `tokens` chunks fill the ids that are kept; and nothing before an ASCII space depends on
    /// what follows it — special tokens are matched whole and contain no space (checked at
    /// load, else nothing is cut), NFC neither composes nor reorders across U+0020 (a starter
    /// that composes with nothing), lower-casing is per character, and pre-tokens end at spaces.
    func relevantLength(_ bytes: [UInt8], tokens: Int) -> Int {
        guard specialsLackSpaces, tokens > 0 else { return bytes.count }
        var chunks = 0
        var counted = false
        for (offset, b) in bytes.enumerated() {
            if b == 0x20 {
                if chunks >= tokens { return offset }
                counted = false
            } else if !counted && b < 0x80 && !(0x09...0x0D).contains(b) {
                counted = true
                chunks += 1
            }
        }
        return bytes.count
    }

    /// Readable text from ids (specials kept, `</w>` as word breaks); for diagnostics.
    public func decode(_ ids: [Int]) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard id >= 0, id < tokens.count else { continue }
            bytes += tokens[id]
        }
        let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "</w>", with: " ")
        var out: [UInt8] = []
        for scalar in text.unicodeScalars {
            if let b = Self.unicodeToByte[scalar] { out.append(b) } else { out += Array(String(scalar).utf8) }
        }
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    private enum Piece {
        case special(Int)
        case text(ArraySlice<UInt8>)
    }

    /// Leftmost-longest matching of special tokens; calls `body` for text gaps and matches.
    private static func splitOnSpecials(_ bytes: ArraySlice<UInt8>, _ specials: [Special], _ body: (Piece) -> Void) {
        if specials.isEmpty {
            if !bytes.isEmpty { body(.text(bytes)) }
            return
        }
        var start = bytes.startIndex
        var i = bytes.startIndex
        while i < bytes.endIndex {
            var best: Special?
            for s in specials where s.bytes.first == bytes[i] && bytes.endIndex - i >= s.bytes.count {
                if bytes[i..<(i + s.bytes.count)].elementsEqual(s.bytes), s.bytes.count > (best?.bytes.count ?? 0) {
                    best = s
                }
            }
            if let best {
                if start < i { body(.text(bytes[start..<i])) }
                body(.special(best.id))
                i += best.bytes.count
                start = i
            } else {
                i += 1
            }
        }
        if start < bytes.endIndex { body(.text(bytes[start..<bytes.endIndex])) }
    }

    /// NFC, whitespace runs to one space, per-character lower-casing.
    static func normalize(_ text: String) -> String {
        var isASCII = true
        for b in text.utf8 where b >= 0x80 {
            isASCII = false
            break
        }
        let composed = isASCII ? text : nfc(text)
        var out = String.UnicodeScalarView()
        var inSpace = false
        for scalar in composed.unicodeScalars {
            if scalar.value < 0x80 {
                let v = UInt8(scalar.value)
                if (0x09...0x0D).contains(v) || v == 0x20 {
                    if !inSpace { out.append(" ") }
                    inSpace = true
                    continue
                }
                inSpace = false
                out.append((0x41...0x5A).contains(v) ? Unicode.Scalar(v + 0x20) : scalar)
                continue
            }
            if scalar.properties.isWhitespace {
                if !inSpace { out.append(" ") }
                inSpace = true
                continue
            }
            inSpace = false
            if scalar.properties.changesWhenLowercased {
                out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    /// Unicode NFC as the reference computes it (see `ReferenceNFC`).
    static func nfc(_ text: String) -> String { ReferenceNFC.normalize(text) }

    enum CharClass { case space, letter, number, other }

    /// The newest Unicode version whose letters and numbers the reference pattern knows.
    static let maxUnicodeMajor = 16

    @inline(__always)
    static func charClass(_ s: Unicode.Scalar) -> CharClass {
        let v = s.value
        if v < 0x80 {
            switch v {
            case 0x41...0x5A, 0x61...0x7A: return .letter
            case 0x30...0x39: return .number
            case 0x09...0x0D, 0x20: return .space
            default: return .other
            }
        }
        let p = s.properties
        if p.isWhitespace { return .space }
        // The reference (Oniguruma in `tokenizers` 0.23) knows Unicode 16: characters first
        // assigned later are unassigned there, so they fall into [^\s\p{L}\p{N}].
        if let age = p.age, age.major > maxUnicodeMajor { return .other }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    static let contractions: [[Unicode.Scalar]] = ["s", "t", "re", "ve", "m", "ll", "d"].map {
        Array($0.unicodeScalars)
    }
    static let clipSpecialPatterns: [[Unicode.Scalar]] = ["<|startoftext|>", "<|endoftext|>"].map {
        Array($0.unicodeScalars)
    }

    /// Length of a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at `i`, or 0.
    @inline(__always)
    static func contractionLength(_ s: [Unicode.Scalar], _ i: Int, _ end: Int) -> Int {
        guard s[i] == "'" else { return 0 }
        for c in contractions where i + 1 + c.count <= end {
            var match = true
            for k in 0..<c.count where s[i + 1 + k] != c[k] {
                match = false
                break
            }
            if match { return 1 + c.count }
        }
        return 0
    }

    /// The CLIP pre-tokeniser pattern over normalised text, then the byte-level (GPT-2)
    /// pattern within each piece; BPE on each resulting word.
    private func encodeNormalized(_ text: String, limit: Int = .max, into ids: inout [Int]) {
        let s = Array(text.unicodeScalars)
        let classes = s.map(Self.charClass)
        var i = 0
        let n = s.count
        while i < n && ids.count < limit {
            if classes[i] == .space {
                i += 1
                continue
            }
            var end = i
            // <\|startoftext\|>|<\|endoftext\|>
            if s[i] == "<" {
                for pattern in Self.clipSpecialPatterns where i + pattern.count <= n {
                    if Array(s[i..<(i + pattern.count)]) == pattern {
                        end = i + pattern.count
                        break
                    }
                }
            }
            if end == i {
                let c = Self.contractionLength(s, i, n)
                if c > 0 {
                    end = i + c
                } else {
                    switch classes[i] {
                    case .letter:
                        end = i + 1
                        while end < n && classes[end] == .letter { end += 1 }
                    case .number:
                        end = i + 1
                    default:
                        end = i + 1
                        while end < n && classes[end] == .other { end += 1 }
                    }
                }
            }
            byteLevelSplit(s, classes, i, end, into: &ids)
            i = end
        }
    }

    /// GPT-2 pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|…` on a
    /// whitespace-free piece.
    private func byteLevelSplit(
        _ s: [Unicode.Scalar], _ classes: [CharClass], _ start: Int, _ end: Int,
        into ids: inout [Int]
    ) {
        var i = start
        while i < end {
            var j = i + Self.contractionLength(s, i, end)
            if j == i {
                let c = classes[i]
                j = i + 1
                while j < end && classes[j] == c { j += 1 }
            }
            var word: [UInt8] = []
            for scalar in s[i..<j] { word += UTF8.encode(scalar)! }
            bpe(word, into: &ids)
            i = j
        }
    }

    /// BPE of one pre-token (its UTF-8 bytes through the byte table, `</w>` at the end).
    /// Cached by bytes (short words only): Swift String equality is canonical equivalence,
    /// which would merge differently ordered combining marks.
    private func bpe(_ bytes: [UInt8], into ids: inout [Int]) {
        guard !bytes.isEmpty else { return }
        let cacheable = bytes.count <= Self.maxCachedWordBytes
        if cacheable, let cached = cache.get(bytes) {
            ids += cached
            return
        }
        let result = mergeSymbols(initialSymbols(bytes)).map(Int.init)
        if cacheable { cache.set(bytes, result) }
        ids += result
    }

    /// Words longer than this are not cached (each would pin its ids in memory).
    static let maxCachedWordBytes = 256

    /// One symbol per byte: the byte's id, the last one's with `</w>`.
    func initialSymbols(_ bytes: [UInt8]) -> [Int32] {
        var symbols = [Int32](repeating: 0, count: bytes.count)
        for (k, b) in bytes.enumerated() {
            symbols[k] = k == bytes.count - 1 ? byteEndIDs[Int(b)] : byteIDs[Int(b)]
        }
        return symbols
    }

    /// The merge of two adjacent symbols, if merges.txt has one: its rank and the merged id.
    @inline(__always)
    func merge(_ left: Int32, _ right: Int32) -> (rank: Int32, id: Int32)? {
        merges[UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))].map { ($0.rank, $0.id) }
    }

    /// Applies merges lowest rank first, leftmost on ties, until none applies — the result of
    /// the textbook loop (scan all pairs, merge the best, repeat), in O(n log n) instead of
    /// O(n²): the symbols form a doubly linked list, and every adjacent pair with a merge has
    /// an entry (rank, index of its left symbol) in a min-heap; symbol order never changes, so
    /// the smallest index is the leftmost pair. A popped entry is acted on only if the pair now
    /// at its index still has its rank (then it is that pair: a rank names one pair); otherwise
    /// it is stale and dropped. Each merge pushes the two pairs it creates.
    func mergeSymbols(_ initial: [Int32]) -> [Int32] {
        let n = initial.count
        guard n > 1 else { return initial }
        // One node per symbol, its links beside it: a merge touches a few nodes at random
        // places of a long word, and each costs one cache miss instead of three.
        struct Node {
            var id: Int32  // -1 once merged into its left neighbour
            var next: Int32  // n: none
            var previous: Int32  // -1: none
        }
        var nodes = [Node](repeating: Node(id: 0, next: 0, previous: 0), count: n)
        var heap = MinHeap()
        heap.reserve(n)
        for k in 0..<n {
            nodes[k] = Node(id: initial[k], next: Int32(k + 1), previous: Int32(k - 1))
            if k + 1 < n, let m = merge(initial[k], initial[k + 1]) { heap.append(MinHeap.key(rank: m.rank, index: k)) }
        }
        heap.heapify()
        nodes.withUnsafeMutableBufferPointer { nodes in
            while let key = heap.popMin() {
                let (rank, k) = MinHeap.split(key)
                let left = nodes[k]
                let r = Int(left.next)
                guard left.id >= 0, r < n, let m = merge(left.id, nodes[r].id), m.rank == rank else { continue }
                let after = Int(nodes[r].next)
                nodes[r].id = -1
                nodes[k].id = m.id
                nodes[k].next = Int32(after)
                if after < n {
                    nodes[after].previous = Int32(k)
                    if let right = merge(m.id, nodes[after].id) { heap.push(MinHeap.key(rank: right.rank, index: k)) }
                }
                let before = Int(left.previous)
                if before >= 0, let pair = merge(nodes[before].id, m.id) {
                    heap.push(MinHeap.key(rank: pair.rank, index: before))
                }
            }
        }
        var result: [Int32] = []
        var k = 0
        while k < n {
            result.append(nodes[k].id)
            k = Int(nodes[k].next)
        }
        return result
    }

    // MARK: - Byte table

    /// GPT-2/CLIP `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100…
    static let byteToUnicode: [Unicode.Scalar] = {
        var printable: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for b in printable { table[b] = Unicode.Scalar(UInt32(b))! }
        var next: UInt32 = 256
        for b in 0..<256 where !printable.contains(b) {
            table[b] = Unicode.Scalar(next)!
            next += 1
            printable.append(b)
        }
        return table
    }()

    static let unicodeToByte: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (b, u) in byteToUnicode.enumerated() { map[u] = UInt8(b) }
        return map
    }()
}

/// A bounded, thread-safe cache of word -> ids.
private final class WordCache: @unchecked Sendable {
    private var entries: [[UInt8]: [Int]] = [:]
    private let lock = NSLock()
    private let capacity = 50_000

    func get(_ word: [UInt8]) -> [Int]? {
        lock.lock()
        defer { lock.unlock() }
        return entries[word]
    }

    func set(_ word: [UInt8], _ ids: [Int]) {
        lock.lock()
        defer { lock.unlock() }
        if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
        entries[word] = ids
    }
}

/// A min-heap of candidate merges, each one UInt64: rank << 32 | index of the left symbol,
/// so one comparison orders by rank, then position. 8-ary: a node's children share a cache
/// line or two, and a million entries are 7 levels deep instead of 20.
private struct MinHeap {
    private var items: [UInt64] = []
    private static let arity = 8

    static func key(rank: Int32, index: Int) -> UInt64 { UInt64(UInt32(rank)) << 32 | UInt64(UInt32(index)) }
    static func split(_ key: UInt64) -> (rank: Int32, index: Int) {
        (Int32(truncatingIfNeeded: key >> 32), Int(key & 0xFFFF_FFFF))
    }

    mutating func reserve(_ count: Int) { items.reserveCapacity(count) }

    /// Adds without ordering; call `heapify` before the first `popMin`.
    mutating func append(_ key: UInt64) { items.append(key) }

    mutating func heapify() {
        guard items.count > 1 else { return }
        var i = (items.count - 2) / Self.arity + 1
        while i > 0 {
            i -= 1
            siftDown(i)
        }
    }

    mutating func push(_ key: UInt64) {
        items.append(key)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / Self.arity
            guard key < items[parent] else { break }
            items[i] = items[parent]
            i = parent
        }
        items[i] = key
    }

    mutating func popMin() -> UInt64? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        items[0] = last
        siftDown(0)
        return top
    }

    private mutating func siftDown(_ start: Int) {
        let count = items.count
        items.withUnsafeMutableBufferPointer { h in
            let moving = h[start]
            var i = start
            while true {
                let first = Self.arity * i + 1
                guard first < count else { break }
                var m = first
                var smallest = h[first]
                for c in (first + 1)..<min(first + Self.arity, count) where h[c] < smallest {
                    m = c
                    smallest = h[c]
                }
                guard smallest < moving else { break }
                h[i] = smallest
                i = m
            }
            h[i] = moving
        }
    }
}

// MARK: - Special-token configuration
