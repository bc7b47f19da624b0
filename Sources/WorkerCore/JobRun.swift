import Checkpoints
import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

/// One attempt at one job by one worker: open a session (resumed from the stored checkpoint,
/// or fresh), run its steps with fenced checkpoints until it finishes, is stopped or is lost,
/// then publish the image and its metrics.
final class JobRun {
    enum Ending {
        case finished(EngineOutput)
        /// Checkpointed and handed back (stop requested).
        case released
        /// Another owner has the job now.
        case lost
    }

    let job: PipelineJob
    let held: LeasedJob
    let engine: PipelineEngine
    let worker: String
    let log: Logger
    let stop: StopSignal
    /// True once this worker should stop taking work (a signal, or its parent exited).
    let shouldStop: () -> Bool
    /// Reports a finished step (step, total); must not block.
    let progress: (Int, Int) -> Void
    let began = Date()
    /// Counted into when set (`muse-worker run --metrics-port`).
    var metrics: WorkerMetrics?
    var short: String { String(job.id.prefix(8)) }
    var queue: BatchQueue { held.queue }
    var lease: JobLease { held.lease }

    private var segments: [JobSegment] = []
    private var resumedFrom: Int?
    private var checkpoints = 0
    private var segmentStart = 0
    private var segmentBegan = Date()
    private var loadSeconds = 0.0

    init(
        job: PipelineJob, held: LeasedJob, engine: PipelineEngine, worker: String, log: Logger, stop: StopSignal,
        progress: @escaping (Int, Int) -> Void, shouldStop: @escaping () -> Bool
    ) {
        self.job = job
        self.held = held
        self.engine = engine
        self.worker = worker
        self.log = log
        self.stop = stop
        self.shouldStop = shouldStop
        self.progress = progress
    }

    /// The whole attempt. Throws `JobFailure` for job-level errors and Redis connection
    /// errors for outages; the caller reports them.
    func run() throws {
        loadSeconds = try engine.prepare(job, log: log)
        let session = try resumedSession() ?? freshSession()
        segmentStart = session.step
        segmentBegan = Date()
        switch try runSteps(session) {
        case .lost: metrics?.jobsLost.increment()
        case .released: metrics?.jobsReleased.increment()
        case .finished(let out): try publish(out, session: session)
        }
    }

    // MARK: sessions

    /// The session saved in the lease's checkpoint; nil (logged) when there is none or it
    /// cannot be used.
    private func resumedSession() -> EngineSession? {
        do {
            guard let (header, payload) = try held.storedCheckpoint() else { return nil }
            let session = try engine.resume(job, from: payload)
            if let data = payload.blob("segments") {
                segments = (try? JSONDecoder().decode([JobSegment].self, from: data)) ?? []
            }
            resumedFrom = session.step
            log(
                "job \(short): resuming from the checkpoint at step \(session.step)/\(session.totalSteps) "
                    + "(written under epoch \(header.epoch))")
            return session
        } catch {
            log("job \(short): stored checkpoint unusable (\(error)); starting from scratch")
            return nil
        }
    }

    private func freshSession() throws -> EngineSession {
        let c = job.content
        var image: RGBImage?
        if c.kind == .edit {
            guard let sha = c.imageSHA256 else { throw JobFailure("edit job without an image", permanent: true) }
            let bytes: Data
            if let shared = job.sharedSources {
                // A mount that is down here may be up on another host: retried, not permanent.
                do { bytes = try SharedSources.read(sha256: sha, root: SharedSources.root(job: shared)) } catch {
                    throw JobFailure("\(error) (\(job.imagePath ?? sha))")
                }
            } else {
                guard let fetched = try patiently("read the source image", { try queue.blob(name: sha) }) else {
                    throw Interrupted()
                }
                guard let blob = fetched else {
                    throw JobFailure("source image blob \(sha) (\(job.imagePath ?? "?")) is missing from Redis")
                }
                bytes = blob
            }
            do { image = try PNGCodec.decode(bytes) } catch {
                throw JobFailure("source image \(job.imagePath ?? sha) cannot be decoded: \(error)", permanent: true)
            }
        }
        return try engine.begin(job, image: image)
    }

    // MARK: steps

    private func runSteps(_ session: EngineSession) throws -> Ending {
        var sinceCheckpoint = 0
        let verbose = ProcessInfo.processInfo.environment["MUSE_WORKER_VERBOSE"] != nil
        while !session.isFinished {
            if held.isLost {
                log("job \(short): no longer its owner (\(held.lostBecause ?? "lease lost")); dropping it")
                return .lost
            }
            if shouldStop() { return try releaseForStop(session) }
            let stepBegan = Date()
            try session.advance()
            metrics?.steps.record(Date().timeIntervalSince(stepBegan))
            for seconds in session.lastInnerIterationSeconds { metrics?.innerIterations.record(seconds) }
            sinceCheckpoint += 1
            progress(session.step, session.totalSteps)
            if verbose, let line = session.lastStepSummary { log("job \(short): \(line)") }
            if job.checkpointEvery > 0, sinceCheckpoint >= job.checkpointEvery, !session.isFinished {
                sinceCheckpoint = 0
                _ = try saveCheckpoint(session)  // a refused write marks the lease lost: seen at the top
            }
        }
        return .finished(try session.finish())
    }

