import DiffusersLayout
import Foundation
import Tensor
import XCTest

@testable import Diffusion

/// Single-file checkpoints in the original LDM layout (`LDMCheckpoint`, `StableDiffusion(path:)`),
/// against diffusers' `from_single_file` on the same bytes: tools/reference/build_single_file.py
/// wrote the recipe of each file (Tests/Fixtures/single_file_recipe.json: every tensor, the
/// tiny-sd tensor it copies, the file's FNV-1a 64) and diffusers' outputs
/// (single_file.safetensors). `SingleFileRecipe` rebuilds the files from models/tiny-sd; the
/// hash proves they are the ones diffusers read. Bounds as the folder parity tests'.
final class SingleFileTests: XCTestCase {
    static let recipe = Result { try SingleFileRecipe() }

    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("single-file-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// The variant's file, checked to be byte for byte the one diffusers loaded.
    func build(_ variant: String) throws -> String {
        let recipe = try Self.recipe.get()
        let path = dir.appendingPathComponent("tiny-sd-\(variant).safetensors").path
        try recipe.write(variant, to: path)
        XCTAssertEqual(try SingleFileRecipe.fnv1a64(path), try recipe.hash(variant), "\(variant): not diffusers' bytes")
        return path
    }

    /// UNet, VAE decode and text encoder outputs of `sd` against diffusers' for `variant`;
    /// returns the three relative errors.
    @discardableResult
    func assertMatchesDiffusers(_ sd: StableDiffusion, _ variant: String, unetKey: String? = nil) throws -> [Float] {
        let expected = try Parity.fixture("single_file")
        let u = try Parity.fixture("unet")
        let unet = sd.unet(
            try u.tensor("sample"), timestep: try u.tensor("timestep").data[0],
            context: try u.tensor("encoder_hidden_states"))
        let v = try Parity.fixture("vae")
        let decoded = sd.vae.decode(try v.tensor("latent_mean"))
        let t = try Parity.fixture("text_encoder")
        let ids = try t.int64s("input_ids").map(Int.init)
        let hidden = sd.textEncoder.encode(ids: [Array(ids[..<77]), Array(ids[77...])])
        let errors = [
            Parity.relativeError(unet, try expected.tensor(unetKey ?? "\(variant).unet_out")),
            Parity.relativeError(decoded, try expected.tensor("\(variant).vae_decoded")),
            Parity.relativeError(hidden, try expected.tensor("\(variant).text_last_hidden_state")),
        ]
        print("single file \(variant): UNet \(errors[0]), VAE decode \(errors[1]), text \(errors[2])")
        XCTAssertLessThan(errors[0], 1e-5, "\(variant) UNet")
        XCTAssertLessThan(errors[1], 1e-4, "\(variant) VAE decode")
        XCTAssertLessThan(errors[2], 1e-5, "\(variant) text encoder")
        return errors
    }

    func assertRefused(
        _ load: () throws -> Void, _ expected: [String], file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try load(), file: file, line: line) { error in
            for e in expected where !"\(error)".contains(e) {
                XCTFail("missing '\(e)' in: \(error)", file: file, line: line)
            }
        }
    }

    // MARK: parity with diffusers

    // Measured (each dtype, and the full checkpoint's two UNets): UNet 9.6e-7–1.2e-6, VAE decode
    // 2.1e-6–2.2e-6, text 3.2e-7–3.4e-7.
    func testF16CheckpointMatchesDiffusers() throws {
        let sd = try StableDiffusion(path: try build("f16"), configFolder: Parity.tinySD)
        XCTAssertTrue(sd.files.isSingleFile)
        XCTAssertEqual(sd.files.configFolder, Parity.tinySD)
        try assertMatchesDiffusers(sd, "f16")
    }

    func testBF16CheckpointMatchesDiffusers() throws {
        try assertMatchesDiffusers(try StableDiffusion(path: try build("bf16"), configFolder: Parity.tinySD), "bf16")
    }

    func testF32CheckpointMatchesDiffusersAndTheFolder() throws {
        let sd = try StableDiffusion(path: try build("f32"), configFolder: Parity.tinySD)
        try assertMatchesDiffusers(sd, "f32")
        // The same weights as the folder: the same pipeline, token for token and step for step.
        let folder = try PipelineParityTests.model.get()
        let z = Tensor.randomNormal([1, 4, 8, 8], seed: 5)
        let a = sd.denoise(from: z, prompt: "a photo of a cat", steps: 3, guidance: 7.5)
        let b = folder.denoise(from: z, prompt: "a photo of a cat", steps: 3, guidance: 7.5)
        XCTAssertEqual(a.data, b.data)
        XCTAssertEqual(sd.tokenIDs("a photo of a cat"), folder.tokenIDs("a photo of a cat"))
    }

