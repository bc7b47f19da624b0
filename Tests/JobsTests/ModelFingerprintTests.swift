import Foundation
import Support
import XCTest

@testable import Jobs

/// Model fingerprints read only regular files: a FIFO or device in a model folder is an error
/// naming it (reading one would block until a writer appears, or never end).
final class ModelFingerprintTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fingerprint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("unet"), withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: dir.appendingPathComponent("unet/config.json"))
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    func testFolderWithAFIFOIsRefusedByName() throws {
        let before = try ModelFingerprint.compute(path: dir.path)
        let fifo = dir.appendingPathComponent("unet/weights.safetensors").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let message = try withFIFOTimeout([fifo]) { () -> String in
            do {
                _ = try ModelFingerprint.compute(path: self.dir.path)
                return "accepted"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(message.contains("unet/weights.safetensors is a FIFO (named pipe), not a regular file"), message)
        // The FIFO itself as a model path (e.g. classifier.head), and a device.
        let direct = try withFIFOTimeout([fifo]) { () -> String in
            do {
                _ = try ModelFingerprint.compute(path: fifo)
                return "accepted"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(direct.contains("is a FIFO (named pipe)"), direct)
        XCTAssertThrowsError(try ModelFingerprint.compute(path: "/dev/zero")) {
            XCTAssertTrue("\($0)".contains("a character device"), "\($0)")
        }
        // Hidden files and notes are not part of a model and are never opened.
        unlink(fifo)
        XCTAssertEqual(mkfifo(dir.appendingPathComponent(".lock").path, 0o644), 0)
        XCTAssertEqual(try ModelFingerprint.compute(path: dir.path), before)
    }
}

/// Runs `body` on another thread; if it has not returned after `seconds` (blocked opening
/// one of `fifos`), opens them for writing to let it go, and fails the test.
func withFIFOTimeout<T>(
    _ fifos: [String], seconds: Double = 10, file: StaticString = #filePath, line: UInt = #line,
    _ body: @escaping () -> T
) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let box = ResultBox<T>()
    Thread.detachNewThread {
        box.value = body()
        done.signal()
    }
    if done.wait(timeout: .now() + seconds) == .timedOut {
        XCTFail("blocked for \(seconds) s on a FIFO", file: file, line: line)
        // A writer that comes and goes lets a reader blocked in open() go on to EOF.
        repeat {
            for path in fifos {
                let fd = open(path, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
            }
        } while done.wait(timeout: .now() + 0.5) == .timedOut
    }
    return try XCTUnwrap(box.value)
}

final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}
