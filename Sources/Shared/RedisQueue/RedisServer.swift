import Foundation
import Support

public struct RedisServerError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// A private redis-server: unix socket only (no TCP port, mode 700), AOF on, noeviction,
/// data in `dataDir`. The one launcher that `muse-coordinator run` and the tests share.
public final class RedisServer: @unchecked Sendable {
    public struct Options: Sendable {
        public var dataDir: URL
        public var password: String?
        /// "everysec" for runs, "always" for tests that restart the server under load.
        public var appendfsync = "everysec"
        /// Remove `dataDir` when the server is stopped for good (temporary servers).
        public var removeDataOnStop = false
        /// SIGTERM the server if this process dies (see ChildProcess.spawn).
        public var dieWithParent = false
        /// How long to wait for the server to answer at all.
        public var readyTimeout: TimeInterval = 60
        /// More redis-server arguments (tests: e.g. --key-load-delay to make loading slow).
        public var extraArguments: [String] = []

        public init(dataDir: URL, password: String? = nil) {
            self.dataDir = dataDir
            self.password = password
        }
    }

    /// Read when the server (re)starts; set it before, not while another thread starts it.
    public var options: Options
    /// Socket paths are limited to 107 bytes: the socket lives in a short temporary folder.
    public let socketDir: URL
    private var process: ChildProcess?
    /// Serialises start, stop and shutdown (a test restarts the server from another thread
    /// than the one that made it): `process` changes only under it. Recursive: start stops.
    private let lifecycle = NSRecursiveLock()

    public var dataDir: URL { options.dataDir }
    public var socketPath: String { socketDir.appendingPathComponent("redis.sock").path }
    public var url: String { "unix://\(socketPath)" }
    public var endpoint: RedisEndpoint {
        var e = RedisEndpoint.unix(socketPath)
        e.password = options.password
        return e
    }
    public var isRunning: Bool { lifecycle.withLock { process?.isRunning ?? false } }

    /// Starts a server and waits until it answers PING.
    public init(_ options: Options) throws {
        self.options = options
        try FileManager.default.createDirectory(at: options.dataDir, withIntermediateDirectories: true)
        Self.stopStale(dataDir: options.dataDir)
        socketDir = try Self.makeTemporaryFolder("/tmp/muse-redis-XXXXXX")
        // Remembered so a later start can tidy up after one that was killed outright.
        try? socketDir.path.write(
            to: options.dataDir.appendingPathComponent("socket-dir"), atomically: true, encoding: .utf8)
        try start()
    }

    /// A server on a fresh temporary folder that is removed when the server stops (tests).
    public static func temporary(password: String? = nil, appendfsync: String = "always") throws -> RedisServer {
        var options = Options(dataDir: try makeTemporaryFolder("/tmp/muse-redis-data-XXXXXX"), password: password)
        options.appendfsync = appendfsync
        options.removeDataOnStop = true
        options.readyTimeout = 15
        // A test process that exits without deallocating its fixtures must not leave servers
        // holding its output pipe open.
        options.dieWithParent = true
        return try RedisServer(options)
    }

    public func client(options clientOptions: RedisClient.Options = .init(connectTimeout: 2, commandTimeout: 10))
        throws -> RedisClient
    {
        try RedisClient(endpoint: endpoint, options: clientOptions)
    }

    public static func findExecutable() throws -> String {
        if let env = ProcessInfo.processInfo.environment["MUSE_REDIS_SERVER"], !env.isEmpty { return env }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
            let candidate = "\(dir)/redis-server"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw RedisServerError("redis-server is not installed (run ops/setup, or apt-get install redis-server)")
    }