    /// A full checkpoint holds the UNet twice; the file's plain copy is diffusers' default,
    /// its `model_ema.*` copy what `extract_ema=True` (here `extractEMA`) takes.
    func testFullCheckpointTakesThePlainUNetByDefaultAndTheEMAOneOnRequest() throws {
        let path = try build("ema")
        XCTAssertTrue(try LDMCheckpoint(path: path).hasEMA)
        let plain = try StableDiffusion(path: path, configFolder: Parity.tinySD)
        try assertMatchesDiffusers(plain, "ema")
        let ema = try StableDiffusion(path: path, configFolder: Parity.tinySD, extractEMA: true)
        try assertMatchesDiffusers(ema, "ema", unetKey: "ema_extracted.unet_out")
        let f = try Parity.fixture("single_file")
        XCTAssertGreaterThan(
            Parity.relativeError(try f.tensor("ema.unet_out"), try f.tensor("ema_extracted.unet_out")), 0.1,
            "the two copies must give different outputs for this test to mean anything")
        XCTAssertFalse(try LDMCheckpoint(path: try build("f16")).hasEMA)
    }

    /// Not for CI: an SD 1.5-sized checkpoint with random weights (`build_single_file.py --sd15
    /// DIR`, 2 GB of F16) loads with the bundled configs, models/sd15-config, and matches diffusers
    /// loading it with the same configs. Measured: UNet 2.6e-6 (16×16 latent), VAE decode 3.7e-6,
    /// text 1.0e-6; 53 s.
    func testFullSizeSD15CheckpointWithTheBundledConfigs() throws {
        guard let dir = ProcessInfo.processInfo.environment["MUSE_SD15_SINGLE_FILE"] else {
            throw XCTSkip(
                "set MUSE_SD15_SINGLE_FILE to a folder written by tools/reference/build_single_file.py --sd15")
        }
        let sd = try StableDiffusion(path: dir + "/sd15-ldm.safetensors")
        XCTAssertTrue(sd.files.configFolder.hasSuffix("models/sd15-config"), sd.files.configFolder)
        let f = try SafeTensorsFile(path: dir + "/parity.safetensors")
        let ids = try f.int64s("input_ids").map(Int.init)
        XCTAssertEqual(sd.tokenIDs("a photo of a cat"), ids)
        let errors = [
            Parity.relativeError(
                sd.unet(
                    try f.tensor("sample"), timestep: try f.tensor("timestep").data[0],
                    context: try f.tensor("encoder_hidden_states")), try f.tensor("unet_out")),
            Parity.relativeError(sd.vae.decode(try f.tensor("latent")), try f.tensor("vae_decoded")),
            Parity.relativeError(sd.textEncoder.encode(ids: [ids]), try f.tensor("text_last_hidden_state")),
        ]
        print("full-size SD 1.5 single file: UNet \(errors[0]), VAE decode \(errors[1]), text \(errors[2])")
        XCTAssertLessThan(errors[0], 1e-4)
        XCTAssertLessThan(errors[1], 1e-4)
        XCTAssertLessThan(errors[2], 1e-4)
    }

    // MARK: SD 1.5's names

