import Foundation
import XCTest

@testable import Jobs

/// What submit (and --dry-run) tells about the models it can see, before anything is queued:
/// a component without weights, a tokenizer without its files, a head that does not name the
/// 8 emotions — each under the spec key that named the model.
final class ComponentChecksTests: SpecFixture {
    var models: URL { Self.packageRoot.appendingPathComponent("models") }

    func copy(_ name: String) throws -> URL {
        let to = dir.appendingPathComponent(name)
        try FileManager.default.copyItem(at: models.appendingPathComponent(name), to: to)
        return to
    }

    func spec(model: String = "bundled:tiny-sd", head: String = "bundled:tiny-emotion-head.safetensors") -> String {
        """
        model: \(model)
        classifier: {tower: bundled:tiny-clip-vision, head: \(head), text: bundled:tiny-clip-text}
        engine: {steps: 4}
        generation: {prompts: [a cat], emotions: [awe], seeds: [1]}
        """
    }

    func problems(of text: String) throws -> String {
        try write("c.yaml", text)
        do {
            _ = try JobSpec.load(path: dir.appendingPathComponent("c.yaml").path, environment: env)
            XCTFail("accepted")
            return ""
        } catch let e as SpecError { return e.description }
    }

    func testMissingWeightsAndTokenizerAreNamedAtSubmit() throws {
        let sd = try copy("tiny-sd")
        try FileManager.default.removeItem(at: sd.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"))
        try Data("pickle".utf8).write(to: sd.appendingPathComponent("vae/diffusion_pytorch_model.bin"))
        for name in ["vocab.json", "tokenizer.json"] {
            try FileManager.default.removeItem(at: sd.appendingPathComponent("tokenizer/" + name))
        }
        let text = try problems(of: spec(model: sd.path))
        assertMentions(
            text,
            [
                "model: \(sd.path)/vae has no safetensors weights",
                "diffusion_pytorch_model.bin are pickled checkpoints",
                "model: \(sd.path)/tokenizer has no tokenizer (vocab.json and merges.txt, or tokenizer.json)",
            ])
    }

    func testHeadsMustNameTheEightEmotions() throws {
        let source = models.appendingPathComponent("tiny-emotion-head.safetensors")
        let data = try Data(contentsOf: source)
        let length = Int(
            data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        var header = try XCTUnwrap(
            JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as? [String: Any])
        for (classes, expected) in [
            (nil as String?, "has no 'classes' metadata"),
            ("awe,fear", "lists 2 (awe,fear), not the 8 emotions"),
            ("amusement,awe,contentment,excitement,anger,disgust,fear,fear", "not the 8 emotions once each"),
        ] {
            var metadata = header["__metadata__"] as? [String: String] ?? [:]
            metadata["classes"] = classes
            header["__metadata__"] = metadata
            var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
            while json.count % 8 != 0 { json.append(0x20) }
            var file = Data()
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
            file.append(json)
            file.append(data.subdata(in: (8 + length)..<data.count))
            let path = dir.appendingPathComponent("head.safetensors")
            try file.write(to: path)
            assertMentions(
                try problems(of: spec(head: path.path)), ["classifier.head: classifier head \(path.path)", expected])
        }
    }
}
