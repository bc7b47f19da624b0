import ArgumentParser
import Checkpoints
import CommandLineBootstrap
import CoordinatorCore
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

@main
struct CoordinatorCommand: LoggedCommand {
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

            Logs: --log-format text|json (or MUSE_LOG_FORMAT) anywhere on the command line: JSON gives \
            one object per line (time, level, program, message); MUSE_LOG_LEVEL sets the level.
            """,
        version: MUSEVersion.current,
        subcommands: [
            RunBatchCommand.self, SubmitCommand.self, WatchCommand.self, StatusCommand.self, CollectCommand.self,
            ReportCommand.self, PauseCommand.self, ResumeCommand.self, CancelCommand.self, RequeueCommand.self,
            DeleteCommand.self, BenchQueueCommand.self, BenchHashCommand.self,
        ])

}

struct RedisOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Redis URL: redis://host[:port][/db] or unix:///path/to.sock (no passwords here; see REDIS_PASSWORD).",
            valueName: "url"))
    var redis: String?

    func connect() throws -> RedisClient {
        let endpoint = try RedisEndpoint.resolve(url: redis)
        let client = try RedisClient(endpoint: endpoint, options: .init(connectTimeout: 5, commandTimeout: 30))
        for warning in ServerSettingsCheck.warnings(client) { say("muse-coordinator: warning: \(warning)") }
        return client
    }
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

extension RedisError {
    var isInvalidURL: Bool {
        if case .invalidURL = self { return true }
        return false
    }
}

/// `--metrics-port` / `--metrics-address` of `collect` and `run`.
struct MetricsOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://ADDRESS:PORT/metrics (0: a free port, logged; default: off).",
            valueName: "port"))
    var metricsPort: Int?

    @Option(
        help:
            "Address the metrics endpoint binds: IPv4 or IPv6 (0.0.0.0 or :: for scraping from other hosts; :: takes both)."
    )
    var metricsAddress = "127.0.0.1"

    func validate() throws {
        if let p = metricsPort, !(0...65_535).contains(p) {
            throw ValidationError("--metrics-port must be in 0...65535, got \(p)")
        }
    }

    /// The metrics and their server, when asked for; the server lives as long as the result.
    func start() throws -> (metrics: CoordinatorMetrics, server: MetricsServer)? {
        guard let metricsPort else { return nil }
        let metrics = CoordinatorMetrics()
        let server: MetricsServer
        do {
            server = try MetricsServer(address: metricsAddress, port: UInt16(metricsPort)) { metrics.text() }
        } catch {
            throw InputError("\(error)")
        }
        coordinatorLog("metrics on http://\(metricsAddress):\(server.port)/metrics")
        return (metrics, server)
    }
}

/// `--webdataset` of `collect` and `run`.
struct DatasetOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "When collecting ends, also write WebDataset tar shards of N samples each (PNG + JSON per job) "
                + "under OUTPUT/webdataset/; unchanged shards are kept.",
            valueName: "N"))
    var webdataset: Int?

    func validate() throws {
        if let n = webdataset, !WebDatasetShards.samplesPerShardRange.contains(n) {
            throw ValidationError(
                "--webdataset must be in \(WebDatasetShards.samplesPerShardRange.lowerBound)...\(WebDatasetShards.samplesPerShardRange.upperBound) samples per shard, got \(n)"
            )
        }
    }
}
