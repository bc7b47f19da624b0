import Foundation
import Imaging
import Support

/// A 95 % confidence interval.
public struct Interval: Equatable, Sendable {
    public var low: Double
    public var high: Double

    func contains(_ x: Double) -> Bool { low <= x && x <= high }
}

/// Percentile bootstrap: `resamples` resamples with replacement of the group's jobs (or of its
/// pairs), the statistic of each, and the 2.5 % and 97.5 % quantiles of those (linear
/// interpolation between order statistics, numpy's default). Every cell draws from its own
/// SplitMix64 stream, seeded with `seed` mixed with the cell's key (FNV-1a), so a cell's interval
/// depends on its own values only: not on the run, nor on which other groups the batch holds.
enum Bootstrap {
    static let resamples = 2000
    static let seed: UInt64 = 0x4D55_5345_2D52_4550  // "MUSE-REP"
    static let level = 0.95

    static func generator(_ key: String) -> SplitMix64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return SplitMix64(seed: seed ^ h)
    }

    /// The interval of the mean of `values` (nil when there are none; one value: [x, x]).
    static func meanInterval(_ values: [Double], key: String) -> Interval? {
        guard !values.isEmpty else { return nil }
        var rng = generator(key)
        let n = values.count
        var stats: [Double] = []
        stats.reserveCapacity(resamples)
        for _ in 0..<resamples {
            var sum = 0.0
            for _ in 0..<n { sum += values[rng.index(n)] }
            stats.append(sum / Double(n))
        }
        return percentile(stats)
    }

    /// The 2.5 % and 97.5 % quantiles of a bootstrap distribution (nil when empty).
    static func percentile(_ stats: [Double]) -> Interval? {
        let s = stats.filter(\.isFinite).sorted()
        guard !s.isEmpty else { return nil }
        func quantile(_ p: Double) -> Double {
            let position = p * Double(s.count - 1)
            let i = Int(position.rounded(.down))
            guard i + 1 < s.count else { return s[s.count - 1] }
            let f = position - Double(i)
            return f == 0 ? s[i] : s[i] + f * (s[i + 1] - s[i])
        }
        let tail = (1 - level) / 2
        return Interval(low: quantile(tail), high: quantile(1 - tail))
    }

    /// Sem-D's bootstrap distribution for one (method, emotion) group: per resample of its images,
    /// the mean of 1 − cos(e_i, e_j) over pairs of distinct images drawn (an image paired with its
    /// own copy is left out); nil where a resample drew fewer than two distinct images. nil when
    /// the group has fewer than two images.
    static func pairwiseDistribution(_ embeddings: [[Double]], key: String) -> [Double?]? {
        let n = embeddings.count
        guard n >= 2 else { return nil }
        var distance = [Double](repeating: .nan, count: n * n)
        for i in 0..<n {
            for j in (i + 1)..<n {
                guard let c = EmbeddingMetrics.cosine(embeddings[i], embeddings[j]) else { continue }
                distance[i * n + j] = 1 - c
                distance[j * n + i] = 1 - c
            }
        }
        var rng = generator(key)
        var counts = [Int](repeating: 0, count: n)
        var out: [Double?] = []
        out.reserveCapacity(resamples)
        for _ in 0..<resamples {
            for i in 0..<n { counts[i] = 0 }
            for _ in 0..<n { counts[rng.index(n)] += 1 }
            let drawn = (0..<n).filter { counts[$0] > 0 }
            var sum = 0.0
            var weight = 0.0
            for (a, i) in drawn.enumerated() {
                for j in drawn[(a + 1)...] {
                    let d = distance[i * n + j]
                    guard !d.isNaN else { continue }
                    let w = Double(counts[i] * counts[j])
                    sum += w * d
                    weight += w
                }
            }
            out.append(weight > 0 ? sum / weight : nil)
        }
        return out
    }
}
