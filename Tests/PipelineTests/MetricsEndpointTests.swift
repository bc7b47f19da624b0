import Foundation
import RedisQueue
import TestSupport
import XCTest

/// `muse-worker run --metrics-port`: a Prometheus scrape of a worker that ran jobs shows them.
final class MetricsEndpointTests: XCTestCase {
    /// GET over a plain socket (no HTTP client library in the tests' dependencies).
    func get(_ port: UInt16, _ path: String) throws -> String {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        XCTAssertEqual(rc, 0, "connect to the metrics port")
        let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { write(s, $0.baseAddress, $0.count) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(s, &chunk, chunk.count)
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The port a tool logged for its metrics endpoint.
    func loggedPort(_ tool: RunningTool) -> UInt16? {
        let logged = tool.stderr
        return logged.range(of: #"metrics on http://127\.0\.0\.1:(\d+)/metrics"#, options: .regularExpression).flatMap {
            UInt16(logged[$0].split(separator: ":").last!.split(separator: "/").first!)
        }
    }

    func testScrapeShowsTheJobsAndStepsAWorkerRan() throws {
        let dir = makeTempDir("metrics")
        defer { try? FileManager.default.removeItem(at: dir) }
        let redis = try TestRedis()
        let spec = try writeSpec(
            tinyModels + "\nengine: {steps: 4}\ngeneration: {prompts: [a lake], emotions: [awe, fear], seeds: [1]}\n",
            in: dir, name: "m.yaml")
        let submitted = try runTool("muse-coordinator", ["submit", spec, "--redis", redis.url], dir: dir)
        XCTAssertEqual(submitted.code, 0, submitted.stderr)
        let batch = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let worker = try RunningTool(
            "muse-worker", ["run", "--redis", redis.url, "--engine", "fake", "--metrics-port", "0"], dir: dir,
            label: "metrics-worker")
        defer { worker.stop() }
        let queue = try BatchQueue(client: try redis.client(), batchID: batch)
        XCTAssertTrue(try waitUntil(30, "both jobs done") { (try queue.counters()?.done) == 2 })
        let logged = worker.stderr
        let port = try XCTUnwrap(
            logged.range(of: #"metrics on http://127\.0\.0\.1:(\d+)/metrics"#, options: .regularExpression).flatMap {
                UInt16(logged[$0].split(separator: ":").last!.split(separator: "/").first!)
            }, logged)
        let scrape = try get(port, "/metrics")
        XCTAssertTrue(scrape.hasPrefix("HTTP/1.1 200 OK"), scrape)
        XCTAssertTrue(scrape.contains("text/plain; version=0.0.4"), scrape)
        XCTAssertTrue(scrape.contains("\nmuse_worker_jobs_done_total 2\n"), scrape)
        XCTAssertTrue(scrape.contains("\nmuse_worker_step_seconds_count 8\n"), "2 jobs × 4 steps: \(scrape)")
        // The fake engine counts each step as one inner iteration.
        XCTAssertTrue(scrape.contains("\nmuse_worker_inner_iteration_seconds_count 8\n"), scrape)
        XCTAssertTrue(scrape.contains("\nmuse_worker_leases_reclaimed_total 0\n"), scrape)
        XCTAssertTrue(scrape.contains("# TYPE muse_worker_checkpoint_seconds histogram"), scrape)
        XCTAssertTrue(try get(port, "/other").hasPrefix("HTTP/1.1 404"))
    }

    /// `collect --follow --metrics-port`: the queue depth of the batch while it waits, then
    /// manifest lines as the worker finishes jobs.
    func testCollectorShowsQueueDepthAndLines() throws {
        let dir = makeTempDir("collect-metrics")
        defer { try? FileManager.default.removeItem(at: dir) }
        let redis = try TestRedis()
        let spec = try writeSpec(
            tinyModels
                + "\nengine: {steps: 4}\ngeneration: {prompts: [a lake], emotions: [awe, fear, anger], seeds: [1]}\n",
            in: dir, name: "m.yaml")
        let submitted = try runTool("muse-coordinator", ["submit", spec, "--redis", redis.url], dir: dir)
        XCTAssertEqual(submitted.code, 0, submitted.stderr)
        let batch = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let collect = try RunningTool(
            "muse-coordinator",
            [
                "collect", batch, "--follow", "--interval", "0.1", "--redis", redis.url, "--output",
                dir.appendingPathComponent("out").path, "--metrics-port", "0",
            ], dir: dir, label: "metrics-collect")
        defer { collect.stop() }
        var port: UInt16?
        XCTAssertTrue(
            waitUntil(30, "the collector's metrics port") {
                port = self.loggedPort(collect)
                return port != nil
            })
        let queued = #"muse_batch_jobs{batch="\#(batch)",state="queued"} 3.0"#
        XCTAssertTrue(
            try waitUntil(30, "3 queued jobs on the gauge") { try self.get(port!, "/metrics").contains(queued) })
        // 4 steps × 0.5 s a job: after the first line, the next comes ~2 s later.
        let worker = try RunningTool(
            "muse-worker", ["run", "--redis", redis.url, "--engine", "fake", "--fake-step-ms", "500"], dir: dir,
            label: "metrics-collect-worker")
        defer { worker.stop() }
        var scrape = ""
        XCTAssertTrue(
            try waitUntil(60, "one manifest line counted") {
                scrape = try self.get(port!, "/metrics")
                // The gauge follows the pass that wrote the line: wait for both.
                return scrape.contains(#"muse_collector_manifest_lines_total{status="done"} 1"#)
                    && scrape.contains(#"muse_batch_jobs{batch="\#(batch)",state="done"} 1.0"#)
            }, scrape)
        XCTAssertTrue(scrape.contains(#"muse_batch_workers{batch="\#(batch)",state="alive"} 1.0"#), scrape)
        XCTAssertTrue(scrape.contains("# TYPE muse_collector_pass_seconds histogram"), scrape)
        XCTAssertTrue(scrape.contains("muse_collector_png_bytes_total "), scrape)
        XCTAssertEqual(collect.finish(timeout: 60).code, 0)
    }
}
