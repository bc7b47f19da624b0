import Foundation
import Prometheus

/// A worker's Prometheus metrics (swift-prometheus), served by `--metrics-port`. Names are
/// `muse_worker_<what>_<unit>`.
public final class WorkerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let jobsDone: Counter
    let jobsFailed: Counter
    let jobsRequeued: Counter
    let jobsLost: Counter
    let leasesReclaimed: Counter
    let jobsReleased: Counter
    let steps: ValueHistogram
    let innerIterations: ValueHistogram
    let checkpoints: ValueHistogram
    let checkpointBytes: Counter
    let redisErrors: Counter

    static func name(_ what: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "muse", subsystem: "worker", metricName: what, unitName: unit, helpText: help)
    }

    public init() {
        jobsDone = registry.makeCounter(descriptor: Self.name("jobs_done", "total", "Jobs published by this worker."))
        jobsFailed = registry.makeCounter(
            descriptor: Self.name("jobs_failed", "total", "Job attempts that failed (re-queued or dead-lettered)."))
        jobsRequeued = registry.makeCounter(
            descriptor: Self.name("jobs_retried", "total", "Failed attempts re-queued for another try."))
        jobsLost = registry.makeCounter(
            descriptor: Self.name(
                "leases_lost", "total", "Jobs dropped because another owner (or a cancel) took over."))
        leasesReclaimed = registry.makeCounter(
            descriptor: Self.name(
                "leases_reclaimed", "total", "Jobs this worker took over from an owner whose lease lapsed."))
        jobsReleased = registry.makeCounter(
            descriptor: Self.name("jobs_released", "total", "Jobs handed back at a stop, to resume elsewhere."))
        steps = registry.makeValueHistogram(
            descriptor: Self.name(
                "step", "seconds", "Seconds per denoising step (guided steps include their inner iterations)."),
            buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 180, 600])
        innerIterations = registry.makeValueHistogram(
            descriptor: Self.name(
                "inner_iteration", "seconds",
                "Seconds per inner iteration of a guided step (forward through the decoder and classifier, backward, update)."
            ),
            buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 180])
        checkpoints = registry.makeValueHistogram(
            descriptor: Self.name("checkpoint", "seconds", "Seconds to encode and write one checkpoint."),
            buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2])
        checkpointBytes = registry.makeCounter(
            descriptor: Self.name("checkpoint_bytes", "total", "Compressed checkpoint bytes written."))
        redisErrors = registry.makeCounter(
            descriptor: Self.name("redis_errors", "total", "Redis errors seen by the main loop (outages included)."))
    }

    /// The Prometheus text exposition format.
    public func text() -> String { registry.emitToString() }
}