    /// Starts the server (again) on the same data and socket. Returns once it answers, which
    /// may be while it still loads its AOF: clients wait out LOADING (RedisError.isTransient).
    public func start() throws {
        lifecycle.lock()
        defer { lifecycle.unlock() }
        guard process == nil else { return }
        let d = options.dataDir
        var args = [
            "--port", "0", "--unixsocket", socketPath, "--unixsocketperm", "700", "--dir", d.path,
            "--appendonly", "yes", "--appendfsync", options.appendfsync, "--save", "",
            "--maxmemory-policy", "noeviction", "--pidfile", d.appendingPathComponent("redis.pid").path,
            "--logfile", d.appendingPathComponent("redis.log").path, "--daemonize", "no",
        ]
        if let password = options.password { args += ["--requirepass", password] }
        args += options.extraArguments
        let p = try ChildProcess.spawn(
            try Self.findExecutable(), args, name: "redis-server", newProcessGroup: true,
            dieWithParent: options.dieWithParent)
        process = p
        let deadline = Date().addingTimeInterval(options.readyTimeout)
        while Date() < deadline {
            if let status = p.poll() {
                process = nil
                throw RedisServerError(
                    "redis-server exited at start-up (\(status)); its log: \(d.appendingPathComponent("redis.log").path)\n"
                        + logTail())
            }
            if answers() { return }
            usleep(20_000)
        }
        stop()
        throw RedisServerError(
            "redis-server did not become ready within \(Int(options.readyTimeout)) s; its log:\n\(logTail())")
    }

    /// PONG, or LOADING: the server is up (a big AOF may take a while to load).
    private func answers() -> Bool {
        do {
            let c = try RedisClient(
                endpoint: endpoint, options: .init(connectTimeout: 1, commandTimeout: 2, retry: .none))
            return try c.command("PING") == .status("PONG")
        } catch let e as RedisError {
            return e.serverCode == "LOADING"
        } catch {
            return false
        }
    }

    /// SIGTERM (Redis flushes its AOF and exits); SIGKILL if it has not within 10 s.
    public func stop() {
        lifecycle.withLock {
            process?.terminate(grace: 10)
            process = nil
        }
    }

    public func restart() throws {
        lifecycle.lock()
        defer { lifecycle.unlock() }
        stop()
        try start()
    }

    /// SHUTDOWN (AOF flushed), then waits; removes the socket folder (and the data of a
    /// temporary server).
    public func shutdown() {
        lifecycle.lock()
        defer { lifecycle.unlock() }
        if let p = process, p.isRunning {
            if let c = try? RedisClient(
                endpoint: endpoint, options: .init(connectTimeout: 1, commandTimeout: 10, retry: .none))
            {
                _ = try? c.command("SHUTDOWN")
            }
            if p.wait(timeout: 15) == nil { p.terminate(grace: 10) }
        }
        process = nil
        try? FileManager.default.removeItem(at: socketDir)
        try? FileManager.default.removeItem(at: options.dataDir.appendingPathComponent("socket-dir"))
        if options.removeDataOnStop { try? FileManager.default.removeItem(at: options.dataDir) }
    }

    deinit { shutdown() }

    public func logTail(lines: Int = 10) -> String {
        let text = (try? String(contentsOf: dataDir.appendingPathComponent("redis.log"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// A server left running on `dataDir` by a process that was killed outright.
    public static func stopStale(dataDir: URL, log: ((String) -> Void)? = nil) {
        defer {
            // The socket folder of a run that never got to clean up.
            let marker = dataDir.appendingPathComponent("socket-dir")
            if let old = try? String(contentsOf: marker, encoding: .utf8), old.hasPrefix("/tmp/muse-redis-"),
                !old.contains("..")
            {
                try? FileManager.default.removeItem(atPath: old)
                try? FileManager.default.removeItem(at: marker)
            }
        }
        let pidFile = dataDir.appendingPathComponent("redis.pid")
        guard let text = try? String(contentsOf: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
        else { return }
        let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        guard cmdline.contains("redis-server") else { return }
        log?("stopping the redis-server (pid \(pid)) left behind by an earlier run on \(dataDir.path)")
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
    }

    static func makeTemporaryFolder(_ pattern: String) throws -> URL {
        var template = Array(pattern.utf8CString)
        guard let made = mkdtemp(&template) else {
            throw RedisServerError("cannot create a temporary folder (\(pattern))")
        }
        return URL(fileURLWithPath: String(cString: made))
    }
}
