import Foundation
import Jobs
import RedisQueue
import Support

/// Opens an existing batch or explains what exists instead.
public func openBatch(_ client: RedisClient, _ id: String) throws -> BatchQueue {
    guard (try? BatchKeys(batchID: id)) != nil else {
        throw InputError("'\(id)' is not a batch id (1-128 characters of A-Z a-z 0-9 . _ : -)")
    }
    let q = try BatchQueue(client: client, batchID: id)
    guard try q.counters() != nil else {
        let known = (try? BatchQueue.list(client: client)) ?? []
        let hint =
            known.isEmpty
            ? "no batches exist on \(client.endpoint)" : "known batches: \(known.suffix(10).joined(separator: ", "))"
        throw InputError("batch '\(id)' does not exist (\(hint))")
    }
    return q
}

/// Creates the batch, uploads the source images (or writes them to the shared folder),
/// then submits the jobs (never a job before its image). Returns (new, already present) counts.
@discardableResult
public func submitSpec(_ spec: LoadedSpec, client: RedisClient, skipping collected: Set<String> = []) throws -> (
    added: Int, existing: Int, skipped: Int
) {
    let q = try BatchQueue(client: client, batchID: spec.batchID)
    try q.create(spec: try CanonicalJSON.encode(spec.info), maxAttempts: spec.maxAttempts, leaseMs: spec.leaseMs)
    var needed: [String: String?] = [:]  // sha → shared folder (nil: a Redis blob)
    for job in spec.jobs where !collected.contains(job.id) {
        if let sha = job.content.imageSHA256 { needed[sha] = job.sharedSources }
    }
    for (sha, shared) in needed.sorted(by: { $0.key < $1.key }) {
        if let shared {
            try SharedSources.write(spec.blobs[sha]!, sha256: sha, root: URL(fileURLWithPath: shared))
        } else {
            try q.putBlob(name: sha, data: spec.blobs[sha]!)
        }
    }
    var added = 0
    var existing = 0
    var skipped = 0
    for job in spec.jobs {
        if collected.contains(job.id) {
            skipped += 1
            continue
        }
        if try q.submit(jobID: job.id, payload: try job.encoded()) { added += 1 } else { existing += 1 }
    }
    return (added, existing, skipped)
}

public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) }
    return String(format: "%d:%02d", s / 60, s % 60)
}
