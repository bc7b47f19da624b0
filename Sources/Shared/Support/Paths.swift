import Foundation

public struct PathError: Error, Equatable, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Keeps relative paths inside their root: spec inputs inside the images root, results
/// inside the output folder. Absolute paths, `..` components and symbolic links that lead
/// out of the root are refused.
public enum PathConfinement {
    /// Checks the text of a relative path (no file system access).
    public static func checkRelative(_ relative: String) throws {
        if relative.isEmpty { throw PathError("path is empty") }
        if relative.hasPrefix("/") || relative.hasPrefix("~") {
            throw PathError("'\(relative)' must be relative (absolute and ~ paths are not allowed here)")
        }
        if relative.contains("\0") { throw PathError("path contains a NUL byte") }
        for component in relative.split(separator: "/", omittingEmptySubsequences: true) where component == ".." {
            throw PathError("'\(relative)' leaves its root folder ('..' is not allowed)")
        }
    }

    /// `root/relative`, after checking the text and — where the path exists — that symbolic
    /// links do not lead outside `root`.
    public static func resolve(_ relative: String, under root: URL) throws -> URL {
        try checkRelative(relative)
        let url = root.appendingPathComponent(relative).standardizedFileURL
        let realRoot = realPath(root.path) ?? root.standardizedFileURL.path
        // Check the deepest existing ancestor: it decides where the path really lands.
        var probe = url
        while !FileManager.default.fileExists(atPath: probe.path) && probe.path != "/"
            && probe.path.count > root.path.count
        {
            probe = probe.deletingLastPathComponent()
        }
        if let real = realPath(probe.path), !isInside(real, realRoot) {
            throw PathError("'\(relative)' resolves to \(real), outside \(realRoot) (through a symbolic link)")
        }
        return url
    }

    public static func isInside(_ path: String, _ root: String) -> Bool {
        let r = root.hasSuffix("/") ? String(root.dropLast()) : root
        return path == r || path.hasPrefix(r + "/")
    }

    public static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// An absolute, standardized path: `path` itself if absolute, else relative to `base`.
    public static func absolute(_ path: String, base: URL) -> URL {
        if path.hasPrefix("/") { return URL(fileURLWithPath: path).standardizedFileURL }
        if path.hasPrefix("~/") {
            return URL(fileURLWithPath: NSString(string: path).expandingTildeInPath).standardizedFileURL
        }
        return base.appendingPathComponent(path).standardizedFileURL
    }
}

/// Readable fragments for file names: lowercase ASCII letters, digits and single dashes.
public enum Slug {
    public static func make(_ text: String, maxLength: Int = 40, fallback: String = "untitled") -> String {
        var out = ""
        var dash = false
        for scalar in text.lowercased().unicodeScalars {
            if (scalar >= "a" && scalar <= "z") || (scalar >= "0" && scalar <= "9") {
                out.unicodeScalars.append(scalar)
                dash = false
            } else if !dash && !out.isEmpty {
                out.append("-")
                dash = true
            }
            if out.count >= maxLength { break }
        }
        while out.hasSuffix("-") { out.removeLast() }
        return out.isEmpty ? fallback : out
    }
}

/// Where this executable lives (/proc/self/exe on Linux), symbolic links resolved.
public enum ExecutableLocation {
    public static var directory: URL {
        if let real = PathConfinement.realPath("/proc/self/exe") {
            return URL(fileURLWithPath: real).deletingLastPathComponent()
        }
        let arg0 = CommandLine.arguments.first ?? "."
        return URL(fileURLWithPath: arg0).resolvingSymlinksInPath().deletingLastPathComponent()
    }
}
