import Foundation
import Jobs
import Vocabulary

/// What `submit --dry-run` prints: the batch a spec expands to and the Redis memory it needs,
/// computed without a server from the bytes `submitSpec` would send.
public struct SubmitEstimate: Equatable, Sendable {
    /// Per job beyond its payload, a stated allowance rather than a measurement: the job hash's
    /// key and small fields (state, attempts, epoch, entry), its entry in the jobs stream, and
    /// Redis's per-key and encoding overhead. Results (PNGs) are not counted: they are
    /// deleted from Redis once collected.
    public static let perJobOverheadBytes = 512

    public var batchID: String
    public var jobs: Int
    public var byKind: [String: Int]
    public var byMethod: [String: Int]
    public var blobs: Int
    public var blobBytes: Int
    /// Sources written to `editing.shared_sources` instead of Redis.
    public var sharedFiles = 0
    public var sharedBytes = 0
    public var sharedFolder: String?
    /// The jobs' payloads, each the PipelineJob's canonical JSON as the queue stores it.
    public var payloadBytes: Int
    /// `JobCostEstimate` summed over the jobs: one 2-core worker's time.
    public var computeSeconds: Double

    public var overheadBytes: Int { jobs * Self.perJobOverheadBytes }
    public var redisBytes: Int { payloadBytes + blobBytes + overheadBytes }

    public init(_ spec: LoadedSpec) throws {
        batchID = spec.batchID
        computeSeconds = spec.computeSeconds
        jobs = spec.jobs.count
        byKind = [:]
        byMethod = [:]
        payloadBytes = 0
        var shas = Set<String>()
        var shared = Set<String>()
        for job in spec.jobs {
            byKind[job.content.kind.rawValue, default: 0] += 1
            byMethod[job.content.synthesis.method.rawValue, default: 0] += 1
            payloadBytes += try job.encoded().count
            guard let sha = job.content.imageSHA256 else { continue }
            if let folder = job.sharedSources {
                shared.insert(sha)
                sharedFolder = folder
            } else {
                shas.insert(sha)
            }
        }
        blobs = shas.count
        blobBytes = shas.reduce(0) { $0 + (spec.blobs[$1]?.count ?? 0) }
        sharedFiles = shared.count
        sharedBytes = shared.reduce(0) { $0 + (spec.blobs[$1]?.count ?? 0) }
    }

    /// One "name: value" line per figure, for people and for tests that read them.
    public var report: String {
        func list(_ counts: [String: Int]) -> String {
            counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        }
        let mib = String(format: "%.2f", Double(redisBytes) / 1_048_576)
        let shared =
            sharedFolder.map {
                "shared source images: \(sharedFiles) files, \(sharedBytes) bytes, written to \($0) (not in Redis)\n"
            } ?? ""
        return """
            batch: \(batchID)
            jobs: \(jobs)
            by kind: \(list(byKind))
            by method: \(list(byMethod))
            source images: \(blobs) blobs, \(blobBytes) bytes
            \(shared)job payloads: \(payloadBytes) bytes
            per-job overhead: \(Self.perJobOverheadBytes) bytes × \(jobs) = \(overheadBytes) bytes
            redis estimate: \(redisBytes) bytes (\(mib) MiB) = payloads + source images + overhead
            compute estimate: \(JobCostEstimate.format(seconds: computeSeconds)) on one 2-core worker \
            (N workers: about 1/N of it; a rough model from the models' sizes, see JobCostEstimate)
            """
    }
}
