import Foundation
import XCTest
@testable import Shared

/// A private redis-server for one test: unix socket only (port 0), AOF on, in a fresh
/// directory. Restartable on the same directory to test persistence and reconnection.
final class RedisServerFixture {
    let dir: URL
    let password: String?
    private var pid: pid_t = 0

    var socketPath: String { dir.appendingPathComponent("redis.sock").path }

    init(password: String? = nil) throws {
        // Short path: unix socket paths are limited to 107 bytes.
        var template = Array("/tmp/rt-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw NSError(domain: "fixture", code: 1) }
        dir = URL(fileURLWithPath: String(cString: made))
        self.password = password
        try start()
    }

    enum Auth { case fixture, none, password(String) }

    func endpoint(auth: Auth = .fixture, db: Int = 0) -> RedisEndpoint {
        var e = RedisEndpoint.unix(socketPath, db: db)
        switch auth {
        case .fixture: e.password = password
        case .none: e.password = nil
        case let .password(p): e.password = p
        }
        return e
    }

    func client(auth: Auth = .fixture, db: Int = 0,
                options: RedisClient.Options = RedisClient.Options(connectTimeout: 2, commandTimeout: 5)) throws -> RedisClient {
        try RedisClient(endpoint: endpoint(auth: auth, db: db), options: options)
    }

    func start() throws {
        precondition(pid == 0, "already running")
        var args = ["redis-server", "--port", "0", "--unixsocket", socketPath, "--unixsocketperm", "700",
                    "--appendonly", "yes", "--dir", dir.path, "--save", "", "--daemonize", "no",
                    "--logfile", dir.appendingPathComponent("redis.log").path]
        if let password { args += ["--requirepass", password] }
        // posix_spawn + waitpid rather than Foundation.Process: Process tracks exit through a
        // run loop, which a server restarted from a background queue never gets.
        var cargs = args.map { strdup($0) }
        cargs.append(nil)
        defer { cargs.forEach { free($0) } }
        // Reset the signal mask and dispositions: a GCD thread blocks SIGTERM, and the child
        // would inherit that and ignore stop().
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        sigaddset(&defaults, SIGTERM)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawn(&child, "/usr/bin/redis-server", nil, &attr, &cargs, environ)
        guard rc == 0 else { throw NSError(domain: "fixture", code: Int(rc)) }
        pid = child
        // Ready when the socket accepts a PING (bounded wait).
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, isRunning {
            if let c = try? RedisClient(endpoint: endpoint(), options: .init(connectTimeout: 1, commandTimeout: 1, retry: .none)),
               (try? c.command("PING")) == .status("PONG") {
                return
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        stop()
        let log = (try? String(contentsOf: dir.appendingPathComponent("redis.log"), encoding: .utf8)) ?? ""
        throw NSError(domain: "fixture", code: 2, userInfo: [NSLocalizedDescriptionKey: "redis-server did not start:\n\(log)"])
    }

    private var isRunning: Bool {
        guard pid != 0 else { return false }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid || r < 0 { pid = 0; return false }
        return true
    }

    /// SIGTERM: redis flushes the AOF and exits; SIGKILL if it does not within 10 s.
    func stop() {
        guard pid != 0 else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        if pid != 0 {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            pid = 0
        }
    }

    func restart() throws {
        stop()
        try start()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: dir)
    }
}
