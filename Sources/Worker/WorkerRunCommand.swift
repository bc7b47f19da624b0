import ArgumentParser
import Foundation
import RedisQueue
import Support
import WorkerCore
import WorkerEngine

/// `muse-worker [run]`: the stateless worker loop (the default subcommand).
struct WorkerRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Work on queued MUSE jobs from Redis until stopped (the default command).",
        discussion: """
            Takes jobs from every unfinished batch (or only --batch ones), runs the engine, renews its \
            lease while working, checkpoints every checkpoint_every steps, resumes jobs from the newest \
            valid checkpoint, and publishes PNG + metrics. SIGTERM/SIGINT: checkpoint the current job, \
            hand it back to the queue, exit 0.

            Redis credentials come only from the environment: REDIS_URL (may hold a password), \
            REDIS_PASSWORD or REDIS_PASSWORD_FILE, REDIS_USERNAME.
            """)

    @Option(
        help: ArgumentHelp(
            "Redis URL: redis://host[:port][/db] or unix:///path/to.sock (no passwords here).",
            valueName: "url"))
    var redis: String?

    @Option(help: "Worker name for logs, leases and status (default: <host>-<pid>).")
    var name: String?

    @Option(
        name: .customLong("batch"),
        help: ArgumentHelp(
            "Only work on this batch (repeatable). Default: every unfinished batch.",
            valueName: "id"))
    var batches: [String] = []

    @Flag(help: "Exit once no batch has work left instead of waiting for new batches.")
    var exitWhenIdle = false

    @Option(help: "Seconds between heartbeats, \(Self.heartbeatRange.lowerBound)...\(Self.heartbeatRange.upperBound).")
    var heartbeat: Double = 5

    static let heartbeatRange = 0.1...3600.0

    @Option(
        help: ArgumentHelp(
            "Engine: muse, or fake (a no-op stand-in for queue benchmarks and tests).", visibility: .hidden))
    var engine = "muse"

    @Option(help: ArgumentHelp("Fake engine: milliseconds per step.", visibility: .hidden))
    var fakeStepMs = 0

    @Option(help: ArgumentHelp("Fake engine: trap when a job reaches this step.", visibility: .hidden))
    var fakeTrapAtStep: Int?

    @Option(
        help: ArgumentHelp(
            "Stop (checkpoint and release) when this process is no longer our parent.", visibility: .hidden))
    var parentPid: Int32?

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

    @Flag(
        help: """
            Run the worker as a child process and restart it when it dies, recording the cause (a \
            runtime trap's message, a signal) on the jobs it held, so their dead letters say why.
            """)
    var supervise = false

    func validate() throws {
        guard ["muse", "fake"].contains(engine) else { throw ValidationError("--engine must be muse or fake") }
        // The timer takes nanoseconds as Int64: 1e20 s or inf would trap, 1e-9 s would spin.
        guard Self.heartbeatRange.contains(heartbeat) else {
            throw ValidationError(
                "--heartbeat must be in \(Self.heartbeatRange.lowerBound)...\(Self.heartbeatRange.upperBound) seconds, got \(heartbeat)"
            )
        }
        guard (0...3_600_000).contains(fakeStepMs) else {
            throw ValidationError("--fake-step-ms must be in 0...3600000")
        }
        if let p = metricsPort, !(0...65_535).contains(p) {
            throw ValidationError("--metrics-port must be in 0...65535, got \(p)")
        }
        for b in batches where (try? BatchKeys(batchID: b)) == nil {
            throw ValidationError("--batch '\(b)' is not a batch id (1-128 characters of A-Z a-z 0-9 . _ : -)")
        }
    }

    /// The same command for the supervised child (the supervisor adds --name and --parent-pid).
    var childArguments: [String] {
        var args = ["run", "--heartbeat", String(heartbeat), "--engine", engine, "--fake-step-ms", String(fakeStepMs)]
        if let redis { args += ["--redis", redis] }
        for b in batches { args += ["--batch", b] }
        if exitWhenIdle { args.append("--exit-when-idle") }
        if let fakeTrapAtStep { args += ["--fake-trap-at-step", String(fakeTrapAtStep)] }
        // The child serves the metrics: its counters are the ones that move.
        if let metricsPort { args += ["--metrics-port", String(metricsPort), "--metrics-address", metricsAddress] }
        return args
    }

    func run() throws {
        let workerName =
            name
            ?? "\(ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker")-\(getpid())"
        let log = Log.logger(supervise ? "muse-worker-supervisor" : "muse-worker", name: workerName)
        let endpoint: RedisEndpoint
        let client: RedisClient
        let side: RedisClient
        do {
            endpoint = try RedisEndpoint.resolve(url: redis)
            let options = RedisClient.Options(connectTimeout: 5, commandTimeout: 30)
            client = try RedisClient(endpoint: endpoint, options: options)
            side = try RedisClient(endpoint: endpoint, options: options)
        } catch {
            log("error: \(error)")
            throw ExitCode(1)
        }
        for warning in ServerSettingsCheck.warnings(client) { log.warning("\(warning)") }
        if supervise {
            let supervisor = WorkerSupervisor(
                executable: ExecutableLocation.directory.appendingPathComponent("muse-worker").path,
                childArguments: childArguments, name: workerName, client: client, batches: batches, log: log)
            let stop = StopSignal()
            stop.install()
            log("supervising worker \(workerName)")
            let code = supervisor.run(stop: stop)
            if code != 0 { throw ExitCode(code) }
            return
        }
        let engineImpl: PipelineEngine =
            engine == "fake"
            ? FakePipelineEngine(stepDelay: Double(fakeStepMs) / 1000, trapAtStep: fakeTrapAtStep)
            : MUSEPipelineEngine()
        var metrics: WorkerMetrics?
        var server: MetricsServer?
        if let metricsPort {
            let m = WorkerMetrics()
            do {
                server = try MetricsServer(address: metricsAddress, port: UInt16(metricsPort)) { m.text() }
            } catch {
                log("error: \(error)")
                throw ExitCode(1)
            }
            metrics = m
            log("metrics on http://\(metricsAddress):\(server?.port ?? 0)/metrics")
        }
        let loop = WorkerLoop(
            name: workerName, client: client, side: side, engine: engineImpl, batches: batches,
            exitWhenIdle: exitWhenIdle, heartbeatInterval: heartbeat, parentPID: parentPid, log: log, metrics: metrics)
        log(
            "started: engine \(engineImpl.name), Redis \(endpoint)\(batches.isEmpty ? "" : ", batches \(batches.joined(separator: ", "))")"
        )
        let code = withExtendedLifetime(server) { loop.run() }
        if code != 0 { throw ExitCode(code) }
    }
}
