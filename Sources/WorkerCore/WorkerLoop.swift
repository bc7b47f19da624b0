import Checkpoints
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

/// The worker's main loop: find an unfinished batch, take a job, run it, repeat.
public final class WorkerLoop {
    public let name: String
    public let client: RedisClient
    /// Second connection: lease renewal and heartbeats, which must not wait behind a
    /// long blocking read or a big checkpoint on the main one.
    public let side: RedisClient
    public let engine: PipelineEngine
    public let onlyBatches: [String]
    public let exitWhenIdle: Bool
    public let heartbeatInterval: TimeInterval
    public let parentPID: Int32?
    /// Counted into when set (`--metrics-port`).
    public let metrics: WorkerMetrics?
    public let log: Logger
    public let stop = StopSignal()

    /// Batches not to look at for a while: finished ones are looked at again after
    /// `SkipList.recheck` seconds (`requeue --failed` can reopen a batch), damaged ids never.
    private var finished = SkipList()
    /// Every batch this worker has heartbeated to.
    private var seen = Set<String>()
    private var queues: [String: BatchQueue] = [:]
    private var sideQueues: [String: BatchQueue] = [:]
    private var redisDown = false
    private let state = HeartbeatState()

    public init(
        name: String, client: RedisClient, side: RedisClient, engine: PipelineEngine, batches: [String],
        exitWhenIdle: Bool, heartbeatInterval: TimeInterval, parentPID: Int32?, log: Logger,
        metrics: WorkerMetrics? = nil
    ) {
        self.name = name
        self.client = client
        self.side = side
        self.engine = engine
        onlyBatches = batches
        self.exitWhenIdle = exitWhenIdle
        self.heartbeatInterval = heartbeatInterval
        self.parentPID = parentPID
        self.metrics = metrics
        self.log = log
    }

    /// Runs until stopped; returns the process exit code.
    public func run() -> Int32 {
        installSignalHandlers()
        let beat = startHeartbeat()
        defer { beat.cancel() }
        var exitCode: Int32 = 0
        loop: while !stop.requested {
            if parentGone() {
                stop.request("parent exited")
                log("parent process exited: stopping")
                break
            }
            do {
                switch try workOnce() {
                case .worked: continue
                case .idle: stop.sleep(1)
                case .done: break loop
                }
            } catch let e as RedisError where e.isTransient {
                metrics?.redisErrors.increment()
                if !redisDown {
                    log("Redis unavailable (\(e)); retrying every second")
                    redisDown = true
                }
                stop.sleep(1)
            } catch let e as RedisError {
                metrics?.redisErrors.increment()
                if case .authenticationFailed = e {
                    log("error: \(e)")
                    exitCode = 1
                    break
                }
                log("Redis error: \(e); retrying in a second")
                stop.sleep(1)
            } catch let QueueError.noSuchBatch(id) {
                finished.insert(id, for: SkipList.recheck)  // destroyed while we looked at it
            } catch let QueueError.damagedBatch(id, why) {
                log("skipping batch \(id): its records in Redis are damaged (\(why)); other batches go on")
                finished.insert(id, for: 60)
            } catch {
                log("error: \(error); retrying in a second")
                stop.sleep(1)
            }
        }
        // Leave the worker lists at once (status shows us gone rather than silent).
        for id in seen.sorted() { try? sideQueue(id).removeWorker(name) }
        log("stopped\(stop.why.map { " (\($0))" } ?? "")")
        return exitCode
    }

    private func installSignalHandlers() {
        let log = self.log
        stop.install(
            onFirst: { sig in
                let name = sig == SIGINT ? "SIGINT" : "SIGTERM"
                log("\(name): finishing the current step, then checkpointing and releasing the job")
            },
            onSecond: { _ in
                log("second signal: exiting now (the job's lease will lapse and it resumes from its last checkpoint)")
                exit(1)
            })
    }

    enum Turn {
        /// A job was taken and processed.
        case worked
        /// Nothing to do right now.
        case idle
        /// Nothing to do and told to exit when idle.
        case done
    }

