import Foundation
import XCTest

@testable import CoordinatorCore
@testable import RedisQueue

/// `watch`/`status` with 100 workers: a summary and the few workers an operator looks for.
final class WorkerLinesTests: XCTestCase {
    func snapshot(workers n: Int) -> BatchSnapshot {
        var workers: [WorkerStatus] = []
        var totals: [String: BatchQueue.WorkerTotals] = [:]
        var progress: [String: BatchQueue.JobProgress] = [:]
        for i in 0..<n {
            let name = String(format: "w%03d", i)
            let dead = i % 25 == 7  // w007, w032, w057, w082
            workers.append(
                WorkerStatus(
                    name: name, lastSeenMsAgo: dead ? Int64(60_000 + i) : 500, jobID: i % 2 == 0 ? "job\(i)" : nil,
                    alive: !dead))
            totals[name] = .init(done: i % 10, seconds: Double(i % 10) * (i == 42 ? 90 : 10))
            if i % 2 == 0 && !dead { progress["job\(i)"] = .init(worker: name, step: 3, total: 50) }
        }
        return BatchSnapshot(
            status: BatchStatus(total: 1000, done: 450, failed: 0, running: 48, stalled: 0, workers: workers),
            progress: progress, totals: totals)
    }

    func testHundredWorkersGetASummaryAndASelection() {
        let lines = snapshot(workers: 100).workerLines()
        XCTAssertLessThanOrEqual(lines.count, 10, lines.joined(separator: "\n"))
        XCTAssertEqual(
            lines[0],
            "100 workers: 96 alive (48 busy), 4 dead; the busiest, slowest and dead below (--workers lists all)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("[busiest] w009: 9 done") }, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.hasPrefix("[slowest] w042: 2 done") && $0.hasSuffix("90.0 s/job") })
        XCTAssertTrue(lines.contains { $0.hasPrefix("[dead] w082: ") && $0.contains("dead (no heartbeat") })
        XCTAssertEqual(snapshot(workers: 100).workerLines(limit: nil).count, 100, "--workers: all of them")
        XCTAssertEqual(snapshot(workers: 5).workerLines().count, 5, "few workers: one line each")
    }
}
