import Foundation
import Jobs
import Support

/// WebDataset tar shards of a collected output folder: `webdataset/shard-000000.tar`, …,
/// each holding `samplesPerShard` done jobs as `<job id>.png` + `<job id>.json` (the job's
/// metadata.jsonl row). Samples are ordered by output file name, not by completion, so the
/// same batch gives the same shards however its jobs were scheduled. `webdataset/index.json`
/// records each shard's fingerprint: a shard whose samples are unchanged is not rewritten,
/// and shards beyond the new count are removed. Format: manifests/SPEC.md, "Dataset files".
public enum WebDatasetShards {
    public static let folderName = "webdataset"
    public static let indexName = "index.json"
    public static let samplesPerShardRange = 1...100_000

    struct Index: Codable, Equatable {
        var samplesPerShard: Int
        /// Shard file name → SHA-256 over its samples' ids, PNG hashes and JSON rows.
        var shards: [String: String]
        var samples: Int

        enum CodingKeys: String, CodingKey {
            case shards, samples
            case samplesPerShard = "samples_per_shard"
        }
    }

    public struct Outcome: Equatable {
        public var shards: Int
        public var rewritten: Int
        public var samples: Int
    }

    static func shardName(_ i: Int) -> String {
        let digits = String(i)
        return "shard-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits + ".tar"
    }

    /// Writes the shards of every done job with a PNG in `output`'s manifest.
    @discardableResult
    public static func write(output: URL, samplesPerShard: Int) throws -> Outcome {
        precondition(samplesPerShardRange.contains(samplesPerShard), "checked by the command line")
        let entries = try ManifestWriter.readEntries(
            output.appendingPathComponent(Collector.manifestName), as: ManifestEntry.self)
        let done = entries.filter { $0.status == .done && $0.output != nil }.sorted { $0.output! < $1.output! }
        let folder = output.appendingPathComponent(folderName)
        let indexURL = folder.appendingPathComponent(indexName)
        let old = (try? Data(contentsOf: indexURL)).flatMap { try? JSONDecoder().decode(Index.self, from: $0) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]

        var index = Index(samplesPerShard: samplesPerShard, shards: [:], samples: done.count)
        var rewritten = 0
        let groups = stride(from: 0, to: done.count, by: samplesPerShard).map {
            Array(done[$0..<min($0 + samplesPerShard, done.count)])
        }
        for (i, group) in groups.enumerated() {
            let name = shardName(i)
            let rows = try group.map { try encoder.encode(DatasetFiles.MetadataRow(entry: $0)) }
            var fingerprint = Data()
            for (entry, row) in zip(group, rows) {
                fingerprint.append(Data("\(entry.jobID) \(entry.sha256 ?? "")\n".utf8))
                fingerprint.append(row)
                fingerprint.append(0x0A)
            }
            let digest = Hashing.sha256Hex(fingerprint)
            index.shards[name] = digest
            let url = folder.appendingPathComponent(name)
            if old?.shards[name] == digest, FileManager.default.fileExists(atPath: url.path) { continue }
            try Collector.writeDurably(to: url) { append in
                try withoutActuallyEscaping(append) { append in
                    let tar = TarWriter(sink: append)
                    for (entry, row) in zip(group, rows) {
                        try tar.add(name: entry.jobID + ".png", contents: try readPNG(entry, output: output))
                        try tar.add(name: entry.jobID + ".json", contents: row)
                    }
                    try tar.finish()
                }
            }
            rewritten += 1
        }
        // Shards of an earlier, longer layout.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        where name.hasPrefix("shard-") && name.hasSuffix(".tar") && index.shards[name] == nil {
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
        if !groups.isEmpty || old != nil {
            var json = try encoder.encode(index)
            json.append(0x0A)
            try Collector.writeDurably(json, to: indexURL)
        }
        return Outcome(shards: groups.count, rewritten: rewritten, samples: done.count)
    }

    /// One line for the terminal.
    public static func summary(_ o: Outcome, output: URL) -> String {
        "webdataset: \(o.samples) samples in \(o.shards) shard(s) under "
            + "\(output.appendingPathComponent(folderName).path) (\(o.rewritten) written, \(o.shards - o.rewritten) unchanged)"
    }

    /// A done job's PNG, checked against the manifest's hash: a shard never carries a file
    /// that is not the collected result.
    static func readPNG(_ entry: ManifestEntry, output: URL) throws -> Data {
        let path = entry.output!
        let url = try PathConfinement.resolve(path, under: output)
        let bytes: Data
        do { bytes = try RegularFile.read(url.path, limit: 1 << 30) } catch {
            throw InputError("webdataset: cannot read \(path) of job \(entry.jobID.prefix(8)): \(error)")
        }
        if let sha = entry.sha256, Hashing.sha256Hex(bytes) != sha {
            throw InputError(
                "webdataset: \(path) does not match the manifest's sha256 for job \(entry.jobID.prefix(8)) (changed after collection?)"
            )
        }
        return bytes
    }
}
