import Foundation
import Support

/// What a checkpoint carries. The codec does not know the engine: the engine's state maps
/// onto metadata JSON (scalars, traces, emotions), named float arrays (latents, token,
/// Adam moments) and opaque blobs (anything else).
public struct CheckpointPayload: Equatable, Sendable {
    public struct FloatArray: Equatable, Sendable {
        public var name: String
        public var values: [Float]
        public init(name: String, values: [Float]) {
            self.name = name
            self.values = values
        }
        /// Bitwise, so NaN payloads and -0 count: resuming must give the same bytes.
        public static func == (a: FloatArray, b: FloatArray) -> Bool {
            a.name == b.name && a.values.count == b.values.count
                && zip(a.values, b.values).allSatisfy { $0.bitPattern == $1.bitPattern }
        }
    }

    public struct Blob: Equatable, Sendable {
        public var name: String
        public var bytes: Data
        public init(name: String, bytes: Data) {
            self.name = name
            self.bytes = bytes
        }
    }

    public var metadata: Data
    public var arrays: [FloatArray]
    public var blobs: [Blob]

    public init(metadata: Data = Data("{}".utf8), arrays: [FloatArray] = [], blobs: [Blob] = []) {
        self.metadata = metadata
        self.arrays = arrays
        self.blobs = blobs
    }

    public func array(_ name: String) -> [Float]? { arrays.first { $0.name == name }?.values }
    public func blob(_ name: String) -> Data? { blobs.first { $0.name == name }?.bytes }
}

public struct CheckpointHeader: Equatable, Sendable {
    public var version: UInt16
    public var epoch: UInt64
    public var step: UInt32
    public var jobDigest: [UInt8]
    public var payloadLength: UInt64
    public var bodyLength: UInt64
}

/// Every reason a checkpoint is refused. Callers treat all of them alike: start the job
/// from scratch. The cases exist so logs say what happened.
public enum CheckpointError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case truncated(expected: Int, actual: Int)
    case badMagic
    case unsupportedVersion(UInt16)
    case unsupportedFlags(UInt16)
    case wrongJob
    case checksumMismatch(String)
    case trailingBytes(Int)
    case zstd(String)
    case malformed(String)

    public var description: String {
        switch self {
        case .truncated(let e, let a): return "checkpoint truncated: need \(e) bytes, have \(a)"
        case .badMagic: return "not a checkpoint (bad magic)"
        case .unsupportedVersion(let v): return "unsupported checkpoint format version \(v)"
        case .unsupportedFlags(let f): return "unsupported checkpoint flags 0x\(String(f, radix: 16))"
        case .wrongJob: return "checkpoint belongs to a different job"
        case .checksumMismatch(let part): return "checkpoint \(part) checksum mismatch (corrupted)"
        case .trailingBytes(let n): return "checkpoint has \(n) unexpected trailing bytes"
        case .zstd(let m): return "checkpoint decompression failed: \(m)"
        case .malformed(let m): return "malformed checkpoint payload: \(m)"
        }
    }

    public var errorDescription: String? { description }
}

/// Binary checkpoint format, version 1 (all integers little-endian):
///
///     0  magic "MUSECKPT"          8   40 payload length (uncompressed) u64
///     8  version u16 = 1               48 body length (compressed)      u64
///    10  flags u16 = 0                 56 CRC-32 of the payload         u32
///    12  epoch u64                     60 CRC-32 of the body            u32
///    20  step u32                      64 CRC-32 of bytes 0..<64        u32
///    24  SHA-256(job id)[0..<16]   16   68 body: zstd frame of the payload
///
/// Payload: u32 metadata length + metadata; u32 array count, each: u16 name length + name,
/// u64 element count, the floats byte-shuffled (every byte 0, then every byte 1, ...: the
/// exponent bytes line up, so zstd finds far more redundancy); u32 blob count, each: u16
/// name length + name, u64 length + bytes.
/// The header CRC makes any flipped header byte detectable; the body CRC catches damage
/// zstd might decode without noticing; the payload CRC checks the final result.
public enum CheckpointCodec {
    public static let magic = Array("MUSECKPT".utf8)
    public static let version: UInt16 = 1
    public static let headerSize = 68
    public static let defaultLevel: Int32 = 3
    /// A sanity bound before allocating from a header (an SD latent state is well under 1 MiB).
    public static let maxPayloadLength: UInt64 = 1 << 31

