import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

/// N local `muse-worker` processes, restarted when one dies unexpectedly.
public final class LocalWorkers {
    public struct Slot {
        var index: Int
        var generation = 0
        var process: ChildProcess?
        var name: String
    }

    /// Names (and so log files) unique to this run: a worker left over from an earlier run
    /// that was killed can never share a name, a lease owner or a log with this run's.
    static let runTag = "local\(getpid())"

    public let binary: String
    public let baseArguments: [String]
    public let logDir: URL
    public let environment: [String: String]
    public let maxRestarts: Int
    private(set) var slots: [Slot]

    public init(
        count: Int, binary: String, arguments: [String], logDir: URL, environment: [String: String],
        maxRestarts: Int = 5
    ) {
        self.binary = binary
        baseArguments = arguments
        self.logDir = logDir
        self.environment = environment
        self.maxRestarts = maxRestarts
        slots = (1...count).map { Slot(index: $0, name: "\(Self.runTag)-\($0)") }
    }

    public static func findWorkerBinary() throws -> String {
        if let env = ProcessInfo.processInfo.environment["MUSE_WORKER_BIN"], !env.isEmpty { return env }
        let path = ExecutableLocation.directory.appendingPathComponent("muse-worker").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw InputError(
                "cannot find muse-worker next to muse-coordinator (\(path)); build both (swift build -c release) or set MUSE_WORKER_BIN"
            )
        }
        return path
    }

    public func logPath(_ slot: Slot) -> String { logDir.appendingPathComponent("\(slot.name).log").path }

    public func startAll() throws {
        try FileManager.default.createDirectory(at: logDir, withIntermediateDirectories: true)
        for i in slots.indices { try start(i) }
    }

    private func start(_ i: Int) throws {
        let name =
            slots[i].generation == 0
            ? "\(Self.runTag)-\(slots[i].index)" : "\(Self.runTag)-\(slots[i].index).\(slots[i].generation)"
        slots[i].name = name
        let args = baseArguments + ["--name", name, "--parent-pid", String(getpid())]
        slots[i].process = try ChildProcess.spawn(
            binary, args, name: name, environment: environment,
            stderrPath: logPath(slots[i]), newProcessGroup: true, dieWithParent: true)
    }

    /// Restarts workers that exited; false once one has used up its restarts. `exited` hears
    /// of each exit (worker name, status, a one-line cause from its log) before the restart, so
    /// the jobs the worker held can record why.
    public func check(log: (String) -> Void, exited: (String, ExitStatus, String) -> Void = { _, _, _ in }) throws
        -> Bool
    {
        for i in slots.indices {
            guard let p = slots[i].process, let status = p.poll() else { continue }
            let text = (try? String(contentsOfFile: logPath(slots[i]), encoding: .utf8)) ?? ""
            let tail = text.split(separator: "\n").suffix(3).joined(separator: "\n    ")
            exited(slots[i].name, status, status.explanation(log: text))
            if slots[i].generation >= maxRestarts {
                log(
                    "worker \(slots[i].name) exited (\(status)) and was restarted \(maxRestarts) times already; giving up. Its log ends:\n    \(tail)"
                )
                slots[i].process = nil
                return false
            }
            log("worker \(slots[i].name) exited unexpectedly (\(status)); restarting it. Its log ends:\n    \(tail)")
            slots[i].generation += 1
            try start(i)
        }
        return true
    }

    public var running: [ChildProcess] { slots.compactMap(\.process).filter(\.isRunning) }

    /// SIGTERM to all (they checkpoint and release their jobs), SIGKILL after `grace` seconds.
    public func stopAll(grace: TimeInterval) {
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
public final class OutputLock {
    private let fd: Int32
    public let folder: URL

    public init(folder: URL) throws {
        self.folder = folder
        let path = folder.appendingPathComponent(".muse-run.lock").path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw InputError("cannot create \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder =
                (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                ?? "?"
            close(fd)
            throw InputError(
                "another muse-coordinator (pid \(holder)) is running on \(folder.path); wait for it or stop it first")
        }
        ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
    }

    deinit { close(fd) }
}