    /// One look for work: the unfinished batches, oldest first, then a job from the first
    /// one that has any, which is run to its end.
    func workOnce() throws -> Turn {
        let active = try activeBatches()
        if redisDown {
            log("Redis is reachable again")
            redisDown = false
        }
        if state.batches != active {
            state.setBatches(active)
            seen.formUnion(active)
            beatNow()
        }
        if active.isEmpty {
            if exitWhenIdle {
                log("no batch has work left: exiting")
                return .done
            }
            return .idle
        }
        for id in active {
            let q = try queue(id)
            if let lease = try q.take(worker: name, wait: 0) {
                try process(lease, q)
                return .worked
            }
        }
        // Nothing anywhere: block briefly on the oldest batch (stays responsive to signals).
        let q = try queue(active[0])
        if let lease = try q.take(worker: name, wait: 1) {
            try process(lease, q)
            return .worked
        }
        return .worked
    }

    private func parentGone() -> Bool {
        guard let parentPID else { return false }
        return getppid() != parentPID
    }

    private func queue(_ id: String) throws -> BatchQueue {
        if let q = queues[id] { return q }
        let q = try BatchQueue(client: client, batchID: id)
        queues[id] = q
        return q
    }

    private func sideQueue(_ id: String) throws -> BatchQueue {
        if let q = sideQueues[id] { return q }
        let q = try BatchQueue(client: side, batchID: id)
        sideQueues[id] = q
        return q
    }

    /// Unfinished batches, oldest first.
    private func activeBatches() throws -> [String] {
        let ids = onlyBatches.isEmpty ? try BatchQueue.list(client: client) : onlyBatches
        var out: [String] = []
        for id in ids where !finished.contains(id) {
            // A damaged entry in the batch index must not stop work on the others.
            guard (try? BatchKeys(batchID: id)) != nil else {
                log("skipping '\(id)' in the batch index: not a valid batch id")
                finished.insert(id, for: .infinity)
                continue
            }
            guard let c = try queue(id).counters() else { continue }  // not created (yet)
            if c.finished { finished.insert(id, for: SkipList.recheck) } else if !c.paused { out.append(id) }
        }
        return out
    }

    private let beatQueue = DispatchQueue(label: "muse.heartbeat")

    private func startHeartbeat() -> DispatchSourceTimer {
        let t = DispatchSource.makeTimerSource(queue: beatQueue)
        t.schedule(deadline: .now(), repeating: heartbeatInterval)
        t.setEventHandler { [weak self] in self?.heartbeatOnce() }
        t.resume()
        return t
    }

    /// An extra heartbeat now (job taken or finished, batches changed), off the main thread.
    private func beatNow() {
        beatQueue.async { [weak self] in self?.heartbeatOnce() }
    }

    /// Runs on `beatQueue` only (it owns `sideQueues` there and on the main thread the
    /// renewal queues are created before the job starts).
    private func heartbeatOnce() {
        let ttl = Int(max(30, heartbeatInterval * 6) * 1000)
        let (batches, job) = state.snapshot()
        for id in batches {
            guard let q = try? BatchQueue(client: side, batchID: id) else { continue }
            try? q.heartbeat(worker: name, jobID: job?.batch == id ? job?.job : nil, ttlMs: ttl)
        }
    }

    // MARK: One job

