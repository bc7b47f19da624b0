import DiffusersLayout
import Foundation
import Tensor

/// Errors loading a model: each names the folder, file or tensor at fault.
public struct ModelLoadError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Named weights of one component, read lazily from its safetensors file(s), with shape
/// checks. `scoped("down_blocks.0")` gives a view whose names are relative to that prefix.
/// A component inside a single checkpoint file is served under its diffusers names through a
/// `TensorRenaming` (the LDM layout: `LDMCheckpoint`); the folder layout reads names as they are.
public final class ModelWeights: @unchecked Sendable {
    let files: [SafeTensorsFile]
    let prefix: String
    private let owner: String
    private let renaming: TensorRenaming?

    public init(files: [SafeTensorsFile], owner: String, prefix: String = "") {
        self.files = files
        self.owner = owner
        self.prefix = prefix
        renaming = nil
    }

    /// One component out of a single checkpoint `file`: `names` maps each diffusers name to the
    /// file's name for it; `reshape` may give a tensor another shape of the same size (LDM
    /// keeps some linear weights as 1×1 convolutions). `component` names it in errors ("UNet").
    public init(
        file: SafeTensorsFile, names: [String: String], component: String,
        reshape: (@Sendable (_ name: String, _ shape: [Int]) -> [Int]?)? = nil
    ) {
        files = [file]
        owner = file.path
        prefix = ""
        renaming = TensorRenaming(names: names, component: component, reshape: reshape)
    }

    private init(_ parent: ModelWeights, prefix: String) {
        files = parent.files
        owner = parent.owner
        renaming = parent.renaming
        self.prefix = prefix
    }

    /// The safetensors weights in `folder`: the first of `DiffusersLayout.weightSources` that
    /// exists (a plain file, a shard index, then fp16/bf16/other variants).
    public convenience init(folder: String) throws {
        for source in DiffusersLayout.weightSources(in: folder) where ModelFile.exists(source.path) {
            switch source {
            case .file(let path):
                self.init(files: [try SafeTensorsFile(path: path)], owner: folder)
            case .index(let path):
                self.init(files: try Self.shards(index: path, folder: folder), owner: folder)
            }
            return
        }
        var message =
            "\(folder): no safetensors weights (looked for diffusion_pytorch_model.safetensors, model.safetensors, "
            + "their .index.json shards and *.fp16/*.bf16 variants)"
        let pickles = DiffusersLayout.pickledWeights(in: folder)
        if !pickles.isEmpty {
            message +=
                "; \(pickles.joined(separator: ", ")) are pickled checkpoints, never loaded (unpickling runs code): "
                + "convert them with python -c \"import torch, safetensors.torch as s; "
                + "s.save_file(torch.load('IN.bin', map_location='cpu', weights_only=True), 'OUT.safetensors')\""
        }
        throw ModelLoadError(message)
    }

