import ArgumentParser
import Foundation
import Support

/// `muse-coordinator bench-hash FILE`: SHA-256 throughput over a whole file, the cost that
/// hashing source images and model files puts on `submit`.
struct BenchHashCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-hash", abstract: "Time SHA-256 over a whole file (4 MiB reads).")

    @Argument(help: "File to hash.")
    var file: String

    func run() throws {
        guard let handle = FileHandle(forReadingAtPath: file) else { throw ValidationError("cannot read \(file)") }
        defer { try? handle.close() }
        var stream = Hashing.SHA256Stream()
        var bytes = 0
        let began = Date()
        while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
            stream.update(chunk)
            bytes += chunk.count
        }
        let seconds = Date().timeIntervalSince(began)
        print(
            String(
                format: "%@  %.2f GB in %.2f s, %.0f MB/s", stream.finalize().hexString, Double(bytes) / 1e9, seconds,
                Double(bytes) / 1e6 / seconds))
    }
}
