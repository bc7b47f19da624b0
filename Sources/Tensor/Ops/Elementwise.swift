import Foundation

// Binary ops broadcast like NumPy. Their VJPs sum the gradient back to each input's shape.

func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let rank = max(a.count, b.count)
    let pa = [Int](repeating: 1, count: rank - a.count) + a
    let pb = [Int](repeating: 1, count: rank - b.count) + b
    return zip(pa, pb).map { x, y in
        precondition(x == y || x == 1 || y == 1, "cannot broadcast \(a) with \(b)")
        return max(x, y)
    }
}

/// Strides of `shape` seen inside `target` (0 along broadcast dimensions).
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let padded = [Int](repeating: 1, count: target.count - shape.count) + shape
    var strides = [Int](repeating: 0, count: target.count)
    var step = 1
    for d in stride(from: target.count - 1, through: 0, by: -1) {
        strides[d] = padded[d] == 1 && target[d] != 1 ? 0 : step
        step *= padded[d]
    }
    return strides
}

/// Index of every element of `target` into a tensor broadcast to it.
func broadcastIndices(_ shape: [Int], to target: [Int]) -> [Int] {
    let strides = broadcastStrides(shape, to: target)
    let total = target.reduce(1, *)
    var indices = [Int](repeating: 0, count: total)
    var counter = [Int](repeating: 0, count: target.count)
    var offset = 0
    for i in 0..<total {
        indices[i] = offset
        var d = target.count - 1
        while d >= 0 {
            counter[d] += 1
            offset += strides[d]
            if counter[d] < target[d] { break }
            offset -= strides[d] * target[d]
            counter[d] = 0
            d -= 1
        }
    }
    return indices
}

/// When `small` equals `full`'s leading dimensions padded with trailing ones (same rank),
/// the size of the block each of its elements covers.
func trailingBroadcastBlock(_ small: [Int], in full: [Int]) -> Int? {
    guard small.count == full.count, small != full,
        let firstOne = small.indices.first(where: { small[$0] != full[$0] }),
        small[firstOne...].allSatisfy({ $0 == 1 }),
        small[..<firstOne] == full[..<firstOne]
    else { return nil }
    return full[firstOne...].reduce(1, *)
}

@inline(__always)
func binaryKernel(_ a: Tensor, _ b: Tensor, _ op: (Float, Float) -> Float) -> (shape: [Int], data: [Float]) {
    if a.shape == b.shape {
        let data = a.data.withPointer { pa in
            b.data.withPointer { pb in
                makeArray(a.count) { out in for i in 0..<a.count { out[i] = op(pa[i], pb[i]) } }
            }
        }
        return (a.shape, data)
    }
    let shape = broadcastShape(a.shape, b.shape)
    let total = shape.reduce(1, *)
    // Fast path: b repeats along the leading dimensions of a (bias-like).
    if shape == a.shape, b.count > 0, Array(a.shape.suffix(b.rank)) == b.shape || b.count == 1 {
        let period = b.count
        let data = a.data.withPointer { pa in
            b.data.withPointer { pb in
                makeArray(total) { out in
                    var i = 0
                    while i < total {
                        for j in 0..<period { out[i + j] = op(pa[i + j], pb[j]) }
                        i += period
                    }
                }
            }
        }
        return (shape, data)
    }
    // Fast path: b is a's leading dimensions followed by ones (per-channel terms on NCHW).
    if shape == a.shape, let inner = trailingBroadcastBlock(b.shape, in: a.shape) {
        let data = a.data.withPointer { pa in
            b.data.withPointer { pb in
                makeArray(total) { out in
                    for j in 0..<b.count {
                        let v = pb[j]
                        let base = j * inner
                        for i in 0..<inner { out[base + i] = op(pa[base + i], v) }
                    }
                }
            }
        }
        return (shape, data)
    }
    let ia = broadcastIndices(a.shape, to: shape)
    let ib = broadcastIndices(b.shape, to: shape)
    let data = a.data.withPointer { pa in
        b.data.withPointer { pb in
            makeArray(total) { out in for i in 0..<total { out[i] = op(pa[ia[i]], pb[ib[i]]) } }
        }
    }
    return (shape, data)
}