    public static func jobDigest(_ jobID: String) -> [UInt8] { Array(Hashing.sha256(Array(jobID.utf8)).prefix(16)) }

    public static func encode(
        _ payload: CheckpointPayload, jobID: String, epoch: UInt64, step: UInt32,
        level: Int32 = defaultLevel
    ) throws -> Data {
        let body = try serialize(payload)
        let compressed = try body.withUnsafeBytes { try Zstd.compress($0, level: level) }
        var w = ByteWriter()
        w.bytes.reserveCapacity(headerSize + compressed.count)
        w.raw(magic)
        w.u16(version)
        w.u16(0)
        w.u64(epoch)
        w.u32(step)
        w.raw(jobDigest(jobID))
        w.u64(UInt64(body.count))
        w.u64(UInt64(compressed.count))
        w.u32(CRC32.checksum(body))
        w.u32(CRC32.checksum(compressed))
        w.u32(CRC32.checksum(w.bytes))
        w.raw(compressed)
        return Data(w.bytes)
    }

    /// Reads and validates the header only (cheap: for logs and "resume from step N").
    public static func header(_ data: Data) throws -> CheckpointHeader {
        try data.withUnsafeBytes { try parseHeader($0) }
    }

    /// Validates everything, in order: magic, version, header CRC, job, length, body CRC,
    /// decompression, payload CRC, payload structure.
    public static func decode(_ data: Data, jobID: String) throws -> (
        header: CheckpointHeader, payload: CheckpointPayload
    ) {
        try data.withUnsafeBytes { raw in
            let header = try parseHeader(raw)
            guard header.jobDigest == jobDigest(jobID) else { throw CheckpointError.wrongJob }
            let available = raw.count - headerSize
            guard header.bodyLength <= UInt64(Int.max), Int(header.bodyLength) <= available else {
                throw CheckpointError.truncated(
                    expected: headerSize + Int(clamping: header.bodyLength), actual: raw.count)
            }
            if Int(header.bodyLength) < available {
                throw CheckpointError.trailingBytes(available - Int(header.bodyLength))
            }
            guard header.payloadLength <= maxPayloadLength else {
                throw CheckpointError.malformed("payload length \(header.payloadLength) is implausible")
            }
            var r = ByteReader(raw)
            r.offset = 56
            let payloadCRC = try r.u32()
            let bodyCRC = try r.u32()
            let body = UnsafeRawBufferPointer(rebasing: raw[headerSize...])
            guard CRC32.checksum(body) == bodyCRC else { throw CheckpointError.checksumMismatch("body") }
            let payload = try Zstd.decompress(body, size: Int(header.payloadLength))
            guard CRC32.checksum(payload) == payloadCRC else { throw CheckpointError.checksumMismatch("payload") }
            return (header, try payload.withUnsafeBytes { try deserialize($0) })
        }
    }