    private func releaseForStop(_ session: EngineSession) throws -> Ending {
        stop.request(stop.why ?? "parent exited")
        _ = try saveCheckpoint(session)
        if try held.release() {
            log(
                "job \(short): released at step \(session.step)/\(session.totalSteps); the next worker resumes from there"
            )
        } else {
            log("job \(short): not released: no longer its owner")
        }
        return .released
    }

    private func currentSegment(_ session: EngineSession) -> JobSegment {
        JobSegment(
            worker: worker, epoch: lease.epoch, fromStep: segmentStart, toStep: session.step,
            seconds: Date().timeIntervalSince(segmentBegan))
    }

    /// Fenced checkpoint write; false when this owner is stale. A Redis outage skips the
    /// checkpoint (the job carries on; the next one is written when Redis is back).
    private func saveCheckpoint(_ session: EngineSession) throws -> Bool {
        var payload = try session.checkpoint()
        let segs = segments + [currentSegment(session)]
        payload.blobs.append(.init(name: "segments", bytes: try JSONEncoder().encode(segs)))
        let began = Date()
        do {
            guard let bytes = try held.writeCheckpoint(payload, step: session.step) else { return false }
            metrics?.checkpoints.record(Date().timeIntervalSince(began))
            metrics?.checkpointBytes.increment(by: Int64(bytes))
            checkpoints += 1
            log("job \(short): checkpoint at step \(session.step)/\(session.totalSteps) (\(bytes) bytes)")
        } catch let e as RedisError where e.isTransient {
            log("job \(short): checkpoint at step \(session.step) not saved (\(e)); continuing")
        }
        return true
    }

    // MARK: result

    private func publish(_ out: EngineOutput, session: EngineSession) throws {
        let png = try PNGCodec.encode(RGBImage(width: out.width, height: out.height, channels: 3, pixels: out.rgb))
        segments.append(currentSegment(session))
        let metrics = self.metrics(out, pngSHA256: Hashing.sha256Hex(png))
        let outcome = try publishPatiently(fields: try JobResult(lease: lease, png: png, metrics: metrics).fields())
        let emotion = job.content.emotion.rawValue
        switch outcome {
        case .published, .alreadyPublished:
            self.metrics?.jobsDone.increment()
            try? queue.recordDone(worker: worker, seconds: Date().timeIntervalSince(began))
            var summary = String(format: "job %@: done in %.1f s", short, Date().timeIntervalSince(began))
            if let p = out.probabilities?[emotion], let top = metrics.topEmotion {
                summary += String(format: ", p(%@) %.3f, top %@", emotion, p, top)
            }
            if let r = resumedFrom { summary += ", resumed from step \(r)" }
            log(summary)
        case .stale:
            log("job \(short): result refused: another worker owns the job now")
        case nil:
            log("job \(short): result not published (stopping while Redis is unreachable); the job will be redone")
        }
    }

    private func metrics(_ out: EngineOutput, pngSHA256: String) -> JobMetrics {
        JobMetrics(
            engine: engine.name, width: out.width, height: out.height, pngSHA256: pngSHA256,
            probabilities: out.probabilities, targetProbability: out.probabilities?[job.content.emotion.rawValue],
            topEmotion: out.probabilities?.max { $0.value < $1.value }?.key,
            timings: JobTimings(
                attemptSeconds: Date().timeIntervalSince(began), engineSeconds: out.engineSeconds,
                modelLoadSeconds: loadSeconds, phases: out.phases),
            resumedFromStep: resumedFrom, checkpointsWritten: checkpoints, segments: segments, trace: out.trace,
            worker: worker, epoch: lease.epoch, attempt: lease.attempt, evaluation: out.evaluation,
            traceDocument: out.traceDocument)
    }

    /// A computed result is worth waiting for: retry through Redis outages (the publish is
    /// fenced and idempotent) until it goes through or we are asked to stop.
    private func publishPatiently(fields: [(String, Data)]) throws -> PublishOutcome? {
        try patiently("publish") { try held.publish(fields: fields) }
    }

    /// Runs a Redis call that is safe to repeat until it goes through, waiting out outages,
    /// restarts and a server still loading its data; nil when a stop is requested first.
    func patiently<T>(_ what: String, _ body: () throws -> T) throws -> T? {
        var warned = Date.distantPast
        while true {
            do { return try body() } catch let e as RedisError where e.isTransient {
                if stop.requested { return nil }
                if Date().timeIntervalSince(warned) > 10 {
                    log("job \(short): cannot \(what) yet (\(e)); retrying")
                    warned = Date()
                }
                stop.sleep(1)
            }
        }
    }
}

/// A stop was requested while Redis was unreachable: the job is left to its lease.
struct Interrupted: Error {}
