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
    public let log: Logger
    public let stop = StopSignal()

    private var finished = Set<String>()
    /// Every batch this worker has heartbeated to.
    private var seen = Set<String>()
    private var queues: [String: BatchQueue] = [:]
    private var sideQueues: [String: BatchQueue] = [:]
    private var redisDown = false
    private let state = HeartbeatState()

    public init(
        name: String, client: RedisClient, side: RedisClient, engine: PipelineEngine, batches: [String],
        exitWhenIdle: Bool, heartbeatInterval: TimeInterval, parentPID: Int32?, log: Logger
    ) {
        self.name = name
        self.client = client
        self.side = side
        self.engine = engine
        onlyBatches = batches
        self.exitWhenIdle = exitWhenIdle
        self.heartbeatInterval = heartbeatInterval
        self.parentPID = parentPID
        self.log = log
    }

    /// Runs until stopped; returns the process exit code.
    public func run() -> Int32 {
        let log = self.log
        stop.install(
            onFirst: { sig in
                log(
                    "\(sig == SIGINT ? "SIGINT" : "SIGTERM"): finishing the current step, then checkpointing and releasing the job"
                )
            },
            onSecond: { _ in
                log("second signal: exiting now (the job's lease will lapse and it resumes from its last checkpoint)")
                exit(1)
            })
        let beat = startHeartbeat()
        defer { beat.cancel() }
        var exitCode: Int32 = 0
        while !stop.requested {
            if parentGone() {
                stop.request("parent exited")
                log("parent process exited: stopping")
                break
            }
            do {
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
                        break
                    }
                    stop.sleep(1)
                    continue
                }
                var lease: (JobLease, BatchQueue)?
                for id in active {
                    let q = try queue(id)
                    if let l = try q.take(worker: name, wait: 0) {
                        lease = (l, q)
                        break
                    }
                }
                if lease == nil, let first = active.first {
                    // Nothing anywhere: block briefly on the oldest batch (stays responsive to signals).
                    let q = try queue(first)
                    if let l = try q.take(worker: name, wait: 1) { lease = (l, q) }
                }
                if let taken = lease { try process(taken.0, taken.1) }
            } catch let e as RedisError where e.isConnectionError {
                if !redisDown {
                    log("Redis unavailable (\(e)); retrying every second")
                    redisDown = true
                }
                stop.sleep(1)
            } catch let e as RedisError {
                if case .authenticationFailed = e {
                    log("error: \(e)")
                    exitCode = 1
                    break
                }
                log("Redis error: \(e); retrying in a second")
                stop.sleep(1)
            } catch let QueueError.noSuchBatch(id) {
                finished.insert(id)  // destroyed while we looked at it
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
            guard let c = try queue(id).counters() else { continue }  // not created (yet)
            if c.finished { finished.insert(id) } else { out.append(id) }
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
        let began = Date()
        let short = String(lease.jobID.prefix(8))
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
        defer {
            held.stopRenewing()
            if !held.isLost { try? queue.clearProgress(jobID: lease.jobID) }
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

        do {
            let loadSeconds = try engine.prepare(job, log: log)
            var session: EngineSession?
            var resumedFrom: Int?
            var segments: [JobSegment] = []
            do {
                if let stored = try held.storedCheckpoint() {
                    let (header, payload) = stored
                    let s = try engine.resume(job, from: payload)
                    if let data = payload.blob("segments") {
                        segments = (try? JSONDecoder().decode([JobSegment].self, from: data)) ?? []
                    }
                    session = s
                    resumedFrom = s.step
                    log(
                        "job \(short): resuming from the checkpoint at step \(s.step)/\(s.totalSteps) (written under epoch \(header.epoch))"
                    )
                }
            } catch {
                log("job \(short): stored checkpoint unusable (\(error)); starting from scratch")
            }
            if session == nil {
                var image: RGBImage?
                if c.kind == .edit {
                    guard let sha = c.imageSHA256 else {
                        throw JobFailure("edit job without an image", permanent: true)
                    }
                    guard let bytes = try queue.blob(name: sha) else {
                        throw JobFailure("source image blob \(sha) (\(job.imagePath ?? "?")) is missing from Redis")
                    }
                    do { image = try PNGCodec.decode(bytes) } catch {
                        throw JobFailure(
                            "source image \(job.imagePath ?? sha) cannot be decoded: \(error)", permanent: true)
                    }
                }
                session = try engine.begin(job, image: image)
            }
            guard let session else { return }
            let segmentStart = session.step
            let segmentBegan = Date()
            var sinceCheckpoint = 0
            var checkpoints = 0
            func saveCheckpoint() throws -> Bool {
                var payload = try session.checkpoint()
                let segs =
                    segments + [
                        JobSegment(
                            worker: name, epoch: lease.epoch, fromStep: segmentStart, toStep: session.step,
                            seconds: Date().timeIntervalSince(segmentBegan))
                    ]
                payload.blobs.append(.init(name: "segments", bytes: try JSONEncoder().encode(segs)))
                do {
                    guard let bytes = try held.writeCheckpoint(payload, step: session.step) else { return false }
                    checkpoints += 1
                    log("job \(short): checkpoint at step \(session.step)/\(session.totalSteps) (\(bytes) bytes)")
                } catch let e as RedisError where e.isConnectionError {
                    log("job \(short): checkpoint at step \(session.step) not saved (\(e)); continuing")
                }
                return true
            }
            while !session.isFinished {
                if held.isLost {
                    log("job \(short): no longer its owner (\(held.lostBecause ?? "lease lost")); dropping it")
                    return
                }
                if stop.requested || parentGone() {
                    stop.request(stop.why ?? "parent exited")
                    _ = try saveCheckpoint()
                    if try held.release() {
                        log(
                            "job \(short): released at step \(session.step)/\(session.totalSteps); the next worker resumes from there"
                        )
                    } else {
                        log("job \(short): not released: no longer its owner")
                    }
                    return
                }
                try session.advance()
                sinceCheckpoint += 1
                try? queue.setProgress(jobID: job.id, worker: name, step: session.step, total: session.totalSteps)
                if let line = session.lastStepSummary, ProcessInfo.processInfo.environment["MUSE_WORKER_VERBOSE"] != nil
                {
                    log("job \(short): \(line)")
                }
                if job.checkpointEvery > 0, sinceCheckpoint >= job.checkpointEvery, !session.isFinished {
                    sinceCheckpoint = 0
                    if try !saveCheckpoint() { continue }  // lost: reported at the top of the loop
                }
            }
            let out = try session.finish()
            let png = try PNGCodec.encode(RGBImage(width: out.width, height: out.height, channels: 3, pixels: out.rgb))
            let pngSHA = Hashing.sha256Hex(png)
            segments.append(
                JobSegment(
                    worker: name, epoch: lease.epoch, fromStep: segmentStart, toStep: session.step,
                    seconds: Date().timeIntervalSince(segmentBegan)))
            let top = out.probabilities?.max { $0.value < $1.value }?.key
            let metrics = JobMetrics(
                engine: engine.name, width: out.width, height: out.height, pngSHA256: pngSHA,
                probabilities: out.probabilities,
                targetProbability: out.probabilities?[c.emotion.rawValue], topEmotion: top,
                timings: JobTimings(
                    attemptSeconds: Date().timeIntervalSince(began), engineSeconds: out.engineSeconds,
                    modelLoadSeconds: loadSeconds, phases: out.phases),
                resumedFromStep: resumedFrom, checkpointsWritten: checkpoints, segments: segments, trace: out.trace,
                worker: name, epoch: lease.epoch, attempt: lease.attempt)
            let outcome = try publishPatiently(
                held, fields: [("png", png), ("metrics", try CanonicalJSON.encode(metrics))], short: short)
            switch outcome {
            case .published, .alreadyPublished:
                try? queue.recordDone(worker: name, seconds: Date().timeIntervalSince(began))
                var summary = String(format: "job %@: done in %.1f s", short, Date().timeIntervalSince(began))
                if let p = out.probabilities?[c.emotion.rawValue], let top {
                    summary += String(format: ", p(%@) %.3f, top %@", c.emotion.rawValue, p, top)
                }
                if let r = resumedFrom { summary += ", resumed from step \(r)" }
                log(summary)
            case .stale:
                log("job \(short): result refused: another worker owns the job now")
            case nil:
                log("job \(short): result not published (stopping while Redis is unreachable); the job will be redone")
            }
        } catch let failure as JobFailure {
            try report(held, failure.message, permanent: failure.permanent, short: short)
        } catch let e as RedisError where e.isConnectionError {
            log("job \(short): lost Redis (\(e)); the job resumes from its last checkpoint once its lease lapses")
            throw e
        } catch {
            try report(held, "\(error)", permanent: false, short: short)
        }
    }

    private func report(_ held: LeasedJob, _ message: String, permanent: Bool, short: String) throws {
        switch try held.fail(error: message, permanent: permanent) {
        case .requeued: log("job \(short): failed (attempt \(held.lease.attempt)): \(message); re-queued")
        case .deadLettered:
            log(
                "job \(short): failed for good\(permanent ? "" : " (attempt \(held.lease.attempt), the last allowed)"): \(message); dead-lettered"
            )
        case .stale: log("job \(short): failed (\(message)), but it belongs to another worker now")
        }
    }

    /// A computed result is worth waiting for: retry through Redis outages (the publish is
    /// fenced and idempotent) until it goes through or we are asked to stop.
    private func publishPatiently(_ held: LeasedJob, fields: [(String, Data)], short: String) throws -> PublishOutcome?
    {
        var warned = Date.distantPast
        while true {
            do { return try held.publish(fields: fields) } catch let e as RedisError where e.isConnectionError {
                if stop.requested { return nil }
                if Date().timeIntervalSince(warned) > 10 {
                    log("job \(short): cannot publish yet (\(e)); retrying")
                    warned = Date()
                }
                stop.sleep(1)
            }
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
