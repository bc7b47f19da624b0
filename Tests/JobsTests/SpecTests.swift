import Foundation
import Support
import TestSupport
import Vocabulary
import XCTest

@testable import Imaging
@testable import Jobs

/// Job spec parsing and validation, content-derived ids, path confinement (no Redis).
final class SpecTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = makeTempDir("spec")
        try copyDemoImages(to: dir)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    let env = ["MUSE_MODELS_DIR": packageRoot.appendingPathComponent("models").path]

    func spec(_ body: String, name: String = "spec.yaml") throws -> String {
        try writeSpec(tinyModels + "\n" + body, in: dir, name: name)
    }

    /// Loads a spec that must be invalid; returns the error text.
    func problems(_ body: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let path = try spec(body)
        do {
            _ = try JobSpec.load(path: path, environment: env)
            XCTFail("spec was accepted", file: file, line: line)
            return ""
        } catch let e as SpecError {
            return e.description
        }
    }

    let generation = """
        generation:
          prompts: [a quiet lake, a busy street]
          emotions: [awe, sadness]
          seeds: [1, 2]
        """

    func testDemoSpecsLoad() throws {
        let tiny = try JobSpec.load(
            path: packageRoot.appendingPathComponent("manifests/tiny-demo.yaml").path, environment: env)
        XCTAssertEqual(tiny.jobs.count, 3 * 8 + 2 * 8)
        XCTAssertEqual(tiny.blobs.count, 2)
        XCTAssertTrue(tiny.batchID.hasPrefix("tiny-demo-"))
        XCTAssertEqual(tiny.info.sheetColumns, 9)
        XCTAssertEqual(tiny.jobs.filter { $0.content.kind == .edit }.count, 16)
        XCTAssertTrue(tiny.jobs.allSatisfy { $0.locations.model == "bundled:tiny-sd" })
        let demo = try JobSpec.load(
            path: packageRoot.appendingPathComponent("manifests/demo.yaml").path, environment: env)
        XCTAssertTrue(demo.batchID.hasPrefix("demo-"))
        XCTAssertTrue(demo.jobs.allSatisfy { $0.locations.model == "bundled:miniworld/sd" })
        XCTAssertEqual(demo.jobs.filter { $0.content.kind == .edit }.count, 16)
        XCTAssertTrue(
            demo.jobs.allSatisfy { $0.content.settings.muse.minStartFraction == MUSESettings().minStartFraction },
            "the demo uses the engine's real timing")
    }

    func testExpansionOrderSeedsAndNames() throws {
        let loaded = try JobSpec.load(path: try spec(generation), environment: env)
        XCTAssertEqual(loaded.jobs.count, 8)
        XCTAssertEqual(
            loaded.jobs.map(\.content.emotion.rawValue),
            ["awe", "sadness", "awe", "sadness", "awe", "sadness", "awe", "sadness"])
        XCTAssertEqual(loaded.jobs.map(\.content.seed), [1, 1, 2, 2, 1, 1, 2, 2])
        XCTAssertEqual(loaded.jobs.map(\.sheetRow), [0, 0, 1, 1, 2, 2, 3, 3])
        XCTAssertEqual(Set(loaded.jobs.map(\.id)).count, 8)
        let first = loaded.jobs[0]
        XCTAssertEqual(first.output, "awe/a-quiet-lake-1-\(first.id.prefix(8)).png")
        XCTAssertEqual(first.content.settings.steps, 50, "project default")
        XCTAssertEqual(loaded.maxAttempts, 3)

        // Derived seeds: deterministic, per prompt and sample, shared by the emotions of a row.
        let derived = try JobSpec.load(
            path: try spec(
                """
                generation:
                  prompts: [a quiet lake, a busy street]
                  emotions: [awe, sadness]
                  seed: 7
                  count: 2
                """), environment: env)
        let seeds = derived.jobs.map(\.content.seed)
        XCTAssertEqual(seeds[0], seeds[1])
        XCTAssertNotEqual(seeds[0], seeds[2])
        XCTAssertEqual(seeds[0], SeedDerivation.seed(batchSeed: 7, prompt: "a quiet lake", sample: 0))
        XCTAssertEqual(seeds[4], SeedDerivation.seed(batchSeed: 7, prompt: "a busy street", sample: 0))
        XCTAssertTrue(seeds.allSatisfy { $0 <= SeedDerivation.maxSeed })
    }

    func testIDsAreContentDerived() throws {
        let a = try JobSpec.load(path: try spec(generation), environment: env)
        let b = try JobSpec.load(path: try spec(generation), environment: env)
        XCTAssertEqual(a.jobs.map(\.id), b.jobs.map(\.id))
        XCTAssertEqual(a.batchID, b.batchID)

        // The same spec as JSON gives the same jobs.
        let json = """
            {"model": "bundled:tiny-sd",
             "classifier": {"tower": "bundled:tiny-clip-vision", "head": "bundled:tiny-emotion-head.safetensors",
                            "text": "bundled:tiny-clip-text"},
             "generation": {"prompts": ["a quiet lake", "a busy street"], "emotions": ["awe", "sadness"], "seeds": [1, 2]}}
            """
        let j = try JobSpec.load(path: try writeSpec(json, in: dir, name: "spec.json"), environment: env)
        XCTAssertEqual(j.jobs.map(\.id), a.jobs.map(\.id))
        // A key given twice in one JSON object is refused with its line, as YAML's reader does;
        // the same key in two different objects, or inside a string value, is fine.
        let twice = json.replacingOccurrences(of: #""seeds": [1, 2]}}"#, with: "\"seeds\": [1, 2],\n \"seeds\": [3]}}")
        XCTAssertThrowsError(
            try JobSpec.load(path: try writeSpec(twice, in: dir, name: "twice.json"), environment: env)
        ) {
            XCTAssertTrue("\($0)".contains("duplicate key \"seeds\"") && "\($0)".contains("line 5"), "\($0)")
        }
        let quoted = json.replacingOccurrences(of: #""a quiet lake""#, with: #""a quiet lake: \"seeds\": x""#)
        XCTAssertNoThrow(try JobSpec.load(path: try writeSpec(quoted, in: dir, name: "quoted.json"), environment: env))

        // Presentation and scheduling settings do not change what is computed ...
        let c = try JobSpec.load(
            path: try spec(generation + "\nengine: {checkpoint_every: 1}\nqueue: {max_attempts: 5}\noutput: out"),
            environment: env)
        XCTAssertEqual(c.jobs.map(\.id), a.jobs.map(\.id))
        // ... content does.
        let d = try JobSpec.load(path: try spec(generation + "\nengine: {guidance: 5}"), environment: env)
        XCTAssertTrue(Set(d.jobs.map(\.id)).isDisjoint(with: Set(a.jobs.map(\.id))))
        XCTAssertNotEqual(d.batchID, a.batchID)

        // The model's identity is part of the content: a copy with one changed byte differs.
        let copy = dir.appendingPathComponent("sd-copy")
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("models/tiny-sd"), to: copy)
        let same = try JobSpec.load(
            path: try writeSpec(
                generation + """

                    model: sd-copy
                    classifier:
                      tower: bundled:tiny-clip-vision
                      head: bundled:tiny-emotion-head.safetensors
                      text: bundled:tiny-clip-text
                    """, in: dir, name: "copy.yaml"), environment: env)
        XCTAssertEqual(same.jobs.map(\.id), a.jobs.map(\.id), "same files at another path: same model")
        XCTAssertEqual(same.jobs[0].locations.model, copy.path)
        let config = copy.appendingPathComponent("scheduler/scheduler_config.json")
        var text = try String(contentsOf: config, encoding: .utf8)
        text += " "
        try text.write(to: config, atomically: true, encoding: .utf8)
        let changed = try JobSpec.load(path: dir.appendingPathComponent("copy.yaml").path, environment: env)
        XCTAssertNotEqual(changed.jobs[0].id, a.jobs[0].id)
    }

    func testEditingJobsCarryImageHashes() throws {
        let loaded = try JobSpec.load(
            path: try spec(
                """
                editing:
                  images: [images/sunset.png, images/house.png]
                  emotions: [fear]
                  source_prompt: a photo
                  strength: 0.5
                """), environment: env)
        XCTAssertEqual(loaded.jobs.count, 2)
        let sha = Hashing.sha256Hex(try Data(contentsOf: dir.appendingPathComponent("images/sunset.png")))
        XCTAssertEqual(loaded.jobs[0].content.imageSHA256, sha)
        XCTAssertNotNil(loaded.blobs[sha])
        XCTAssertEqual(loaded.jobs[0].content.settings.strength, 0.5)
        XCTAssertEqual(loaded.jobs[0].sheetColumn, 1, "column 0 shows the source image")
        XCTAssertEqual(loaded.jobs[0].output, "fear/edit-sunset-\(loaded.jobs[0].id.prefix(8)).png")
    }

    /// `methods:` runs every job under each method (one sheet row per method); images may
    /// carry their own source prompt; `evaluation:` names a classifier that becomes part of
    /// every job's models.
    func testMethodsListPerImageCaptionsAndEvaluator() throws {
        let loaded = try JobSpec.load(
            path: try spec(
                """
                evaluation: {tower: bundled:tiny-clip-vision, head: bundled:tiny-emotion-head.safetensors}
                engine: {methods: [muse, prompt-only, universal-guidance], steps: 10}
                generation: {prompts: [a lake], emotions: [awe, fear], seeds: [1]}
                editing:
                  images: [images/sunset.png, {path: images/house.png, source_prompt: a red house}]
                  emotions: [fear]
                  source_prompt: a photo
                  strength: 0.5
                """), environment: env)
        XCTAssertEqual(loaded.jobs.count, 3 * 2 + 3 * 2)
        let generated = loaded.jobs.filter { $0.content.kind == .generate }
        XCTAssertEqual(generated.map(\.content.synthesis.method.rawValue).filter { $0 == "prompt-only" }.count, 2)
        XCTAssertEqual(Set(generated.map(\.sheetRow)), [0, 1, 2], "one row per method")
        XCTAssertTrue(generated[0].output.contains("-muse-"), generated[0].output)
        let captions = loaded.jobs.filter { $0.content.kind == .edit }.map(\.content.prompt)
        XCTAssertEqual(Set(captions), ["a photo", "a red house"])
        XCTAssertEqual(loaded.jobs[0].locations.evaluatorTower, "bundled:tiny-clip-vision")
        XCTAssertNotNil(loaded.jobs[0].content.models.evaluatorHead)
        XCTAssertNil(loaded.jobs[0].content.models.evaluatorText)
    }

    /// `classifier.prompt_tower` (the CLIP pair's vision half beside a guide tower that left
    /// the text space) travels with the job and is part of its identity; a bad one is named.
    /// A single-file .safetensors checkpoint is a model (its sizes and steps from the bundled SD
    /// 1.5 configs, its fingerprint the file's); a pickled one is refused with the conversion command.
    func testSingleFileCheckpointsAreModelsAndPicklesAreRefused() throws {
        func spec(_ model: String, size: String = "") -> String {
            """
            model: \(model)
            classifier: {tower: bundled:tiny-clip-vision, head: bundled:tiny-emotion-head.safetensors, text: bundled:tiny-clip-text}
            generation: {prompts: [a lake], emotions: [awe], seeds: [1]\(size)}
            """
        }
        // submit reads only the configs and hashes the file: its bytes need not be a model.
        let checkpoint = dir.appendingPathComponent("v1-5-pruned-emaonly.safetensors")
        try Data("not read at submit".utf8).write(to: checkpoint)
        let large = env.merging(["MUSE_MAX_MEMORY_GB": "1000"]) { $1 }
        let loaded = try JobSpec.load(
            path: try writeSpec(spec("v1-5-pruned-emaonly.safetensors"), in: dir), environment: large)
        XCTAssertEqual(loaded.jobs[0].locations.model, checkpoint.path)
        XCTAssertEqual(loaded.jobs[0].content.models.model, try ModelFingerprint.compute(path: checkpoint.path))
        func problems(_ text: String) throws -> String {
            do {
                _ = try JobSpec.load(path: try writeSpec(text, in: dir, name: "bad.yaml"), environment: large)
                XCTFail("spec was accepted")
            } catch let e as SpecError {
                return e.description
            }
            return ""
        }
        // SD 1.5's sizes, from models/sd15-config: multiples of 64, native 512.
        assertMentions(
            try problems(spec("v1-5-pruned-emaonly.safetensors", size: ", width: 96")),
            ["generation.width: 96×512 does not fit this model: sides must be positive multiples of 64"])
        let pickle = dir.appendingPathComponent("v1-5-pruned-emaonly.ckpt")
        try Data("PK".utf8).write(to: pickle)
        assertMentions(
            try problems(spec("v1-5-pruned-emaonly.ckpt")),
            [
                "model \(pickle.path): .ckpt checkpoints are pickled PyTorch files",
                "StableDiffusionPipeline.from_single_file(\"\(pickle.path)\")",
            ])
    }

    func assertMentions(_ text: String, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) {
        for e in expected where !text.contains(e) {
            XCTFail("missing '\(e)' in:\n\(text)", file: file, line: line)
        }
    }

    func testPromptTowerJoinsTheJobsModels() throws {
        func classifier(_ extra: String, head: Bool = true) -> String {
            """
            model: bundled:tiny-sd
            classifier:
              tower: bundled:tiny-clip-vision
            \(head ? "  head: bundled:tiny-emotion-head.safetensors\n" : "")  text: bundled:tiny-clip-text
            \(extra)
            generation: {prompts: [a lake], emotions: [awe], seeds: [1]}
            """
        }
        let plain = try JobSpec.load(path: try writeSpec(classifier(""), in: dir), environment: env)
        let paired = try JobSpec.load(
            path: try writeSpec(classifier("  prompt_tower: bundled:tiny-clip-vision"), in: dir, name: "p.yaml"),
            environment: env)
        XCTAssertNil(plain.jobs[0].locations.promptTower)
        XCTAssertNil(plain.jobs[0].content.models.promptTower)
        XCTAssertEqual(paired.jobs[0].locations.promptTower, "bundled:tiny-clip-vision")
        XCTAssertEqual(paired.jobs[0].content.models.promptTower, paired.jobs[0].content.models.tower)
        XCTAssertNotEqual(paired.jobs[0].id, plain.jobs[0].id, "the prompt tower is part of the job")

        func problems(_ text: String) throws -> String {
            do {
                _ = try JobSpec.load(path: try writeSpec(text, in: dir, name: "bad.yaml"), environment: env)
                XCTFail("accepted:\n\(text)")
            } catch let e as SpecError { return e.description }
            return ""
        }
        let file = try problems(classifier("  prompt_tower: bundled:tiny-emotion-head.safetensors"))
        XCTAssertTrue(
            file.contains(
                "classifier.prompt_tower: 'bundled:tiny-emotion-head.safetensors' is not a CLIP model folder"),
            file)
        let zeroShot = try problems(classifier("  prompt_tower: bundled:tiny-clip-vision", head: false))
        XCTAssertTrue(zeroShot.contains("classifier.prompt_tower: needs classifier.head"), zeroShot)
        let missing = try problems(classifier("  prompt_tower: bundled:no-such-tower"))
        XCTAssertTrue(missing.contains("classifier.prompt_tower: 'bundled:no-such-tower' not found"), missing)
    }

    /// `evaluation.clip_tower`/`clip_text` (the CLIP pair that measures CLIP score, CLIP-I and
    /// Sem-D) travel with the job, alone or beside an evaluator classifier, and are part of its
    /// identity; only one of the two, or a file for a folder, is refused naming the field.
    func testEvaluationCLIPJoinsTheJobsModels() throws {
        let generation = "generation: {prompts: [a lake], emotions: [awe], seeds: [1]}\n"
        let plain = try JobSpec.load(path: try spec(generation), environment: env)
        let alone = try JobSpec.load(
            path: try spec(
                "evaluation: {clip_tower: bundled:tiny-clip-vision, clip_text: bundled:tiny-clip-text}\n" + generation),
            environment: env)
        let beside = try JobSpec.load(
            path: try spec(
                """
                evaluation:
                  tower: bundled:tiny-clip-vision
                  head: bundled:tiny-emotion-head.safetensors
                  clip_tower: bundled:tiny-clip-vision
                  clip_text: bundled:tiny-clip-text

                """ + generation), environment: env)
        XCTAssertNil(plain.jobs[0].content.models.evaluationCLIPTower)
        XCTAssertNil(alone.jobs[0].locations.evaluatorTower, "no evaluator classifier was named")
        XCTAssertEqual(alone.jobs[0].locations.evaluationCLIPTower, "bundled:tiny-clip-vision")
        XCTAssertEqual(alone.jobs[0].locations.evaluationCLIPText, "bundled:tiny-clip-text")
        XCTAssertEqual(alone.jobs[0].content.models.evaluationCLIPTower, alone.jobs[0].content.models.tower)
        XCTAssertEqual(alone.jobs[0].content.models.measuringCLIPTower, alone.jobs[0].content.models.tower)
        XCTAssertNotEqual(alone.jobs[0].id, plain.jobs[0].id, "the evaluation CLIP is part of the job")
        XCTAssertNotNil(beside.jobs[0].content.models.evaluatorHead)
        XCTAssertEqual(beside.jobs[0].locations.evaluationCLIPText, "bundled:tiny-clip-text")
        let half = try problems("evaluation: {clip_tower: bundled:tiny-clip-vision}\n" + generation)
        XCTAssertTrue(half.contains("evaluation.clip_text: required with evaluation.clip_tower"), half)
        let otherHalf = try problems("evaluation: {clip_text: bundled:tiny-clip-text}\n" + generation)
        XCTAssertTrue(otherHalf.contains("evaluation.clip_tower: required with evaluation.clip_text"), otherHalf)
        let file = try problems(
            "evaluation: {clip_tower: bundled:tiny-emotion-head.safetensors, clip_text: bundled:tiny-clip-text}\n"
                + generation)
        XCTAssertTrue(
            file.contains(
                "evaluation.clip_tower: 'bundled:tiny-emotion-head.safetensors' is not a CLIP vision model folder"),
            file)
    }

    /// MUSE edits need a caption; settings that leave no step guided are refused with the field.
    func testEditsWithoutCaptionOrGuidedStepAreRefused() throws {
        let noCaption = try problems(
            """
            editing: {images: [images/sunset.png], emotions: [fear], strength: 0.5}
            """)
        XCTAssertTrue(noCaption.contains("editing.images[0]: 'images/sunset.png': a muse edit needs a source prompt"))
        let noWindow = try problems(
            """
            engine: {steps: 10}
            editing: {images: [images/sunset.png], emotions: [fear], strength: 0.1, source_prompt: a photo}
            """)
        XCTAssertTrue(noWindow.contains("editing.strength: muse: guidance might never start"), noWindow)
        let both = try problems(
            """
            engine: {method: muse, methods: [muse]}
            generation: {prompts: [a lake], emotions: [awe]}
            """)
        XCTAssertTrue(both.contains("engine.methods: give either method (one) or methods (a list), not both"), both)
        let folderHead = try problems(
            """
            evaluation: {tower: bundled:tiny-clip-vision, head: bundled:tiny-clip-vision}
            generation: {prompts: [a lake], emotions: [awe]}
            """)
        XCTAssertTrue(folderHead.contains("evaluation.head: 'bundled:tiny-clip-vision' is a folder"), folderHead)
    }

    /// `editing.inversion` and `null_text_steps` reach the edit jobs (and their ids), not the
    /// generations'; a negative prompt beside a matched inversion, an unknown inversion, and
    /// latent-rgb on a VAE its factors do not fit are refused, naming the field.
    func testEditInversionAndPreviewChecks() throws {
        func edit(_ extra: String) -> String {
            "editing:\n  images: [images/sunset.png]\n  emotions: [fear]\n  source_prompt: a photo\n  strength: 0.5\n"
                + extra
        }
        let plain = try JobSpec.load(path: try spec(edit("") + generation), environment: env)
        let edits = plain.jobs.filter { $0.content.settings.strength != nil }
        XCTAssertEqual(edits.first?.content.settings.inversion, .negativePrompt)
        let nullText = try JobSpec.load(
            path: try spec(edit("  inversion: null-text\n  null_text_steps: 4\n") + generation), environment: env)
        let nullEdits = nullText.jobs.filter { $0.content.settings.strength != nil }
        XCTAssertEqual(nullEdits.first?.content.settings.inversion, .nullText)
        XCTAssertEqual(nullEdits.first?.content.settings.nullTextSteps, 4)
        XCTAssertNotEqual(nullEdits.first?.id, edits.first?.id)
        XCTAssertEqual(
            Set(nullText.jobs.map(\.id)).subtracting(nullEdits.map(\.id)),
            Set(plain.jobs.map(\.id)).subtracting(edits.map(\.id)), "generation ids do not depend on the inversion")
        let unknown = try problems(edit("  inversion: pivotal\n"))
        XCTAssertTrue(
            unknown.contains(
                "editing.inversion: unknown inversion 'pivotal' (valid: ddim, negative-prompt, null-text)"),
            unknown)
        XCTAssertTrue(try problems(edit("  null_text_steps: 0\n")).contains("editing.null_text_steps"))
        let negative = try problems("engine: {negative_prompt: blurry}\n" + edit(""))
        XCTAssertTrue(
            negative.contains("engine.negative_prompt: edits with editing.inversion negative-prompt"), negative)
        XCTAssertNoThrow(
            try JobSpec.load(
                path: try spec("engine: {negative_prompt: blurry}\n" + edit("  inversion: ddim\n")), environment: env))
        // The tiny SD has SD 1.x's VAE shape: latent-rgb fits; the miniworld's factor-4 VAE: refused.
        XCTAssertNoThrow(
            try JobSpec.load(path: try spec("engine: {muse: {preview: latent-rgb}}\n" + generation), environment: env))
        let world = try writeSpec(
            """
            model: bundled:miniworld/sd
            classifier:
              tower: bundled:miniworld/guide-vision
              head: bundled:miniworld/emotion-head.safetensors
              text: bundled:miniworld/clip-text
              prompt_tower: bundled:miniworld/clip-vision
            engine: {muse: {preview: latent-rgb}}
            """ + "\n" + generation, in: dir, name: "world.yaml")
        do {
            _ = try JobSpec.load(path: world, environment: env)
            XCTFail("latent-rgb on the miniworld VAE was accepted")
        } catch let e as SpecError {
            XCTAssertTrue(e.description.contains("engine.muse.preview: latent-rgb applies SD 1.x's"), e.description)
            XCTAssertTrue(e.description.contains("factor 4"), e.description)
        }
    }

    func testErrorsNameTheField() throws {
        XCTAssertTrue(
            try problems(
                """
                generation:
                  prompts: [a lake]
                  emotions: [awe, sadness, joy]
                """
            ).contains(
                "generation.emotions[2]: unknown emotion 'joy'; valid emotions: amusement, awe, contentment, excitement, anger, disgust, fear, sadness"
            ))
        let typo = try problems("generation:\n  prompts: [a]\n  emotions: [awe]\n  seedz: [1]\n")
        XCTAssertTrue(typo.contains("generation.seedz: unknown key"), typo)
        XCTAssertTrue(typo.contains("did you mean 'seeds'?"), typo)
        XCTAssertTrue(try problems("colour: red\n" + generation).contains("colour: unknown key"))
        let many = try problems(
            """
            engine:
              steps: 0
              method: magic
              muse: {inner_iterations: two, stop_fraction: 1.5, preview: fancy, bogus: 1}
            generation:
              prompts: a lake
              emotions: [awe]
              seeds: [1, 1]
            """)
        for expected in [
            "engine.steps: 0 is out of range 1...1000", "engine.method: unknown method 'magic'",
            "engine.muse.inner_iterations: expected a whole number, got 'two'",
            "engine.muse.stop_fraction: 1.5 must be in [0, 1]", "engine.muse.preview: unknown value 'fancy'",
            "engine.muse.bogus: unknown key", "generation.prompts: expected a list",
            "generation.seeds[1]: duplicate of generation.seeds[0]",
        ] {
            XCTAssertTrue(many.contains(expected), "missing '\(expected)' in:\n\(many)")
        }
        XCTAssertTrue(
            try problems("generation:\n  prompts: [a]\n  emotions: [awe]\n  seeds: [1]\n  count: 2\n")
                .contains("give either seeds"))
        XCTAssertTrue(
            try problems("generation:\n  prompts: [a]\n  emotions: [awe]\n  width: 48\n")
                .contains("generation.width: 48×64 does not fit this model: sides must be positive multiples of 32"))
        XCTAssertTrue(try problems("name: x\n").contains("neither a generation nor an editing section"))
        let yaml = try problems("generation:\n  prompts: [a\n  emotions: [awe]\n")
        XCTAssertTrue(yaml.contains("not valid YAML"), yaml)
        XCTAssertTrue(yaml.contains("line"), yaml)
        let json = try writeSpec("{\"model\": ", in: dir, name: "bad.json")
        XCTAssertThrowsError(try JobSpec.load(path: json, environment: env)) { e in
            XCTAssertTrue("\(e)".contains("not valid JSON"), "\(e)")
        }
        XCTAssertThrowsError(try JobSpec.load(path: dir.appendingPathComponent("nope.yaml").path, environment: env)) {
            e in
            XCTAssertTrue("\(e)".contains("cannot read the spec: no such file"), "\(e)")
        }
        let model = try writeSpec(
            "model: bundled:no-such-model\nclassifier: {tower: bundled:tiny-clip-vision, text: bundled:tiny-clip-text}\n"
                + generation, in: dir, name: "m.yaml")
        XCTAssertThrowsError(try JobSpec.load(path: model, environment: env)) { e in
            XCTAssertTrue("\(e)".contains("model: 'bundled:no-such-model' not found"), "\(e)")
        }
    }

    func testImageProblems() throws {
        try Data("this is not a png".utf8).write(to: dir.appendingPathComponent("images/corrupt.png"))
        let wrongSize = try PNGCodec.encode(RGBImage(width: 48, height: 40, fill: (1, 2, 3)))
        try wrongSize.write(to: dir.appendingPathComponent("images/small.png"))
        let text = try problems(
            """
            editing:
              images: [images/missing.png, images/corrupt.png, images/small.png, ../secret.png, /etc/passwd]
              emotions: [awe]
              strength: 0
            """)
        for expected in [
            "editing.images[0]: cannot read 'images/missing.png' (no such file",
            "editing.images[1]: 'images/corrupt.png' is not a readable PNG image",
            "editing.images[2]: 'images/small.png': 48×40 does not fit this model: sides must be positive multiples of 32",
            "editing.images[3]: '../secret.png' leaves its root folder",
            "editing.images[4]: '/etc/passwd' must be relative",
            "editing.strength: must be in (0, 1.0]",
        ] {
            XCTAssertTrue(text.contains(expected), "missing '\(expected)' in:\n\(text)")
        }
        // A symbolic link out of the images root is refused too.
        let outside = makeTempDir("outside")
        defer { try? FileManager.default.removeItem(at: outside) }
        try FileManager.default.copyItem(
            at: dir.appendingPathComponent("images/house.png"), to: outside.appendingPathComponent("house.png"))
        try FileManager.default.createSymbolicLink(
            at: dir.appendingPathComponent("images/link.png"),
            withDestinationURL: outside.appendingPathComponent("house.png"))
        let link = try problems("editing:\n  images: [images/link.png]\n  emotions: [awe]\n")
        XCTAssertTrue(link.contains("outside"), link)
        // Output folders may not climb out of the spec's folder either (absolute ones are explicit).
        XCTAssertTrue(
            try problems("output: ../elsewhere\n" + generation).contains(
                "output: '../elsewhere' leaves its root folder"))
        XCTAssertNoThrow(try JobSpec.load(path: try spec("output: /tmp/some-output\n" + generation), environment: env))
    }

    func testConfinedResolution() throws {
        let root = makeTempDir("root")
        defer { try? FileManager.default.removeItem(at: root) }
        XCTAssertEqual(
            try PathConfinement.resolve("a/b.png", under: root).path, root.appendingPathComponent("a/b.png").path)
        XCTAssertThrowsError(try PathConfinement.resolve("a/../../b", under: root))
        XCTAssertThrowsError(try PathConfinement.resolve("/abs", under: root))
        XCTAssertThrowsError(try PathConfinement.resolve("", under: root))
        try FileManager.default.createSymbolicLink(
            atPath: root.appendingPathComponent("esc").path, withDestinationPath: "/etc")
        XCTAssertThrowsError(try PathConfinement.resolve("esc/x.png", under: root))
        XCTAssertEqual(Slug.make("A Quiet Lake, at Dawn!"), "a-quiet-lake-at-dawn")
        XCTAssertEqual(Slug.make("../../etc"), "etc")
        XCTAssertEqual(Slug.make("???"), "untitled")
    }

    func testJobsThatCannotFitInMemoryAreRefusedWithTheEstimate() throws {
        var small = env
        small["MUSE_MAX_MEMORY_GB"] = "0.5"
        let big = generation + "\n  width: 4096\n  height: 4096"
        do {
            _ = try JobSpec.load(path: try spec(big), environment: small)
            XCTFail("a 4096² job on a 0.5 GB budget was accepted")
        } catch let e as SpecError {
            XCTAssertTrue(e.description.contains("generation.width: 4096×4096 would need about"), e.description)
            XCTAssertTrue(e.description.contains("over the limit of 0.5 GB"), e.description)
        }
        var roomy = env
        roomy["MUSE_MAX_MEMORY_GB"] = "1000"
        XCTAssertNoThrow(try JobSpec.load(path: try spec(big), environment: roomy))
        // The estimate grows with the pixels: the tiny model's own size fits anywhere.
        XCTAssertNoThrow(try JobSpec.load(path: try spec(generation), environment: small))
    }

    func testJobsThatWouldTakeTooLongAreRefusedWithTheEstimate() throws {
        var strict = env
        strict["MUSE_MAX_JOB_HOURS"] = "0.001"
        let slow = generation + "\nengine:\n  steps: 900\n  muse: {inner_iterations: 1000}"
        do {
            _ = try JobSpec.load(path: try spec(slow), environment: strict)
            XCTFail("a job over the time limit was accepted")
        } catch let e as SpecError {
            XCTAssertTrue(e.description.contains("engine: muse generate at 64×64 would take about"), e.description)
            XCTAssertTrue(e.description.contains("MUSE_MAX_JOB_HOURS"), e.description)
        }
        XCTAssertNoThrow(try JobSpec.load(path: try spec(generation), environment: strict), "4 steps fit")
    }

    /// Prompts for a dataset from a file: JSONL, CSV (quoted commas) or plain text, after the
    /// inline list; bad rows are named.
    func testPromptsFromFiles() throws {
        func write(_ name: String, _ text: String) throws {
            try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        try write(
            "p.jsonl", #"{"prompt": "a lake at dawn", "id": 1}"# + "\n\n" + #"{"prompt": "a hill, with a tree"}"# + "\n"
        )
        try write("p.csv", "id,prompt\n1,\"a boat, red\"\n2,a field\n")
        try write("p.txt", "a barn\n\n  a road  \n")
        for (file, expected) in [
            ("p.jsonl", ["a lake at dawn", "a hill, with a tree"]), ("p.csv", ["a boat, red", "a field"]),
            ("p.txt", ["a barn", "a road"]),
        ] {
            let loaded = try JobSpec.load(
                path: try spec("generation:\n  prompts_file: \(file)\n  emotions: [awe]\n  seeds: [1]"),
                environment: env)
            XCTAssertEqual(loaded.jobs.map(\.content.prompt), expected, file)
        }
        let both = try JobSpec.load(
            path: try spec("generation:\n  prompts: [a sea]\n  prompts_file: p.txt\n  emotions: [awe]\n  seeds: [1]"),
            environment: env)
        XCTAssertEqual(both.jobs.map(\.content.prompt), ["a sea", "a barn", "a road"])
        try write("bad.jsonl", #"{"prompt": "ok"}"# + "\n" + #"{"text": "no prompt"}"# + "\n")
        try write("bad.csv", "id,text\n1,x\n")
        try write("dup.txt", "a barn\na barn\n")
        for (file, message) in [
            ("bad.jsonl", "bad.jsonl line 2: not a JSON object with a \"prompt\" (or \"caption\") string"),
            ("bad.csv", "bad.csv: no \"prompt\" or \"caption\" column (header: id, text)"),
            ("dup.txt", "dup.txt line 2: duplicate of dup.txt line 1 (prompt 'a barn')"),
            ("missing.txt", "generation.prompts_file: cannot read"),
        ] {
            let text = try problems("generation:\n  prompts_file: \(file)\n  emotions: [awe]\n  seeds: [1]")
            XCTAssertTrue(text.contains(message), text)
        }
    }

    func testSchedulerChoice() throws {
        let dpm = try JobSpec.load(path: try spec(generation + "\nengine: {scheduler: dpmpp-2m}"), environment: env)
        XCTAssertTrue(dpm.jobs.allSatisfy { $0.content.settings.scheduler == .dpmpp2m })
        let ddim = try JobSpec.load(path: try spec(generation), environment: env)
        XCTAssertTrue(ddim.jobs.allSatisfy { $0.content.settings.scheduler == .ddim }, "ddim by default")
        XCTAssertTrue(Set(dpm.jobs.map(\.id)).isDisjoint(with: Set(ddim.jobs.map(\.id))), "the sampler is content")
        XCTAssertTrue(
            try problems(generation + "\nengine: {scheduler: euler}").contains(
                "engine.scheduler: unknown scheduler 'euler' (valid: ddim, dpmpp-2m)"))
        let edit = "editing:\n  images: [images/sunset.png]\n  emotions: [awe]\n  source_prompt: a sunset\n"
        XCTAssertTrue(try problems(edit + "engine: {scheduler: dpmpp-2m}").contains("engine.scheduler: edits use ddim"))
    }

    func testTinyGuidanceDecoder() throws {
        let muse = "\nengine: {muse: {guidance_decoder: tiny}}"
        XCTAssertTrue(try problems(generation + muse).contains("engine.muse.guidance_decoder: tiny needs tiny_decoder"))
        let loaded = try JobSpec.load(
            path: try spec("tiny_decoder: bundled:tiny-taesd\n" + generation + muse), environment: env)
        let job = try XCTUnwrap(loaded.jobs.first)
        XCTAssertEqual(job.locations.tinyDecoder, "bundled:tiny-taesd")
        XCTAssertEqual(job.content.models.tinyDecoder?.count, 32, "the tiny decoder's fingerprint is part of the job")
        XCTAssertEqual(job.content.settings.muse.guidanceDecoder, .tiny)
        let plain = try JobSpec.load(path: try spec(generation), environment: env)
        XCTAssertNil(plain.jobs.first?.content.models.tinyDecoder)
    }

    /// Every spec key reaches the engine's settings.
    func testEveryMUSESettingReachesTheJob() throws {
        let loaded = try JobSpec.load(
            path: try spec(
                """
                engine:
                  muse:
                    inner_iterations: 4
                    learning_rate: 0.02
                    adam_beta1: 0.8
                    adam_beta2: 0.99
                    adam_epsilon: 1.0e-6
                    lambda_inherent: 0.7
                    lambda_similar: 0.1
                    similar_emotions: {awe: [amusement]}
                    settle_delta: 0.02
                    settle_steps: 3
                    min_start_fraction: 0.1
                    latest_start_fraction: 0.6
                    stop_fraction: 0.9
                    fixed_start_fraction: 0.3
                    preview: vae-decode
                    universal_scale: 10
                    universal_recurrence: 2
                    classify_every_step: true
                """ + "\n" + generation), environment: env)
        let s = loaded.jobs[0].content.settings.muse
        XCTAssertNoThrow(try s.validate())
        XCTAssertEqual(s.innerIterations, 4)
        XCTAssertEqual(s.learningRate, 0.02)
        XCTAssertEqual(s.adamBeta1, 0.8)
        XCTAssertEqual(s.adamBeta2, 0.99)
        XCTAssertEqual(s.adamEpsilon, 1e-6)
        XCTAssertEqual(s.lambdaInherent, 0.7)
        XCTAssertEqual(s.lambdaSimilar, 0.1)
        XCTAssertEqual(s.similarEmotions.similar(to: .awe), [.amusement])
        XCTAssertEqual(
            s.similarEmotions.similar(to: .fear), [.anger, .disgust, .sadness], "untouched targets keep their defaults")
        XCTAssertEqual(s.settleDelta, 0.02)
        XCTAssertEqual(s.settleSteps, 3)
        XCTAssertEqual(s.minStartFraction, 0.1)
        XCTAssertEqual(s.latestStartFraction, 0.6)
        XCTAssertEqual(s.stopFraction, 0.9)
        XCTAssertEqual(s.fixedStartFraction, 0.3)
        XCTAssertEqual(s.preview, .vaeDecode)
        XCTAssertEqual(s.universalScale, 10)
        XCTAssertEqual(s.universalRecurrence, 2)
        XCTAssertTrue(s.classifyEveryStep)
    }
}
