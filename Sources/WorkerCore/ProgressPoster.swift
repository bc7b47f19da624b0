import Foundation
import RedisQueue

/// Per-step progress for `watch`, written off the compute thread: the engine hands over its
/// latest step and goes on; a background queue writes whatever is newest, fenced on the
/// lease. A Redis outage delays the display, never a step.
final class ProgressPoster: @unchecked Sendable {
    private let queue: BatchQueue
    private let lease: JobLease
    private let lock = NSLock()
    private var latest: (step: Int, total: Int)?
    private var scheduled = false
    private let writer = DispatchQueue(label: "muse.progress")
    /// Called when a write is fenced off: the job was cancelled or reclaimed, and the step loop
    /// should stop at its next step instead of at the next lease renewal.
    var onFencedOff: (() -> Void)?

    /// `queue` should use a connection of its own (the worker's side connection).
    init(queue: BatchQueue, lease: JobLease) {
        self.queue = queue
        self.lease = lease
    }

    func post(step: Int, total: Int) {
        lock.lock()
        latest = (step, total)
        let schedule = !scheduled
        scheduled = true
        lock.unlock()
        if schedule { writer.async { self.flush() } }
    }

    /// Waits until what was posted has been written (or failed to be).
    func drain() { writer.sync {} }

    private func flush() {
        lock.lock()
        let value = latest
        latest = nil
        scheduled = false
        lock.unlock()
        guard let value else { return }
        if (try? queue.setProgress(lease, step: value.step, total: value.total)) == false { onFencedOff?() }
    }
}
