/// Separable resampling in integer arithmetic, so a resize gives the same bytes on every
/// machine. Downscaling averages the exact area each output pixel covers (a box filter of
/// the scale's width with fractional edge weights: no aliasing, no dropped rows); upscaling
/// interpolates linearly between the nearest source pixels (edges clamped).
enum Resample {
    /// Weights of one output pixel, summing to `one`.
    struct Tap {
        var first: Int
        var weights: [Int64]
    }

    static let bits = 14
    static let one: Int64 = 1 << 14

    /// The taps mapping `source` pixels onto `target` along one axis.
    static func taps(source: Int, target: Int) -> [Tap] {
        precondition(source > 0 && target > 0)
        let scale = Double(source) / Double(target)
        return (0..<target).map { i in
            var first: Int
            var real: [Double]
            if scale >= 1 {
                // Output pixel i covers [i·scale, (i+1)·scale) of the source.
                let lo = Double(i) * scale
                let hi = Double(i + 1) * scale
                first = Int(lo.rounded(.down))
                let last = min(source - 1, Int((hi - 1e-9).rounded(.down)))
                real = (first...max(first, last)).map { s in
                    max(0, min(hi, Double(s + 1)) - max(lo, Double(s)))
                }
            } else {
                let centre = (Double(i) + 0.5) * scale - 0.5
                let base = Int(centre.rounded(.down))
                let f = centre - Double(base)
                first = min(max(base, 0), source - 1)
                let second = min(max(base + 1, 0), source - 1)
                real = second == first ? [1] : [1 - f, f]
            }
            return Tap(first: first, weights: normalised(real))
        }
    }

    /// Integer weights summing exactly to `one` (the largest absorbs the rounding).
    static func normalised(_ real: [Double]) -> [Int64] {
        let total = real.reduce(0, +)
        var w = real.map { Int64(($0 / total * Double(one)).rounded()) }
        let k = w.indices.max { w[$0] < w[$1] } ?? 0
        w[k] += one - w.reduce(0, +)
        return w
    }

    static func resize(_ img: RGBImage, width w: Int, height h: Int) -> RGBImage {
        let ch = img.channels
        let cols = taps(source: img.width, target: w)
        let rows = taps(source: img.height, target: h)
        // Horizontal pass into fixed point (value · one), then vertical, rounded once.
        var mid = [Int64](repeating: 0, count: w * img.height * ch)
        img.pixels.withUnsafeBufferPointer { src in
            mid.withUnsafeMutableBufferPointer { dst in
                for y in 0..<img.height {
                    let row = y * img.width * ch
                    for (x, tap) in cols.enumerated() {
                        let o = (y * w + x) * ch
                        for (k, weight) in tap.weights.enumerated() {
                            let s = row + (tap.first + k) * ch
                            for c in 0..<ch { dst[o + c] += Int64(src[s + c]) * weight }
                        }
                    }
                }
            }
        }
        var out = [UInt8](repeating: 0, count: w * h * ch)
        let half = one * one / 2
        mid.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var acc = [Int64](repeating: 0, count: w * ch)
                for (y, tap) in rows.enumerated() {
                    for i in acc.indices { acc[i] = 0 }
                    for (k, weight) in tap.weights.enumerated() {
                        let s = (tap.first + k) * w * ch
                        for i in 0..<(w * ch) { acc[i] += src[s + i] * weight }
                    }
                    for i in 0..<(w * ch) {
                        dst[y * w * ch + i] = UInt8(clamping: (acc[i] + half) >> (2 * Int64(bits)))
                    }
                }
            }
        }
        return RGBImage(width: w, height: h, channels: ch, pixels: out)
    }
}
