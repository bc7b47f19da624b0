import Foundation
import Tensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Every problem with a safetensors file: names the file and, where there is one, the tensor.
public struct SafeTensorsError: Error, CustomStringConvertible, LocalizedError, Sendable {
    /// The file (or, for `SafeTensorsFile.open(folder:)`, the folder) concerned.
    public let path: String
    /// The tensor concerned, if the problem is about one tensor.
    public let tensor: String?
    public let reason: String

    public init(path: String, tensor: String? = nil, reason: String) {
        self.path = path
        self.tensor = tensor
        self.reason = reason
    }

    public var description: String {
        if let tensor { return "safetensors file '\(path)', tensor '\(tensor)': \(reason)" }
        return "safetensors file '\(path)': \(reason)"
    }
    public var errorDescription: String? { description }
}

/// A read-only view of a `.safetensors` file.
///
/// The file is memory-mapped; the header is parsed and fully validated by `init(path:)`
/// (dtypes, shapes, sizes, offsets inside the data buffer, no overlapping ranges), so the
/// accessors below can only fail for the caller's own mistakes (unknown name, wrong dtype).
///
/// `tensor(_:)` converts every numeric dtype to Float: F32, F16 and BF16 exactly; F64 and
/// the integer dtypes (I8…I64, U8…U64, BOOL) to the nearest Float (so an I64 tensor such as
/// `position_ids` loads as floats). The 8-bit float dtypes are recognised but not converted.
/// `int64s(_:)` reads I64 tensors only.
public struct SafeTensorsFile: @unchecked Sendable {
    public struct Entry: Sendable {
        public let dtype: String
        public let shape: [Int]
        /// Byte range relative to the start of the data buffer.
        public let begin: Int
        public let end: Int
    }

    public let path: String
    /// Tensor names in ascending order of their data offsets (the order they were written).
    public let names: [String]
    public let metadata: [String: String]
    private let entries: [String: Entry]
    private let mapping: MappedFile
    private let dataStart: Int