    /// Every UNet and VAE tensor of SD 1.5 (4 levels; the tiny model has 3) gets diffusers'
    /// name: the pairs come from diffusers' own conversion (build_single_file.py).
    func testSD15NamesConvertAsDiffusersConvertsThem() throws {
        let url = URL(fileURLWithPath: Parity.root + "/Tests/Fixtures/single_file_sd15_names.json")
        let pairs = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: [[String]]])
        let unet = try XCTUnwrap(pairs["unet"])
        let vae = try XCTUnwrap(pairs["vae"])
        XCTAssertEqual(unet.count, 686)
        XCTAssertEqual(vae.count, 248)
        for pair in unet {
            XCTAssertEqual(
                LDMNames.unet(String(pair[0].dropFirst(LDMCheckpoint.unetPrefix.count)), layersPerBlock: 2), pair[1])
        }
        for pair in vae {
            XCTAssertEqual(LDMNames.vae(String(pair[0].dropFirst("first_stage_model.".count)), levels: 4), pair[1])
        }
        XCTAssertEqual(
            LDMNames.vaeAttentionShape("decoder.mid_block.attentions.0.to_q.weight", [512, 512, 1, 1]), [512, 512])
        XCTAssertEqual(
            LDMNames.vaeAttentionShape("decoder.mid_block.attentions.0.to_out.0.weight", [512, 512, 1]), [512, 512])
        XCTAssertNil(LDMNames.vaeAttentionShape("decoder.mid_block.attentions.0.to_q.weight", [512, 512, 3, 3]))
        XCTAssertNil(LDMNames.vaeAttentionShape("decoder.conv_in.weight", [512, 4, 1, 1]))
        for bad in [
            "input_blocks.-1.0.in_layers.0.weight", "input_blocks.1.0.bogus.weight", "middle_block.7.x",
            "input_blocks.99999999999999999999.0.in_layers.0.weight", "label_emb.0.0.weight",
            "output_blocks.2.3.conv.weight",
        ] {
            XCTAssertNil(LDMNames.unet(bad, layersPerBlock: 2), bad)
        }
        XCTAssertNil(LDMNames.vae("decoder.up.4.block.0.conv1.weight", levels: 4))
    }

    // MARK: refusals

    func testBundledSD15ConfigIsFoundAndRefusesATinyCheckpoint() throws {
        let config = try StableDiffusionFiles.bundledConfigFolder()
        XCTAssertTrue(config.hasSuffix("models/sd15-config"), config)
        XCTAssertEqual(try StableDiffusionFiles.locate(try build("f16")).configFolder, config)
        // The bundled configs are complete: each parses, the tokenizer is the real CLIP BPE.
        XCTAssertEqual(
            try CLIPTokenizer(folder: config + "/tokenizer").tokenize("a photo of a cat", length: 77).prefix(8),
            [49406, 320, 1125, 539, 320, 2368, 49407, 49407])
        let scheduler = try DDIMScheduler(configPath: config + "/" + DiffusersLayout.schedulerConfig)
        XCTAssertEqual(scheduler.timesteps(steps: 50).first, 981)
        XCTAssertFalse(scheduler.config.clipSample)
        assertRefused(
            { _ = try StableDiffusion(path: try self.build("f16")) },
            [
                "does not fit the config folder \(config)", "its UNet width is 32",
                "'model.diffusion_model.input_blocks.0.0.weight' is [32, 4, 3, 3]",
                "unet/config.json says block_out_channels [320, 640, 1280, 1280]",
            ])
    }

    func testPickledCheckpointsAreRefusedUnopenedWithTheConversionCommand() throws {
        for ext in ["ckpt", "bin", "pt", "pth", "CKPT"] {
            let path = dir.appendingPathComponent("v1-5-pruned-emaonly.\(ext)").path
            // Not a pickle at all: the refusal comes from the name, before any byte is read.
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("PK".utf8)))
            let output = dir.appendingPathComponent("v1-5-pruned-emaonly-diffusers").path
            assertRefused(
                { _ = try StableDiffusion(path: path) },
                [
                    path, "never opens them",
                    "python3 -c 'from diffusers import StableDiffusionPipeline; StableDiffusionPipeline.from_single_file(\"\(path)\").save_pretrained(\"\(output)\")'",
                ])
        }
        assertRefused(
            {
                let notes = self.dir.appendingPathComponent("notes.txt").path
                _ = FileManager.default.createFile(atPath: notes, contents: Data())
                _ = try StableDiffusion(path: notes)
            }, ["notes.txt is neither a Stable Diffusion folder", ".safetensors"])
        assertRefused(
            { _ = try StableDiffusion(path: Parity.tinySD, configFolder: Parity.tinySD) }, ["is a diffusers folder"])
        XCTAssertEqual(
            StableDiffusionFiles.conversionCommand("/m/it's \"x\".ckpt", output: "/o"),
            #"python3 -c 'from diffusers import StableDiffusionPipeline; StableDiffusionPipeline.from_single_file("/m/it'\''s \"x\".ckpt").save_pretrained("/o")'"#
        )
    }

    /// A small file with `tensors` (names and shapes, zero-filled F16).
    func writeFile(_ name: String, _ tensors: [(String, [Int])]) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try SingleFileRecipe.write(
            tensors.map { ($0.0, "F16", $0.1, Data(count: 2 * $0.1.reduce(1, *))) }, to: path)
        return path
    }

    func testSD2AndSDXLCheckpointsAreRefused() throws {
        let unet = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
        let openCLIP = try writeFile(
            "sd21.safetensors", [(unet, [320, 1024]), ("cond_stage_model.model.token_embedding.weight", [4, 8])])
        assertRefused(
            { _ = try StableDiffusion(path: openCLIP, configFolder: Parity.tinySD) },
            [
                openCLIP, "is an SD 2.x checkpoint", "OpenCLIP", "cond_stage_model.model.token_embedding.weight",
                "1.x only",
            ])
        let wide = try writeFile("sd2-unet.safetensors", [(unet, [320, 1024])])
        assertRefused(
            { _ = try LDMCheckpoint(path: wide) }, [wide, "SD 2.x", "1024-wide text features", "[320, 1024]"])
        let xl = try writeFile(
            "sdxl.safetensors",
            [(unet, [320, 2048]), ("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", [8])])
        assertRefused({ _ = try LDMCheckpoint(path: xl) }, [xl, "is an SDXL checkpoint", "conditioner.embedders."])
        let diffusersUNet = try writeFile("unet.safetensors", [("conv_in.weight", [32, 4, 3, 3])])
        assertRefused(
            { _ = try LDMCheckpoint(path: diffusersUNet) },
            [diffusersUNet, "no UNet ('model.diffusion_model.…')", "start with 'conv_in.'", "a folder"])
    }

    func testMissingTensorIsNamed() throws {
        let path = dir.appendingPathComponent("missing.safetensors").path
        try Self.recipe.get().write(
            "f16", to: path, dropping: ["model.diffusion_model.input_blocks.1.1.proj_in.weight"])
        assertRefused(
            { _ = try StableDiffusion(path: path, configFolder: Parity.tinySD) },
            [path, "the UNet tensor 'down_blocks.0.attentions.0.proj_in.weight' is missing"])
        let vae = dir.appendingPathComponent("missing-vae.safetensors").path
        try Self.recipe.get().write("f16", to: vae, dropping: ["first_stage_model.decoder.mid.attn_1.q.weight"])
        assertRefused(
            { _ = try StableDiffusion(path: vae, configFolder: Parity.tinySD) },
            [vae, "the VAE tensor 'decoder.mid_block.attentions.0.to_q.weight' is missing"])
        let ema = dir.appendingPathComponent("missing-ema.safetensors").path
        try Self.recipe.get().write("ema", to: ema, dropping: ["model_ema.diffusion_modelout2weight"])
        assertRefused(
            { _ = try StableDiffusion(path: ema, configFolder: Parity.tinySD, extractEMA: true) },
            [
                ema,
                "'model_ema.diffusion_modelout2weight' (the EMA copy of 'model.diffusion_model.out.2.weight') is missing",
            ])
    }

    func testUnexpectedAndUnusedTensorsAreNamed() throws {
        let recipe = try Self.recipe.get()
        let stray = dir.appendingPathComponent("stray.safetensors").path
        try recipe.write("f16", to: stray, adding: [("model.diffusion_model.input_blocks.1.0.extra.weight", [4])])
        assertRefused(
            { _ = try StableDiffusion(path: stray, configFolder: Parity.tinySD) },
            [stray, "unexpected tensor 'model.diffusion_model.input_blocks.1.0.extra.weight'", "SD 1.x UNet"])
        // Maps to a second transformer block, which the config does not have.
        let unused = dir.appendingPathComponent("unused.safetensors").path
        let extra = "model.diffusion_model.input_blocks.1.1.transformer_blocks.1.norm1.weight"
        try recipe.write("f16", to: unused, adding: [(extra, [32])])
        assertRefused(
            { _ = try StableDiffusion(path: unused, configFolder: Parity.tinySD) },
            [
                unused, "1 tensor(s) no SD 1.x UNet", "'\(extra)'",
                "down_blocks.0.attentions.0.transformer_blocks.1.norm1.weight",
            ])
        // A tensor of another shape names the file's name and the diffusers one.
        let misshapen = dir.appendingPathComponent("misshapen.safetensors").path
        try recipe.write(
            "f16", to: misshapen, dropping: ["model.diffusion_model.out.2.bias"],
            adding: [("model.diffusion_model.out.2.bias", [5])])
        assertRefused(
            { _ = try StableDiffusion(path: misshapen, configFolder: Parity.tinySD) },
            [
                misshapen,
                "tensor 'model.diffusion_model.out.2.bias' (the UNet's 'conv_out.bias') has shape [5], expected [4]",
            ])
    }

    func testFolderPathsLoadAsBefore() throws {
        let sd = try StableDiffusion(path: Parity.tinySD)
        XCTAssertFalse(sd.files.isSingleFile)
        XCTAssertEqual(sd.files.configFolder, Parity.tinySD)
        assertRefused(
            { _ = try StableDiffusion(path: "/nonexistent/model.safetensors") },
            ["/nonexistent/model.safetensors does not exist"])
    }
}

