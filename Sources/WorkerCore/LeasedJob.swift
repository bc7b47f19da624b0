import Checkpoints
import Foundation
import RedisQueue
import Support

/// A worker's hold on one job: renews the lease on a timer (its own connection, so a long
/// engine step never lets the lease lapse), and routes every write — checkpoint, result,
/// failure, release — through the fenced queue calls. Once any of them reports that the
/// epoch is no longer current, `isLost` turns true and the worker must drop the job.
public final class LeasedJob: @unchecked Sendable {
    public let lease: JobLease
    public let queue: BatchQueue
    private let renewQueue: BatchQueue
    private let renewInterval: TimeInterval
    private let lock = NSLock()
    private var lostReason: String?
    private var timer: DispatchSourceTimer?
    private var renewFailures = 0
    /// Set when publish, fail or release begins: a renewal refused from then on is the job
    /// ending here, not another owner taking it (an in-flight renewal can lose that race).
    private var ending = false
    /// Called from the renewal thread with notable events (for logs).
    public var onEvent: (@Sendable (String) -> Void)?

    public init(lease: JobLease, queue: BatchQueue, renewQueue: BatchQueue, leaseMs: Int) {
        self.lease = lease
        self.queue = queue
        self.renewQueue = renewQueue
        renewInterval = max(0.05, Double(leaseMs) / 1000 / 3)
    }

    deinit { stopRenewing() }

    public var isLost: Bool {
        lock.lock()
        defer { lock.unlock() }
        return lostReason != nil
    }

    public var lostBecause: String? {
        lock.lock()
        defer { lock.unlock() }
        return lostReason
    }

    public func markLost(_ why: String) {
        lock.lock()
        let first = lostReason == nil
        if first { lostReason = why }
        lock.unlock()
        if first { onEvent?("lease on job \(lease.jobID) lost: \(why)") }
    }

    /// Renews every lease/3 until `stopRenewing()` or the lease is lost.
    public func startRenewing() {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "muse.renew.\(lease.jobID)"))
        t.schedule(deadline: .now() + renewInterval, repeating: renewInterval)
        t.setEventHandler { [weak self] in self?.renewOnce() }
        lock.lock()
        timer = t
        lock.unlock()
        t.resume()
    }

    public func stopRenewing() {
        lock.lock()
        let t = timer
        timer = nil
        lock.unlock()
        t?.cancel()
    }

    public func renewOnce() {
        guard !isLost else {
            stopRenewing()
            return
        }
        do {
            if try renewQueue.renew(lease) {
                if renewFailures > 0 { onEvent?("lease renewal works again") }
                renewFailures = 0
            } else {
                lock.lock()
                let endingHere = ending
                lock.unlock()
                if !endingHere {
                    markLost("another worker took the job over (epoch \(lease.epoch) is no longer current)")
                }
                stopRenewing()
            }
        } catch {
            renewFailures += 1
            if renewFailures == 1 { onEvent?("cannot renew the lease: \(error); retrying") }
        }
    }

    /// Fenced checkpoint write. Returns the encoded size, or nil if this owner is stale.
    @discardableResult
    public func writeCheckpoint(_ payload: CheckpointPayload, step: Int) throws -> Int? {
        guard !isLost else { return nil }
        let data = try CheckpointCodec.encode(payload, jobID: lease.jobID, epoch: lease.epoch, step: UInt32(step))
        if try queue.writeCheckpoint(lease, step: step, data: data) { return data.count }
        markLost("checkpoint refused (epoch \(lease.epoch) is no longer current)")
        return nil
    }

    private func beginEnding() {
        lock.lock()
        ending = true
        lock.unlock()
    }

    public func publish(fields: [(String, Data)]) throws -> PublishOutcome {
        beginEnding()  // renewals go on until the result is in: a slow publish keeps its lease
        let outcome = try queue.publish(lease, fields: fields)
        if outcome == .stale { markLost("result refused (epoch \(lease.epoch) is no longer current)") }
        stopRenewing()
        return outcome
    }

    public func fail(error: String, permanent: Bool) throws -> FailOutcome {
        beginEnding()
        stopRenewing()
        let outcome = try queue.fail(lease, error: error, permanent: permanent)
        if outcome == .stale { markLost("failure report refused (epoch \(lease.epoch) is no longer current)") }
        return outcome
    }

    public func release() throws -> Bool {
        beginEnding()
        stopRenewing()
        return try queue.release(lease)
    }

    /// The checkpoint that came with the lease, validated for this job; nil when there is
    /// none; an error says why an existing one cannot be used (start from scratch then).
    public func storedCheckpoint() throws -> (header: CheckpointHeader, payload: CheckpointPayload)? {
        guard let data = lease.checkpoint else { return nil }
        return try CheckpointCodec.decode(data, jobID: lease.jobID)
    }
}