    /// Element sizes of the dtypes the safetensors format defines.
    static let dtypeSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8,
    ]
    /// Headers larger than this are refused as absurd.
    public static let maxHeaderBytes = 100_000_000

    // Long on purpose: reads and checks the file's fields in order, each check beside the
    // field it guards; split up, the list of fields would only move elsewhere.
    public init(path: String) throws {
        self.path = path
        let mapping: MappedFile
        do {
            mapping = try MappedFile(path: path)
        } catch let error as MappedFile.Failure {
            throw SafeTensorsError(path: path, reason: error.message)
        }
        self.mapping = mapping
        let fileSize = mapping.count
        guard fileSize >= 8 else {
            throw SafeTensorsError(
                path: path, reason: "file is \(fileSize) bytes, shorter than the 8-byte header length")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(mapping.bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(Self.maxHeaderBytes) else {
            throw SafeTensorsError(
                path: path, reason: "header length \(n) is absurd (more than \(Self.maxHeaderBytes) bytes)")
        }
        let headerLength = Int(n)
        guard headerLength <= fileSize - 8 else {
            throw SafeTensorsError(
                path: path,
                reason:
                    "header length \(headerLength) is larger than the \(fileSize - 8) bytes after the length field (truncated file?)"
            )
        }
        guard headerLength >= 2 else {
            throw SafeTensorsError(
                path: path, reason: "header of \(headerLength) bytes is too short to be a JSON object")
        }
        let headerBytes = UnsafeBufferPointer(start: mapping.bytes + 8, count: headerLength)
        guard String(validating: headerBytes, as: UTF8.self) != nil else {
            throw SafeTensorsError(path: path, reason: "header is not valid UTF-8")
        }
        guard headerBytes[0] == UInt8(ascii: "{") else {
            throw SafeTensorsError(path: path, reason: "header does not start with '{' (not a JSON object)")
        }
        let root: JSONValue
        do {
            var parser = MiniJSONParser(bytes: headerBytes)
            root = try parser.parseDocument()
        } catch let error as MiniJSONParser.Failure {
            throw SafeTensorsError(path: path, reason: "header is not valid JSON: \(error.message)")
        }
        guard case .object(let members) = root else {
            throw SafeTensorsError(path: path, reason: "header is not a JSON object")
        }

        dataStart = 8 + headerLength
        let dataLength = fileSize - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        var sawMetadata = false
        for (name, value) in members {
            if name == "__metadata__" {
                guard !sawMetadata else {
                    throw SafeTensorsError(path: path, reason: "header has '__metadata__' twice")
                }
                sawMetadata = true
                guard case .object(let pairs) = value else {
                    throw SafeTensorsError(path: path, reason: "'__metadata__' is not an object of strings")
                }
                for (key, v) in pairs {
                    guard case .string(let s) = v else {
                        throw SafeTensorsError(path: path, reason: "'__metadata__' value for '\(key)' is not a string")
                    }
                    metadata[key] = s
                }
                continue
            }
            guard entries[name] == nil else {
                throw SafeTensorsError(path: path, tensor: name, reason: "tensor appears twice in the header")
            }
            entries[name] = try Self.parseEntry(name: name, value: value, dataLength: dataLength, path: path)
        }

        // Ranges must not overlap (zero-length tensors occupy no bytes).
        let ordered = entries.sorted { a, b in
            (a.value.begin, a.value.end, a.key) < (b.value.begin, b.value.end, b.key)
        }
        var previous: (name: String, end: Int)?
        for (name, entry) in ordered where entry.end > entry.begin {
            if let p = previous, entry.begin < p.end {
                throw SafeTensorsError(
                    path: path, tensor: name,
                    reason:
                        "data range [\(entry.begin), \(entry.end)) overlaps tensor '\(p.name)' which ends at \(p.end)")
            }
            previous = (name, entry.end)
        }
        self.entries = entries
        self.names = ordered.map(\.key)
        self.metadata = metadata
    }

    // Long on purpose: reads and checks the file's fields in order, each check beside the
    // field it guards; split up, the list of fields would only move elsewhere.
    private static func parseEntry(name: String, value: JSONValue, dataLength: Int, path: String) throws -> Entry {
        func fail(_ reason: String) -> SafeTensorsError {
            SafeTensorsError(path: path, tensor: name, reason: reason)
        }
        guard case .object(let fields) = value else { throw fail("header entry is not an object") }
        var dtypeValue: JSONValue?
        var shapeValue: JSONValue?
        var offsetsValue: JSONValue?
        for (key, v) in fields {
            switch key {
            case "dtype": dtypeValue = v
            case "shape": shapeValue = v
            case "data_offsets": offsetsValue = v
            default: break
            }
        }
        guard let dtypeValue else { throw fail("header entry has no 'dtype'") }
        guard let shapeValue else { throw fail("header entry has no 'shape'") }
        guard let offsetsValue else { throw fail("header entry has no 'data_offsets'") }
        guard case .string(let dtype) = dtypeValue else { throw fail("'dtype' is not a string") }
        guard let elementSize = dtypeSizes[dtype] else {
            throw fail("unknown dtype '\(dtype)' (known: \(dtypeSizes.keys.sorted().joined(separator: ", ")))")
        }
        guard case .array(let dims) = shapeValue else { throw fail("'shape' is not an array") }
        var shape: [Int] = []
        for d in dims {
            guard case .number(let text) = d, let v = Int(text) else {
                throw fail("'shape' holds \(d.summary), not an integer")
            }
            guard v >= 0 else { throw fail("'shape' \(dims.map(\.summary)) has a negative dimension \(v)") }
            shape.append(v)
        }
        guard case .array(let offs) = offsetsValue, offs.count == 2 else {
            throw fail("'data_offsets' is not an array of two integers")
        }
        var bounds: [Int] = []
        for o in offs {
            guard case .number(let text) = o, let v = Int(text) else {
                throw fail("'data_offsets' holds \(o.summary), not an integer")
            }
            guard v >= 0 else { throw fail("'data_offsets' holds a negative offset \(v)") }
            bounds.append(v)
        }
        let (begin, end) = (bounds[0], bounds[1])
        guard begin <= end else { throw fail("'data_offsets' begin \(begin) is after end \(end)") }
        var bytes = elementSize
        for d in shape {
            let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail("shape \(shape) is too large") }
            bytes = p
        }
        guard bytes == end - begin else {
            throw fail(
                "shape \(shape) of \(dtype) needs \(bytes) bytes but 'data_offsets' [\(begin), \(end)) span \(end - begin)"
            )
        }
        guard end <= dataLength else {
            throw fail(
                "'data_offsets' [\(begin), \(end)) run past the end of the \(dataLength)-byte data buffer (truncated file?)"
            )
        }
        return Entry(dtype: dtype, shape: shape, begin: begin, end: end)
    }

    // MARK: - Access

    public func info(_ name: String) -> (dtype: String, shape: [Int])? {
        entries[name].map { ($0.dtype, $0.shape) }
    }

    public func entry(_ name: String) -> Entry? { entries[name] }

    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// The tensor converted to Float (see the type's documentation for the dtypes).
    public func tensor(_ name: String) throws -> Tensor {
        let entry = try lookup(name)
        let count = entry.shape.reduce(1, *)
        let base = UnsafeRawPointer(mapping.bytes + dataStart + entry.begin)
        let data: [Float]
        switch entry.dtype {
        case "F32":
            data = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                if count > 0 {
                    #if _endian(little)
                        memcpy(buffer.baseAddress!, base, count * 4)
                    #else
                        for i in 0..<count {
                            buffer[i] = Float(
                                bitPattern: UInt32(
                                    littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                        }
                    #endif
                }
                initialized = count
            }
        case "F16":
            data = Self.convert(count, base, as: UInt16.self) { Self.floatFromHalfBits($0) }
        case "BF16":
            data = Self.convert(count, base, as: UInt16.self) { Float(bitPattern: UInt32($0) << 16) }
        case "F64":
            data = Self.convert(count, base, as: UInt64.self) { Float(Double(bitPattern: $0)) }
        case "I64":
            data = Self.convert(count, base, as: UInt64.self) { Float(Int64(bitPattern: $0)) }
        case "U64":
            data = Self.convert(count, base, as: UInt64.self) { Float($0) }
        case "I32":
            data = Self.convert(count, base, as: UInt32.self) { Float(Int32(bitPattern: $0)) }
        case "U32":
            data = Self.convert(count, base, as: UInt32.self) { Float($0) }
        case "I16":
            data = Self.convert(count, base, as: UInt16.self) { Float(Int16(bitPattern: $0)) }
        case "U16":
            data = Self.convert(count, base, as: UInt16.self) { Float($0) }
        case "I8":
            data = Self.convert(count, base, as: UInt8.self) { Float(Int8(bitPattern: $0)) }
        case "U8":
            data = Self.convert(count, base, as: UInt8.self) { Float($0) }
        case "BOOL":
            data = Self.convert(count, base, as: UInt8.self) { $0 != 0 ? 1 : 0 }
        default:
            throw SafeTensorsError(
                path: path, tensor: name, reason: "dtype \(entry.dtype) cannot be converted to Float")
        }
        return Tensor(shape: entry.shape, data: data)
    }

    /// The values of an I64 tensor, flattened in row-major order.
    public func int64s(_ name: String) throws -> [Int64] {
        let entry = try lookup(name)
        guard entry.dtype == "I64" else {
            throw SafeTensorsError(
                path: path, tensor: name, reason: "int64s() needs an I64 tensor, this one is \(entry.dtype)")
        }
        let count = entry.shape.reduce(1, *)
        let base = UnsafeRawPointer(mapping.bytes + dataStart + entry.begin)
        return (0..<count).map { Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
    }

    /// The raw little-endian bytes of a tensor.
    public func rawBytes(_ name: String) throws -> Data {
        let entry = try lookup(name)
        return Data(bytes: mapping.bytes + dataStart + entry.begin, count: entry.end - entry.begin)
    }

    private func lookup(_ name: String) throws -> Entry {
        if let entry = entries[name] { return entry }
        let near = Self.nearNames(to: name, in: names, limit: 5)
        let hint =
            near.isEmpty
            ? "the file holds no tensors"
            : "nearest of \(names.count) names: " + near.map { "'\($0)'" }.joined(separator: ", ")
        throw SafeTensorsError(path: path, tensor: name, reason: "no such tensor; \(hint)")
    }

    // MARK: - Conversion helpers

    @inline(__always)
    private static func convert<T: FixedWidthInteger>(
        _ count: Int, _ base: UnsafeRawPointer, as: T.Type,
        _ f: (T) -> Float
    ) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            let stride = MemoryLayout<T>.size
            for i in 0..<count {
                buffer[i] = f(T(littleEndian: base.loadUnaligned(fromByteOffset: stride * i, as: T.self)))
            }
            initialized = count
        }
    }

    /// IEEE binary16 bits to Float, exact for normals, subnormals, ±0, ±inf and NaN (payload kept).
    @inline(__always)
    public static func floatFromHalfBits(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = Int32((h >> 10) & 0x1F)
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F {  // inf / NaN
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {
            // zero or subnormal: mantissa * 2^-24, exact in Float.
            let magnitude = Float(mantissa) * 0x1p-24
            return Float(bitPattern: sign | magnitude.bitPattern)
        }
        return Float(bitPattern: sign | (UInt32(exponent + 112) << 23) | (mantissa << 13))
    }

    /// Names ranked by closeness to `name` (edit distance, ties by shared prefix).
    static func nearNames(to name: String, in names: [String], limit: Int) -> [String] {
        let target = Array(name.utf8)
        func distance(_ s: [UInt8]) -> Int {
            if target.isEmpty { return s.count }
            var row = Array(0...target.count)
            for (i, c) in s.enumerated() {
                var previous = row[0]
                row[0] = i + 1
                for j in 1...target.count {
                    let current = row[j]
                    row[j] = Swift.min(row[j] + 1, row[j - 1] + 1, previous + (target[j - 1] == c ? 0 : 1))
                    previous = current
                }
            }
            return row[target.count]
        }
        let scored: [(name: String, distance: Int)] = names.map { n in (n, distance(Array(n.utf8))) }
        let sorted = scored.sorted { a, b in
            if a.distance != b.distance { return a.distance < b.distance }
            return a.name < b.name
        }
        return sorted.prefix(limit).map { $0.name }
    }

    // MARK: - Folders

    /// Open the weights of a model folder: the first of `candidates` that exists.
    public static func open(
        folder: String,
        candidates: [String] = ["diffusion_pytorch_model.safetensors", "model.safetensors"]
    ) throws -> SafeTensorsFile {
        for name in candidates {
            let p = (folder as NSString).appendingPathComponent(name)
            // Anything else in the way (a FIFO, a device) is refused by name, not skipped.
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: p, isDirectory: &isDirectory), !isDirectory.boolValue {
                return try SafeTensorsFile(path: p)
            }
        }
        throw SafeTensorsError(
            path: folder,
            reason: "folder has none of the weight files \(candidates.map { "'\($0)'" }.joined(separator: ", "))")
    }

    // MARK: - Writing

    /// Write float32 tensors (in the given order) and optional metadata as a safetensors file.
    /// The header is padded with spaces so that the data buffer starts 8-byte aligned.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to path: String) throws {
        var seen = Set<String>()
        var header = "{"
        var first = true
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(
                separator: ",")
            header += "}"
            first = false
        }
        var offset = 0
        for (name, t) in tensors {
            guard name != "__metadata__" else {
                throw SafeTensorsError(
                    path: path, tensor: name, reason: "'__metadata__' is reserved and cannot name a tensor")
            }
            guard seen.insert(name).inserted else {
                throw SafeTensorsError(path: path, tensor: name, reason: "tensor name given twice")
            }
            let bytes = t.data.count * 4
            if !first { header += "," }
            first = false
            header +=
                "\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }

        guard let file = fopen(path, "wb") else {
            throw SafeTensorsError(path: path, reason: "cannot create file: \(String(cString: strerror(errno)))")
        }
        var ok = true
        var length = UInt64(headerBytes.count).littleEndian
        ok = ok && withUnsafeBytes(of: &length) { fwrite($0.baseAddress, 1, 8, file) == 8 }
        ok = ok && headerBytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
        for (_, t) in tensors where ok && !t.data.isEmpty {
            #if _endian(little)
                ok = t.data.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
            #else
                let le = t.data.map { $0.bitPattern.littleEndian }
                ok = le.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
            #endif
        }
        let closed = fclose(file) == 0
        guard ok && closed else {
            throw SafeTensorsError(path: path, reason: "write failed: \(String(cString: strerror(errno)))")
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

// MARK: - Memory mapping

/// A read-only private mapping of a whole file; unmapped when the last reference goes.
final class MappedFile: @unchecked Sendable {
    struct Failure: Error { let message: String }

    let bytes: UnsafePointer<UInt8>
    let count: Int
    private let mapped: UnsafeMutableRawPointer?

    init(path: String) throws {
        let fd: Int32
        let size: Int
        do {
            (fd, size) = try ModelFile.openRegular(path)
        } catch let failure as ModelFile.Failure {
            throw Failure(message: failure.reason)
        }
        defer { close(fd) }
        count = size
        if size == 0 {
            mapped = nil
            bytes = UnsafePointer(UnsafeMutablePointer<UInt8>.allocate(capacity: 1))
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw Failure(message: "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        mapped = p
        bytes = UnsafePointer(p.assumingMemoryBound(to: UInt8.self))
    }

    deinit {
        if let mapped {
            munmap(mapped, count)
        } else {
            UnsafeMutablePointer(mutating: bytes).deallocate()
        }
    }
}

// MARK: - A minimal JSON reader for headers

/// JSON values as the header reader needs them: numbers keep their text so integer
/// offsets stay exact, objects keep member order and duplicates.
enum JSONValue {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    var summary: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string(let s): return "the string \"\(s)\""
        case .number(let n): return n
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        }
    }
}

struct MiniJSONParser {
    struct Failure: Error { let message: String }

    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0
    var depth = 0
    static let maxDepth = 64

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func parseDocument() throws -> JSONValue {
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected content after the top-level value") }
        return value
    }

    private func fail(_ message: String) -> Failure {
        Failure(message: "\(message) at byte \(index)")
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws -> JSONValue {
        skipWhitespace()
        guard index < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expect("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character '\(Character(Unicode.Scalar(bytes[index])))'")
        }
    }

    private mutating func expect(_ word: String) throws {
        for b in word.utf8 {
            guard index < bytes.count, bytes[index] == b else { throw fail("invalid literal") }
            index += 1
        }
    }

    private mutating func parseObject() throws -> JSONValue {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth)") }
        index += 1
        var members: [(String, JSONValue)] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            members.append((key, try parseValue()))
            skipWhitespace()
            guard index < bytes.count else { throw fail("unterminated object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth)") }
        index += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(items)
        }
        while true {
            items.append(try parseValue())
            skipWhitespace()
            guard index < bytes.count else { throw fail("unterminated array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(items)
            }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        func digits() -> Int {
            let s = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            return index - s
        }
        guard digits() > 0 else { throw fail("invalid number") }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw fail("invalid number") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard digits() > 0 else { throw fail("invalid number") }
        }
        return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self))
    }

    private mutating func parseString() throws -> String {
        index += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard index < bytes.count else { throw fail("unterminated string") }
            let b = bytes[index]
            index += 1
            switch b {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        else {
                            throw fail("unpaired surrogate escape")
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw fail("unpaired surrogate escape")
                    }
                    out.append(contentsOf: Array(String(Unicode.Scalar(code)!).utf8))
                default:
                    throw fail("invalid escape")
                }
            default:
                guard b >= 0x20 else { throw fail("control character in string") }
                out.append(b)
            }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            index += 1
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
        }
        return v
    }
}
