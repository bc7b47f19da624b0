import Foundation

/// Why an input file cannot be read, in words for error messages ("no such file", "it is a
/// FIFO (named pipe), not a regular file", ...).
public struct FileReadError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public let path: String
    public let reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "cannot read \(path): \(reason)" }
    public var errorDescription: String? { description }
}

/// Reading inputs that must be regular files (specs, images, settings, model files).
///
/// `FileManager.contents(atPath:)` on a FIFO blocks until a writer appears, on /dev/zero it
/// never ends, and on a socket it fails as if permission were denied. Here the path is
/// `stat`ed first and anything but a regular file is refused by its kind without being
/// opened (opening some devices has side effects); the file is then opened non-blocking and
/// `fstat`ed again, so a file swapped for a FIFO in between is refused instead of hanging.
public enum RegularFile {
    /// What a non-regular file is, for messages; nil for a regular file.
    public static func kindName(mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    /// The kind of what is at `path` (symbolic links followed): nil for a regular file, else a
    /// reason such as "no such file" or "it is a FIFO (named pipe), not a regular file".
    public static func problem(atPath path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return describe(errno: errno) }
        return reason(mode: st.st_mode)
    }

    /// Opens a regular file for reading; throws `FileReadError` for anything else.
    /// Returns the handle (closed on deallocation) and the file's size.
    public static func open(_ path: String) throws -> (handle: FileHandle, size: Int) {
        if let why = problem(atPath: path) { throw FileReadError(path: path, reason: why) }
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FileReadError(path: path, reason: describe(errno: errno)) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let why = describe(errno: errno)
            Glibc.close(fd)
            throw FileReadError(path: path, reason: why)
        }
        if let why = reason(mode: st.st_mode) {
            Glibc.close(fd)
            throw FileReadError(path: path, reason: why)
        }
        return (FileHandle(fileDescriptor: fd, closeOnDealloc: true), Int(st.st_size))
    }

    /// The whole content of a regular file of at most `limit` bytes.
    public static func read(_ path: String, limit: Int) throws -> Data {
        let (handle, size) = try open(path)
        defer { try? handle.close() }
        if size > limit { throw FileReadError(path: path, reason: tooLarge(size, limit: limit)) }
        // Read one byte past the limit: a file that grows meanwhile is refused, not cut.
        let data: Data
        do { data = try handle.read(upToCount: limit + 1) ?? Data() } catch {
            throw FileReadError(path: path, reason: "\(error.localizedDescription)")
        }
        if data.count > limit { throw FileReadError(path: path, reason: tooLarge(data.count, limit: limit)) }
        return data
    }

    /// Files under `path` that are not regular files or folders (FIFOs, sockets, devices),
    /// as paths relative to `path` with their kind; `path` itself when it is
    /// neither a regular file nor a folder. Symbolic links are followed, not descended into.
    public static func irregularEntries(under path: String) -> [(path: String, kind: String)] {
        var st = stat()
        guard stat(path, &st) == 0 else { return [(path, describe(errno: errno))] }
        if st.st_mode & S_IFMT == S_IFREG { return [] }
        guard st.st_mode & S_IFMT == S_IFDIR else { return [(path, kindName(mode: st.st_mode) ?? "?")] }
        guard let walker = FileManager.default.enumerator(atPath: path) else { return [] }
        var out: [(path: String, kind: String)] = []
        while let rel = walker.nextObject() as? String {
            var entry = stat()
            // A dangling symbolic link is never read: not a hazard.
            guard stat(path + "/" + rel, &entry) == 0 else { continue }
            let type = entry.st_mode & S_IFMT
            if type != S_IFREG && type != S_IFDIR { out.append((rel, kindName(mode: entry.st_mode) ?? "?")) }
        }
        return out
    }

    static func reason(mode: mode_t) -> String? {
        guard let kind = kindName(mode: mode) else { return nil }
        return mode & S_IFMT == S_IFDIR ? "it is a folder" : "it is \(kind), not a regular file"
    }

    static func describe(errno code: Int32) -> String {
        switch code {
        case ENOENT: return "no such file"
        case ENOTDIR: return "no such file (a part of the path is not a folder)"
        case EACCES, EPERM: return "permission denied"
        case ELOOP: return "too many levels of symbolic links"
        default: return String(cString: strerror(code))
        }
    }

    static func tooLarge(_ size: Int, limit: Int) -> String {
        "it is larger than the limit of \(formatBytes(limit)) (\(size) bytes)"
    }

    static func formatBytes(_ n: Int) -> String {
        n >= 1 << 20 && n % (1 << 20) == 0 ? "\(n >> 20) MiB" : "\(n) bytes"
    }
}