    private static func parseHeader(_ raw: UnsafeRawBufferPointer) throws -> CheckpointHeader {
        if raw.count >= magic.count, !raw.prefix(magic.count).elementsEqual(magic) { throw CheckpointError.badMagic }
        guard raw.count >= headerSize else { throw CheckpointError.truncated(expected: headerSize, actual: raw.count) }
        var r = ByteReader(raw)
        r.offset = magic.count
        let version = try r.u16()
        guard version == self.version else { throw CheckpointError.unsupportedVersion(version) }
        let crcStored = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 64, as: UInt32.self))
        guard CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<64])) == crcStored else {
            throw CheckpointError.checksumMismatch("header")
        }
        let flags = try r.u16()
        guard flags == 0 else { throw CheckpointError.unsupportedFlags(flags) }
        let epoch = try r.u64()
        let step = try r.u32()
        let digest = Array(try r.take(16))
        let payloadLength = try r.u64()
        let bodyLength = try r.u64()
        return CheckpointHeader(
            version: version, epoch: epoch, step: step, jobDigest: digest,
            payloadLength: payloadLength, bodyLength: bodyLength)
    }

    static func serialize(_ p: CheckpointPayload) throws -> [UInt8] {
        var w = ByteWriter()
        let floatBytes = p.arrays.reduce(0) { $0 + 4 * $1.values.count }
        w.bytes.reserveCapacity(64 + p.metadata.count + floatBytes + p.blobs.reduce(0) { $0 + $1.bytes.count + 16 })
        guard p.metadata.count <= Int(UInt32.max) else { throw CheckpointError.malformed("metadata too large") }
        w.u32(UInt32(p.metadata.count))
        w.raw(p.metadata)
        w.u32(UInt32(p.arrays.count))
        for a in p.arrays {
            try w.string16(a.name)
            w.u64(UInt64(a.values.count))
            appendShuffled(a.values, to: &w.bytes)
        }
        w.u32(UInt32(p.blobs.count))
        for b in p.blobs {
            try w.string16(b.name)
            w.u64(UInt64(b.bytes.count))
            w.raw(b.bytes)
        }
        return w.bytes
    }

    static func deserialize(_ raw: UnsafeRawBufferPointer) throws -> CheckpointPayload {
        var r = ByteReader(raw)
        let metadata = Data(try r.take(Int(try r.u32())))
        var arrays: [CheckpointPayload.FloatArray] = []
        let arrayCount = try r.u32()
        for _ in 0..<arrayCount {
            let name = try r.string16()
            let count = try r.u64()
            guard count <= UInt64(r.remaining / 4) else {
                throw CheckpointError.malformed("array '\(name)' overruns the payload")
            }
            arrays.append(.init(name: name, values: unshuffle(try r.take(Int(count) * 4), count: Int(count))))
        }
        var blobs: [CheckpointPayload.Blob] = []
        let blobCount = try r.u32()
        for _ in 0..<blobCount {
            let name = try r.string16()
            let length = try r.u64()
            guard length <= UInt64(r.remaining) else {
                throw CheckpointError.malformed("blob '\(name)' overruns the payload")
            }
            blobs.append(.init(name: name, bytes: Data(try r.take(Int(length)))))
        }
        guard r.remaining == 0 else {
            throw CheckpointError.malformed("\(r.remaining) stray bytes after the last blob")
        }
        return CheckpointPayload(metadata: metadata, arrays: arrays, blobs: blobs)
    }

    /// Byte k of float i goes to k*n + i (floats taken little-endian).
    static func appendShuffled(_ values: [Float], to out: inout [UInt8]) {
        let n = values.count
        let start = out.count
        out.append(contentsOf: [UInt8](repeating: 0, count: 4 * n))  // not repeatElement: slow unspecialised in debug
        out.withUnsafeMutableBufferPointer { o in
            values.withUnsafeBufferPointer { v in
                let dst = o.baseAddress! + start
                for i in 0..<n {
                    let bits = v[i].bitPattern
                    dst[i] = UInt8(truncatingIfNeeded: bits)
                    dst[n + i] = UInt8(truncatingIfNeeded: bits &>> 8)
                    dst[2 * n + i] = UInt8(truncatingIfNeeded: bits &>> 16)
                    dst[3 * n + i] = UInt8(truncatingIfNeeded: bits &>> 24)
                }
            }
        }
    }

    static func unshuffle(_ src: UnsafeRawBufferPointer, count n: Int) -> [Float] {
        guard n > 0 else { return [] }
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            let s = src.bindMemory(to: UInt8.self)
            for i in 0..<n {
                let bits =
                    UInt32(s[i]) | UInt32(s[n + i]) &<< 8 | UInt32(s[2 * n + i]) &<< 16 | UInt32(s[3 * n + i]) &<< 24
                buf[i] = Float(bitPattern: bits)
            }
            initialized = n
        }
    }
}
