import Foundation

public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): return "exit code \(code)"
        case .signaled(let sig):
            let names: [Int32: String] = [
                SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGSEGV: "SIGSEGV",
                SIGBUS: "SIGBUS", SIGABRT: "SIGABRT", SIGFPE: "SIGFPE",
            ]
            return "signal \(sig)" + (names[sig].map { " (\($0))" } ?? "")
        }
    }

    /// Died of its own fault: a Swift runtime trap (SIGILL on x86-64, SIGTRAP on arm64), a
    /// crash or an abort — not a kill from outside (SIGKILL, SIGTERM: an operator, the OOM killer).
    public var isCrash: Bool {
        guard case .signaled(let sig) = self else { return false }
        return [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE].contains(sig)
    }

    public var succeeded: Bool { self == .exited(0) }
}

extension ExitStatus {
    /// One line on why a process exited: the signal or code, and the runtime's own words when
    /// it trapped ("Fatal error: …", the last such line of `log`), else the log's last line.
    public func explanation(log: String) -> String {
        let lines = log.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let fatal = lines.last {
            $0.contains("Fatal error") || $0.contains("fatal error") || $0.contains("Precondition failed")
        }
        var text: String
        switch self {
        case .signaled(let sig) where sig == SIGKILL: text = "killed by \(self) (the OOM killer or an operator)"
        case _ where isCrash: text = "\(self), a runtime trap or crash"
        default: text = "exited with \(self)"
        }
        if let line = fatal ?? lines.last { text += ": " + String(line.prefix(300)) }
        return text
    }
}

public struct SpawnError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// A child process started with posix_spawn (no Foundation.Process: it needs a run loop to
/// notice exits). Signal mask and dispositions are reset, so children of a process that
/// blocks or ignores SIGTERM still honour it.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let name: String
    private var status: ExitStatus?
    private let lock = NSLock()

    private init(pid: pid_t, name: String) {
        self.pid = pid
        self.name = name
    }

    /// `stdoutPath`/`stderrPath`: files to append to (nil: inherit). `newProcessGroup`: keep
    /// terminal signals (Ctrl-C) away from the child; its parent decides when it stops.
    /// `dieWithParent`: SIGTERM the child if this process dies (via util-linux `setpriv
    /// --pdeathsig`, when installed; spawn from the main thread, as the kernel ties this
    /// to the spawning thread).
    public static func spawn(
        _ executable: String, _ arguments: [String], name: String? = nil,
        environment: [String: String]? = nil, stdoutPath: String? = nil, stderrPath: String? = nil,
        newProcessGroup: Bool = false, dieWithParent: Bool = false, stderrFD: Int32? = nil
    ) throws -> ChildProcess {
        var argv = [executable] + arguments
        var path = executable
        let setpriv = "/usr/bin/setpriv"
        if dieWithParent, FileManager.default.isExecutableFile(atPath: setpriv) {
            argv = [setpriv, "--pdeathsig", "TERM", "--"] + argv
            path = setpriv
        }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cargs.append(nil)
        defer { for p in cargs { free(p) } }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) }
        cenv.append(nil)
        defer { for p in cenv { free(p) } }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attr, 0)
        }
        posix_spawnattr_setflags(&attr, Int16(flags))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let stdoutPath {
            posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        if let stderrPath {
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else if let stderrFD {
            posix_spawn_file_actions_adddup2(&actions, stderrFD, 2)
        }

        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, &cargs, &cenv)
        guard rc == 0 else {
            throw SpawnError(message: "cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        return ChildProcess(pid: pid, name: name ?? (executable as NSString).lastPathComponent)
    }

    /// nil while running; the exit status once it has ended (reaped here).
    public func poll() -> ExitStatus? {
        lock.lock()
        defer { lock.unlock() }
        if let status { return status }
        var raw: Int32 = 0
        let r = waitpid(pid, &raw, WNOHANG)
        if r == pid {
            status = Self.decode(raw)
        } else if r < 0 {
            status = .exited(-1)  // not our child any more
        }
        return status
    }

    public var isRunning: Bool { poll() == nil }

    public func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }

    /// Waits up to `timeout` seconds; nil if still running then.
    @discardableResult
    public func wait(timeout: TimeInterval) -> ExitStatus? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let s = poll() { return s }
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
    }

    /// SIGTERM, then SIGKILL after `grace` seconds.
    @discardableResult
    public func terminate(grace: TimeInterval) -> ExitStatus {
        signal(SIGTERM)
        if let s = wait(timeout: grace) { return s }
        signal(SIGKILL)
        return wait(timeout: 10) ?? .signaled(SIGKILL)
    }

    static func decode(_ raw: Int32) -> ExitStatus {
        let sig = raw & 0x7f
        if sig == 0 { return .exited((raw >> 8) & 0xff) }
        return .signaled(sig)
    }
}
