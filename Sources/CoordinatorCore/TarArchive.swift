import Foundation

/// Writes a POSIX ustar archive of regular files to a sink, member by member (a shard never
/// sits in memory whole). Hand-written: none of the machine's Swift packages writes tar, and
/// WebDataset needs only regular files with short names — 512-byte headers, contents padded
/// to 512, two zero blocks at the end. Owner, mode and time are fixed, so the same files give
/// the same bytes.
struct TarWriter {
    static let block = 512
    let sink: (Data) throws -> Void

    enum Problem: Error, CustomStringConvertible {
        case nameTooLong(String)
        case fileTooLarge(String, Int)
        var description: String {
            switch self {
            case .nameTooLong(let n): return "tar: member name '\(n)' is longer than 100 bytes"
            case .fileTooLarge(let n, let size): return "tar: member '\(n)' has \(size) bytes (ustar holds < 8 GiB)"
            }
        }
    }

    /// Appends one regular file; `name` is ASCII without a leading slash, at most 100 bytes.
    func add(name: String, contents: Data) throws {
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty, nameBytes.count <= 100 else { throw Problem.nameTooLong(name) }
        guard contents.count < 8 << 30 else { throw Problem.fileTooLarge(name, contents.count) }
        var header = [UInt8](repeating: 0, count: Self.block)
        func put(_ field: [UInt8], at offset: Int) {
            header.replaceSubrange(offset..<offset + field.count, with: field)
        }
        /// A NUL-terminated octal number filling `width` bytes.
        func octal(_ value: Int, _ width: Int) -> [UInt8] {
            let digits = String(value, radix: 8)
            return Array((String(repeating: "0", count: width - 1 - digits.count) + digits).utf8) + [0]
        }
        put(nameBytes, at: 0)
        put(octal(0o644, 8), at: 100)  // mode
        put(octal(0, 8), at: 108)  // uid
        put(octal(0, 8), at: 116)  // gid
        put(octal(contents.count, 12), at: 124)
        put(octal(0, 12), at: 136)  // mtime: fixed for reproducible shards
        put(Array("0".utf8), at: 156)  // typeflag: regular file
        put(Array("ustar\u{0}00".utf8), at: 257)
        // The checksum is computed with its own field as eight spaces.
        put([UInt8](repeating: 0x20, count: 8), at: 148)
        let sum = header.reduce(0) { $0 + Int($1) }
        put(octal(sum, 7) + [0x20], at: 148)
        try sink(Data(header))
        try sink(contents)
        let pad = (Self.block - contents.count % Self.block) % Self.block
        if pad > 0 { try sink(Data(count: pad)) }
    }

    /// The end-of-archive marker.
    func finish() throws { try sink(Data(count: 2 * Self.block)) }
}
