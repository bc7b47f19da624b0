import Foundation
import Imaging
import RedisQueue
import Support
import Vocabulary

/// Batch-level settings stored with the batch in Redis (the `spec` field of its meta hash):
/// what `watch`, `status` and `collect` need to know without the spec file.
public struct BatchInfo: Codable, Equatable, Sendable {
    public var name: String
    /// The spec file as submitted (absolute path on the submitting machine).
    public var specFile: String
    /// Absolute output folder on the submitting machine; nil if the spec named none.
    public var output: String?
    public var jobs: Int
    public var sheetColumns: Int
    public var submittedBy: String

    public init(name: String, specFile: String, output: String?, jobs: Int, sheetColumns: Int, submittedBy: String) {
        self.name = name
        self.specFile = specFile
        self.output = output
        self.jobs = jobs
        self.sheetColumns = sheetColumns
        self.submittedBy = submittedBy
    }

    enum CodingKeys: String, CodingKey {
        case name, output, jobs
        case specFile = "spec_file"
        case sheetColumns = "sheet_columns"
        case submittedBy = "submitted_by"
    }
}

/// A validated, expanded job spec: the batch id, the jobs, and the input blobs to upload.
public struct LoadedSpec: Sendable {
    public var file: String
    public var name: String
    public var batchID: String
    public var output: URL?
    public var maxAttempts: Int
    public var leaseMs: Int
    public var jobs: [PipelineJob]
    /// Source images by SHA-256 (their blob names).
    public var blobs: [String: Data]
    public var info: BatchInfo
    /// Estimated compute time of all jobs on one 2-core worker (`JobCostEstimate`).
    public var computeSeconds: Double = 0
    /// The largest job's estimated peak memory on one worker (`ImageSizeRules.estimatedPeakBytes`).
    public var peakBytesPerWorker: Double = 0
}

/// The job spec format (manifests/SPEC.md): parsing, validation with field paths, path
/// confinement, model fingerprints and the expansion into content-addressed jobs.
public enum JobSpec {
    public static let topKeys = [
        "name", "model", "tiny_decoder", "classifier", "evaluation", "output", "images_root", "engine", "queue",
        "generation",
        "editing",
    ]
    public static let maxJobs = 100_000
    /// Source images larger than this are refused unread (an uncompressed 4096² RGBA PNG is 64 MiB).
    public static let maxImageBytes = 128 << 20

    /// Loads, validates and expands the spec at `path`. `outputOverride` (a command-line
    /// path, relative to the current folder) replaces the spec's `output`.
    public static func load(
        path: String, outputOverride: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> LoadedSpec {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        let fileURL = PathConfinement.absolute(path, base: cwd)
        // A regular file only (a FIFO would block, /dev/zero never end), of bounded size.
        let data: Data
        do { data = try RegularFile.read(fileURL.path, limit: SpecLimits.maxFileBytes) } catch let e as FileReadError {
            throw SpecError(file: path, issues: [SpecIssue(path: "", message: "cannot read the spec: \(e.reason)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SpecError(file: path, issues: [SpecIssue(path: "", message: "the spec is not UTF-8 text")])
        }
        let root: SpecNode
        do { root = try SpecNode.parse(text, json: fileURL.pathExtension.lowercased() == "json") } catch let issue
            as SpecIssue
        {
            throw SpecError(file: path, issues: [issue])
        }
        return try load(
            root: root, file: path, fileURL: fileURL,
            outputOverride: outputOverride.map {
                PathConfinement.absolute($0, base: cwd)
            }, environment: environment)
    }

    static func load(
        root: SpecNode, file: String, fileURL: URL, outputOverride: URL?,
        environment: [String: String]
    ) throws -> LoadedSpec {
        try SpecLoader(file: file, fileURL: fileURL, environment: environment).load(
            root, outputOverride: outputOverride)
    }

    static func isDirectory(_ path: String) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
    }
}

extension BatchQueue {
    /// The batch-level settings stored with the batch (nil if there is no such batch).
    public func batchInfo() throws -> BatchInfo? {
        guard let meta = try metadata() else { return nil }
        return try? JSONDecoder().decode(BatchInfo.self, from: meta.spec)
    }
}
