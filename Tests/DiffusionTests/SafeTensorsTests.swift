import Foundation
import Tensor
import XCTest

@testable import Diffusion

final class SafeTensorsTests: XCTestCase {
    var dir: String = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "safetensors-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: helpers

    /// Write an 8-byte length + header bytes + data bytes.
    func craft(_ name: String, headerBytes: [UInt8], data: [UInt8], declaredLength: UInt64? = nil) -> String {
        var bytes: [UInt8] = []
        var n = (declaredLength ?? UInt64(headerBytes.count)).littleEndian
        withUnsafeBytes(of: &n) { bytes.append(contentsOf: $0) }
        bytes += headerBytes
        bytes += data
        let path = dir + "/" + name
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        return path
    }

    func craft(_ name: String, header: String, data: [UInt8] = []) -> String {
        craft(name, headerBytes: Array(header.utf8), data: data)
    }

    func le16(_ values: [UInt16]) -> [UInt8] { values.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] } }
    func le64(_ values: [Int64]) -> [UInt8] {
        values.flatMap { v in (0..<8).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: v) >> (8 * UInt64($0))) } }
    }

    /// Opening (or `body` on the opened file) must throw a SafeTensorsError whose message
    /// names the file and, if given, the tensor.
    func assertError(
        _ path: String, tensor: String? = nil, contains words: [String] = [],
        file: StaticString = #filePath, line: UInt = #line,
        _ body: (SafeTensorsFile) throws -> Void = { _ in }
    ) {
        do {
            let f = try SafeTensorsFile(path: path)
            try body(f)
            XCTFail("expected an error for \(path)", file: file, line: line)
        } catch let error as SafeTensorsError {
            let message = error.description
            XCTAssertTrue(message.contains(path), "message does not name the file: \(message)", file: file, line: line)
            if let tensor {
                XCTAssertEqual(error.tensor, tensor, file: file, line: line)
                XCTAssertTrue(
                    message.contains("'\(tensor)'"), "message does not name the tensor: \(message)", file: file,
                    line: line)
            }
            for w in words {
                XCTAssertTrue(message.contains(w), "message lacks '\(w)': \(message)", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error type \(type(of: error)): \(error)", file: file, line: line)
        }
    }

    // MARK: good files

    func testWriteAndReadBackF32() throws {
        let path = dir + "/roundtrip.safetensors"
        let a = Tensor(shape: [2, 3], data: [1, -2, 3.5, .pi, -0.0, 1e-30])
        let b = Tensor(shape: [], data: [42])
        let c = Tensor(shape: [0, 4], data: [])
        let d = Tensor(shape: [5], data: [.infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 7])
        try SafeTensorsFile.write(
            [("layer.weight", a), ("scalar", b), ("empty", c), ("special \"name\"\n", d)],
            metadata: ["format": "pt", "note": "ünïcode \"quoted\""], to: path)
        let f = try SafeTensorsFile(path: path)
        // Names come in data order, which is the order written.
        XCTAssertEqual(f.names, ["layer.weight", "scalar", "empty", "special \"name\"\n"])
        XCTAssertEqual(f.metadata, ["format": "pt", "note": "ünïcode \"quoted\""])
        XCTAssertEqual(f.info("layer.weight")?.dtype, "F32")
        XCTAssertEqual(f.info("layer.weight")?.shape, [2, 3])
        XCTAssertNil(f.info("nope"))
        for (name, t) in [("layer.weight", a), ("scalar", b), ("empty", c), ("special \"name\"\n", d)] {
            let r = try f.tensor(name)
            XCTAssertEqual(r.shape, t.shape, name)
            XCTAssertEqual(r.data.map(\.bitPattern), t.data.map(\.bitPattern), name)
        }
        // The data buffer starts 8-byte aligned.
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = raw.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        XCTAssertEqual((8 + n) % 8, 0)
    }

    func testWriterRejectsDuplicateNames() {
        let path = dir + "/dup.safetensors"
        XCTAssertThrowsError(try SafeTensorsFile.write([("x", Tensor(1)), ("x", Tensor(2))], to: path)) { error in
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("'x'"), "\(error)")
        }
    }

    func testHalfBitsExhaustiveAgainstFloat16() {
        for bits in 0...UInt16.max {
            let mine = SafeTensorsFile.floatFromHalfBits(bits)
            let reference = Float(Float16(bitPattern: bits))
            if reference.isNaN {
                XCTAssertTrue(mine.isNaN, "bits \(bits)")
                XCTAssertEqual(mine.sign, reference.sign, "bits \(bits)")
            } else {
                XCTAssertEqual(mine.bitPattern, reference.bitPattern, "bits \(bits)")
            }
        }
    }

    func testCraftedF16() throws {
        let bits: [UInt16] = [
            0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x8000, 0x0000, 0x7E00, 0x3555, 0x8001,
        ]
        let header = #"{"h":{"dtype":"F16","shape":[13],"data_offsets":[0,26]}}"#
        let path = craft("f16.safetensors", header: header, data: le16(bits))
        let t = try SafeTensorsFile(path: path).tensor("h")
        XCTAssertEqual(t.shape, [13])
        let v = t.data
        XCTAssertEqual(v[0], 1)
        XCTAssertEqual(v[1], -2)
        XCTAssertEqual(v[2], 0x1p-24)  // smallest subnormal
        XCTAssertEqual(v[3], 1023 * 0x1p-24)  // largest subnormal
        XCTAssertEqual(v[4], 0x1p-14)  // smallest normal
        XCTAssertEqual(v[5], 65504)
        XCTAssertEqual(v[6], .infinity)
        XCTAssertEqual(v[7], -.infinity)
        XCTAssertEqual(v[8].bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertEqual(v[9].bitPattern, 0)
        XCTAssertTrue(v[10].isNaN)
        XCTAssertEqual(v[11], 0.333251953125)
        XCTAssertEqual(v[12], -0x1p-24)
    }

    func testCraftedBF16() throws {
        let bits: [UInt16] = [0x3F80, 0xC040, 0x0001, 0x7F80, 0xFF80, 0x8000, 0x7FC0, 0x4049, 0x0080]
        let header = #"{"b":{"dtype":"BF16","shape":[3,3],"data_offsets":[0,18]}}"#
        let path = craft("bf16.safetensors", header: header, data: le16(bits))
        let t = try SafeTensorsFile(path: path).tensor("b")
        XCTAssertEqual(t.shape, [3, 3])
        let v = t.data
        XCTAssertEqual(v[0], 1)
        XCTAssertEqual(v[1], -3)
        XCTAssertEqual(v[2], 0x1p-133)  // subnormal
        XCTAssertEqual(v[3], .infinity)
        XCTAssertEqual(v[4], -.infinity)
        XCTAssertEqual(v[5].bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertTrue(v[6].isNaN)
        XCTAssertEqual(v[7], 3.140625)
        XCTAssertEqual(v[8], 0x1p-126)  // smallest normal
    }

    func testI64AndPaddedHeader() throws {
        let values: [Int64] = [-1, 0, 1 << 40, Int64.max, 76]
        // Trailing spaces pad the header (as the reference writer does for alignment).
        let header =
            #"{"__metadata__":{"format":"pt"},"position_ids":{"dtype":"I64","shape":[1,5],"data_offsets":[0,40]}}"#
            + "       "
        let path = craft("i64.safetensors", header: header, data: le64(values))
        let f = try SafeTensorsFile(path: path)
        XCTAssertEqual(f.names, ["position_ids"])
        XCTAssertEqual(f.metadata, ["format": "pt"])
        XCTAssertEqual(f.info("position_ids")?.dtype, "I64")
        XCTAssertEqual(f.info("position_ids")?.shape, [1, 5])
        XCTAssertEqual(try f.int64s("position_ids"), values)
        // tensor() converts integers to the nearest Float.
        let t = try f.tensor("position_ids")
        XCTAssertEqual(t.shape, [1, 5])
        XCTAssertEqual(t.data, [-1, 0, Float(1 << 40), Float(Int64.max), 76])
    }

    func testMixedFileWithGapAndUnalignedData() throws {
        // An odd header length makes every tensor unaligned in memory.
        let header =
            #"{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
            + " "
        var data = le16([0x3C00]) + [0, 0]
        data += withUnsafeBytes(of: Float(2.5).bitPattern.littleEndian) { Array($0) }
        data += withUnsafeBytes(of: Float(-7).bitPattern.littleEndian) { Array($0) }
        let path = craft("mixed.safetensors", header: header, data: data)
        let f = try SafeTensorsFile(path: path)
        XCTAssertEqual(f.names, ["a", "b"])
        XCTAssertEqual(try f.tensor("a").data, [1])
        XCTAssertEqual(try f.tensor("b").data, [2.5, -7])
    }

    func testOpenFolderPicksFirstExisting() throws {
        let folder = dir + "/model"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try SafeTensorsFile.write([("w", Tensor(shape: [1], data: [3]))], to: folder + "/model.safetensors")
        let f = try SafeTensorsFile.open(folder: folder)
        XCTAssertEqual(f.path, folder + "/model.safetensors")
        XCTAssertEqual(try f.tensor("w").data, [3])
        try SafeTensorsFile.write(
            [("w", Tensor(shape: [1], data: [4]))], to: folder + "/diffusion_pytorch_model.safetensors")
        XCTAssertEqual(try SafeTensorsFile.open(folder: folder).tensor("w").data, [4])

        let empty = dir + "/empty-model"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try SafeTensorsFile.open(folder: empty)) { error in
            let m = "\(error)"
            XCTAssertTrue(
                m.contains(empty) && m.contains("diffusion_pytorch_model.safetensors")
                    && m.contains("model.safetensors"), m)
        }
    }

    // MARK: bad files

    func testMissingAndShortFiles() {
        assertError(dir + "/does-not-exist.safetensors", contains: ["cannot open"])
        let empty = dir + "/empty.safetensors"
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        assertError(empty, contains: ["shorter than"])
        let short = dir + "/short.safetensors"
        XCTAssertTrue(FileManager.default.createFile(atPath: short, contents: Data([1, 0, 0, 0])))
        assertError(short, contains: ["shorter than"])
    }

    func testHeaderLengthChecks() {
        let header = Array(#"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#.utf8)
        assertError(
            craft("too-long.safetensors", headerBytes: header, data: [0, 0, 0, 0], declaredLength: 1000),
            contains: ["larger than"])
        assertError(
            craft("absurd.safetensors", headerBytes: header, data: [], declaredLength: 1 << 40),
            contains: ["absurd"])
        assertError(
            craft("huge.safetensors", headerBytes: header, data: [], declaredLength: UInt64.max),
            contains: ["absurd"])
    }

    func testHeaderNotUTF8OrNotJSONObject() {
        var bad = Array(#"{"a\#u{1}":1}"#.utf8)
        bad[3] = 0xFF
        assertError(craft("utf8.safetensors", headerBytes: bad, data: []), contains: ["UTF-8"])
        assertError(craft("json.safetensors", header: #"{"a": {"dtype": "F32",, }"#), contains: ["JSON"])
        assertError(
            craft(
                "json2.safetensors", header: #"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}} x"#,
                data: [0, 0, 0, 0]),
            contains: ["JSON"])
        assertError(craft("array.safetensors", header: "[1, 2, 3]"), contains: ["object"])
        assertError(
            craft("deep.safetensors", header: "{\"a\":" + String(repeating: "[", count: 10000)), contains: ["JSON"])
        assertError(craft("meta.safetensors", header: #"{"__metadata__":{"k":5}}"#), contains: ["__metadata__"])
    }

    func testEntryFieldsMissingOrWrongTypes() {
        let cases: [(String, String, String)] = [
            ("not-object", #""t":[1,2]"#, "not an object"),
            ("no-dtype", #""t":{"shape":[1],"data_offsets":[0,4]}"#, "dtype"),
            ("no-shape", #""t":{"dtype":"F32","data_offsets":[0,4]}"#, "shape"),
            ("no-offsets", #""t":{"dtype":"F32","shape":[1]}"#, "data_offsets"),
            ("dtype-number", #""t":{"dtype":32,"shape":[1],"data_offsets":[0,4]}"#, "dtype"),
            ("shape-string", #""t":{"dtype":"F32","shape":"1","data_offsets":[0,4]}"#, "shape"),
            ("shape-float", #""t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}"#, "shape"),
            ("shape-bool", #""t":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}"#, "shape"),
            ("offsets-one", #""t":{"dtype":"F32","shape":[1],"data_offsets":[4]}"#, "data_offsets"),
            ("offsets-string", #""t":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}"#, "data_offsets"),
            ("offsets-negative", #""t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}"#, "negative"),
            (
                "offsets-huge", #""t":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999999]}"#,
                "data_offsets"
            ),
            ("unknown-dtype", #""t":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}"#, "unknown dtype 'F17'"),
            ("negative-dim", #""t":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,4]}"#, "negative dimension"),
            ("size-mismatch", #""t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}"#, "needs 8 bytes"),
            (
                "size-overflow", #""t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}"#,
                "too large"
            ),
            ("begin-after-end", #""t":{"dtype":"F32","shape":[],"data_offsets":[4,0]}"#, "after end"),
            ("beyond-buffer", #""t":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}"#, "truncated"),
            (
                "duplicate",
                #""t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#,
                "twice"
            ),
        ]
        for (file, entry, words) in cases {
            let path = craft(file + ".safetensors", header: "{" + entry + "}", data: [0, 0, 0, 0, 0, 0, 0, 0])
            assertError(path, tensor: "t", contains: [words])
        }
    }

    func testOverlappingRanges() {
        let header =
            #"{"first":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"second":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        let path = craft("overlap.safetensors", header: header, data: [UInt8](repeating: 0, count: 12))
        assertError(path, tensor: "second", contains: ["overlaps", "'first'"])
        // Zero-sized tensors may share an offset with anything.
        let ok =
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#
        XCTAssertNoThrow(
            try SafeTensorsFile(path: craft("zero.safetensors", header: ok, data: [UInt8](repeating: 0, count: 8))))
    }

    func testTruncatedFile() throws {
        let path = dir + "/full.safetensors"
        try SafeTensorsFile.write(
            [("a", Tensor(shape: [4], data: [1, 2, 3, 4])), ("b", Tensor(shape: [4], data: [5, 6, 7, 8]))], to: path)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes.removeLast(5)
        let cut = dir + "/cut.safetensors"
        try bytes.write(to: URL(fileURLWithPath: cut))
        assertError(cut, tensor: "b", contains: ["truncated"])
    }

    func testMissingNameListsNearNames() throws {
        let path = dir + "/names.safetensors"
        let names = [
            "down.0.conv.weight", "down.0.conv.bias", "down.1.conv.weight", "up.0.norm.weight", "mid.attn.to_q.weight",
        ]
        try SafeTensorsFile.write(names.map { ($0, Tensor(shape: [1], data: [0])) }, to: path)
        assertError(path, tensor: "down.2.conv.weight", contains: ["'down.0.conv.weight'", "'down.1.conv.weight'"]) {
            _ = try $0.tensor("down.2.conv.weight")
        }
        assertError(path, tensor: "nothing", contains: ["no such tensor"]) { _ = try $0.int64s("nothing") }
    }

    func testInt64sOnNonI64() throws {
        let path = dir + "/f32.safetensors"
        try SafeTensorsFile.write([("weights", Tensor(shape: [2], data: [1, 2]))], to: path)
        assertError(path, tensor: "weights", contains: ["I64", "F32"]) { _ = try $0.int64s("weights") }
    }

    func testUnconvertibleDtype() {
        let header = #"{"f8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#
        let path = craft("f8.safetensors", header: header, data: [0, 0])
        assertError(path, tensor: "f8", contains: ["F8_E4M3"]) { _ = try $0.tensor("f8") }
    }
}
