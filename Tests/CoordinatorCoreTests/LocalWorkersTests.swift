import Foundation
import Support
import XCTest

@testable import CoordinatorCore

/// `run`'s supervisor hears why a worker died, in the runtime's own words, so the jobs it held
/// can record the cause instead of a bare "lease lapsed".
final class LocalWorkersTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("workers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// A stand-in worker binary: logs like a Swift trap does, then dies the way one does.
    func fakeWorker(_ body: String) throws -> String {
        let path = dir.appendingPathComponent("worker.sh").path
        try "#!/bin/sh\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    func exits(of binary: String) throws -> [(String, ExitStatus, String)] {
        let pool = LocalWorkers(
            count: 1, binary: binary, arguments: ["run"], logDir: dir.appendingPathComponent("logs"),
            environment: [:], maxRestarts: 0)
        try pool.startAll()
        var heard: [(String, ExitStatus, String)] = []
        let deadline = Date().addingTimeInterval(20)
        while heard.isEmpty, Date() < deadline {
            _ = try pool.check(log: { _ in }, exited: { heard.append(($0, $1, $2)) })
            Thread.sleep(forTimeInterval: 0.05)
        }
        return heard
    }

    func testTrapIsReportedWithTheRuntimesMessage() throws {
        let heard = try exits(
            of: try fakeWorker(
                "echo 'job 1234 step 3/10' >&2\necho 'Fatal error: Index out of range' >&2\necho 'Stack dump:' >&2\nkill -ILL $$"
            ))
        XCTAssertEqual(heard.count, 1)
        XCTAssertTrue(heard[0].0.hasPrefix(LocalWorkers.runTag))
        XCTAssertEqual(heard[0].1, .signaled(SIGILL))
        XCTAssertTrue(heard[0].1.isCrash)
        XCTAssertEqual(heard[0].2, "signal 4 (SIGILL), a runtime trap or crash: Fatal error: Index out of range")
    }

    func testKillFromOutsideIsNotACrash() throws {
        let heard = try exits(of: try fakeWorker("echo 'working' >&2\nkill -KILL $$"))
        XCTAssertEqual(heard.first?.1, .signaled(SIGKILL))
        XCTAssertFalse(heard.first?.1.isCrash ?? true)
        XCTAssertEqual(heard.first?.2, "killed by signal 9 (SIGKILL) (the OOM killer or an operator): working")
    }
}
