import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Opening model files safely: only regular files (after following symlinks) are opened, so
/// a FIFO in place of a config or weights file cannot block the loader and a device cannot
/// stream without end. Errors are plain reasons ("is not a regular file (a FIFO)"); callers
/// wrap them with the path in their own error types.
enum ModelFile {
    struct Failure: Error {
        let reason: String
    }

    /// What a file of this `st_mode` is, for messages.
    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "of unknown type \(String(mode & S_IFMT, radix: 8))"
        }
    }

    /// Whether `path` names something (a symlink is followed; a dangling one names nothing).
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// Opens `path` read-only if it is a regular file. It is stat'ed first, then opened
    /// non-blocking and checked again on the descriptor, so a FIFO swapped in between cannot
    /// block the open either. The caller closes the descriptor.
    static func openRegular(_ path: String) throws -> (fd: Int32, size: Int) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure(reason: "cannot open: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw Failure(reason: "is not a regular file (\(kind(st.st_mode)))")
        }
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(reason: "cannot open: \(String(cString: strerror(errno)))") }
        guard fstat(fd, &st) == 0 else {
            let reason = "cannot stat: \(String(cString: strerror(errno)))"
            close(fd)
            throw Failure(reason: reason)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw Failure(reason: "is not a regular file (\(kind(st.st_mode)))")
        }
        // Regular files ignore O_NONBLOCK; clear it anyway so reads behave as plain reads.
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return (fd, Int(st.st_size))
    }

    /// The whole of the regular file `path`, refusing files larger than `limit` bytes.
    static func contents(_ path: String, limit: Int) throws -> [UInt8] {
        let (fd, size) = try openRegular(path)
        defer { close(fd) }
        guard size <= limit else { throw Failure(reason: "is \(size) bytes, more than the \(limit) allowed") }
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        while filled < size {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, size - filled) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw Failure(reason: "cannot read: \(String(cString: strerror(errno)))") }
            if n == 0 { break }  // shrank while being read
            filled += n
        }
        return Array(bytes.prefix(filled))
    }

    /// `contents(_:limit:)`, failures as a `ModelLoadError` "<errorPrefix>: <reason>".
    static func contents(_ path: String, limit: Int, errorPrefix: String) throws -> [UInt8] {
        do {
            return try contents(path, limit: limit)
        } catch let failure as Failure {
            throw ModelLoadError("\(errorPrefix): \(failure.reason)")
        }
    }
}
