import Foundation

extension DiffusersLayout {
    /// Safetensors headers larger than this are not read (SD 1.5's UNet header is ~100 KB).
    static let maxHeaderBytes = 64 << 20

    /// How many weights a component folder's chosen safetensors hold (from their headers:
    /// no tensor is read), 0 when none can be read. Memory estimates multiply it by the bytes
    /// per weight the engine stores, whatever the files' own dtype (an fp16 file still
    /// becomes float32 in memory).
    public static func parameterCount(component folder: String) -> Int {
        guard let source = weightSources(in: folder).first(where: { FileManager.default.fileExists(atPath: $0.path) })
        else { return 0 }
        switch source {
        case .file(let path): return parameterCount(safetensors: path)
        case .index(let path):
            return shardNames(index: path).reduce(0) { $0 + parameterCount(safetensors: folder + "/" + $1) }
        }
    }

    /// A safetensors file's header (tensor name → dtype, shape, offsets; `__metadata__`), nil
    /// when the file is not a regular file or its header cannot be read. No tensor is read.
    public static func safetensorsHeader(_ path: String) -> [String: Any]? {
        guard let (target, _) = regularFile(path), let handle = FileHandle(forReadingAtPath: target) else { return nil }
        defer { try? handle.close() }
        guard let prefix = try? handle.read(upToCount: 8), prefix.count == 8 else { return nil }
        let length = prefix.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length <= UInt64(maxHeaderBytes), let header = try? handle.read(upToCount: Int(length)),
            header.count == Int(length)
        else { return nil }
        return (try? JSONSerialization.jsonObject(with: header)) as? [String: Any]
    }

    /// The sum of the element counts of one safetensors file's tensors; 0 when unreadable.
    public static func parameterCount(safetensors path: String) -> Int {
        guard let entries = safetensorsHeader(path) else { return 0 }
        var total = 0
        for (name, entry) in entries where name != "__metadata__" {
            guard let shape = (entry as? [String: Any])?["shape"] as? [Int] else { continue }
            let (count, overflow) = shape.reduce((1, false)) { acc, side in
                let (product, o) = acc.0.multipliedReportingOverflow(by: max(side, 0))
                return (product, acc.1 || o)
            }
            if overflow { return 0 }
            total = total.addingReportingOverflow(count).overflow ? total : total + count
        }
        return total
    }
}
