import Foundation
import Jobs
import RedisQueue
import Support
import XCTest

@testable import CoordinatorCore

/// One collector per output folder, one batch per manifest unless asked, and no temporary
/// files left behind by a killed collector.
final class OutputFolderTests: XCTestCase {
    var out: URL!
    var redis: RedisServer!

    override func setUpWithError() throws {
        out = FileManager.default.temporaryDirectory.appendingPathComponent("output-\(UUID().uuidString)")
        redis = try RedisServer.temporary()
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: out)
        redis = nil
    }

    func queue(_ batch: String) throws -> BatchQueue {
        try BatchQueue(client: try redis.client(), batchID: batch)
    }

    /// Two collectors on one folder would each append the same results (the manifest's
    /// de-duplication is per process): the second one is refused while the first lives.
    func testSecondCollectorOnTheSameFolderIsRefused() throws {
        var first: Collector? = try Collector(queue: try queue("batch-a"), output: out, log: { _ in })
        XCTAssertThrowsError(try Collector(queue: try queue("batch-a"), output: out, log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("another muse-coordinator (pid \(getpid())) is running on"), "\(error)")
        }
        XCTAssertNotNil(first)
        first = nil
        XCTAssertNoThrow(try Collector(queue: try queue("batch-a"), output: out, log: { _ in }))
        // `run` hands in the lock it already holds.
        let lock = try OutputLock(folder: out)
        XCTAssertNoThrow(try Collector(queue: try queue("batch-a"), output: out, lock: lock, log: { _ in }))
    }

    func testManifestOfAnotherBatchIsRefusedUnlessMixingIsAllowed() throws {
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let manifest = out.appendingPathComponent(Collector.manifestName)
        try Data(
            (#"{"batch_id":"demo-111111111111","job_id":"a"}"# + "\n"
                + #"{"batch_id":"demo-111111111111","job_id":"b"}"# + "\n").utf8
        ).write(to: manifest)
        XCTAssertNoThrow(try Collector(queue: try queue("demo-111111111111"), output: out, log: { _ in }))
        XCTAssertThrowsError(try Collector(queue: try queue("demo-222222222222"), output: out, log: { _ in })) {
            let text = "\($0)"
            XCTAssertTrue(text.contains("already holds batch demo-111111111111 (2 jobs)"), text)
            XCTAssertTrue(text.contains("this is batch demo-222222222222"), text)
            XCTAssertTrue(text.contains("--allow-mixed"), text)
        }
        XCTAssertNoThrow(
            try Collector(queue: try queue("demo-222222222222"), output: out, allowMixed: true, log: { _ in }))
        XCTAssertEqual(
            Collector.sheetName(batchID: "demo-222222222222", mixed: true), "contact-sheet-demo-222222222222.png")
        XCTAssertEqual(Collector.sheetName(batchID: "demo-222222222222", mixed: false), "contact-sheet.png")
    }

    /// `writeDurably` writes `.NAME.tmp-PID` and renames it; a collector killed in between
    /// (kill -9) leaves the temporary file, which the next collector removes — only files of
    /// that pattern whose process is gone.
    func testTemporariesOfDeadCollectorsAreRemovedOnStart() throws {
        let dead = try deadPID()
        let fm = FileManager.default
        try fm.createDirectory(at: out.appendingPathComponent("awe"), withIntermediateDirectories: true)
        try fm.createDirectory(at: out.appendingPathComponent("traces/awe"), withIntermediateDirectories: true)
        try fm.createDirectory(at: out.appendingPathComponent(".redis"), withIntermediateDirectories: true)
        let stale = [
            ".contact-sheet.png.tmp-\(dead)", "awe/.a-lake-1-0123abcd.png.tmp-\(dead)",
            "traces/awe/.a-lake-1-0123abcd.json.tmp-\(dead)",
        ]
        let kept = [
            "awe/.b-lake-1-0123abcd.png.tmp-\(getppid())",  // a live process may still be writing it
            ".notes.tmp-abc", "awe/x.png.tmp-\(dead)", "awe/a.png",
            ".redis/.appendonly.aof.tmp-\(dead)",  // not the collector's: hidden folders are not entered
        ]
        for name in stale + kept { try Data("x".utf8).write(to: out.appendingPathComponent(name)) }
        var logged: [String] = []
        _ = try Collector(queue: try queue("batch-a"), output: out, log: { logged.append($0) })
        for name in stale { XCTAssertFalse(fm.fileExists(atPath: out.appendingPathComponent(name).path), name) }
        for name in kept { XCTAssertTrue(fm.fileExists(atPath: out.appendingPathComponent(name).path), name) }
        XCTAssertEqual(logged.count, 3, "\(logged)")
        XCTAssertEqual(Collector.temporaryOwner(".x.png.tmp-42"), 42)
        XCTAssertNil(Collector.temporaryOwner(".tmp-42"))
        XCTAssertNil(Collector.temporaryOwner(".x.png.tmp-"))
        XCTAssertNil(Collector.temporaryOwner(".x.png.tmp-4a"))
    }

    /// The id of a process that has exited (and been reaped).
    func deadPID() throws -> pid_t {
        let p = try ChildProcess.spawn("/bin/true", [], name: "true")
        XCTAssertNotNil(p.wait(timeout: 10))
        return p.pid
    }
}
