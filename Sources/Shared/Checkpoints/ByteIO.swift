import Foundation
import Support

/// Little-endian writer for the binary formats here (fixed order, so files are portable).
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u16(_ v: UInt16) { append(v) }
    mutating func u32(_ v: UInt32) { append(v) }
    mutating func u64(_ v: UInt64) { append(v) }
    // Concrete overloads: appending through raw buffers is a memcpy even in debug builds.
    mutating func raw(_ b: [UInt8]) { b.withUnsafeBytes { bytes.append(contentsOf: $0) } }
    mutating func raw(_ b: Data) { b.withUnsafeBytes { bytes.append(contentsOf: $0) } }

    mutating func string16(_ s: String) throws {
        let u = Array(s.utf8)
        guard u.count <= Int(UInt16.max) else { throw CheckpointError.malformed("name longer than 65535 bytes") }
        u16(UInt16(u.count))
        raw(u)
    }

    private mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Bounds-checked reader: every read past the end throws instead of trapping, because
/// it parses bytes that came over the network.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func u16() throws -> UInt16 { try read() }
    mutating func u32() throws -> UInt32 { try read() }
    mutating func u64() throws -> UInt64 { try read() }

    mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw CheckpointError.malformed("payload ends early at byte \(offset)") }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
    }

    mutating func string16() throws -> String {
        let n = Int(try u16())
        let b = try take(n)
        guard let s = String(validating: b, as: UTF8.self) else { throw CheckpointError.malformed("name is not UTF-8") }
        return s
    }

    private mutating func read<T: FixedWidthInteger>() throws -> T {
        let b = try take(MemoryLayout<T>.size)
        var v = T.zero
        withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: b) }
        return T(littleEndian: v)
    }
}
