import Foundation
import XCTest
@testable import Shared

/// A private redis-server for one test: unix socket only (port 0), AOF on, in a fresh
/// directory. Restartable on the same directory to test persistence and reconnection.
final class RedisServerFixture {
    let dir: URL
    let password: String?
    private var server: ChildProcess?

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
        precondition(server == nil, "already running")
        var args = ["--port", "0", "--unixsocket", socketPath, "--unixsocketperm", "700",
                    "--appendonly", "yes", "--dir", dir.path, "--save", "", "--daemonize", "no",
                    "--logfile", dir.appendingPathComponent("redis.log").path]
        if let password { args += ["--requirepass", password] }
        // ChildProcess (posix_spawn with the signal mask reset) rather than Foundation.Process,
        // which tracks exit through a run loop that a server restarted from a background
        // queue never gets.
        server = try ChildProcess.spawn("/usr/bin/redis-server", args)
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

    private var isRunning: Bool { server?.isRunning ?? false }

    /// SIGTERM: redis flushes the AOF and exits; SIGKILL if it does not within 10 s.
    func stop() {
        server?.terminate(grace: 10)
        server = nil
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
