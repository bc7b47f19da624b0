import Foundation
import Jobs
import Prometheus
import RedisQueue

/// Metrics of `collect` and `run` (swift-prometheus), served by `--metrics-port`: what the
/// collector wrote, how long a pass takes, and each followed batch's queue as the queue sees
/// it. Names are `muse_collector_<what>_<unit>` and `muse_batch_<what>`; the batch gauges
/// carry a `batch` label, so one Prometheus scrapes several collectors side by side.
public final class CoordinatorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    /// Manifest lines written, one counter per `JobStatus` (label `status`).
    let lines: [JobStatus: Counter]
    let pngBytes: Counter
    let passes: ValueHistogram
    let redisErrors: Counter

    public static let jobStates = ["queued", "running", "stalled", "done", "failed"]

    static func name(_ subsystem: String, _ what: String, _ unit: String?, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "muse", subsystem: subsystem, metricName: what, unitName: unit ?? "", helpText: help)
    }

    public init() {
        let lines = Self.name("collector", "manifest_lines", "total", "Manifest lines written, by job outcome.")
        var counters: [JobStatus: Counter] = [:]
        for status in JobStatus.allCases {
            counters[status] = registry.makeCounter(descriptor: lines, labels: [("status", status.rawValue)])
        }
        self.lines = counters
        pngBytes = registry.makeCounter(
            descriptor: Self.name("collector", "png_bytes", "total", "Bytes of result PNGs written."))
        passes = registry.makeValueHistogram(
            descriptor: Self.name(
                "collector", "pass", "seconds", "Seconds per collect pass (results and dead letters read and written)."),
            buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30])
        redisErrors = registry.makeCounter(
            descriptor: Self.name("collector", "redis_errors", "total", "Redis errors seen while following a batch."))
    }

    /// One manifest line written with `status`.
    func wroteLine(status: JobStatus) { lines[status]?.increment() }

    func wrotePNG(bytes: Int) { pngBytes.increment(by: Int64(bytes)) }

    /// Records one collect pass's duration.
    public func pass(seconds: Double) { passes.record(seconds) }

    public func redisError() { redisErrors.increment() }

    /// Queue depth and workers of `batch`, from a snapshot: gauges `muse_batch_jobs{batch,state}`
    /// and `muse_batch_workers{batch,state=alive|silent}`.
    public func observe(batch: String, status: BatchStatus) {
        let jobs = Self.name("batch", "jobs", nil, "Jobs of the batch by state, as the queue reports them.")
        let counts = [status.queued, status.running, status.stalled, status.done, status.failed]
        for (state, n) in zip(Self.jobStates, counts) {
            registry.makeGauge(descriptor: jobs, labels: [("batch", batch), ("state", state)]).set(Double(n))
        }
        let workers = Self.name("batch", "workers", nil, "Workers heard from on the batch, alive or silent.")
        let alive = status.workers.filter(\.alive).count
        registry.makeGauge(descriptor: workers, labels: [("batch", batch), ("state", "alive")]).set(Double(alive))
        registry.makeGauge(descriptor: workers, labels: [("batch", batch), ("state", "silent")])
            .set(Double(status.workers.count - alive))
    }

    /// The Prometheus text exposition format.
    public func text() -> String { registry.emitToString() }
}
