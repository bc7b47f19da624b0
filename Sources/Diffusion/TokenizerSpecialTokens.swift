import Foundation

/// Special tokens as `transformers.CLIPTokenizer.from_pretrained` settles them: class
/// defaults, overridden by tokenizer_config.json, then by special_tokens_map.json (unless the
/// config has `added_tokens_decoder`); for each content the last attribute (in the order
/// bos, eos, unk, sep, pad, cls, mask) decides whether it is matched on normalised text;
/// `added_tokens_decoder` or tokenizer.json's `added_tokens` settle that when present.
struct SpecialTokenConfig {
    struct Token {
        let content: String
        let normalized: Bool
    }

    var bos = "<|startoftext|>"
    var eos = "<|endoftext|>"
    var unk = "<|endoftext|>"
    var pad = "<|endoftext|>"
    var specialTokens: [Token] = [
        Token(content: "<|startoftext|>", normalized: false),
        Token(content: "<|endoftext|>", normalized: false),
    ]

    static let attributes = [
        "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
    ]

    init() {}

    // Long on purpose: reads and checks the file's fields in order, each check beside the
    // field it guards; split up, the list of fields would only move elsewhere.
    init(folder: URL) throws {
        var values: [String: Token] = [
            "bos_token": Token(content: bos, normalized: false),
            "eos_token": Token(content: eos, normalized: false),
            "unk_token": Token(content: unk, normalized: false),
            "pad_token": Token(content: pad, normalized: false),
        ]
        var explicitFlags: [String: Bool] = [:]

        func parse(_ name: String) throws -> [(String, JSONValue)]? {
            let path = folder.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            let bytes = try CLIPTokenizer.readFile(path)
            do {
                let value = try bytes.withUnsafeBufferPointer { buffer -> JSONValue in
                    var parser = MiniJSONParser(bytes: buffer)
                    return try parser.parseDocument()
                }
                guard case .object(let members) = value else {
                    throw CLIPTokenizerError(path: path, reason: "not a JSON object")
                }
                return members
            } catch let error as MiniJSONParser.Failure {
                throw CLIPTokenizerError(path: path, reason: "not valid JSON: \(error.message)")
            }
        }
        func token(_ value: JSONValue) -> Token? {
            switch value {
            case .string(let s): return Token(content: s, normalized: false)
            case .object(let fields):
                var content: String?
                var normalized = false
                for (k, v) in fields {
                    if k == "content", case .string(let s) = v { content = s }
                    if k == "normalized", case .bool(let b) = v { normalized = b }
                }
                return content.map { Token(content: $0, normalized: normalized) }
            default: return nil
            }
        }

        var hasDecoder = false
        if let config = try parse("tokenizer_config.json") {
            for (key, value) in config {
                if Self.attributes.contains(key), let t = token(value) { values[key] = t }
                if key == "added_tokens_decoder", case .object(let entries) = value {
                    hasDecoder = true
                    for (_, entry) in entries { if let t = token(entry) { explicitFlags[t.content] = t.normalized } }
                }
            }
        }
        if !hasDecoder, let map = try parse("special_tokens_map.json") {
            for (key, value) in map where Self.attributes.contains(key) {
                if let t = token(value) { values[key] = t }
            }
        }
        if !hasDecoder, let tokenizerJSON = try parse("tokenizer.json") {
            for (key, value) in tokenizerJSON where key == "added_tokens" {
                guard case .array(let entries) = value else { continue }
                for entry in entries { if let t = token(entry) { explicitFlags[t.content] = t.normalized } }
            }
        }

        var order: [String] = []
        var flags: [String: Bool] = [:]
        for key in Self.attributes {
            guard let t = values[key] else { continue }
            if flags[t.content] == nil { order.append(t.content) }
            flags[t.content] = t.normalized
        }
        specialTokens = order.map { Token(content: $0, normalized: explicitFlags[$0] ?? flags[$0]!) }
        bos = values["bos_token"]!.content
        eos = values["eos_token"]!.content
        unk = values["unk_token"]!.content
        pad = values["pad_token"]!.content
    }
}

// MARK: - NFC