extension Tensor {
    /// Sum a broadcast gradient back down to `target` shape.
    public func sum(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        if let inner = trailingBroadcastBlock(target, in: shape) {
            let n = target.reduce(1, *)
            let out = data.withPointer { p in
                makeArray(n) { o in
                    for j in 0..<n {
                        var s: Float = 0
                        for i in 0..<inner { s += p[j * inner + i] }
                        o[j] = s
                    }
                }
            }
            return Tensor(shape: target, data: out)
        }
        let indices = broadcastIndices(target, to: shape)
        var out = [Float](repeating: 0, count: target.reduce(1, *))
        data.withPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<count { o[indices[i]] += p[i] }
            }
        }
        return Tensor(shape: target, data: out)
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let (shape, data) = binaryKernel(a, b, +)
        let (aShape, bShape, aNeeds, bNeeds) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
        return .result(shape: shape, data: data, inputs: [a, b]) { g in
            [aNeeds ? g.sum(toShape: aShape) : nil, bNeeds ? g.sum(toShape: bShape) : nil]
        }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let (shape, data) = binaryKernel(a, b, -)
        let (aShape, bShape, aNeeds, bNeeds) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
        return .result(shape: shape, data: data, inputs: [a, b]) { g in
            [aNeeds ? g.sum(toShape: aShape) : nil, bNeeds ? (g * -1).sum(toShape: bShape) : nil]
        }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let (shape, data) = binaryKernel(a, b, *)
        let (aShape, bShape) = (a.shape, b.shape)
        // Each input's gradient needs the other's values: keep only those that will be used.
        let bForA = b.saved(if: a.requiresGrad)
        let aForB = a.saved(if: b.requiresGrad)
        return .result(shape: shape, data: data, inputs: [a, b]) { g in
            [bForA.map { (g * $0).sum(toShape: aShape) }, aForB.map { (g * $0).sum(toShape: bShape) }]
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let (shape, data) = binaryKernel(a, b, /)
        let (aShape, bShape, aNeeds) = (a.shape, b.shape, a.requiresGrad)
        let bSaved = b.detached()
        let aForB = a.saved(if: b.requiresGrad)
        return .result(shape: shape, data: data, inputs: [a, b]) { g in
            [
                aNeeds ? (g / bSaved).sum(toShape: aShape) : nil,
                aForB.map { (g * $0 / (bSaved * bSaved) * -1).sum(toShape: bShape) },
            ]
        }
    }

    public static func * (a: Tensor, s: Float) -> Tensor { a.pointwise({ $0 * s }, saving: .nothing) { _ in s } }
    public static func * (s: Float, a: Tensor) -> Tensor { a * s }
    public static func + (a: Tensor, s: Float) -> Tensor { a.pointwise({ $0 + s }, saving: .nothing) { _ in 1 } }
    public static func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
    public static prefix func - (a: Tensor) -> Tensor { a * -1 }

    /// What an elementwise op's derivative is a function of, and so what its VJP keeps.
    public enum PointwiseSaved { case nothing, input, output }

    /// Elementwise y = f(x) whose derivative dy/dx is `derivative` of x (`.input`), of y
    /// (`.output`), or a constant (`.nothing`, called with 0).
    public func pointwise(
        _ f: (Float) -> Float, saving: PointwiseSaved,
        derivative: @escaping (Float) -> Float
    ) -> Tensor {
        let n = count
        let out = data.withPointer { p in makeArray(n) { o in for i in 0..<n { o[i] = f(p[i]) } } }
        let kept: [Float] = saving == .input ? data : saving == .output ? out : []
        let inShape = shape
        return .result(shape: shape, data: out, inputs: [self]) { g in
            let dx = g.data.withPointer { gp in
                makeArray(n) { o in
                    if kept.isEmpty {
                        let d = derivative(0)
                        for i in 0..<n { o[i] = gp[i] * d }
                    } else {
                        kept.withPointer { k in for i in 0..<n { o[i] = gp[i] * derivative(k[i]) } }
                    }
                }
            }
            return [Tensor(shape: inShape, data: dx)]
        }
    }

    public func exp() -> Tensor { pointwise({ Foundation.exp($0) }, saving: .output) { $0 } }
    public func log() -> Tensor { pointwise({ Foundation.log($0) }, saving: .input) { 1 / $0 } }
    public func sqrt() -> Tensor { pointwise({ $0.squareRoot() }, saving: .output) { 0.5 / $0 } }
    public func square() -> Tensor { pointwise({ $0 * $0 }, saving: .input) { 2 * $0 } }
    public func sigmoid() -> Tensor { pointwise({ 1 / (1 + Foundation.exp(-$0)) }, saving: .output) { $0 * (1 - $0) } }
    public func tanh() -> Tensor { pointwise({ Foundation.tanh($0) }, saving: .output) { 1 - $0 * $0 } }

    /// x·sigmoid(x), vectorised in C and split over the engine's threads (Normalization.swift
    /// fuses it into group norm where a model has that pair).
    public func silu() -> Tensor {
        let n = count
        let out = data.withPointer { x in makeArray(n) { y in affineSiLU(x, y, n, scale: 1, shift: 0) } }
        let input = data
        return .result(shape: shape, data: out, inputs: [self]) { g in
            let dx = g.data.withPointer { gp in
                input.withPointer { x in makeArray(n) { o in affineSiLUGradient(x, gp, o, n, scale: 1, shift: 0) } }
            }
            return [Tensor(shape: g.shape, data: dx)]
        }
    }

    /// Exact GELU (erf form), as torch.nn.functional.gelu's default; vectorised in C (FastExp.swift).
    public func gelu() -> Tensor {
        let n = count
        let out = data.withPointer { x in makeArray(n) { y in vectorGELU(x, y, n) } }
        let input = data
        return .result(shape: shape, data: out, inputs: [self]) { g in
            let dx = g.data.withPointer { gp in
                input.withPointer { x in makeArray(n) { o in vectorGELUGradient(x, gp, o, n) } }
            }
            return [Tensor(shape: g.shape, data: dx)]
        }
    }

    /// CLIP's quick_gelu: x·sigmoid(1.702x) = silu(1.702x)/1.702, so SiLU's kernels serve.
    public func quickGelu() -> Tensor {
        let n = count
        let out = data.withPointer { x in
            makeArray(n) { y in
                affineSiLU(x, y, n, scale: 1.702, shift: 0)
                for i in 0..<n { y[i] /= 1.702 }
            }
        }
        let input = data
        return .result(shape: shape, data: out, inputs: [self]) { g in
            let dx = g.data.withPointer { gp in
                input.withPointer { x in makeArray(n) { o in affineSiLUGradient(x, gp, o, n, scale: 1.702, shift: 0) } }
            }
            return [Tensor(shape: g.shape, data: dx)]
        }
    }

    /// GEGLU's gate: the last dimension halves into (value, gate) → value·gelu(gate).
    public func geglu() -> Tensor {
        let halves = chunked(2, axis: rank - 1)
        return halves[0] * halves[1].gelu()
    }

    /// max(x, floor): used to keep log arguments positive in losses.
    public func clampMin(_ floor: Float) -> Tensor {
        pointwise({ Swift.max($0, floor) }, saving: .input) { $0 > floor ? 1 : 0 }
    }

    public func clamp(_ range: ClosedRange<Float>) -> Tensor {
        pointwise({ Swift.min(Swift.max($0, range.lowerBound), range.upperBound) }, saving: .input) {
            range.contains($0) ? 1 : 0
        }
    }
}
