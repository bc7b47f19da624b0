import Foundation
import Support
import TestSupport
import XCTest

@testable import Jobs

/// Hostile or mistaken inputs get a clear refusal, never a crash, a hang or a runaway:
/// spec shape and size, FIFOs and devices where files are expected, command-line values.
final class InputHardeningTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = makeTempDir("inp")
        try copyDemoImages(to: dir)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    let env = ["MUSE_MODELS_DIR": packageRoot.appendingPathComponent("models").path]

    /// Loads a spec (text after the tiny models) and returns the error text, or "accepted".
    func load(_ body: String, name: String = "spec.yaml", models: Bool = true) throws -> String {
        let path = try writeSpec((models ? tinyModels + "\n" : "") + body, in: dir, name: name)
        do {
            _ = try JobSpec.load(path: path, environment: env)
            return "accepted"
        } catch let e as SpecError {
            return e.description
        }
    }

    func brackets(_ n: Int) -> String { String(repeating: "[", count: n) + String(repeating: "]", count: n) }

    // MARK: spec shape

    /// 100,000 nested lists overflowed the stack inside Yams' recursive composer (a crash,
    /// signal 11); they are refused before Yams sees them, in YAML flow and block style and JSON.
    func testDeeplyNestedSpecsAreRefusedBeforeParsing() throws {
        let deep = "the spec nests lists and mappings more than 64 levels deep"
        let flow = try load("generation: \(brackets(100_000))\n")
        XCTAssertTrue(flow.contains(deep), flow)
        let block = try load("generation:\n" + String(repeating: "- ", count: 100_000) + "x\n")
        XCTAssertTrue(block.contains(deep), block)
        let json = try load(#"{"generation": "# + brackets(100_000) + "}", name: "deep.json", models: false)
        XCTAssertTrue(json.contains(deep), json)

        // The limit exactly: the root mapping and 63 lists pass, 64 lists do not.
        XCTAssertNil(SpecShape.checkYAML("a: " + brackets(63)))
        XCTAssertNotNil(SpecShape.checkYAML("a: " + brackets(64)))
        XCTAssertNil(SpecShape.checkJSON(#"{"a": "# + brackets(63) + "}"))
        XCTAssertNotNil(SpecShape.checkJSON(#"{"a": "# + brackets(64) + "}"))
        // Brackets in strings and comments are text.
        XCTAssertNil(SpecShape.checkJSON(#"{"a": ""# + String(repeating: "[", count: 1000) + #""}"#))
        XCTAssertNil(SpecShape.checkYAML("a: '" + String(repeating: "[", count: 1000) + "' # [[[[[[\n"))
        // An alias counts as deep as what it stands for, where it is used.
        let anchored = "a: &x " + brackets(40) + "\nb: "
        XCTAssertNil(
            SpecShape.checkYAML(anchored + String(repeating: "[", count: 20) + "*x" + String(repeating: "]", count: 20))
        )
        XCTAssertNotNil(
            SpecShape.checkYAML(anchored + String(repeating: "[", count: 30) + "*x" + String(repeating: "]", count: 30))
        )
    }

    /// Billion laughs: nine lines whose aliases expand to 10^9 values (before: 14 GB of
    /// memory and no end). Refused after counting a million.
    func testAliasExpansionIsBounded() throws {
        var bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for (name, previous) in zip("bcdefghi", "abcdefgh") {
            bomb += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
        }
        let began = Date()
        let text = try load(bomb)
        XCTAssertLessThan(Date().timeIntervalSince(began), 5)
        XCTAssertTrue(text.contains("the spec holds more than 1000000 values"), text)
        // Aliases within reason still work.
        let shared = try load(
            """
            generation: {prompts: [a lake], emotions: &mine [awe, fear], seeds: [1]}
            editing: {images: [images/house.png], emotions: *mine, source_prompt: a house}
            """)
        XCTAssertEqual(shared, "accepted")
    }

    func testEveryExecutableReportsItsVersion() throws {
        for tool in ["muse", "muse-worker", "muse-coordinator"] {
            let r = try runTool(tool, ["--version"], dir: dir, timeout: 30)
            XCTAssertEqual(r.code, 0, r.stderr)
            XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), MUSEVersion.current, tool)
        }
    }

    func testOversizedSpecFileIsRefusedUnread() throws {
        let line = "# " + String(repeating: "x", count: 1021) + "\n"
        let text = String(repeating: line, count: 16 * 1024) + "name: big\n"
        let path = try writeSpec(text, in: dir, name: "big.yaml")
        XCTAssertThrowsError(try JobSpec.load(path: path, environment: env)) {
            XCTAssertTrue("\($0)".contains("cannot read the spec: it is larger than the limit of 16 MiB"), "\($0)")
        }
    }

    /// 10,000 prompts × 10,000 seeds × 8 emotions: 8·10^8 jobs, counted, not made.
    func testHugeExpansionIsRefusedAtOnce() throws {
        let prompts = (0..<10_000).map { "prompt \($0)" }.joined(separator: ", ")
        let seeds = (0..<10_000).map(String.init).joined(separator: ", ")
        let began = Date()
        let text = try load("generation:\n  prompts: [\(prompts)]\n  seeds: [\(seeds)]\n  emotions: all\n")
        XCTAssertLessThan(Date().timeIntervalSince(began), 1)
        XCTAssertTrue(text.contains("the spec expands to 800000000 jobs; split it"), text)
    }

    // MARK: FIFOs and devices

    /// Opening a FIFO for reading waits for a writer: the spec path, a source image, or a file
    /// in a model folder that was a FIFO hung the coordinator (or was called "permission
    /// denied"). Now each is refused by name, at once. The tools run under a timeout, so a
    /// regression fails instead of hanging the tests.
    func testFIFOsAreRefusedByNameInsteadOfWaitedOn() throws {
        let noRedis = ["--redis", "redis://127.0.0.1:1"]
        let specFIFO = dir.appendingPathComponent("fifo.yaml").path
        XCTAssertEqual(mkfifo(specFIFO, 0o644), 0)
        let spec = try runTool("muse-coordinator", ["submit", specFIFO] + noRedis, dir: dir, timeout: 30)
        XCTAssertEqual(spec.code, 2, spec.stderr)
        XCTAssertTrue(
            spec.stderr.contains("cannot read the spec: it is a FIFO (named pipe), not a regular file"), spec.stderr)
        let device = try runTool("muse-coordinator", ["submit", "/dev/zero"] + noRedis, dir: dir, timeout: 30)
        XCTAssertTrue(device.stderr.contains("cannot read the spec: it is a character device"), device.stderr)

        XCTAssertEqual(mkfifo(dir.appendingPathComponent("images/pipe.png").path, 0o644), 0)
        let imageSpec = try writeSpec(
            tinyModels + "\nediting: {images: [images/pipe.png], emotions: [awe]}\n", in: dir, name: "image.yaml")
        let image = try runTool("muse-coordinator", ["submit", imageSpec] + noRedis, dir: dir, timeout: 30)
        XCTAssertEqual(image.code, 2, image.stderr)
        XCTAssertTrue(
            image.stderr.contains("editing.images[0]: cannot read 'images/pipe.png' (it is a FIFO (named pipe)"),
            image.stderr)

        // A model folder: a FIFO where a config is read first, then where the weights are (the
        // fingerprint reads them); a FIFO no loader reads is never opened (after the loop).
        let sd = dir.appendingPathComponent("sd")
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("models/tiny-sd"), to: sd)
        let generation = "\ngeneration: {prompts: [a lake], emotions: [awe], seeds: [1]}\n"
        let modelSpec = try writeSpec(
            tinyModels.replacingOccurrences(of: "model: bundled:tiny-sd", with: "model: sd") + generation, in: dir,
            name: "model.yaml")
        for rel in ["vae/config.json", "unet/diffusion_pytorch_model.safetensors"] {
            let fifo = sd.appendingPathComponent(rel).path
            unlink(fifo)
            XCTAssertEqual(mkfifo(fifo, 0o644), 0)
            let r = try runTool("muse-coordinator", ["submit", modelSpec] + noRedis, dir: dir, timeout: 30)
            XCTAssertEqual(r.code, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains("model: \(fifo) is a FIFO (named pipe), not a regular file"), r.stderr)
            unlink(fifo)
            let original = packageRoot.appendingPathComponent("models/tiny-sd/\(rel)")
            if FileManager.default.fileExists(atPath: original.path) {
                try FileManager.default.copyItem(at: original, to: sd.appendingPathComponent(rel))
            }
        }
        let unread = sd.appendingPathComponent("unet/extra.bin").path
        XCTAssertEqual(mkfifo(unread, 0o644), 0)
        let past = try runTool("muse-coordinator", ["submit", modelSpec] + noRedis, dir: dir, timeout: 30)
        XCTAssertTrue(past.stderr.contains("cannot connect to Redis"), "got past the model to Redis: \(past.stderr)")
        unlink(unread)

        // The engine's command line: an input image and a model folder.
        let out = dir.appendingPathComponent("out.png").path
        let edit = try runTool(
            "muse", ["edit", "--image", specFIFO, "--emotion", "awe", "--source-prompt", "a photo", "--out", out],
            dir: dir, timeout: 60)
        XCTAssertEqual(edit.code, 1, edit.stderr)
        XCTAssertTrue(
            edit.stderr.contains("cannot read image \(specFIFO): it is a FIFO (named pipe), not a regular file"),
            edit.stderr)
        let extra = sd.appendingPathComponent("unet/extra.bin").path
        XCTAssertEqual(mkfifo(extra, 0o644), 0)
        let generate = try runTool(
            "muse", ["generate", "--prompt", "a lake", "--model", sd.path, "--out", out], dir: dir, timeout: 60)
        XCTAssertEqual(generate.code, 1, generate.stderr)
        XCTAssertTrue(generate.stderr.contains("\(extra) is a FIFO (named pipe)"), generate.stderr)
    }

    // MARK: command-line values

    /// Out-of-range values trapped (`--steps 0` and `--steps 1000` in DDIM's schedule,
    /// `--guidance nan` when converting the image to bytes) or failed only after the models
    /// loaded and the image was computed (`--out` a folder: a raw NSError). Now one check,
    /// with the rules a spec's settings are checked by, refuses them before any model loads.
    func testEngineOptionsAreCheckedBeforeAnyModelLoads() throws {
        let out = dir.appendingPathComponent("out.png").path
        let cases: [([String], String)] = [
            (["--steps", "0"], "--steps: 0 is outside 1...1000"),
            (
                ["--steps", "1000"],
                "--steps: 1000 steps put a timestep at 1000, beyond the model's 1000 training steps"
            ),
            (["--steps", "1000", "--emotion", "awe"], "use at most 999"),
            (["--guidance", "nan"], "--guidance: nan must be a finite number"),
            (["--guidance=-1", "--emotion", "awe"], "--guidance: -1.0 must be in [0, 100.0]"),
            (["--emotion", "awe", "--settings", #"{"inner_iterations": 0}"#], "--settings: inner_iterations"),
        ]
        for (args, expected) in cases {
            let r = try runTool(
                "muse", ["generate", "--prompt", "a lake", "--out", out] + args, dir: dir, timeout: 60)
            XCTAssertEqual(r.code, 1, "\(args): \(r.status) \(r.stderr.suffix(2000))")
            XCTAssertTrue(r.stderr.contains(expected), "\(args): \(r.stderr.suffix(2000))")
            XCTAssertFalse(r.stderr.contains("BLAS:"), "\(args): checked only after loading the engine")
        }
        let folder = try runTool("muse", ["generate", "--prompt", "a lake", "--out", dir.path], dir: dir, timeout: 60)
        XCTAssertEqual(folder.code, 1, folder.stderr)
        XCTAssertTrue(
            folder.stderr.contains("--out \(dir.path) is a folder; give the path of the PNG file"), folder.stderr)
        XCTAssertFalse(folder.stderr.contains("BLAS:"), folder.stderr)
        let strength = try runTool(
            "muse",
            [
                "edit", "--image", dir.appendingPathComponent("images/house.png").path, "--emotion", "awe",
                "--strength", "0",
                "--out", out,
            ], dir: dir, timeout: 60)
        XCTAssertEqual(strength.code, 1, strength.stderr)
        XCTAssertTrue(strength.stderr.contains("--strength: 0.0 must be in (0, 1.0]"), strength.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// `--heartbeat 1e20` (or inf) trapped converting to the timer's nanoseconds once the
    /// worker had connected; 0.01 would run the heartbeat timer a hundred times a second.
    func testWorkerHeartbeatOutOfRangeIsAUsageError() throws {
        let redis = try TestRedis()
        for value in ["1e20", "inf", "0.01"] {
            let r = try runTool(
                "muse-worker",
                ["run", "--redis", redis.url, "--heartbeat", value, "--exit-when-idle", "--engine", "fake"], dir: dir,
                timeout: 30)
            XCTAssertEqual(r.code, 64, "\(value): \(r.status) \(r.stderr.suffix(2000))")
            XCTAssertTrue(r.stderr.contains("--heartbeat must be in 0.1...3600.0 seconds"), r.stderr)
        }
        let watch = try runTool(
            "muse-coordinator", ["watch", "b", "--interval", "1e20", "--redis", redis.url], dir: dir, timeout: 30)
        XCTAssertEqual(watch.code, 64, watch.stderr)
    }

    /// The spec checks steps against the model's scheduler as the engine does (1000 'leading'
    /// steps with steps_offset 1 reach timestep 1000), instead of every job failing on a worker.
    func testSpecStepsMustFitTheModelsScheduler() throws {
        let generation = "generation: {prompts: [a lake], emotions: [awe], seeds: [1]}\n"
        let text = try load("engine: {steps: 1000}\n" + generation)
        XCTAssertTrue(
            text.contains(
                "engine.steps: 1000 steps put a timestep at 1000, beyond the model's 1000 training steps "
                    + "(leading spacing, steps_offset 1); use at most 999 (line"), text)
        XCTAssertEqual(try load("engine: {steps: 999}\n" + generation), "accepted")
    }
}
