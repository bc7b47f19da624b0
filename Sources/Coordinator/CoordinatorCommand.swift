import ArgumentParser
import Foundation
import Shared

@main
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "muse-coordinator",
        abstract: "Shard MUSE emotion-synthesis jobs into Redis, follow them, and collect the results.",
        discussion: """
            Quick start (private Redis + local workers): muse-coordinator run manifests/demo.yaml --local-workers 2
            Many machines: muse-coordinator submit SPEC; start muse-worker on each machine; then watch and collect.

            Redis: --redis URL (redis://host[:port][/db] or unix:///path.sock), else $REDIS_URL, else \
            redis://127.0.0.1:6379. Passwords only from REDIS_PASSWORD, REDIS_PASSWORD_FILE or inside \
            $REDIS_URL — never on the command line.

            Exit codes: 0 success; 1 runtime error (Redis, files); 2 invalid spec or input; \
            3 the batch finished with failed jobs; 130/143 interrupted (run resumes when started again).
            """,
        subcommands: [RunCommand.self, SubmitCommand.self, WatchCommand.self, StatusCommand.self, CollectCommand.self,
                      BenchQueueCommand.self])
}

enum ExitCodes {
    static let runtime: Int32 = 1
    static let invalidInput: Int32 = 2
    static let failedJobs: Int32 = 3
}

let coordinatorLog = StderrLog(program: "muse-coordinator")

/// Prints `message` on stderr without a timestamp (user-facing errors and summaries).
func say(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Maps errors to messages and exit codes: spec problems → 2, everything else → 1.
func guarded(_ body: () throws -> Int32) throws {
    let code: Int32
    do {
        code = try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as SpecError {
        say("muse-coordinator: \(e)")
        throw ExitCode(ExitCodes.invalidInput)
    } catch let e as RedisError where e.isInvalidURL {
        say("muse-coordinator: error: \(e)")
        throw ExitCode(ExitCodes.invalidInput)
    } catch let e as InputError {
        say("muse-coordinator: error: \(e)")
        throw ExitCode(ExitCodes.invalidInput)
    } catch {
        say("muse-coordinator: error: \(error)")
        throw ExitCode(ExitCodes.runtime)
    }
    if code != 0 { throw ExitCode(code) }
}

/// A problem with what the user asked for (exit code 2).
struct InputError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

struct RedisOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Redis URL: redis://host[:port][/db] or unix:///path/to.sock (no passwords here; see REDIS_PASSWORD).",
                               valueName: "url"))
    var redis: String?

    func connect() throws -> RedisClient {
        let endpoint = try RedisEndpoint.resolve(url: redis)
        return try RedisClient(endpoint: endpoint, options: .init(connectTimeout: 5, commandTimeout: 30))
    }
}

/// Opens an existing batch or explains what exists instead.
func openBatch(_ client: RedisClient, _ id: String) throws -> BatchQueue {
    guard (try? BatchKeys(batchID: id)) != nil else {
        throw InputError("'\(id)' is not a batch id (1-128 characters of A-Z a-z 0-9 . _ : -)")
    }
    let q = try BatchQueue(client: client, batchID: id)
    guard try q.counters() != nil else {
        let known = (try? BatchQueue.list(client: client)) ?? []
        let hint = known.isEmpty ? "no batches exist on \(client.endpoint)" : "known batches: \(known.suffix(10).joined(separator: ", "))"
        throw InputError("batch '\(id)' does not exist (\(hint))")
    }
    return q
}

/// Creates the batch, uploads the source images, then submits the jobs (never a job
/// before its image). Returns (new, already present) counts.
@discardableResult
func submitSpec(_ spec: LoadedSpec, client: RedisClient, skipping collected: Set<String> = []) throws -> (added: Int, existing: Int, skipped: Int) {
    let q = try BatchQueue(client: client, batchID: spec.batchID)
    try q.create(spec: try CanonicalJSON.encode(spec.info), maxAttempts: spec.maxAttempts, leaseMs: spec.leaseMs)
    var needed = Set<String>()
    for job in spec.jobs where !collected.contains(job.id) { if let sha = job.content.imageSHA256 { needed.insert(sha) } }
    for sha in needed.sorted() { try q.putBlob(name: sha, data: spec.blobs[sha]!) }
    var added = 0, existing = 0, skipped = 0
    for job in spec.jobs {
        if collected.contains(job.id) { skipped += 1; continue }
        if try q.submit(jobID: job.id, payload: try job.encoded()) { added += 1 } else { existing += 1 }
    }
    return (added, existing, skipped)
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) }
    return String(format: "%d:%02d", s / 60, s % 60)
}

extension RedisError {
    var isInvalidURL: Bool {
        if case .invalidURL = self { return true }
        return false
    }
}
