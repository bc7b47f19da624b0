import Foundation

// Pillow's antialiased resampling (Image.resize, libImaging/Resample.c) in float, with its
// bicubic filter (what CLIPImageProcessor resizes with) and its bilinear one (ViTImageProcessor's
// default). Each axis is a sparse linear map whose rows are Pillow's per-output-pixel weights;
// the VJP applies the transpose.

/// Pillow's separable filters: the kernel and its support (in input pixels, before widening).
public enum ResampleFilter: Int, Sendable {
    /// The triangle filter, support 1 (PIL.Image.BILINEAR, resample 2).
    case bilinear = 2
    /// The cubic convolution with a = −0.5, support 2 (PIL.Image.BICUBIC, resample 3).
    case bicubic = 3

    var support: Double { self == .bilinear ? 1 : 2 }

    func weight(_ t: Double) -> Double {
        let x = abs(t)
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
    }
}

extension Tensor {
    /// Resamples `axis` to `size` entries with Pillow's `filter`, antialiased: when shrinking,
    /// the filter's support is widened by the factor in/out. Output pixel o is centred on input
    /// coordinate (o + ½)·in/out, weights are normalised to sum to 1 per output pixel, and the
    /// window is cut at the borders (no padding), all as Pillow's precompute_coeffs; also what
    /// F.interpolate(mode="bicubic" or "bilinear", antialias=True, align_corners=False) computes.
    /// Unlike Pillow on uint8 images, nothing is rounded or clamped. An axis already of `size`
    /// is returned unchanged (Pillow and torchvision skip that pass too).
    public func resampled(axis: Int, size: Int, filter: ResampleFilter) -> Tensor {
        precondition(axis >= 0 && axis < rank && size > 0, "resample axis \(axis) to \(size): shape \(shape)")
        let n = shape[axis]
        if n == size { return self }
        let taps = ResampleTaps.cached(filter, input: n, output: size)
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        var outShape = shape
        outShape[axis] = size
        var out = [Float](repeating: 0, count: outer * size * inner)
        data.withPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                taps.apply(p, o.baseAddress!, outer: outer, inner: inner, transposed: false)
            }
        }
        let inShape = shape
        return .result(shape: outShape, data: out, inputs: [self]) { g in
            var dx = [Float](repeating: 0, count: outer * n * inner)
            g.data.withPointer { gp in
                dx.withUnsafeMutableBufferPointer { d in
                    taps.apply(gp, d.baseAddress!, outer: outer, inner: inner, transposed: true)
                }
            }
            return [Tensor(shape: inShape, data: dx)]
        }
    }

    /// `resampled` with Pillow's bicubic filter (a = −0.5), CLIPImageProcessor's.
    public func resampledBicubic(axis: Int, size: Int) -> Tensor { resampled(axis: axis, size: size, filter: .bicubic) }

    /// NCHW resize with Pillow's antialiased bicubic filter: the horizontal pass, then the
    /// vertical one, as Image.resize((width, height), BICUBIC) before its uint8 rounding.
    public func resizeBicubicAntialiased(height: Int, width: Int) -> Tensor {
        precondition(rank == 4, "resize wants NCHW, got \(shape)")
        return resampledBicubic(axis: 3, size: width).resampledBicubic(axis: 2, size: height)
    }
}

/// One axis's resampling matrix [output, input] as bands: output o reads `count[o]` inputs
/// from `first[o]` with weights `weights[o * width ..< o * width + count[o]]`.
struct ResampleTaps: Sendable {
    let input: Int
    let output: Int
    let width: Int
    let first: [Int]
    let count: [Int]
    let weights: [Float]

    /// Pillow's precompute_coeffs for `filter` over the whole input (box 0..input), in double
    /// precision and then rounded to Float.
    init(_ filter: ResampleFilter, input: Int, output: Int) {
        let scale = Double(input) / Double(output)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let inverse = 1 / filterScale
        let width = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: output)
        var count = [Int](repeating: 0, count: output)
        var weights = [Float](repeating: 0, count: output * width)
        var taps = [Double](repeating: 0, count: width)
        for o in 0..<output {
            let center = (Double(o) + 0.5) * scale
            // C's (int) truncates toward zero, as Int(_:) does.
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), input)
            let n = hi - lo
            var sum = 0.0
            for k in 0..<n {
                taps[k] = filter.weight((Double(k + lo) - center + 0.5) * inverse)
                sum += taps[k]
            }
            for k in 0..<n { weights[o * width + k] = Float(sum != 0 ? taps[k] / sum : taps[k]) }
            first[o] = lo
            count[o] = n
        }
        self.input = input
        self.output = output
        self.width = width
        self.first = first
        self.count = count
        self.weights = weights
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [[Int]: ResampleTaps] = [:]

    /// The taps for (filter, input, output), computed once per triple and kept (there are a handful).
    static func cached(_ filter: ResampleFilter, input: Int, output: Int) -> ResampleTaps {
        let key = [filter.rawValue, input, output]
        lock.lock()
        defer { lock.unlock() }
        if let hit = cache[key] { return hit }
        let taps = ResampleTaps(filter, input: input, output: output)
        if cache.count >= 64 { cache.removeAll() }
        cache[key] = taps
        return taps
    }

    /// `dst` (zeroed) [outer, output, inner] ← this matrix applied along the middle axis of
    /// `src` [outer, input, inner]; transposed: dst [outer, input, inner] ← its transpose
    /// applied to src [outer, output, inner] (the VJP). Planes are spread over the cores.
    func apply(
        _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, outer: Int, inner: Int, transposed: Bool
    ) {
        let (srcLength, dstLength) = transposed ? (output, input) : (input, output)
        let (output, width) = (self.output, self.width)
        weights.withUnsafeBufferPointer { wp in
            first.withUnsafeBufferPointer { fp in
                count.withUnsafeBufferPointer { cp in
                    let (w, first, count) = (wp.baseAddress!, fp.baseAddress!, cp.baseAddress!)
                    parallelFor(outer, work: outer * output * width * inner) { plane in
                        let s = src + plane * srcLength * inner
                        let d = dst + plane * dstLength * inner
                        switch (inner, transposed) {
                        case (1, false):
                            for o in 0..<output {
                                let (row, x) = (w + o * width, s + first[o])
                                var sum: Float = 0
                                for k in 0..<count[o] { sum += row[k] * x[k] }
                                d[o] = sum
                            }
                        case (1, true):
                            for o in 0..<output {
                                let (row, x, g) = (w + o * width, d + first[o], s[o])
                                for k in 0..<count[o] { x[k] += row[k] * g }
                            }
                        case (_, false):
                            for o in 0..<output {
                                let (row, to) = (w + o * width, d + o * inner)
                                for k in 0..<count[o] {
                                    let (weight, from) = (row[k], s + (first[o] + k) * inner)
                                    for i in 0..<inner { to[i] += weight * from[i] }
                                }
                            }
                        case (_, true):
                            for o in 0..<output {
                                let (row, from) = (w + o * width, s + o * inner)
                                for k in 0..<count[o] {
                                    let (weight, to) = (row[k], d + (first[o] + k) * inner)
                                    for i in 0..<inner { to[i] += weight * from[i] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
