import DiffusersLayout
import Foundation

/// A model's identity: a hash over the names, sizes and contents of the files its loader
/// reads (`DiffusersLayout.filesALoaderReads`; every file of a folder in no known layout,
/// hidden files and *.md aside). Files up to 64 MiB are hashed whole; larger ones (real SD
/// weights) by their size, first and last MiB and 16 evenly spaced 64 KiB samples, so
/// fingerprinting a 4 GB model stays fast. Here, not in Jobs, so `muse fingerprint` (no job
/// code) prints the same value the coordinator computes.
public enum ModelFingerprint {
    static let wholeFileLimit = 64 << 20

    public static func compute(path: String) throws -> String {
        let files = try files(path: path)
        let lines =
            files == [""]
            ? ["\t" + (try fileDigest(path))] : try files.map { "\($0)\t" + (try fileDigest(path + "/" + $0)) }
        return String(Hashing.sha256Hex(lines.joined(separator: "\n")).prefix(32))
    }

    /// The files a fingerprint covers, sorted, relative to `path` (`[""]` when `path` is a
    /// file). Anything among them that is not a regular file (a FIFO, socket or device,
    /// which would block or never end when read) is an error naming it; nothing is opened.
    public static func files(path: String) throws -> [String] {
        var st = stat()
        guard stat(path, &st) == 0 else { throw PathError("\(path) does not exist") }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return [""]
        case S_IFDIR: break
        default:
            throw PathError("\(path) is \(RegularFile.kindName(mode: st.st_mode) ?? "?"), not a regular file or folder")
        }
        if let read = DiffusersLayout.filesALoaderReads(path) {
            for rel in read {
                var entry = stat()
                guard stat(path + "/" + rel, &entry) == 0 else { throw PathError("\(path)/\(rel) cannot be read") }
                guard entry.st_mode & S_IFMT == S_IFREG else {
                    let kind = RegularFile.kindName(mode: entry.st_mode) ?? "?"
                    throw PathError("\(path)/\(rel) is \(kind), not a regular file")
                }
            }
            if read.isEmpty { throw PathError("\(path) holds no config or weights a loader reads") }
            return read
        }
        guard let walker = FileManager.default.enumerator(atPath: path) else { throw PathError("cannot list \(path)") }
        var files: [String] = []
        while let rel = walker.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            if name.hasPrefix(".") || name.hasSuffix(".md") { continue }
            var entry = stat()
            // Dangling symbolic links are skipped, as they always were.
            guard stat(path + "/" + rel, &entry) == 0 else { continue }
            switch entry.st_mode & S_IFMT {
            case S_IFREG: files.append(rel)
            case S_IFDIR: continue
            default:
                let kind = RegularFile.kindName(mode: entry.st_mode) ?? "?"
                throw PathError(
                    "\(path)/\(rel) is \(kind), not a regular file (a model folder may hold only files and folders)")
            }
        }
        if files.isEmpty { throw PathError("\(path) is an empty folder") }
        return files.sorted()
    }

    static func fileDigest(_ path: String) throws -> String {
        let handle: FileHandle
        let size: Int
        do { (handle, size) = try RegularFile.open(path) } catch let e as FileReadError { throw PathError("\(e)") }
        defer { try? handle.close() }
        var h = Hashing.SHA256Stream()
        h.update(Array("\(size)\n".utf8))
        func read(at offset: Int, count: Int) throws {
            try handle.seek(toOffset: UInt64(offset))
            if let chunk = try handle.read(upToCount: count) { h.update(chunk) }
        }
        if size <= wholeFileLimit {
            try read(at: 0, count: size)
        } else {
            try read(at: 0, count: 1 << 20)
            for i in 1...16 { try read(at: size / 17 * i, count: 64 << 10) }
            try read(at: size - (1 << 20), count: 1 << 20)
        }
        return "\(size)\t" + h.finalize().hexString
    }
}
