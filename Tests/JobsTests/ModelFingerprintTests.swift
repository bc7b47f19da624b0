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

/// A fingerprint covers what the loader reads, so the same model in a fuller or a pruned
/// snapshot is the same model (and the same batch id), while a changed config or weight is not.
final class LoaderReadFingerprintTests: XCTestCase {
    var dir: URL!
    let fm = FileManager.default

    override func setUpWithError() throws {
        dir = fm.temporaryDirectory.appendingPathComponent("loaderread-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        try fm.copyItem(
            at: SpecFixture.packageRoot.appendingPathComponent("models/tiny-sd"), to: dir.appendingPathComponent("sd"))
    }

    override func tearDown() { try? fm.removeItem(at: dir) }

    func write(_ rel: String, _ text: String) throws {
        let url = dir.appendingPathComponent("sd/" + rel)
        try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    func batchID() throws -> String {
        let spec = dir.appendingPathComponent("spec.yaml")
        try Data(
            """
            model: \(dir.path)/sd
            classifier:
              tower: bundled:tiny-clip-vision
              head: bundled:tiny-emotion-head.safetensors
              text: bundled:tiny-clip-text
            engine: {steps: 4}
            generation: {prompts: [a cat], emotions: [awe], seeds: [1]}
            """.utf8
        ).write(to: spec)
        return try JobSpec.load(
            path: spec.path,
            environment: ["MUSE_MODELS_DIR": SpecFixture.packageRoot.appendingPathComponent("models").path]
        ).batchID
    }

    func testExtraFilesLeaveTheFingerprintAndBatchIDAlone() throws {
        let path = dir.appendingPathComponent("sd").path
        let before = try ModelFingerprint.compute(path: path)
        let batch = try batchID()
        XCTAssertTrue(try ModelFingerprint.files(path: path).contains("unet/diffusion_pytorch_model.safetensors"))
        try write("safety_checker/config.json", "{}")
        try write("safety_checker/model.safetensors", "weights nobody loads")
        try write("feature_extractor/preprocessor_config.json", "{}")
        try write("README.md", "# a model card")
        try write("v1-5-pruned-emaonly.ckpt", "a pickle")
        try write("unet/diffusion_pytorch_model.bin", "a pickle")
        try write("unet/diffusion_pytorch_model.fp16.safetensors", "a variant the plain file outranks")
        XCTAssertEqual(try ModelFingerprint.compute(path: path), before)
        XCTAssertEqual(try batchID(), batch)
        try write("unet/config.json", "{\"changed\": true}")
        XCTAssertNotEqual(try ModelFingerprint.compute(path: path), before)
    }

    func testAChangedWeightFileChangesIt() throws {
        let path = dir.appendingPathComponent("sd").path
        let before = try ModelFingerprint.compute(path: path)
        let handle = try FileHandle(
            forWritingTo: dir.appendingPathComponent("sd/vae/diffusion_pytorch_model.safetensors"))
        try handle.seekToEnd()
        handle.write(Data([0]))
        try handle.close()
        XCTAssertNotEqual(try ModelFingerprint.compute(path: path), before)
    }
}