    /// The shard files a `*.safetensors.index.json` maps tensors to. Shard names must be plain
    /// file names inside the folder (no path separators: an index cannot point elsewhere).
    static func shards(index path: String, folder: String) throws -> [SafeTensorsFile] {
        let bytes = try ModelFile.contents(path, limit: ModelConfig.maxFileBytes, errorPrefix: path)
        guard let json = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any],
            let map = json["weight_map"] as? [String: String], !map.isEmpty
        else { throw ModelLoadError("\(path): not a shard index (no weight_map of tensor -> file)") }
        let names = Set(map.values).sorted()
        if let bad = names.first(where: { $0.isEmpty || $0.contains("/") || $0 == "." || $0 == ".." }) {
            throw ModelLoadError("\(path): shard name '\(bad)' is not a file name in \(folder)")
        }
        return try names.map { try SafeTensorsFile(path: folder + "/" + $0) }
    }

    public func scoped(_ name: String) -> ModelWeights {
        ModelWeights(self, prefix: fullName(name) + ".")
    }

    func fullName(_ name: String) -> String { prefix + name }

    /// A CLIP tower's weights: under `prefix` (transformers 4 and real SD checkpoints:
    /// "text_model.…") or at the top level, as transformers 5 saves CLIPTextModel.
    public func towerScope(_ prefix: String, probe: String) -> ModelWeights {
        !contains(prefix + "." + probe) && contains(probe) ? self : scoped(prefix)
    }

    public func contains(_ name: String) -> Bool {
        let full = fullName(name)
        if let renaming { return renaming.names[full] != nil }
        return files.contains { $0.contains(full) }
    }

    /// The tensor `name`, checked against `shape` when given (-1 matches any size).
    public func tensor(_ name: String, shape: [Int]? = nil) throws -> Tensor {
        let full = fullName(name)
        var t: Tensor
        if let renaming {
            guard let stored = renaming.names[full] else {
                throw ModelLoadError(
                    "\(owner): the \(renaming.component) tensor '\(full)' is missing (no tensor of the file converts to it)"
                )
            }
            t = try files[0].tensor(stored)
            renaming.markRead(full)
            if let reshaped = renaming.reshape?(full, t.shape) {
                guard reshaped.reduce(1, *) == t.count else {
                    throw shapeError(name, got: t.shape, expected: reshaped)
                }
                t = t.reshaped(reshaped)
            }
        } else {
            guard let file = files.first(where: { $0.contains(full) }) else {
                throw ModelLoadError("\(owner): missing tensor '\(full)'")
            }
            t = try file.tensor(full)
        }
        if let shape, shape.count != t.shape.count || zip(shape, t.shape).contains(where: { $0 != -1 && $0 != $1 }) {
            throw shapeError(name, got: t.shape, expected: shape)
        }
        return t
    }

    public func optionalTensor(_ name: String, shape: [Int]? = nil) throws -> Tensor? {
        contains(name) ? try tensor(name, shape: shape) : nil
    }

    /// "<owner>: tensor '<name>' has shape …, expected …", naming the file's own name for a
    /// renamed tensor too.
    func shapeError(_ name: String, got: [Int], expected: [Int]) -> ModelLoadError {
        let full = fullName(name)
        let what =
            renaming.flatMap { r in r.names[full].map { "'\($0)' (the \(r.component)'s '\(full)')" } } ?? "'\(full)'"
        return ModelLoadError("\(owner): tensor \(what) has shape \(got), expected \(expected)")
    }

    /// For a component out of a single file: the file's tensors that were mapped to it but
    /// that building it never read (a checkpoint of another shape than its config); empty for
    /// folders.
    public func unreadTensors() -> [(stored: String, name: String)] {
        renaming?.unread() ?? []
    }
}

/// The names of a component inside a single checkpoint file, and which of them were read.
final class TensorRenaming: @unchecked Sendable {
    /// diffusers name → the file's name.
    let names: [String: String]
    let component: String
    let reshape: (@Sendable (String, [Int]) -> [Int]?)?
    private let lock = NSLock()
    private var read: Set<String> = []

    init(names: [String: String], component: String, reshape: (@Sendable (String, [Int]) -> [Int]?)?) {
        self.names = names
        self.component = component
        self.reshape = reshape
    }

    func markRead(_ name: String) {
        lock.lock()
        read.insert(name)
        lock.unlock()
    }

    func unread() -> [(stored: String, name: String)] {
        lock.lock()
        defer { lock.unlock() }
        return names.filter { !read.contains($0.key) }.map { ($0.value, $0.key) }.sorted { $0.stored < $1.stored }
    }
}

/// A component's config.json as a dictionary, with typed, range-checked accessors. A missing
/// or null key takes the given default (as diffusers' from_config does); a value of the wrong
/// type or outside its range throws a `ModelLoadError` naming the file, the key and what is
/// allowed. The bare `NaN`, `Infinity` and `-Infinity` that Python's json writes (diffusers'
/// save_config does, e.g. for lambda_min_clipped) are read as numbers; only accessors whose
/// range includes them accept them.
public struct ModelConfig {
    public let path: String
    public let values: [String: Any]

    /// Config files larger than this are refused: real ones are a few kilobytes.
    public static let maxFileBytes = 16 << 20

