import CZstd

/// One-shot zstd frames. Sizes are known from the checkpoint header, so no streaming.
enum Zstd {
    static func compress(_ src: UnsafeRawBufferPointer, level: Int32) throws -> [UInt8] {
        let bound = ZSTD_compressBound(src.count)
        var dst = [UInt8](repeating: 0, count: bound)
        let n = dst.withUnsafeMutableBytes { d in
            ZSTD_compress(d.baseAddress, bound, src.baseAddress, src.count, level)
        }
        if ZSTD_isError(n) != 0 { throw CheckpointError.zstd(errorName(n)) }
        dst.removeSubrange(n...)
        return dst
    }

    /// Refuses frames that decode to anything but exactly `size` bytes.
    static func decompress(_ src: UnsafeRawBufferPointer, size: Int) throws -> [UInt8] {
        var dst = [UInt8](repeating: 0, count: size)
        let n = dst.withUnsafeMutableBytes { d in
            // zstd wants a non-null destination even for an empty frame.
            withUnsafeTemporaryAllocation(byteCount: 1, alignment: 1) { scratch in
                ZSTD_decompress(d.baseAddress ?? scratch.baseAddress, size, src.baseAddress, src.count)
            }
        }
        if ZSTD_isError(n) != 0 { throw CheckpointError.zstd(errorName(n)) }
        if n != size { throw CheckpointError.zstd("frame holds \(n) bytes, header says \(size)") }
        return dst
    }

    private static func errorName(_ code: Int) -> String {
        guard let name = ZSTD_getErrorName(code) else { return "error \(code)" }
        return String(cString: name)
    }
}
