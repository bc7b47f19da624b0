import Foundation
import XCTest

@testable import Diffusion

/// Every config value the engine reads is range-checked: a bad one makes the loader throw a
/// `ModelLoadError` naming the file, the key and the allowed range — never trap, never load.
/// Each case writes one edited config into a temporary copy of a tiny model (weights linked).
final class ConfigValidationTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    enum Component: String, CaseIterable {
        case unet, vae, clipText, clipVision, ddim, dpm, vit, vitProcessor

        /// The tiny model folder and its config file name.
        var source: (folder: String, config: String) {
            switch self {
            case .unet: return ("tiny-sd/unet", "config.json")
            case .vae: return ("tiny-sd/vae", "config.json")
            case .clipText: return ("tiny-sd/text_encoder", "config.json")
            case .clipVision: return ("tiny-clip-vision", "config.json")
            case .ddim, .dpm: return ("tiny-sd/scheduler", "scheduler_config.json")
            case .vit: return ("tiny-vit-emotion", "config.json")
            case .vitProcessor: return ("tiny-vit-emotion", "preprocessor_config.json")
            }
        }

        func load(_ folder: String) throws {
            switch self {
            case .unet: _ = try UNet2DConditionModel(folder: folder)
            case .vae: _ = try AutoencoderKL(folder: folder)
            case .clipText: _ = try CLIPTextEncoder(folder: folder)
            case .clipVision: _ = try CLIPVisionEncoder(folder: folder)
            case .ddim: _ = try DDIMScheduler(configPath: folder + "/scheduler_config.json")
            case .dpm: _ = try DPMSolverMultistepScheduler(configPath: folder + "/scheduler_config.json")
            case .vit, .vitProcessor: _ = try ViTImageClassifier(folder: folder)
            }
        }
    }

    struct Case {
        let component: Component
        let key: String
        /// The key's new value as raw JSON text (so `NaN`, `1e30` or `[]` can be written).
        let value: String
        /// Words the message must hold besides the file and the key (the allowed range).
        let words: [String]
        init(_ component: Component, _ key: String, _ value: String, _ words: String...) {
            self.component = component
            self.key = key
            self.value = value
            self.words = words
        }
    }

    static let cases: [Case] = [
        // UNet
        Case(.unet, "block_out_channels", "[]", "1...8"),
        Case(.unet, "block_out_channels", "[32, 64, 1e30]", "1...8192"),
        Case(.unet, "block_out_channels", "[32, -64, 64]", "1...8192"),
        Case(.unet, "block_out_channels", "[32, 64, 64.5]", "1...8192"),
        Case(.unet, "layers_per_block", "-1", "1...64"),
        Case(.unet, "layers_per_block", "0", "1...64"),
        Case(.unet, "layers_per_block", "[2, 2]", "3"),
        Case(.unet, "layers_per_block", "1000000", "1...64"),
        Case(.unet, "attention_head_dim", "0", "1...128"),
        Case(.unet, "attention_head_dim", "-8", "1...128"),
        Case(.unet, "attention_head_dim", "7", "divisible"),
        Case(.unet, "attention_head_dim", "[8, 8]", "3"),
        Case(.unet, "num_attention_heads", "0", "1...128"),
        Case(.unet, "norm_num_groups", "0", "1...8192"),
        Case(.unet, "norm_num_groups", "-32", "1...8192"),
        Case(.unet, "norm_num_groups", "24", "divisible"),
        Case(.unet, "norm_eps", "-1", "0...1"),
        Case(.unet, "norm_eps", "NaN", "0...1"),
        Case(.unet, "sample_size", "4611686018427387904", "1...1024"),
        Case(.unet, "sample_size", "0", "1...1024"),
        Case(.unet, "cross_attention_dim", "0", "1...8192"),
        Case(.unet, "in_channels", "-4", "1...1024"),
        Case(.unet, "out_channels", "true", "1...1024"),
        Case(.unet, "transformer_layers_per_block", "-1", "1...64"),
        Case(.unet, "freq_shift", "Infinity", "-1000...1000"),
        Case(.unet, "flip_sin_to_cos", "\"yes\"", "true or false"),
        // VAE
        Case(.vae, "block_out_channels", "[]", "1...8"),
        Case(.vae, "block_out_channels", "[32, 32, 32, 32, 32, 32, 32, 32, 32, 32]", "1...8"),
        Case(.vae, "block_out_channels", "[32, 0, 64, 64]", "1...8192"),
        Case(.vae, "layers_per_block", "-1", "1...64"),
        Case(.vae, "norm_num_groups", "0", "1...8192"),
        Case(.vae, "norm_num_groups", "7", "divisible"),
        Case(.vae, "latent_channels", "0", "1...1024"),
        Case(.vae, "in_channels", "-3", "1...1024"),
        Case(.vae, "scaling_factor", "0", "> 0"),
        Case(.vae, "scaling_factor", "-Infinity", "> 0"),
        Case(.vae, "use_quant_conv", "1", "true or false"),
        // CLIP text
        Case(.clipText, "num_hidden_layers", "-1", "1...64"),
        Case(.clipText, "num_hidden_layers", "100000", "1...64"),
        Case(.clipText, "hidden_size", "0", "1...8192"),
        Case(.clipText, "hidden_size", "-32", "1...8192"),
        Case(.clipText, "hidden_size", "30", "divisible"),
        Case(.clipText, "num_attention_heads", "0", "1...128"),
        Case(.clipText, "num_attention_heads", "-4", "1...128"),
        Case(.clipText, "intermediate_size", "0", "1...32768"),
        Case(.clipText, "vocab_size", "-1", "1...1000000"),
        Case(.clipText, "max_position_embeddings", "1", "2...4096"),
        Case(.clipText, "max_position_embeddings", "1e300", "2...4096"),
        Case(.clipText, "layer_norm_eps", "NaN", "0...1"),
        Case(.clipText, "eos_token_id", "-1", "0...2147483647"),
        Case(.clipText, "projection_dim", "0", "1...8192"),
        // CLIP vision
        Case(.clipVision, "num_hidden_layers", "-2", "1...64"),
        Case(.clipVision, "hidden_size", "0", "1...8192"),
        Case(.clipVision, "hidden_size", "33", "divisible"),
        Case(.clipVision, "num_attention_heads", "0", "1...128"),
        Case(.clipVision, "image_size", "0", "1...4096"),
        Case(.clipVision, "image_size", "4611686018427387904", "1...4096"),
        Case(.clipVision, "patch_size", "0", "1...4096"),
        Case(.clipVision, "patch_size", "-8", "1...4096"),
        Case(.clipVision, "patch_size", "7", "multiple"),
        Case(.clipVision, "num_channels", "0", "1...64"),
        Case(.clipVision, "projection_dim", "-1", "1...8192"),
        // ViT image classifier
        Case(.vit, "num_hidden_layers", "-1", "1...64"),
        Case(.vit, "hidden_size", "30", "divisible"),
        Case(.vit, "intermediate_size", "0", "1...32768"),
        Case(.vit, "image_size", "0", "1...4096"),
        Case(.vit, "image_size", "1e300", "1...4096"),
        Case(.vit, "patch_size", "5", "multiple"),
        Case(.vit, "num_channels", "1", "RGB"),
        Case(.vit, "layer_norm_eps", "NaN", "0...1"),
        Case(.vit, "hidden_act", "\"gelu_new\"", "quick_gelu or gelu"),
        Case(.vit, "qkv_bias", "1", "true or false"),
        Case(.vit, "model_type", "\"deit\"", "only ViTForImageClassification"),
        Case(.vit, "architectures", "[\"ViTModel\"]", "needs ViTForImageClassification"),
        Case(.vit, "id2label", "{}", "missing or empty"),
        Case(.vit, "id2label", "{\"0\": \"awe\", \"2\": \"fear\"}", "class indices 0...1"),
        Case(.vit, "id2label", "{\"0\": 7}", "must be a string"),
        Case(.vitProcessor, "resample", "0", "2 (bilinear) or 3 (bicubic)"),
        Case(.vitProcessor, "size", "{\"shortest_edge\": 32}", "height"),
        Case(.vitProcessor, "size", "24", "not the model's 32×32"),
        Case(.vitProcessor, "size", "-1", "1...65536"),
        Case(.vitProcessor, "do_resize", "false", "resized"),
        Case(.vitProcessor, "image_mean", "[0.5, 0.5]", "3"),
        Case(.vitProcessor, "image_std", "[0, 0.5, 0.5]", "1000"),
        Case(.vitProcessor, "rescale_factor", "0", "> 0"),
        Case(.vitProcessor, "image_processor_type", "\"CLIPImageProcessor\"", "only ViTImageProcessor"),
        // Schedulers (DDIM and DPM-Solver++ read the same keys)
        Case(.ddim, "num_train_timesteps", "10", "100...100000"),
        Case(.ddim, "num_train_timesteps", "0", "100...100000"),
        Case(.ddim, "num_train_timesteps", "-1000", "100...100000"),
        Case(.ddim, "num_train_timesteps", "1e12", "100...100000"),
        Case(.ddim, "steps_offset", "1000", "0...999"),
        Case(.ddim, "steps_offset", "-1", "0...999"),
        Case(.ddim, "beta_start", "-0.1", "0...0.999"),
        Case(.ddim, "beta_end", "2", "0...0.999"),
        Case(.ddim, "beta_end", "NaN", "0...0.999"),
        Case(.ddim, "clip_sample_range", "-1", "> 0"),
        Case(.ddim, "trained_betas", "[0.1, 0.2]", "1000"),
        Case(.ddim, "set_alpha_to_one", "\"no\"", "true or false"),
        Case(.dpm, "num_train_timesteps", "10", "100...100000"),
        Case(.dpm, "num_train_timesteps", "-1", "100...100000"),
        Case(.dpm, "steps_offset", "5000", "0...999"),
        Case(.dpm, "beta_start", "Infinity", "0...0.999"),
        Case(.dpm, "clip_sample_range", "NaN", "> 0"),
        Case(.dpm, "solver_order", "1e30", "1...2"),
    ]

    /// A temporary copy of `component`'s tiny model whose config has `key` set to the raw JSON `value`.
    static func editedCopy(_ component: Component, key: String, value: String) throws -> String {
        let fm = FileManager.default
        let dir = NSTemporaryDirectory() + "model-copy-\(UUID().uuidString)"
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let (folder, config) = component.source
        let source = root + "/models/" + folder
        for name in try fm.contentsOfDirectory(atPath: source) where name != config {
            try fm.createSymbolicLink(atPath: dir + "/" + name, withDestinationPath: source + "/" + name)
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: source + "/" + config))
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let marker = "@@VALUE@@"
        object[key] = marker
        let text = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        try text.replacingOccurrences(of: "\"\(marker)\"", with: value)
            .write(toFile: dir + "/" + config, atomically: true, encoding: .utf8)
        return dir
    }

    func testBadConfigValuesThrowNamingFileKeyAndRange() throws {
        for c in Self.cases {
            let dir = try Self.editedCopy(c.component, key: c.key, value: c.value)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let what = "\(c.component) \(c.key) = \(c.value)"
            XCTAssertThrowsError(try c.component.load(dir), what) { error in
                let message = "\(error)"
                XCTAssertTrue(error is ModelLoadError, "\(what): \(type(of: error)) \(message)")
                let file = dir + "/" + c.component.source.config
                for word in [file, "'\(c.key)'"] + c.words {
                    XCTAssertTrue(message.contains(word), "\(what): message lacks \(word): \(message)")
                }
            }
        }
    }

    /// Configs of the real models pass every range check: loading them over the tiny weights
    /// fails only at the first tensor whose shape differs.
    func testRealModelConfigsPassTheChecks() throws {
        let sd15UNet = """
            {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
             "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
             "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
             "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}
            """
        let sd2UNet = """
            {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20],
             "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 1024,
             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
             "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
             "layers_per_block": 2, "norm_eps": 1e-05, "norm_num_groups": 32, "num_class_embeds": null,
             "only_cross_attention": false, "out_channels": 4, "sample_size": 96,
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
             "upcast_attention": true, "use_linear_projection": true}
            """
        let sdVAE = """
            {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
             "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
             "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
             "sample_size": 768, "scaling_factor": 0.18215,
             "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}
            """
        // openai/clip-vit-large-patch14 (a full CLIPModel config: towers nested, legacy eos id 2).
        let clipL = """
            {"architectures": ["CLIPModel"], "projection_dim": 768,
             "text_config": {"bos_token_id": 0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768,
              "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
              "num_attention_heads": 12, "num_hidden_layers": 12, "projection_dim": 768, "vocab_size": 49408},
             "vision_config": {"hidden_act": "quick_gelu", "hidden_size": 1024, "image_size": 224,
              "intermediate_size": 4096, "layer_norm_eps": 1e-05, "num_attention_heads": 16, "num_hidden_layers": 24,
              "patch_size": 14, "projection_dim": 768}}
            """
        // SD 2's OpenCLIP ViT-H text tower.
        let sd2Text = """
            {"architectures": ["CLIPTextModel"], "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu",
             "hidden_size": 1024, "intermediate_size": 4096, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
             "num_attention_heads": 16, "num_hidden_layers": 23, "pad_token_id": 1, "projection_dim": 512,
             "vocab_size": 49408}
            """
        let sd15Scheduler = """
            {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "set_alpha_to_one": false,
             "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null}
            """
        let sd2Scheduler = """
            {"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000,
             "prediction_type": "v_prediction", "set_alpha_to_one": false, "skip_prk_steps": true,
             "steps_offset": 1, "trained_betas": null, "lambda_min_clipped": -Infinity, "variance_type": null}
            """
        for (component, text) in [
            (Component.unet, sd15UNet), (.unet, sd2UNet), (.vae, sdVAE), (.clipText, clipL), (.clipVision, clipL),
            (.clipText, sd2Text),
        ] {
            let dir = try Self.copy(component, config: text)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            XCTAssertThrowsError(try component.load(dir), "\(component)") { error in
                XCTAssertTrue("\(error)".contains("has shape"), "\(component): \(error)")
            }
        }
        for text in [sd15Scheduler, sd2Scheduler] {
            let dir = try Self.copy(.ddim, config: text)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            XCTAssertNoThrow(try Component.ddim.load(dir))
            XCTAssertNoThrow(try Component.dpm.load(dir))
        }
    }

    /// Step counts whose timesteps leave the training range are refused (the engine asks
    /// before it steps; DDIM's own accessors would stop on a precondition).
    func testDDIMStepCountsAreValidated() throws {
        let s = DDIMScheduler(config: .stableDiffusion)  // leading spacing, steps_offset 1
        for steps in [0, -1, 1001, Int.max] {
            XCTAssertThrowsError(try s.validate(steps: steps)) { XCTAssertTrue("\($0)".contains("1...1000"), "\($0)") }
        }
        // 1000 steps: timesteps 1...1000, and 1000 is past the last training step.
        XCTAssertThrowsError(try s.validate(steps: 1000)) { XCTAssertTrue("\($0)".contains("1000"), "\($0)") }
        for steps in [1, 2, 10, 50, 999] { XCTAssertNoThrow(try s.validate(steps: steps)) }
        var trailing = DDIMConfig.stableDiffusion
        trailing.timestepSpacing = .trailing
        XCTAssertNoThrow(try DDIMScheduler(config: trailing).validate(steps: 1000))
    }

    /// A schedule built in code is range-checked where it can still be refused.
    func testCodeBuiltScheduleIsChecked() throws {
        var c = DDIMConfig.stableDiffusion
        XCTAssertNil(c.problem())
        c.numTrainTimesteps = 10
        XCTAssertEqual(c.problem()?.key, "num_train_timesteps")
        XCTAssertThrowsError(try DPMSolverMultistepScheduler(ddim: c)) {
            XCTAssertTrue("\($0)".contains("num_train_timesteps"), "\($0)")
        }
        c = .stableDiffusion
        c.stepsOffset = 1000
        XCTAssertEqual(c.problem()?.key, "steps_offset")
        c = .stableDiffusion
        c.clipSampleRange = -1
        XCTAssertEqual(c.problem()?.key, "clip_sample_range")
        c = .stableDiffusion
        c.trainedBetas = [Float](repeating: 2, count: 1000)
        XCTAssertEqual(c.problem()?.key, "trained_betas")
    }

    static func copy(_ component: Component, config text: String) throws -> String {
        let dir = try editedCopy(component, key: "_unused", value: "null")
        try text.write(toFile: dir + "/" + component.source.config, atomically: true, encoding: .utf8)
        return dir
    }

    /// The non-finite tokens Python's json writes are read by ModelConfig itself, outside strings only.
    func testNonFiniteTokens() throws {
        let dir = NSTemporaryDirectory() + "nonfinite-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/config.json"
        try #"{"a": -Infinity, "b": [Infinity, NaN, 1.5], "s": "NaN -Infinity \"Infinity\"", "c": 2}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let c = try ModelConfig(path: path)
        XCTAssertEqual(try c.double("a", default: nil, in: -.infinity ... .infinity), -.infinity)
        XCTAssertEqual(try c.string("s"), #"NaN -Infinity "Infinity""#)
        XCTAssertEqual(try c.int("c", default: nil, in: 0...2), 2)
        XCTAssertThrowsError(try c.double("a", default: nil, in: -1e9...1e9)) {
            XCTAssertTrue("\($0)".contains("'a'") && "\($0)".contains("-Infinity"), "\($0)")
        }
        XCTAssertThrowsError(try c.floats("b", count: 3...3, in: -1e9...1e9)) {
            XCTAssertTrue("\($0)".contains("'b'"), "\($0)")
        }
        XCTAssertThrowsError(try c.int("a", default: nil, in: 0...10)) { XCTAssertTrue("\($0)".contains("'a'")) }
    }
}
