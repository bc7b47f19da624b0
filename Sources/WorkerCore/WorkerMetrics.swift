import Foundation
import Prometheus

/// A worker's Prometheus metrics (swift-prometheus), served by `--metrics-port`.
public final class WorkerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let jobsDone: Counter
    let jobsFailed: Counter
    let jobsRequeued: Counter
    let jobsLost: Counter
    let jobsReleased: Counter
    let steps: ValueHistogram
    let checkpoints: ValueHistogram
    let checkpointBytes: Counter
    let redisErrors: Counter

    public init() {
        jobsDone = registry.makeCounter(name: "muse_worker_jobs_done_total", help: "Jobs published by this worker.")
        jobsFailed = registry.makeCounter(
            name: "muse_worker_jobs_failed_total", help: "Job attempts that failed (re-queued or dead-lettered).")
        jobsRequeued = registry.makeCounter(
            name: "muse_worker_jobs_retried_total", help: "Failed attempts re-queued for another try.")
        jobsLost = registry.makeCounter(
            name: "muse_worker_leases_lost_total", help: "Jobs dropped because another owner (or a cancel) took over.")
        jobsReleased = registry.makeCounter(
            name: "muse_worker_jobs_released_total", help: "Jobs handed back at a stop, to resume elsewhere.")
        steps = registry.makeValueHistogram(
            name: "muse_worker_step_seconds", buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 180, 600],
            help: "Seconds per denoising step (guided steps include their inner iterations).")
        checkpoints = registry.makeValueHistogram(
            name: "muse_worker_checkpoint_seconds", buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2],
            help: "Seconds to encode and write one checkpoint.")
        checkpointBytes = registry.makeCounter(
            name: "muse_worker_checkpoint_bytes_total", help: "Compressed checkpoint bytes written.")
        redisErrors = registry.makeCounter(
            name: "muse_worker_redis_errors_total", help: "Redis errors seen by the main loop (outages included).")
    }

    /// The Prometheus text exposition format.
    public func text() -> String { registry.emitToString() }
}
