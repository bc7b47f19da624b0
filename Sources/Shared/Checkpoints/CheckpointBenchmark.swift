import Foundation
import Support

/// Measures checkpoint cost for one SD 1.x job state: the 4×64×64 latent, Adam moments
/// (two more latents' worth), and a 768-d token with its own two moments.
public enum CheckpointBenchmark {
    public struct Result: Sendable {
        public let level: Int32
        public let rawBytes: Int
        public let encodedBytes: Int
        public let encodeSeconds: Double
        public let decodeSeconds: Double
    }

    public static func samplePayload(seed: UInt64 = 42) -> CheckpointPayload {
        var rng = SplitMix64(seed: seed)
        func gaussian(_ n: Int, scale: Float) -> [Float] { (0..<n).map { _ in rng.nextGaussian() * scale } }
        let latent = 4 * 64 * 64
        let meta =
            #"{"step":25,"total_steps":50,"guidance":"active","inherent":"sadness","similar":["awe","contentment"]}"#
        return CheckpointPayload(
            metadata: Data(meta.utf8),
            arrays: [
                .init(name: "z_t", values: gaussian(latent, scale: 1)),
                .init(name: "adam_m", values: gaussian(latent, scale: 1e-3)),
                .init(name: "adam_v", values: gaussian(latent, scale: 1e-6).map { abs($0) }),
                .init(name: "token", values: gaussian(768, scale: 0.02)),
                .init(name: "token_adam_m", values: gaussian(768, scale: 1e-3)),
                .init(name: "token_adam_v", values: gaussian(768, scale: 1e-6).map { abs($0) }),
            ])
    }

    /// Best-of-`iterations` timings per zstd level.
    public static func measure(levels: [Int32] = [1, 3, 9], iterations: Int = 5) throws -> [Result] {
        let payload = samplePayload()
        let rawBytes = try CheckpointCodec.serialize(payload).count
        return try levels.map { level in
            var enc = Double.infinity
            var dec = Double.infinity
            var encoded = Data()
            for _ in 0..<max(1, iterations) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                encoded = try CheckpointCodec.encode(payload, jobID: "bench", epoch: 1, step: 25, level: level)
                let t1 = DispatchTime.now().uptimeNanoseconds
                let back = try CheckpointCodec.decode(encoded, jobID: "bench")
                let t2 = DispatchTime.now().uptimeNanoseconds
                precondition(back.payload == payload, "checkpoint round trip changed the payload")
                enc = min(enc, Double(t1 - t0) / 1e9)
                dec = min(dec, Double(t2 - t1) / 1e9)
            }
            return Result(
                level: level, rawBytes: rawBytes, encodedBytes: encoded.count, encodeSeconds: enc, decodeSeconds: dec)
        }
    }

    /// Printable lines for a CLI.
    public static func run(levels: [Int32] = [1, 3, 9], iterations: Int = 5) throws -> [String] {
        var lines = [
            "checkpoint codec: 4x64x64 latent + 2 latent-sized Adam moments + 768-d token (+ moments), best of \(iterations)"
        ]
        for r in try measure(levels: levels, iterations: iterations) {
            lines.append(
                String(
                    format: "zstd level %2d: raw %7d B -> %7d B (%.1f%%), encode %.2f ms, decode %.2f ms",
                    r.level, r.rawBytes, r.encodedBytes, 100 * Double(r.encodedBytes) / Double(r.rawBytes),
                    r.encodeSeconds * 1e3, r.decodeSeconds * 1e3))
        }
        return lines
    }
}
