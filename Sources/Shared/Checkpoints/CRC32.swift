import CZlib

/// CRC-32 (IEEE 802.3, the zlib/PNG variant) through zlib's crc32, already on every host
/// through libpng. Used to validate checkpoints.
public enum CRC32 {
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        var crc = UInt(seed)
        var rest = bytes
        // zlib takes a 32-bit length: feed large buffers in slices.
        while !rest.isEmpty {
            let n = min(rest.count, 1 << 30)
            crc = UInt(crc32(uLong(crc), rest.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(n)))
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    public static func checksum(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, seed: seed) }
    }

    public static func checksum(_ bytes: ArraySlice<UInt8>, seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, seed: seed) }
    }
}
