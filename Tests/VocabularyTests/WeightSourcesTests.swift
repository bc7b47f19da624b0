import Foundation
import XCTest

@testable import DiffusersLayout

/// The order a component folder's weights are looked for: plain, its shards, then variants
/// (fp16 before bf16 before others), diffusers' and transformers' index spellings both.
final class WeightSourcesTests: XCTestCase {
    func testPlainFirstThenVariantsInPreferenceOrder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ws-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for name in [
            "model.ema.safetensors", "model.bf16.safetensors", "model.fp16.safetensors",
            "diffusion_pytorch_model.safetensors.index.fp16.json", "model.fp16-00001-of-00002.safetensors",
        ] {
            FileManager.default.createFile(atPath: dir.appendingPathComponent(name).path, contents: Data())
        }
        let names = DiffusersLayout.weightSources(in: dir.path).map { ($0.path as NSString).lastPathComponent }
        XCTAssertEqual(
            Array(names.prefix(4)),
            [
                "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                "model.safetensors", "model.safetensors.index.json",
            ])
        let variants = names.dropFirst(4).filter { FileManager.default.fileExists(atPath: dir.path + "/" + $0) }
        XCTAssertEqual(
            variants,
            [
                "diffusion_pytorch_model.safetensors.index.fp16.json", "model.fp16.safetensors",
                "model.bf16.safetensors",
                "model.ema.safetensors",
            ])
    }

    /// Headers and shard indexes are read through symbolic links, as a Hugging Face cache
    /// snapshot holds every file (before, a linked head counted 0 weights and no metadata).
    func testHeadersAreReadThroughLinks() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let head = root.appendingPathComponent("models/tiny-emotion-head.safetensors").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("links-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let link = dir.appendingPathComponent("head.safetensors").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: head)
        XCTAssertGreaterThan(DiffusersLayout.parameterCount(safetensors: head), 0)
        XCTAssertEqual(
            DiffusersLayout.parameterCount(safetensors: link), DiffusersLayout.parameterCount(safetensors: head))
        XCTAssertNotNil((DiffusersLayout.safetensorsHeader(link)?["__metadata__"] as? [String: String])?["classes"])
        let index = dir.appendingPathComponent("real.index.json")
        try Data(#"{"weight_map": {"a": "model-1.safetensors", "b": "../x.safetensors"}}"#.utf8).write(to: index)
        let linkedIndex = dir.appendingPathComponent("model.safetensors.index.json").path
        try FileManager.default.createSymbolicLink(atPath: linkedIndex, withDestinationPath: index.path)
        XCTAssertEqual(DiffusersLayout.shardNames(index: linkedIndex), ["model-1.safetensors"])
    }
}
