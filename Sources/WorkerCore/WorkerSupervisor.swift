import Foundation
import RedisQueue
import Support

/// `muse-worker run --supervise`: runs the worker as a child process and outlives its crashes.
/// A worker that traps cannot report its own death; the supervisor sees the signal and the
/// runtime's last words on the child's stderr (passed through to its own), records them on
/// the jobs the child held (`BatchQueue.recordCrash`: a trap fails the job now, so it is
/// retried after the usual back-off rather than after its lease; a kill from outside waits for
/// the lease and resumes from the checkpoint), and restarts the child with a growing back-off.
public final class WorkerSupervisor {
    public let executable: String
    public let childArguments: [String]
    public let name: String
    let client: RedisClient
    let batches: [String]
    let log: Logger
    /// Seconds before the first restart; doubles per crash up to `maxBackoff`, and resets once a
    /// child has lived longer than `maxBackoff`.
    let firstBackoff: TimeInterval
    let maxBackoff: TimeInterval

    public init(
        executable: String, childArguments: [String], name: String, client: RedisClient, batches: [String],
        log: Logger, firstBackoff: TimeInterval = 1, maxBackoff: TimeInterval = 60
    ) {
        self.executable = executable
        self.childArguments = childArguments
        self.name = name
        self.client = client
        self.batches = batches
        self.log = log
        self.firstBackoff = firstBackoff
        self.maxBackoff = maxBackoff
    }

    /// Until the child exits cleanly (its own exit code) or a stop is requested (then the
    /// child gets SIGTERM and its exit code is returned). `maxCrashes` bounds restarts (tests).
    public func run(stop: StopSignal, maxCrashes: Int = .max) -> Int32 {
        var backoff = firstBackoff
        var crashes = 0
        while true {
            let started = Date()
            let (status, tail) = runChild(stop: stop)
            guard let status else { return 1 }
            if stop.requested || status.succeeded {
                if case .exited(let code) = status { return code }
                return 1
            }
            let cause = status.explanation(log: tail)
            log.error("worker process \(name) died: \(cause)")
            recordCrash(cause: cause, status: status)
            crashes += 1
            if crashes > maxCrashes { return 1 }
            if Date().timeIntervalSince(started) > maxBackoff { backoff = firstBackoff }
            log.info("restarting \(name) in \(String(format: "%.0f", backoff)) s")
            stop.sleep(backoff)
            if stop.requested { return 0 }
            backoff = min(maxBackoff, backoff * 2)
        }
    }

    /// Runs one child to its end; its stderr goes through to ours, the last lines are kept.
    func runChild(stop: StopSignal) -> (ExitStatus?, String) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            log.error("cannot create a pipe for the worker's stderr: \(String(cString: strerror(errno)))")
            return (nil, "")
        }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(
                executable, childArguments + ["--name", name, "--parent-pid", String(getpid())],
                name: name, dieWithParent: true, stderrFD: fds[1])
        } catch {
            log.error("cannot start the worker: \(error)")
            close(fds[0])
            close(fds[1])
            return (nil, "")
        }
        close(fds[1])
        let tail = StderrTail(fd: fds[0])
        var sentTerm = false
        while true {
            if let status = child.poll() {
                tail.waitForEnd(timeout: 5)
                return (status, tail.text)
            }
            if stop.requested && !sentTerm {
                child.signal(SIGTERM)  // it checkpoints, hands its job back and exits 0
                sentTerm = true
            }
            usleep(100_000)
        }
    }

    func recordCrash(cause: String, status: ExitStatus) {
        var ids = batches
        if ids.isEmpty {
            do { ids = try BatchQueue.list(client: client) } catch {
                log.error("could not list the batches to record the crash on: \(error)")
            }
        }
        for id in ids {
            do {
                let queue = try BatchQueue(client: client, batchID: id)
                for job in try queue.recordCrash(worker: name, cause: cause, retryNow: status.isCrash) {
                    log.warning("job \(job.prefix(8)) of batch \(id) held by \(name): \(cause)")
                }
            } catch {
                log.error("could not record the crash on batch \(id): \(error)")
            }
        }
    }
}

/// Copies a child's stderr to ours as it comes and keeps its last 64 KiB for the cause.
final class StderrTail: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()
    private let done = DispatchSemaphore(value: 0)
    static let keep = 64 << 10

    init(fd: Int32) {
        Thread.detachNewThread { [self] in
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                _ = chunk.withUnsafeBytes { write(2, $0.baseAddress, n) }
                lock.lock()
                buffer.append(contentsOf: chunk[0..<n])
                if buffer.count > Self.keep { buffer.removeFirst(buffer.count - Self.keep) }
                lock.unlock()
            }
            close(fd)
            done.signal()
        }
    }

    /// The pipe ends when every writer is gone (the child and anything it started).
    func waitForEnd(timeout: TimeInterval) { _ = done.wait(timeout: .now() + timeout) }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: buffer, as: UTF8.self)
    }
}