/// tools/reference/build_single_file.py's recipe, and a safetensors writer that writes what its
/// `write` writes, byte for byte.
struct SingleFileRecipe {
    let json: [String: Any]
    let sources: [String: SafeTensorsFile]

    init() throws {
        let url = URL(fileURLWithPath: Parity.root + "/Tests/Fixtures/single_file_recipe.json")
        json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        sources = [
            "unet": try SafeTensorsFile(path: Parity.tinySD + "/unet/diffusion_pytorch_model.safetensors"),
            "vae": try SafeTensorsFile(path: Parity.tinySD + "/vae/diffusion_pytorch_model.safetensors"),
            "text_encoder": try SafeTensorsFile(path: Parity.tinySD + "/text_encoder/model.safetensors"),
        ]
    }

    func variant(_ name: String) throws -> [String: Any] {
        try XCTUnwrap((json["variants"] as? [String: Any])?[name] as? [String: Any], "no variant \(name)")
    }

    func hash(_ name: String) throws -> String { try XCTUnwrap(try variant(name)["fnv1a64"] as? String) }

    /// Writes `name`'s file, less the tensors in `dropping`, plus zero-filled `adding` ones (F16).
    func write(
        _ name: String, to path: String, dropping: Set<String> = [], adding: [(String, [Int])] = []
    ) throws {
        let v = try variant(name)
        let dtype = try XCTUnwrap(v["dtype"] as? String)
        let negated = v["negate_prefix"] as? String
        var tensors: [(name: String, dtype: String, shape: [Int], data: Data)] = []
        for list in try XCTUnwrap(v["lists"] as? [String]) {
            for case let entry as [Any] in try XCTUnwrap(json[list] as? [Any]) {
                let name = try XCTUnwrap(entry[0] as? String)
                if dropping.contains(name) { continue }
                if list.hasSuffix("constants") {
                    let type = try XCTUnwrap(entry[1] as? String)
                    let shape = try XCTUnwrap(entry[2] as? [Int])
                    let values = try XCTUnwrap(entry[3] as? [NSNumber])
                    tensors.append((name, type, shape, Self.encode(values, as: type)))
                    continue
                }
                let source = try XCTUnwrap(sources[try XCTUnwrap(entry[1] as? String)])
                var values = try source.tensor(try XCTUnwrap(entry[2] as? String)).data
                if let negated, name.hasPrefix(negated) { values = values.map { -$0 } }
                tensors.append((name, dtype, try XCTUnwrap(entry[3] as? [Int]), Self.encode(values, as: dtype)))
            }
        }
        tensors += adding.map { ($0.0, "F16", $0.1, Data(count: 2 * $0.1.reduce(1, *))) }
        try Self.write(tensors, to: path)
    }

