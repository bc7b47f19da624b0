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
