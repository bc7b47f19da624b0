import Diffusion
import Foundation
import Tensor
import XCTest

/// Model folders as the hub delivers them (models/hub-layouts, re-saved by diffusers and
/// transformers: tools/reference/build_hub_layouts.py) load and compute what the plain
/// folders do; an HF-cache snapshot of symbolic links loads; a pickle-only folder is refused
/// with the way to convert it.
final class HubLayoutsTests: XCTestCase {
    static let hub = Parity.root + "/models/hub-layouts"
    let fm = FileManager.default

    func testShardedTextEncoderEqualsThePlainOne() throws {
        let plain = try CLIPTextEncoder(folder: Parity.root + "/models/tiny-clip-text")
        let sharded = try CLIPTextEncoder(folder: Self.hub + "/clip-text-sharded")
        let ids = [[2512, 320, 1125, 539, 320, 2368, 2513, 2513]]
        XCTAssertEqual(sharded.encode(ids: ids).data, plain.encode(ids: ids).data)
    }

    /// Only `diffusion_pytorch_model.fp16.safetensors`: loaded, and it is the float16 copy
    /// (a small difference from the float32 original, float16's rounding, not zero).
    func testFP16VariantOnlyFolderLoadsTheVariant() throws {
        let plain = try AutoencoderTiny(folder: Parity.root + "/models/tiny-taesd")
        let variant = try AutoencoderTiny(folder: Self.hub + "/taesd-fp16")
        let latent = Tensor.randomNormal([1, 4, 4, 4], seed: 5)
        let error = Parity.relativeError(variant.decode(latent), plain.decode(latent))
        XCTAssertGreaterThan(error, 1e-6)
        XCTAssertLessThan(error, 2e-2)
    }

    func testTokenizerJSONOnlyFolderGivesTheSameIDs() throws {
        let plain = try CLIPTokenizer(folder: Parity.tinySD + "/tokenizer")
        let json = try CLIPTokenizer(folder: Self.hub + "/tokenizer-json-only")
        for prompt in ["a photo of a cat", "A lighthouse, in the STORM!!", "émotions 日本 <|endoftext|> x"] {
            XCTAssertEqual(json.tokenize(prompt, length: 77), plain.tokenize(prompt, length: 77), prompt)
        }
    }

    /// huggingface_hub's cache: snapshots/<rev>/<component>/<file> are links to ../../../blobs/<hash>.
    func testHFCacheSnapshotOfSymbolicLinksLoads() throws {
        let cache = fm.temporaryDirectory.appendingPathComponent("hfcache-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: cache) }
        let snapshot = cache.appendingPathComponent("snapshots/0123abcd")
        let blobs = cache.appendingPathComponent("blobs")
        try fm.createDirectory(at: blobs, withIntermediateDirectories: true)
        let source = URL(fileURLWithPath: Parity.tinySD)
        let files = try XCTUnwrap(fm.enumerator(atPath: source.path)?.allObjects as? [String])
        for (n, rel) in files.enumerated() {
            var isDirectory: ObjCBool = false
            fm.fileExists(atPath: source.appendingPathComponent(rel).path, isDirectory: &isDirectory)
            let link = snapshot.appendingPathComponent(rel)
            if isDirectory.boolValue { continue }
            try fm.createDirectory(at: link.deletingLastPathComponent(), withIntermediateDirectories: true)
            try fm.copyItem(at: source.appendingPathComponent(rel), to: blobs.appendingPathComponent("blob\(n)"))
            let depth = rel.split(separator: "/").count
            let target = String(repeating: "../", count: depth + 1) + "blobs/blob\(n)"
            try fm.createSymbolicLink(atPath: link.path, withDestinationPath: target)
        }
        let attributes = try fm.attributesOfItem(atPath: snapshot.appendingPathComponent("unet/config.json").path)
        XCTAssertEqual(attributes[.type] as? FileAttributeType, .typeSymbolicLink)
        let linked = try StableDiffusion(folder: snapshot.path)
        let plain = try StableDiffusion(folder: Parity.tinySD)
        let context = plain.encodePrompt("a cat")
        XCTAssertEqual(linked.encodePrompt("a cat").data, context.data)
        let latent = Tensor.randomNormal(plain.latentShape(height: 64, width: 64), seed: 3)
        XCTAssertEqual(
            linked.unet(latent, timestep: 500, context: context).data,
            plain.unet(latent, timestep: 500, context: context).data)
    }

    func testPickleOnlyFolderIsRefusedWithTheConversion() throws {
        let dir = fm.temporaryDirectory.appendingPathComponent("pickle-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: dir) }
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        try fm.copyItem(atPath: Parity.tinySD + "/unet/config.json", toPath: dir.path + "/config.json")
        try Data("not really a pickle".utf8).write(to: dir.appendingPathComponent("diffusion_pytorch_model.bin"))
        XCTAssertThrowsError(try UNet2DConditionModel(folder: dir.path)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("diffusion_pytorch_model.bin"), message)
            XCTAssertTrue(message.contains("never loaded") && message.contains("save_file"), message)
        }
    }
}

extension HubLayoutsTests {
    /// A shard index may name only files beside it: "../" cannot send the loader elsewhere.
    func testShardIndexCannotPointOutsideItsFolder() throws {
        let dir = fm.temporaryDirectory.appendingPathComponent("index-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: dir) }
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        try fm.copyItem(atPath: Parity.root + "/models/tiny-clip-text/config.json", toPath: dir.path + "/config.json")
        let index =
            #"{"metadata": {}, "weight_map": {"text_model.final_layer_norm.weight": "../elsewhere.safetensors"}}"#
        try Data(index.utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertThrowsError(try CLIPTextEncoder(folder: dir.path)) { error in
            XCTAssertTrue("\(error)".contains("'../elsewhere.safetensors' is not a file name"), "\(error)")
        }
    }
}