    static func encode(_ values: [NSNumber], as dtype: String) -> Data {
        switch dtype {
        case "I64": return bytes(values.map { $0.int64Value.littleEndian })
        case "I32": return bytes(values.map { $0.int32Value.littleEndian })
        default: return encode(values.map { $0.floatValue }, as: dtype)
        }
    }

    static func encode(_ values: [Float], as dtype: String) -> Data {
        switch dtype {
        case "F16": return bytes(values.map { Float16($0).bitPattern.littleEndian })
        case "BF16": return bytes(values.map { WeightStore.bfloat16($0).littleEndian })
        default: return bytes(values.map { $0.bitPattern.littleEndian })
        }
    }

    static func bytes<T>(_ values: [T]) -> Data { values.withUnsafeBytes { Data($0) } }

    /// Header entries in order, compact JSON, spaces to an 8-byte boundary, data back to back.
    static func write(_ tensors: [(name: String, dtype: String, shape: [Int], data: Data)], to path: String) throws {
        var entries: [String] = []
        var offset = 0
        for t in tensors {
            let shape = t.shape.map(String.init).joined(separator: ",")
            entries.append(
                "\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.data.count)]}"
            )
            offset += t.data.count
        }
        var header = Data(("{" + entries.joined(separator: ",") + "}").utf8)
        header.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - (8 + header.count) % 8) % 8))
        var file = bytes([UInt64(header.count).littleEndian])
        file.append(header)
        for t in tensors { file.append(t.data) }
        try file.write(to: URL(fileURLWithPath: path))
    }

    static func fnv1a64(_ path: String) throws -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in try Data(contentsOf: URL(fileURLWithPath: path)) { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return String(format: "%016llx", h)
    }
}
