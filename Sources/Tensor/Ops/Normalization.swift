import Foundation

// Softmax and normalisations, with VJPs in closed form (no per-element graph).

extension Tensor {
    /// Softmax over the last dimension.
    public func softmax() -> Tensor {
        let dim = shape.last!
        let rows = count / Swift.max(dim, 1)
        let out = data.withPointer { p in
            makeArray(count) { o in for r in 0..<rows { softmaxRow(p + r * dim, o + r * dim, dim) } }
        }
        return .result(shape: shape, data: out, inputs: [self]) { g in
            // dx = y ⊙ (g − Σ g·y)
            let dx = g.data.withPointer { gp in out.withPointer { y in
                makeArray(rows * dim) { o in
                    for r in 0..<rows {
                        var dot: Float = 0
                        for j in 0..<dim { dot += gp[r * dim + j] * y[r * dim + j] }
                        for j in 0..<dim { o[r * dim + j] = y[r * dim + j] * (gp[r * dim + j] - dot) }
                    }
                }
            } }
            return [Tensor(shape: g.shape, data: dx)]
        }
    }

    /// log-softmax over the last dimension (stable).
    public func logSoftmax() -> Tensor {
        let dim = shape.last!
        let rows = count / Swift.max(dim, 1)
        let out = data.withPointer { p in
            makeArray(count) { o in
                for r in 0..<rows {
                    let x = p + r * dim
                    var m = -Float.infinity
                    for j in 0..<dim { m = Swift.max(m, x[j]) }
                    var s: Float = 0
                    for j in 0..<dim { s += Foundation.exp(x[j] - m) }
                    let lse = m + Foundation.log(s)
                    for j in 0..<dim { o[r * dim + j] = x[j] - lse }
                }
            }
        }
        return .result(shape: shape, data: out, inputs: [self]) { g in
            // dx = g − softmax·Σg
            let dx = g.data.withPointer { gp in out.withPointer { y in
                makeArray(rows * dim) { o in
                    for r in 0..<rows {
                        var s: Float = 0
                        for j in 0..<dim { s += gp[r * dim + j] }
                        for j in 0..<dim { o[r * dim + j] = gp[r * dim + j] - Foundation.exp(y[r * dim + j]) * s }
                    }
                }
            } }
            return [Tensor(shape: g.shape, data: dx)]
        }
    }

