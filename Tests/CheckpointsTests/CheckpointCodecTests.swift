import Foundation
import Support
import XCTest

@testable import Checkpoints

final class CheckpointCodecTests: XCTestCase {
    private func sample() -> CheckpointPayload {
        CheckpointPayload(
            metadata: Data(#"{"step":7,"emotion":"awe"}"#.utf8),
            arrays: [
                .init(name: "z_t", values: (0..<256).map { Float($0) * 0.37 - 20 }),
                .init(
                    name: "special",
                    values: [.nan, -0.0, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude]),
                .init(name: "empty", values: []),
                .init(name: "tøken ✓", values: [1, 2, 3]),
            ],
            blobs: [.init(name: "rng", bytes: Data([0, 0, 1, 0, 255])), .init(name: "none", bytes: Data())])
    }

    func testRoundTripPreservesEveryBit() throws {
        let p = sample()
        let data = try CheckpointCodec.encode(p, jobID: "job-42", epoch: 9, step: 7)
        let (header, back) = try CheckpointCodec.decode(data, jobID: "job-42")
        XCTAssertEqual(back, p)
        XCTAssertEqual(back.array("special")?.map(\.bitPattern), p.array("special")?.map(\.bitPattern))
        XCTAssertEqual(back.blob("rng"), Data([0, 0, 1, 0, 255]))
        XCTAssertEqual(header.epoch, 9)
        XCTAssertEqual(header.step, 7)
        XCTAssertEqual(header.version, 1)
        XCTAssertEqual(try CheckpointCodec.header(data), header)
        XCTAssertEqual(Array(data.prefix(8)), Array("MUSECKPT".utf8))
        // Empty payload too.
        let empty = CheckpointPayload(metadata: Data())
        XCTAssertEqual(
            try CheckpointCodec.decode(try CheckpointCodec.encode(empty, jobID: "e", epoch: 0, step: 0), jobID: "e")
                .payload, empty)
    }

    func testFloatsAreByteShuffled() throws {
        let values: [Float] = [1.0, 2.0]  // 0x3F800000, 0x40000000
        let raw = try CheckpointCodec.serialize(
            CheckpointPayload(metadata: Data(), arrays: [.init(name: "a", values: values)]))
        // u32 meta len, u32 count, u16 name len, "a", u64 count, then byte planes.
        let planes = Array(raw[(4 + 4 + 2 + 1 + 8)..<(4 + 4 + 2 + 1 + 8 + 8)])
        XCTAssertEqual(planes, [0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x3F, 0x40])
        XCTAssertEqual(CheckpointCodec.unshuffle(planes.withUnsafeBytes { $0 }, count: 2), values)
    }

    func testEveryFlippedByteIsDetected() throws {
        let data = try CheckpointCodec.encode(sample(), jobID: "j", epoch: 1, step: 2)
        for i in 0..<data.count {
            var bad = data
            bad[i] ^= 0x5A
            XCTAssertThrowsError(try CheckpointCodec.decode(bad, jobID: "j"), "flip at byte \(i) went unnoticed") {
                error in
                XCTAssertTrue(error is CheckpointError, "\(error)")
                if i < 8 { XCTAssertEqual(error as? CheckpointError, .badMagic) }
                if (8..<10).contains(i) {
                    XCTAssertEqual(error as? CheckpointError, .unsupportedVersion(1 ^ (i == 8 ? 0x5A : 0x5A00)))
                }
                if (10..<68).contains(i) {
                    XCTAssertEqual(error as? CheckpointError, .checksumMismatch("header"), "byte \(i)")
                }
                if i >= 68 { XCTAssertEqual(error as? CheckpointError, .checksumMismatch("body"), "byte \(i)") }
            }
        }
    }

    func testTruncationIsDetected() throws {
        let data = try CheckpointCodec.encode(sample(), jobID: "j", epoch: 1, step: 2)
        for n in [0, 3, 8, 20, 67, 68, 69, data.count / 2, data.count - 1] {
            XCTAssertThrowsError(try CheckpointCodec.decode(data.prefix(n), jobID: "j"), "length \(n)") { error in
                guard case .truncated = error as? CheckpointError else { return XCTFail("length \(n): \(error)") }
            }
        }
        XCTAssertThrowsError(try CheckpointCodec.decode(data + Data([0]), jobID: "j")) { error in
            XCTAssertEqual(error as? CheckpointError, .trailingBytes(1))
        }
    }

    func testForeignJobAndMagicAreDetected() throws {
        let data = try CheckpointCodec.encode(sample(), jobID: "job-a", epoch: 1, step: 2)
        XCTAssertThrowsError(try CheckpointCodec.decode(data, jobID: "job-b")) { error in
            XCTAssertEqual(error as? CheckpointError, .wrongJob)
        }
        var png = data
        png.replaceSubrange(0..<8, with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertThrowsError(try CheckpointCodec.decode(png, jobID: "job-a")) { error in
            XCTAssertEqual(error as? CheckpointError, .badMagic)
        }
    }

    /// Rewrites header fields and re-seals the header CRC, to reach the deeper checks.
    private func reseal(_ data: Data, _ edit: (inout [UInt8]) -> Void) -> Data {
        var b = [UInt8](data)
        edit(&b)
        let crc = CRC32.checksum(b[0..<64])
        withUnsafeBytes(of: crc.littleEndian) { b.replaceSubrange(64..<68, with: $0) }
        return Data(b)
    }

    private func put32(_ v: UInt32, at offset: Int, in b: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { b.replaceSubrange(offset..<offset + 4, with: $0) }
    }

    func testVersionZstdAndPayloadChecksFire() throws {
        let data = try CheckpointCodec.encode(sample(), jobID: "j", epoch: 1, step: 2)
        let v2 = reseal(data) { $0[8] = 2 }
        XCTAssertThrowsError(try CheckpointCodec.decode(v2, jobID: "j")) {
            XCTAssertEqual($0 as? CheckpointError, .unsupportedVersion(2))
        }

        // A garbage body with a matching body CRC: zstd itself must refuse it.
        var garbage = [UInt8](data)
        for i in 68..<garbage.count { garbage[i] = UInt8(truncatingIfNeeded: i &* 7) }
        let zstdBad = reseal(Data(garbage)) { b in self.put32(CRC32.checksum(b[68...]), at: 60, in: &b) }
        XCTAssertThrowsError(try CheckpointCodec.decode(zstdBad, jobID: "j")) { error in
            guard case .zstd = error as? CheckpointError else { return XCTFail("\(error)") }
        }

        // A valid frame of a different payload of the same length: only the payload CRC knows.
        var other = sample()
        other.arrays[0].values[0] += 1
        let otherData = try CheckpointCodec.encode(other, jobID: "j", epoch: 1, step: 2)
        var b = [UInt8](otherData)
        b.replaceSubrange(56..<60, with: [UInt8](data)[56..<60])  // the original payload CRC
        let swapped = reseal(Data(b)) { _ in }
        XCTAssertThrowsError(try CheckpointCodec.decode(swapped, jobID: "j")) { error in
            XCTAssertEqual(error as? CheckpointError, .checksumMismatch("payload"))
        }

        // Length in header disagreeing with the frame.
        let wrongLength = reseal(data) { b in b[40] &+= 1 }
        XCTAssertThrowsError(try CheckpointCodec.decode(wrongLength, jobID: "j")) { error in
            guard case .zstd = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    func testBenchmarkReportsSizesAndTimes() throws {
        let results = try CheckpointBenchmark.measure(levels: [3], iterations: 1)
        XCTAssertEqual(results.count, 1)
        let r = results[0]
        let floatBytes = 3 * 16384 * 4 + 3 * 768 * 4
        XCTAssertTrue((floatBytes..<floatBytes + 1024).contains(r.rawBytes), "\(r.rawBytes)")
        XCTAssertLessThan(r.encodedBytes, r.rawBytes, "shuffle + zstd must shrink the state")
        XCTAssertGreaterThan(r.encodeSeconds, 0)
        let lines = try CheckpointBenchmark.run(levels: [1], iterations: 1)
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[1].contains("zstd level  1"), lines[1])
    }
}

final class CRC32Tests: XCTestCase {
    func testVectorsAndChaining() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
        let whole = CRC32.checksum(Array("123456789".utf8))
        XCTAssertEqual(CRC32.checksum(Array("6789".utf8), seed: CRC32.checksum(Array("12345".utf8))), whole)
    }
}
