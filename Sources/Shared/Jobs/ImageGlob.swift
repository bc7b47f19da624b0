import Foundation
import Support

/// `editing.images_glob`: the files under a root that a pattern names, in a deterministic
/// order. Components are matched one by one with fnmatch (`*`, `?`, `[...]`; a leading dot is
/// matched only by a pattern component starting with a dot, as in a shell); `**` as a whole
/// component matches any number of folders. The walk never descends into a symbolic link to a
/// folder (no loops, no escapes); a matched symbolic link to a file must resolve inside the
/// root (`PathConfinement`). Results are sorted by the UTF-8 bytes of their relative paths.
enum ImageGlob {
    /// Folder entries visited before the walk gives up: a glob over a huge tree is refused,
    /// not waited on.
    static let maxVisited = 1_000_000
    static let maxDepth = 32

    struct Match: Equatable {
        var path: String
        var url: URL
    }

    static func matches(_ pattern: String, under root: URL, limit: Int) throws -> [Match] {
        try PathConfinement.checkRelative(pattern)
        let parts = pattern.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
            .filter { $0 != "." }
        guard !parts.isEmpty else { throw PathError("'\(pattern)' names no files") }
        if parts.last == "**" { throw PathError("'\(pattern)' ends in '**': name the files, e.g. '**/*.png'") }
        var walk = Walk(root: root, limit: limit)
        try walk.visit(folder: "", parts: parts[...], depth: 0)
        var found = Array(walk.found.values)
        found.sort { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
        return found
    }

    private struct Walk {
        let root: URL
        let limit: Int
        var visited = 0
        var found: [String: Match] = [:]

        mutating func visit(folder: String, parts: ArraySlice<String>, depth: Int) throws {
            guard let part = parts.first else { return }
            if depth > ImageGlob.maxDepth {
                throw PathError("folders nest more than \(ImageGlob.maxDepth) deep under '\(folder)'")
            }
            let rest = parts.dropFirst()
            if part == "**" {
                // Zero folders, then each subfolder with the `**` still in front.
                try visit(folder: folder, parts: rest, depth: depth)
                for name in try entries(folder) where !name.hasPrefix(".") && isFolder(join(folder, name)) {
                    try visit(folder: join(folder, name), parts: parts, depth: depth + 1)
                }
                return
            }
            let literal = !part.contains(where: { "*?[\\".contains($0) })
            let names = literal ? [part] : try entries(folder).filter { matches(part, $0) }
            for name in names {
                let path = join(folder, name)
                if rest.isEmpty {
                    if isFile(path) { try add(path) }
                } else if isFolder(path) {
                    try visit(folder: path, parts: rest, depth: depth + 1)
                }
            }
        }

        mutating func add(_ path: String) throws {
            guard found[path] == nil else { return }
            let url = try PathConfinement.resolve(path, under: root)
            found[path] = Match(path: path, url: url)
            if found.count > limit { throw PathError("matches more than \(limit) files") }
        }

        mutating func entries(_ folder: String) throws -> [String] {
            let url = folder.isEmpty ? root : root.appendingPathComponent(folder)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: url.path) else { return [] }
            visited += names.count
            if visited > ImageGlob.maxVisited {
                throw PathError("the walk visited more than \(ImageGlob.maxVisited) entries; narrow the pattern")
            }
            return names
        }

        func join(_ folder: String, _ name: String) -> String { folder.isEmpty ? name : folder + "/" + name }

        /// lstat: a symbolic link to a folder is not walked into.
        func isFolder(_ path: String) -> Bool {
            var st = stat()
            return lstat(root.appendingPathComponent(path).path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
        }

        /// A regular file, or a symbolic link to one (confined when added).
        func isFile(_ path: String) -> Bool {
            var st = stat()
            return stat(root.appendingPathComponent(path).path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
        }

        func matches(_ pattern: String, _ name: String) -> Bool {
            fnmatch(pattern, name, FNM_PERIOD) == 0
        }
    }
}
