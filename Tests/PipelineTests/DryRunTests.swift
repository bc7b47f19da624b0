import Foundation
import Support
import TestSupport
import XCTest

@testable import Jobs

/// `submit --dry-run`: the spec's jobs and Redis estimate, with no Redis anywhere.
final class DryRunTests: XCTestCase {
    func testDryRunCountsJobsAndEstimatesRedisMemory() throws {
        let dir = makeTempDir("dry-run")
        defer { try? FileManager.default.removeItem(at: dir) }
        try copyDemoImages(to: dir)
        let spec = try writeSpec(
            tinyModels + """

                engine:
                  methods: [muse, prompt-only]
                  steps: 4
                generation:
                  prompts: [a quiet lake]
                  emotions: [awe, fear]
                  seeds: [1, 2]
                editing:
                  images: [images/sunset.png]
                  emotions: [sadness]
                  source_prompt: a photo
                """, in: dir)
        // An unreachable Redis: the dry run must not need one.
        let r = try runTool(
            "muse-coordinator", ["submit", "--dry-run", spec, "--redis", "redis://127.0.0.1:1"], dir: dir, timeout: 60)
        XCTAssertEqual(r.code, 0, r.stderr)
        var values: [String: String] = [:]
        for line in r.stdout.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            values[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        // (1 prompt × 2 seeds × 2 emotions + 1 image × 1 emotion) × 2 methods
        XCTAssertEqual(values["jobs"], "10")
        XCTAssertEqual(values["by kind"], "edit 2, generate 8")
        XCTAssertEqual(values["by method"], "muse 5, prompt-only 5")
        let imageBytes = try Data(contentsOf: dir.appendingPathComponent("images/sunset.png")).count
        XCTAssertEqual(values["source images"], "1 blobs, \(imageBytes) bytes")
        let loaded = try JobSpec.load(path: spec, environment: toolEnvironment())
        let payloads = try loaded.jobs.reduce(0) { $0 + (try $1.encoded().count) }
        XCTAssertEqual(values["job payloads"], "\(payloads) bytes")
        XCTAssertEqual(values["per-job overhead"], "512 bytes × 10 = 5120 bytes")
        let total = payloads + imageBytes + 5120
        XCTAssertTrue(values["redis estimate"]?.hasPrefix("\(total) bytes (") ?? false, r.stdout)
        XCTAssertTrue(values["batch"]?.hasPrefix("spec-") ?? false, r.stdout)
        XCTAssertTrue(values["compute estimate"]?.contains(" s on one 2-core worker (N workers") ?? false, r.stdout)
        XCTAssertGreaterThan(loaded.computeSeconds, 0)
    }
}