    /// Reads and parses `path`, which must be a regular file (a FIFO or a device is refused
    /// before it is opened).
    public init(path: String) throws {
        guard ModelFile.exists(path) else { throw ModelLoadError("missing config file \(path)") }
        let bytes = try ModelFile.contents(path, limit: Self.maxFileBytes, errorPrefix: path)
        let data = Data(Self.quotingNonFinite(bytes))
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelLoadError("\(path): not a JSON object")
        }
        self.init(path: path, values: object)
    }

    /// A config already in memory (a nested tower's settings, a dictionary parsed elsewhere);
    /// `path` names it in errors.
    public init(path: String, values: [String: Any]) {
        self.path = path
        self.values = values
    }

    // MARK: errors and raw values

    /// An error about `key`: "<path>: '<key>' <why>".
    public func fail(_ key: String, _ why: String) -> ModelLoadError {
        ModelLoadError("\(path): '\(key)' \(why)")
    }

    /// Whether `key` is present with a non-null value.
    public func has(_ key: String) -> Bool { present(key) != nil }

    private func present(_ key: String) -> Any? {
        guard let raw = values[key], !(raw is NSNull) else { return nil }
        return raw
    }

    private static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

    /// A JSON number (not a boolean) as a Double, the non-finite tokens included.
    private static func number(_ raw: Any) -> Double? {
        if let marker = raw as? String { return nonFiniteMarkers[marker] }
        guard let n = raw as? NSNumber, !isBoolean(n) else { return nil }
        return n.doubleValue
    }

    private static func integer(_ raw: Any, in range: ClosedRange<Int>) -> Int? {
        guard let d = number(raw), let n = Int(exactly: d), range.contains(n) else { return nil }
        return n
    }

    /// A value as the file spells it, for messages.
    static func describe(_ raw: Any) -> String {
        if let s = raw as? String {
            if let v = nonFiniteMarkers[s] { return v.isNaN ? "NaN" : v < 0 ? "-Infinity" : "Infinity" }
            return "\"\(s)\""
        }
        if let n = raw as? NSNumber { return isBoolean(n) ? (n.boolValue ? "true" : "false") : "\(n)" }
        if let list = raw as? [Any] { return "[" + list.map(describe).joined(separator: ", ") + "]" }
        if raw is NSNull { return "null" }
        if raw is [String: Any] { return "an object" }
        return "\(raw)"
    }

    // MARK: integers

    /// Integers without a narrower range are still kept exactly representable.
    public static let anyInteger = -(1 << 52)...(1 << 52)

    /// An integer in `range` (by default any exactly representable one).
    public func int(_ key: String, default value: Int? = nil, in range: ClosedRange<Int> = anyInteger) throws -> Int {
        guard let raw = present(key) else {
            if let value { return value }
            throw fail(key, "is missing (an integer in \(range))")
        }
        guard let n = Self.integer(raw, in: range) else {
            throw fail(key, "must be an integer in \(range), got \(Self.describe(raw))")
        }
        return n
    }

    /// A list of `count` integers, each in `each`.
    public func ints(
        _ key: String, count: ClosedRange<Int> = 0...Int.max, in each: ClosedRange<Int> = anyInteger,
        default value: [Int]? = nil
    ) throws -> [Int] {
        guard let raw = present(key) else {
            if let value { return value }
            throw fail(key, "is missing (a list of integers in \(each))")
        }
        guard let list = raw as? [Any] else {
            throw fail(key, "must be a list of integers in \(each), got \(Self.describe(raw))")
        }
        guard count.contains(list.count) else {
            throw fail(key, "must have \(Self.countText(count)) entries, got \(list.count)")
        }
        return try list.map {
            guard let n = Self.integer($0, in: each) else {
                throw fail(key, "entries must be integers in \(each), got \(Self.describe(raw))")
            }
            return n
        }
    }

    /// An integer or a list of exactly `count` integers (diffusers allows both, e.g. for head
    /// counts and layers per block), each in `range`; a single integer is repeated `count` times.
    public func intOrList(
        _ key: String, count: Int, default value: Int? = nil, in range: ClosedRange<Int> = anyInteger
    ) throws -> [Int] {
        if present(key) is [Any] { return try ints(key, count: count...count, in: range) }
        return [Int](repeating: try int(key, default: value, in: range), count: count)
    }

    private static func countText(_ count: ClosedRange<Int>) -> String {
        count.lowerBound == count.upperBound ? "\(count.lowerBound)" : "\(count)"
    }

    // MARK: numbers

    /// A number meeting `requirement` (described in errors), e.g. "a finite number > 0".
    public func double(
        _ key: String, default value: Double? = nil, _ requirement: String, valid: (Double) -> Bool
    ) throws -> Double {
        guard let raw = present(key) else {
            if let value { return value }
            throw fail(key, "is missing (\(requirement))")
        }
        guard let d = Self.number(raw), valid(d) else {
            throw fail(key, "must be \(requirement), got \(Self.describe(raw))")
        }
        return d
    }

    /// A number in `range` (NaN never is; ±Infinity only when the range holds it).
    public func double(_ key: String, default value: Double? = nil, in range: ClosedRange<Double>) throws -> Double {
        try double(key, default: value, "a number in \(Self.text(range))") { range.contains($0) }
    }

    /// A number in `range` that stays in it as a Float.
    public func float(_ key: String, default value: Float? = nil, in range: ClosedRange<Float>) throws -> Float {
        let wide = Double(range.lowerBound)...Double(range.upperBound)
        return Float(
            try double(key, default: value.map(Double.init), "a number in \(Self.text(range))") {
                wide.contains($0) && range.contains(Float($0))
            })
    }

    /// "0...1", "-1000...1000", "0...0.999": whole bounds without a fraction.
    static func text<T: BinaryFloatingPoint & LosslessStringConvertible>(_ range: ClosedRange<T>) -> String {
        func bound(_ x: T) -> String {
            x.isFinite && x.rounded() == x && abs(x) < 1e15
                ? String(Int(x)) : x.isInfinite ? (x < 0 ? "-Infinity" : "Infinity") : String(x)
        }
        return bound(range.lowerBound) + "..." + bound(range.upperBound)
    }

    /// A number meeting `requirement` that still does as a Float.
    public func float(
        _ key: String, default value: Float? = nil, _ requirement: String, valid: (Double) -> Bool
    ) throws -> Float {
        Float(try double(key, default: value.map(Double.init), requirement) { valid($0) && valid(Double(Float($0))) })
    }

    /// Any finite number that is finite as a Float.
    public func float(_ key: String, default value: Float? = nil) throws -> Float {
        try float(key, default: value, "a finite number") { $0.isFinite }
    }

    /// A list of numbers, `count` of them, each in `each`.
    public func floats(
        _ key: String, count: ClosedRange<Int> = 0...Int.max, in each: ClosedRange<Float>,
        default value: [Float]? = nil
    ) throws -> [Float] {
        guard let raw = present(key) else {
            if let value { return value }
            throw fail(key, "is missing (a list of numbers in \(Self.text(each)))")
        }
        guard let list = raw as? [Any] else {
            throw fail(key, "must be a list of numbers in \(Self.text(each)), got \(Self.describe(raw))")
        }
        guard count.contains(list.count) else {
            throw fail(key, "must have \(Self.countText(count)) entries, got \(list.count)")
        }
        return try list.map {
            guard let d = Self.number($0), d.isFinite, each.contains(Float(d)) else {
                throw fail(key, "entries must be numbers in \(Self.text(each)), got \(Self.describe($0))")
            }
            return Float(d)
        }
    }

    // MARK: strings and booleans

    public func string(_ key: String, default value: String? = nil) throws -> String {
        guard let raw = present(key) else {
            if let value { return value }
            throw fail(key, "is missing (a string)")
        }
        guard let s = raw as? String, Self.nonFiniteMarkers[s] == nil else {
            throw fail(key, "must be a string, got \(Self.describe(raw))")
        }
        return s
    }

    public func strings(_ key: String) throws -> [String] {
        guard let raw = present(key) else { throw fail(key, "is missing (a list of strings)") }
        guard let list = raw as? [Any], let strings = list as? [String] else {
            throw fail(key, "must be a list of strings, got \(Self.describe(raw))")
        }
        return strings
    }

    /// `true` or `false` (numbers are not booleans).
    public func bool(_ key: String, default value: Bool) throws -> Bool {
        guard let raw = present(key) else { return value }
        guard let n = raw as? NSNumber, Self.isBoolean(n) else {
            throw fail(key, "must be true or false, got \(Self.describe(raw))")
        }
        return n.boolValue
    }

    // MARK: non-finite tokens

    static let nonFiniteMarkers: [String: Double] = [
        "\u{1}-Infinity": -.infinity, "\u{1}Infinity": .infinity, "\u{1}NaN": .nan,
    ]

    /// Python's json writes ±Infinity and NaN as bare tokens, which JSONSerialization rejects.
    /// Outside strings they become marker strings (U+0001 + the token) that the number
    /// accessors map back; text inside strings is left alone.
    static func quotingNonFinite(_ bytes: [UInt8]) -> [UInt8] {
        let tokens = ["-Infinity", "Infinity", "NaN"].map { Array($0.utf8) }
        let quote = UInt8(ascii: "\"")
        let backslash = UInt8(ascii: "\\")
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        var i = 0
        var inString = false
        while i < bytes.count {
            let b = bytes[i]
            if inString {
                out.append(b)
                if b == backslash, i + 1 < bytes.count {
                    out.append(bytes[i + 1])
                    i += 2
                    continue
                }
                if b == quote { inString = false }
                i += 1
                continue
            }
            if b == quote {
                inString = true
            } else if b == UInt8(ascii: "-") || b == UInt8(ascii: "I") || b == UInt8(ascii: "N"),
                let token = tokens.first(where: { bytes[i...].starts(with: $0) })
            {
                out += Array("\"\\u0001".utf8) + token + [quote]
                i += token.count
                continue
            }
            out.append(b)
            i += 1
        }
        return out
    }
}