    private func process(_ lease: JobLease, _ queue: BatchQueue) throws {
        let short = String(lease.jobID.prefix(8))
        if lease.reclaimed { metrics?.leasesReclaimed.increment() }
        let job: PipelineJob
        do {
            job = try PipelineJob.decode(lease.payload)
            guard job.id == lease.jobID else { throw JobFailure("payload is for job \(job.id)") }
        } catch {
            log("job \(short): unreadable payload (\(error)); dead-lettering it")
            _ = try queue.fail(lease, error: "invalid job payload: \(error)", permanent: true)
            return
        }
        let leaseMs = try queue.metadata()?.leaseMs ?? 60_000
        let held = LeasedJob(lease: lease, queue: queue, renewQueue: try sideQueue(lease.batchID), leaseMs: leaseMs)
        let log = self.log
        held.onEvent = { log("job \(short): \($0)") }
        held.startRenewing()
        let poster = ProgressPoster(queue: try BatchQueue(client: side, batchID: lease.batchID), lease: lease)
        poster.onFencedOff = { [weak held] in held?.markLost("no longer the job's owner (cancelled or reclaimed)") }
        defer {
            held.stopRenewing()
            poster.drain()
            // Clear our progress entry unless another worker owns the job now (its entry is
            // live). A fenced-off write after a publish or a cancel also marks the lease lost.
            let owner = held.isLost ? (try? queue.job(lease.jobID))??.owner : nil
            if owner == nil || owner == "" || owner == name { try? queue.clearProgress(jobID: lease.jobID) }
            state.setJob(nil)
            beatNow()
        }
        state.setJob((lease.batchID, lease.jobID))
        beatNow()
        let c = job.content
        let what =
            c.kind == .edit
            ? "edit of \(job.imagePath ?? "?") to \(c.emotion)" : "\(c.emotion) '\(c.prompt)' seed \(c.seed)"
        log("took job \(short) (\(what); attempt \(lease.attempt), epoch \(lease.epoch))")
        let run = JobRun(
            job: job, held: held, engine: engine, worker: name, log: log, stop: stop,
            progress: { poster.post(step: $0, total: $1) }
        ) { [self] in
            stop.requested || parentGone()
        }
        run.metrics = metrics
        do { try run.run() } catch is Interrupted {
            log("job \(short): stopping while Redis is unreachable; the job resumes from its last checkpoint")
        } catch let failure as JobFailure {
            try report(held, failure.message, permanent: failure.permanent, short: short)
        } catch let e as RedisError where e.isTransient {
            log("job \(short): lost Redis (\(e)); the job resumes from its last checkpoint once its lease lapses")
            throw e
        } catch {
            try report(held, "\(error)", permanent: false, short: short)
        }
    }

    /// A failure report is safe to repeat (fenced on the epoch): ride out an outage, so a
    /// Redis restart never turns into a lost report.
    private func failPatiently(_ held: LeasedJob, _ message: String, permanent: Bool) throws -> FailOutcome {
        while true {
            do { return try held.fail(error: message, permanent: permanent) } catch let e as RedisError
                where e.isTransient
            {
                if stop.requested { throw e }
                stop.sleep(1)
            }
        }
    }

    private func report(_ held: LeasedJob, _ message: String, permanent: Bool, short: String) throws {
        let outcome = try failPatiently(held, message, permanent: permanent)
        if outcome != .stale { metrics?.jobsFailed.increment() }
        switch outcome {
        case .requeued:
            metrics?.jobsRequeued.increment()
            log("job \(short): failed (attempt \(held.lease.attempt)): \(message); re-queued")
        case .deadLettered:
            log(
                "job \(short): failed for good\(permanent ? "" : " (attempt \(held.lease.attempt), the last allowed)"): \(message); dead-lettered"
            )
        case .stale: log("job \(short): failed (\(message)), but it belongs to another worker now")
        }
    }
}

/// What the heartbeat timer reports, shared with the main loop.
public final class HeartbeatState: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var batchesValue: [String] = []
    private var job: (batch: String, job: String)?

    public var batches: [String] {
        lock.lock()
        defer { lock.unlock() }
        return batchesValue
    }

    public func setBatches(_ b: [String]) {
        lock.lock()
        batchesValue = b
        lock.unlock()
    }

    public func setJob(_ j: (String, String)?) {
        lock.lock()
        job = j.map { (batch: $0.0, job: $0.1) }
        lock.unlock()
    }

    public func snapshot() -> ([String], (batch: String, job: String)?) {
        lock.lock()
        defer { lock.unlock() }
        return (batchesValue, job)
    }
}

/// Batch ids with the time until which they are skipped.
struct SkipList {
    static let recheck: TimeInterval = 10
    private var until: [String: Date] = [:]

    mutating func insert(_ id: String, for seconds: TimeInterval) {
        until[id] = seconds.isFinite ? Date().addingTimeInterval(seconds) : .distantFuture
    }

    func contains(_ id: String) -> Bool { until[id].map { $0 > Date() } ?? false }
}
