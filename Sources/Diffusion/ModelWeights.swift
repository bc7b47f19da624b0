import Foundation
import Tensor

/// Errors loading a model: each names the folder, file or tensor at fault.
public struct ModelLoadError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// Named weights of one component, read lazily from its safetensors file(s), with shape
/// checks. `scoped("down_blocks.0")` gives a view whose names are relative to that prefix.
public final class ModelWeights: @unchecked Sendable {
    let files: [SafeTensorsFile]
    let prefix: String
    private let owner: String

    public init(files: [SafeTensorsFile], owner: String, prefix: String = "") {
        self.files = files
        self.owner = owner
        self.prefix = prefix
    }

    /// The safetensors weights in `folder` (model.safetensors or diffusion_pytorch_model.safetensors,
    /// or the shards an index names).
    public convenience init(folder: String) throws {
        let candidates = ["diffusion_pytorch_model.safetensors", "model.safetensors"]
        for name in candidates where ModelFile.exists(folder + "/" + name) {
            self.init(files: [try SafeTensorsFile(path: folder + "/" + name)], owner: folder)
            return
        }
        for index in ["diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"]
        where ModelFile.exists(folder + "/" + index) {
            let path = folder + "/" + index
            let data = Data(try ModelFile.contents(path, limit: ModelConfig.maxFileBytes, errorPrefix: path))
            guard let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                let map = json["weight_map"] as? [String: String]
            else { throw ModelLoadError("\(folder)/\(index): no weight_map") }
            let shards = Set(map.values).sorted()
            self.init(files: try shards.map { try SafeTensorsFile(path: folder + "/" + $0) }, owner: folder)
            return
        }
        throw ModelLoadError(
            "\(folder): no weights found (looked for \(candidates.joined(separator: ", ")) "
                + "and their .index.json); .bin/.ckpt checkpoints must be converted to safetensors first")
    }

    public func scoped(_ name: String) -> ModelWeights {
        ModelWeights(files: files, owner: owner, prefix: fullName(name) + ".")
    }

    func fullName(_ name: String) -> String { prefix + name }

    /// A CLIP tower's weights: under `prefix` (transformers 4 and real SD checkpoints:
    /// "text_model.…") or at the top level, as transformers 5 saves CLIPTextModel.
    public func towerScope(_ prefix: String, probe: String) -> ModelWeights {
        !contains(prefix + "." + probe) && contains(probe) ? self : scoped(prefix)
    }

    public func contains(_ name: String) -> Bool {
        let full = fullName(name)
        return files.contains { $0.contains(full) }
    }

    /// The tensor `name`, checked against `shape` when given (-1 matches any size).
    public func tensor(_ name: String, shape: [Int]? = nil) throws -> Tensor {
        let full = fullName(name)
        guard let file = files.first(where: { $0.contains(full) }) else {
            throw ModelLoadError("\(owner): missing tensor '\(full)'")
        }
        let t = try file.tensor(full)
        if let shape, shape.count != t.shape.count || zip(shape, t.shape).contains(where: { $0 != -1 && $0 != $1 }) {
            throw ModelLoadError("\(owner): tensor '\(full)' has shape \(t.shape), expected \(shape)")
        }
        return t
    }

    public func optionalTensor(_ name: String, shape: [Int]? = nil) throws -> Tensor? {
        contains(name) ? try tensor(name, shape: shape) : nil
    }
}

/// A component's config.json as a dictionary, with typed, named-error accessors.
public struct ModelConfig {
    public let path: String
    public let values: [String: Any]

    /// Config files larger than this are refused: real ones are a few kilobytes.
    public static let maxFileBytes = 16 << 20

    /// Reads and parses `path`, which must be a regular file (a FIFO or a device is refused
    /// before it is opened).
    public init(path: String) throws {
        guard ModelFile.exists(path) else { throw ModelLoadError("missing config file \(path)") }
        let data = Data(try ModelFile.contents(path, limit: Self.maxFileBytes, errorPrefix: path))
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelLoadError("\(path): not a JSON object")
        }
        self.path = path
        self.values = object
    }

    public func int(_ key: String, default value: Int? = nil) throws -> Int {
        if let n = values[key] as? NSNumber { return n.intValue }
        if let value, values[key] == nil || values[key] is NSNull { return value }
        throw ModelLoadError("\(path): '\(key)' missing or not an integer")
    }

    public func float(_ key: String, default value: Float? = nil) throws -> Float {
        if let n = values[key] as? NSNumber { return n.floatValue }
        if let value, values[key] == nil || values[key] is NSNull { return value }
        throw ModelLoadError("\(path): '\(key)' missing or not a number")
    }

    public func ints(_ key: String) throws -> [Int] {
        guard let list = values[key] as? [NSNumber] else {
            throw ModelLoadError("\(path): '\(key)' missing or not a list of integers")
        }
        return list.map(\.intValue)
    }

    public func strings(_ key: String) throws -> [String] {
        guard let list = values[key] as? [String] else {
            throw ModelLoadError("\(path): '\(key)' missing or not a list of strings")
        }
        return list
    }

    public func string(_ key: String, default value: String? = nil) throws -> String {
        if let s = values[key] as? String { return s }
        if let value { return value }
        throw ModelLoadError("\(path): '\(key)' missing or not a string")
    }

    public func bool(_ key: String, default value: Bool) -> Bool { (values[key] as? Bool) ?? value }

    /// An int or a per-block list of ints (diffusers allows both for head counts).
    public func intOrList(_ key: String, count: Int, default value: Int? = nil) throws -> [Int] {
        if let list = values[key] as? [NSNumber] { return list.map(\.intValue) }
        return [Int](repeating: try int(key, default: value), count: count)
    }
}
