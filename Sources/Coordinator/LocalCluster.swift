import Foundation
import Shared

/// A private redis-server for a local run: unix socket only (no TCP port, mode 700), AOF
/// on (fsync every second), noeviction, data in `dataDir` so an interrupted run resumes.
final class LocalRedis {
    let dataDir: URL
    let socketDir: URL
    let process: ChildProcess
    var socketPath: String { socketDir.appendingPathComponent("redis.sock").path }
    var endpoint: RedisEndpoint { .unix(socketPath) }

    private init(dataDir: URL, socketDir: URL, process: ChildProcess) {
        self.dataDir = dataDir
        self.socketDir = socketDir
        self.process = process
    }

    static func findRedisServer() throws -> String {
        if let env = ProcessInfo.processInfo.environment["MUSE_REDIS_SERVER"], !env.isEmpty { return env }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
            let candidate = "\(dir)/redis-server"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw InputError("redis-server is not installed (run ops/setup, or apt-get install redis-server)")
    }

    static func start(dataDir: URL, log: (String) -> Void) throws -> LocalRedis {
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        stopStale(dataDir: dataDir, log: log)
        // Socket paths are limited to 107 bytes: keep it in a short temporary folder.
        var template = Array("/tmp/muse-run-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw InputError("cannot create a temporary folder in /tmp") }
        let socketDir = URL(fileURLWithPath: String(cString: made))
        // Remembered so a later run can tidy up after one that was killed outright.
        try? socketDir.path.write(to: dataDir.appendingPathComponent("socket-dir"), atomically: true, encoding: .utf8)
        let server = try findRedisServer()
        let sock = socketDir.appendingPathComponent("redis.sock").path
        let args = ["--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--dir", dataDir.path,
                    "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
                    "--pidfile", dataDir.appendingPathComponent("redis.pid").path,
                    "--logfile", dataDir.appendingPathComponent("redis.log").path, "--daemonize", "no"]
        let p = try ChildProcess.spawn(server, args, name: "redis-server", newProcessGroup: true, dieWithParent: true)
        let redis = LocalRedis(dataDir: dataDir, socketDir: socketDir, process: p)
        let deadline = Date().addingTimeInterval(60) // a big AOF takes a while to load
        while Date() < deadline {
            if let status = p.poll() {
                try? FileManager.default.removeItem(at: socketDir)
                throw InputError("redis-server exited at start-up (\(status)); its log: \(dataDir.appendingPathComponent("redis.log").path)\n\(redis.logTail())")
            }
            if let c = try? RedisClient(endpoint: redis.endpoint, options: .init(connectTimeout: 1, commandTimeout: 2, retry: .none)),
               (try? c.command("PING")) == .status("PONG") {
                return redis
            }
            usleep(20_000)
        }
        p.terminate(grace: 5)
        try? FileManager.default.removeItem(at: socketDir)
        throw InputError("redis-server did not become ready within 60 s; its log:\n\(redis.logTail())")
    }

    func logTail(lines: Int = 10) -> String {
        let text = (try? String(contentsOf: dataDir.appendingPathComponent("redis.log"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// A server left running by a run that was killed outright (no pdeath signal support).
    static func stopStale(dataDir: URL, log: (String) -> Void) {
        defer {
            // The socket folder of a run that never got to clean up.
            let marker = dataDir.appendingPathComponent("socket-dir")
            if let old = try? String(contentsOf: marker, encoding: .utf8), old.hasPrefix("/tmp/muse-run-"), !old.contains("..") {
                try? FileManager.default.removeItem(atPath: old)
                try? FileManager.default.removeItem(at: marker)
            }
        }
        let pidFile = dataDir.appendingPathComponent("redis.pid")
        guard let text = try? String(contentsOf: pidFile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 else { return }
        let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        guard cmdline.contains("redis-server") else { return }
        log("stopping the redis-server (pid \(pid)) left behind by an earlier run on \(dataDir.path)")
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
    }

    /// SHUTDOWN (AOF flushed), then waits; removes the socket folder.
    func shutdown() {
        if process.isRunning {
            if let c = try? RedisClient(endpoint: endpoint, options: .init(connectTimeout: 1, commandTimeout: 10, retry: .none)) {
                _ = try? c.command("SHUTDOWN")
            }
            if process.wait(timeout: 15) == nil { process.terminate(grace: 10) }
        }
        try? FileManager.default.removeItem(at: socketDir)
    }
}

/// N local `muse-worker` processes, restarted when one dies unexpectedly.
final class LocalWorkers {
    struct Slot {
        var index: Int
        var generation = 0
        var process: ChildProcess?
        var name: String
    }

    let binary: String
    let baseArguments: [String]
    let logDir: URL
    let environment: [String: String]
    let maxRestarts: Int
    private(set) var slots: [Slot]

    init(count: Int, binary: String, arguments: [String], logDir: URL, environment: [String: String], maxRestarts: Int = 5) {
        self.binary = binary
        baseArguments = arguments
        self.logDir = logDir
        self.environment = environment
        self.maxRestarts = maxRestarts
        slots = (1...count).map { Slot(index: $0, name: "local-\($0)") }
    }

    static func findWorkerBinary() throws -> String {
        if let env = ProcessInfo.processInfo.environment["MUSE_WORKER_BIN"], !env.isEmpty { return env }
        let path = ExecutableLocation.directory.appendingPathComponent("muse-worker").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw InputError("cannot find muse-worker next to muse-coordinator (\(path)); build both (swift build -c release) or set MUSE_WORKER_BIN")
        }
        return path
    }

    func logPath(_ slot: Slot) -> String { logDir.appendingPathComponent("\(slot.name).log").path }

    func startAll() throws {
        try FileManager.default.createDirectory(at: logDir, withIntermediateDirectories: true)
        for i in slots.indices { try start(i) }
    }

    private func start(_ i: Int) throws {
        let name = slots[i].generation == 0 ? "local-\(slots[i].index)" : "local-\(slots[i].index).\(slots[i].generation)"
        slots[i].name = name
        let args = baseArguments + ["--name", name, "--parent-pid", String(getpid())]
        slots[i].process = try ChildProcess.spawn(binary, args, name: name, environment: environment,
                                                  stderrPath: logPath(slots[i]), newProcessGroup: true, dieWithParent: true)
    }

    /// Restarts workers that exited; false once one has used up its restarts.
    func check(log: (String) -> Void) throws -> Bool {
        for i in slots.indices {
            guard let p = slots[i].process, let status = p.poll() else { continue }
            let tail = (try? String(contentsOfFile: logPath(slots[i]), encoding: .utf8))?
                .split(separator: "\n").suffix(3).joined(separator: "\n    ") ?? ""
            if slots[i].generation >= maxRestarts {
                log("worker \(slots[i].name) exited (\(status)) and was restarted \(maxRestarts) times already; giving up. Its log ends:\n    \(tail)")
                slots[i].process = nil
                return false
            }
            log("worker \(slots[i].name) exited unexpectedly (\(status)); restarting it. Its log ends:\n    \(tail)")
            slots[i].generation += 1
            try start(i)
        }
        return true
    }

    var running: [ChildProcess] { slots.compactMap(\.process).filter(\.isRunning) }

    /// SIGTERM to all (they checkpoint and release their jobs), SIGKILL after `grace` seconds.
    func stopAll(grace: TimeInterval) {
        let procs = slots.compactMap(\.process)
        for p in procs { p.signal(SIGTERM) }
        let deadline = Date().addingTimeInterval(grace)
        for p in procs {
            if p.wait(timeout: max(0, deadline.timeIntervalSinceNow)) == nil {
                p.signal(SIGKILL)
                p.wait(timeout: 10)
            }
        }
    }
}

/// An exclusive lock on an output folder (flock; released by the kernel if we die).
final class OutputLock {
    private let fd: Int32

    init(folder: URL) throws {
        let path = folder.appendingPathComponent(".muse-run.lock").path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw InputError("cannot create \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(fd)
            throw InputError("another muse-coordinator (pid \(holder)) is running on \(folder.path); wait for it or stop it first")
        }
        ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
    }

    deinit { close(fd) }
}
