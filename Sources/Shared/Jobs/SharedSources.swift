import Foundation
import Support

/// Source images on a folder every host mounts (`editing.shared_sources`), instead of blobs
/// in Redis: `<root>/<sha256>.png`, written once by `submit`, read and checked by workers.
/// For image sets whose blobs would not fit in Redis' memory (manifests/SPEC.md).
public enum SharedSources {
    /// Overrides the spec's folder on a worker that mounts it elsewhere.
    public static let environmentKey = "MUSE_SHARED_SOURCES"

    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    public static func fileName(sha256: String) -> String { sha256 + ".png" }

    /// The folder this process reads: `MUSE_SHARED_SOURCES` when set, else the job's.
    public static func root(job: String, environment: [String: String] = ProcessInfo.processInfo.environment)
        -> String
    {
        if let override = environment[environmentKey], !override.isEmpty { return override }
        return job
    }

    /// Writes the source unless a file with those bytes is there already (content-addressed:
    /// resubmitting writes nothing). Temporary file + rename, so readers never see half a PNG.
    /// Returns true when it wrote.
    @discardableResult
    public static func write(_ bytes: Data, sha256: String, root: URL) throws -> Bool {
        let url = root.appendingPathComponent(fileName(sha256: sha256))
        if let existing = try? RegularFile.read(url.path, limit: JobSpec.maxImageBytes),
            Hashing.sha256Hex(existing) == sha256
        {
            return false
        }
        do {
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try bytes.write(to: url, options: .atomic)
        } catch {
            throw Problem(
                description:
                    "cannot write the source image to the shared folder \(url.path): \(error.localizedDescription)")
        }
        return true
    }

    /// The source's bytes, checked against its SHA-256.
    public static func read(sha256: String, root: String) throws -> Data {
        let path = URL(fileURLWithPath: root).appendingPathComponent(fileName(sha256: sha256)).path
        let bytes: Data
        do { bytes = try RegularFile.read(path, limit: JobSpec.maxImageBytes) } catch {
            throw Problem(description: "cannot read the shared source image \(path): \(error)")
        }
        guard Hashing.sha256Hex(bytes) == sha256 else {
            throw Problem(description: "the shared source image \(path) does not hold the submitted bytes")
        }
        return bytes
    }
}
