import Foundation
import Imaging
import RedisQueue
import Support
import Vocabulary

/// How job specs name models: an absolute path, a path relative to the spec's folder, or
/// `bundled:NAME` — an entry of the repository's `models/` folder, which every machine with
/// a checkout finds on its own (via `MUSE_MODELS_DIR`, else upward from the current folder
/// and from the executable). Workers resolve `bundled:` themselves, so one spec serves many
/// machines; a model fingerprint in each job makes sure they all load the same model.
public enum ModelLocation {
    public static let bundledPrefix = "bundled:"

    public static func isBundled(_ location: String) -> Bool { location.hasPrefix(bundledPrefix) }

    /// The filesystem path of `location` on this machine.
    public static func resolve(
        _ location: String, specFolder: URL? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> String {
        if isBundled(location) {
            let name = String(location.dropFirst(bundledPrefix.count))
            try PathConfinement.checkRelative(name)
            var searched: [String] = []
            for dir in bundledFolders(specFolder: specFolder, environment: environment) {
                let candidate = dir.appendingPathComponent(name).path
                if FileManager.default.fileExists(atPath: candidate) { return candidate }
                searched.append(dir.path)
            }
            let list = searched.isEmpty ? "no models/ folder found" : "looked in " + searched.joined(separator: ", ")
            throw PathError(
                "'\(location)' not found (\(list); set MUSE_MODELS_DIR to the folder holding the bundled models)")
        }
        if location.hasPrefix("/") || location.hasPrefix("~/") {
            return PathConfinement.absolute(location, base: URL(fileURLWithPath: "/")).path
        }
        guard let specFolder else {
            throw PathError("'\(location)' is relative but there is no spec folder to resolve it against")
        }
        try PathConfinement.checkRelative(location)
        return try PathConfinement.resolve(location, under: specFolder).path
    }

    /// Candidate `models/` folders, most specific first.
    public static func bundledFolders(specFolder: URL?, environment: [String: String]) -> [URL] {
        var out: [URL] = []
        if let env = environment["MUSE_MODELS_DIR"], !env.isEmpty { out.append(URL(fileURLWithPath: env)) }
        var starts: [URL] = []
        if let specFolder { starts.append(specFolder) }
        starts.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        starts.append(ExecutableLocation.directory)
        for start in starts {
            var dir = start.standardizedFileURL
            while true {
                let models = dir.appendingPathComponent("models")
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: models.path, isDirectory: &isDir), isDir.boolValue,
                    !out.contains(models)
                {
                    out.append(models)
                    break
                }
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        return out
    }
}

/// A model's identity: a hash over its files' names, sizes and contents. Files up to
/// 64 MiB are hashed whole; larger ones (real SD weights) by their size, first and last
/// MiB and 16 evenly spaced 64 KiB samples, so fingerprinting a 4 GB model stays fast.
/// Hidden files and *.md are ignored.
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
    /// file). Anything that is not a regular file or a folder (a FIFO, socket or device,
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