    /// Layer norm over the last dimension, as torch.nn.LayerNorm.
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        let dim = shape.last!
        return normalize(groups: count / dim, groupSize: dim, inner: dim,
                         weight: weight, bias: bias, eps: eps, affineStride: .lastDim)
    }

    /// Group norm over NC… tensors, as torch.nn.GroupNorm: per-channel affine.
    public func groupNorm(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        let channels = shape[1]
        precondition(channels % groups == 0, "group norm: \(channels) channels into \(groups) groups")
        let spatial = shape[2...].reduce(1, *)
        let perGroup = channels / groups
        return normalize(groups: shape[0] * groups, groupSize: perGroup * spatial, inner: spatial, weight: weight, bias: bias, eps: eps, affineStride: .channel(channels))
    }

    enum AffineLayout { case lastDim, channel(Int) }

    /// Shared kernel: normalise each of `groups` contiguous runs of `groupSize` values, then
    /// apply the affine, indexed per last-dim element (layer norm) or per channel (group norm).
    func normalize(groups: Int, groupSize: Int, inner: Int,
                   weight: Tensor?, bias: Tensor?, eps: Float, affineStride: AffineLayout) -> Tensor {
        var invStd = [Float](repeating: 0, count: groups)
        let n = count
        // x̂ stored: it is both the output before affine and what the VJP needs.
        let normalized = data.withPointer { p in
            makeArray(n) { o in
                for gIndex in 0..<groups {
                    let x = p + gIndex * groupSize
                    var sum = 0.0
                    for j in 0..<groupSize { sum += Double(x[j]) }
                    let mean = sum / Double(groupSize)
                    var sq = 0.0
                    for j in 0..<groupSize { let d = Double(x[j]) - mean; sq += d * d }
                    let inv = 1 / (sq / Double(groupSize) + Double(eps)).squareRoot()
                    invStd[gIndex] = Float(inv)
                    let m = Float(mean), s = Float(inv)
                    for j in 0..<groupSize { o[gIndex * groupSize + j] = (x[j] - m) * s }
                }
            }
        }
        // Affine index of element i: layer norm → i mod dim; group norm → (i / inner) mod C.
        let affineIndex: (Int) -> Int
        switch affineStride {
        case .lastDim: affineIndex = { $0 % inner }
        case .channel(let c): affineIndex = { ($0 / inner) % c }
        }
        let w = weight?.data, b = bias?.data
        let out: [Float]
        if w == nil && b == nil {
            out = normalized
        } else {
            out = normalized.withPointer { xh in
                makeArray(n) { o in
                    switch affineStride {
                    case .lastDim:
                        for i in 0..<n { let a = i % inner; o[i] = xh[i] * (w?[a] ?? 1) + (b?[a] ?? 0) }
                    case .channel(let c):
                        var i = 0
                        while i < n {
                            let a = (i / inner) % c
                            let scale = w?[a] ?? 1, shift = b?[a] ?? 0
                            for j in 0..<inner { o[i + j] = xh[i + j] * scale + shift }
                            i += inner
                        }
                    }
                }
            }
        }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let x = self
        return .result(shape: shape, data: out, inputs: inputs) { g in
            var results: [Tensor?] = []
            let affineCount = weight?.count ?? bias?.count ?? 0
            var dw = [Float](repeating: 0, count: affineCount)
            var db = [Float](repeating: 0, count: affineCount)
            if affineCount > 0 {
                g.data.withPointer { gp in normalized.withPointer { xh in
                    for i in 0..<n { let a = affineIndex(i); dw[a] += gp[i] * xh[i]; db[a] += gp[i] }
                } }
            }
            if x.requiresGrad {
                // dx = inv/N · (N·ĝ − Σĝ − x̂·Σ(ĝ·x̂)) with ĝ = g·w.
                let dx = g.data.withPointer { gp in normalized.withPointer { xh in
                    makeArray(n) { o in
                        for gIndex in 0..<groups {
                            let base = gIndex * groupSize
                            var sumG: Double = 0, sumGX: Double = 0
                            for j in 0..<groupSize {
                                let gh = gp[base + j] * (w?[affineIndex(base + j)] ?? 1)
                                o[base + j] = gh
                                sumG += Double(gh)
                                sumGX += Double(gh * xh[base + j])
                            }
                            let inv = invStd[gIndex]
                            let mG = Float(sumG / Double(groupSize)), mGX = Float(sumGX / Double(groupSize))
                            for j in 0..<groupSize { o[base + j] = inv * (o[base + j] - mG - xh[base + j] * mGX) }
                        }
                    }
                } }
                results.append(Tensor(shape: x.shape, data: dx))
            } else {
                results.append(nil)
            }
            if let weight { results.append(weight.requiresGrad ? Tensor(shape: weight.shape, data: dw) : nil) }
            if let bias { results.append(bias.requiresGrad ? Tensor(shape: bias.shape, data: db) : nil) }
            return results
        }
    }
}

@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let rawX = UnsafeRawPointer(x), rawY = UnsafeMutableRawPointer(y)
    var maxima = SIMD8<Float>(repeating: -.infinity)
    var i = 0
    while i + 8 <= n {
        let v = rawX.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        maxima = maxima.replacing(with: v, where: v .> maxima)
        i += 8
    }
    var m = maxima.max()
    while i < n { m = max(m, x[i]); i += 1 }
    let inv = 1 / expShiftedSum(x, y, n, shift: m)
    i = 0
    while i + 8 <= n {
        let v = rawY.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) * inv
        rawY.storeBytes(of: v, toByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    while i < n { y[i] *= inv; i += 1 }
}
