import Foundation
import XCTest

@testable import Diffusion

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A FIFO, a device or a directory where a model file should be is refused before it is
/// opened, with an error naming the path and what it is: never a hang, never a misleading error.
final class NonRegularFileTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "nonregular-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// `folder` (under models/) linked file by file into a fresh folder, except `replaced`,
    /// which becomes a FIFO, a symlink to a device, or a directory.
    func copy(_ folder: String, replacing replaced: String, with kind: String) throws -> (folder: String, path: String)
    {
        let fm = FileManager.default
        let target = dir + "/" + UUID().uuidString
        try fm.createDirectory(atPath: target, withIntermediateDirectories: true)
        let source = Self.root + "/models/" + folder
        for name in try fm.contentsOfDirectory(atPath: source) where name != replaced {
            try fm.createSymbolicLink(atPath: target + "/" + name, withDestinationPath: source + "/" + name)
        }
        let path = target + "/" + replaced
        switch kind {
        case "fifo": XCTAssertEqual(mkfifo(path, 0o600), 0, String(cString: strerror(errno)))
        case "device": try fm.createSymbolicLink(atPath: path, withDestinationPath: "/dev/zero")
        case "directory": try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
        default: XCTFail("unknown kind \(kind)")
        }
        return (target, path)
    }

    /// Runs `load` on a background thread; it must throw within 10 s an error naming `path`
    /// and containing `words`. A load stuck on a FIFO is released by opening its write end.
    func assertRefused(
        _ path: String, _ words: String, file: StaticString = #filePath, line: UInt = #line,
        _ load: @escaping @Sendable () throws -> Void
    ) {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var outcome: Error? = nil
        nonisolated(unsafe) var threw = false
        Thread.detachNewThread {
            do { try load() } catch {
                outcome = error
                threw = true
            }
            done.signal()
        }
        guard done.wait(timeout: .now() + 10) == .success else {
            XCTFail("loading with \(path) in place did not return within 10 s", file: file, line: line)
            let fd = open(path, O_WRONLY | O_NONBLOCK)  // unblocks a reader stuck in open()
            if fd >= 0 { close(fd) }
            _ = done.wait(timeout: .now() + 10)
            return
        }
        XCTAssertTrue(threw, "loading with \(path) in place did not throw", file: file, line: line)
        let message = outcome.map { "\($0)" } ?? ""
        XCTAssertTrue(message.contains(path), "message does not name \(path): \(message)", file: file, line: line)
        XCTAssertTrue(message.contains(words), "message lacks '\(words)': \(message)", file: file, line: line)
    }

    func testFIFOConfigIsRefused() throws {
        let unet = try copy("tiny-sd/unet", replacing: "config.json", with: "fifo")
        assertRefused(unet.path, "is not a regular file (a FIFO)") { _ = try UNet2DConditionModel(folder: unet.folder) }
        let vae = try copy("tiny-sd/vae", replacing: "config.json", with: "fifo")
        assertRefused(vae.path, "is not a regular file (a FIFO)") { _ = try AutoencoderKL(folder: vae.folder) }
        let text = try copy("tiny-clip-text", replacing: "config.json", with: "fifo")
        assertRefused(text.path, "is not a regular file (a FIFO)") { _ = try CLIPTextEncoder(folder: text.folder) }
        let scheduler = try copy("tiny-sd/scheduler", replacing: "scheduler_config.json", with: "fifo")
        assertRefused(scheduler.path, "is not a regular file (a FIFO)") {
            _ = try DPMSolverMultistepScheduler(configPath: scheduler.path)
        }
        assertRefused(scheduler.path, "is not a regular file (a FIFO)") {
            _ = try DDIMScheduler(configPath: scheduler.path)
        }
        let vision = try copy("tiny-clip-vision", replacing: "preprocessor_config.json", with: "fifo")
        assertRefused(vision.path, "is not a regular file (a FIFO)") {
            _ = try CLIPVisionEncoder(folder: vision.folder)
        }
    }

    func testFIFOWeightsAreRefused() throws {
        let unet = try copy("tiny-sd/unet", replacing: "diffusion_pytorch_model.safetensors", with: "fifo")
        assertRefused(unet.path, "is not a regular file (a FIFO)") { _ = try UNet2DConditionModel(folder: unet.folder) }
        let vision = try copy("tiny-clip-vision", replacing: "model.safetensors", with: "fifo")
        assertRefused(vision.path, "is not a regular file (a FIFO)") { _ = try SafeTensorsFile(path: vision.path) }
        assertRefused(vision.path, "is not a regular file (a FIFO)") {
            _ = try SafeTensorsFile.open(folder: vision.folder)
        }
    }

    func testFIFOTokenizerFilesAreRefused() throws {
        for name in ["vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json"] {
            let t = try copy("tiny-clip-text", replacing: name, with: "fifo")
            assertRefused(t.path, "is not a regular file (a FIFO)") { _ = try CLIPTokenizer(folder: t.folder) }
        }
    }

    func testDevicesAndDirectoriesAreRefused() throws {
        let device = try copy("tiny-sd/vae", replacing: "diffusion_pytorch_model.safetensors", with: "device")
        assertRefused(device.path, "is not a regular file (a character device)") {
            _ = try AutoencoderKL(folder: device.folder)
        }
        let config = try copy("tiny-sd/text_encoder", replacing: "config.json", with: "device")
        assertRefused(config.path, "is not a regular file (a character device)") {
            _ = try CLIPTextEncoder(folder: config.folder)
        }
        let vocab = try copy("tiny-clip-text", replacing: "vocab.json", with: "device")
        assertRefused(vocab.path, "is not a regular file (a character device)") {
            _ = try CLIPTokenizer(folder: vocab.folder)
        }
        let directory = try copy("tiny-sd/unet", replacing: "config.json", with: "directory")
        assertRefused(directory.path, "is not a regular file (a directory)") {
            _ = try UNet2DConditionModel(folder: directory.folder)
        }
    }
}
