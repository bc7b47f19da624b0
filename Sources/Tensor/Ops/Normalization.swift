import CKernels
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
            let dx = g.data.withPointer { gp in
                out.withPointer { y in
                    makeArray(rows * dim) { o in
                        for r in 0..<rows {
                            var dot: Float = 0
                            for j in 0..<dim { dot += gp[r * dim + j] * y[r * dim + j] }
                            for j in 0..<dim { o[r * dim + j] = y[r * dim + j] * (gp[r * dim + j] - dot) }
                        }
                    }
                }
            }
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
            let dx = g.data.withPointer { gp in
                out.withPointer { y in
                    makeArray(rows * dim) { o in
                        for r in 0..<rows {
                            var s: Float = 0
                            for j in 0..<dim { s += gp[r * dim + j] }
                            for j in 0..<dim { o[r * dim + j] = gp[r * dim + j] - Foundation.exp(y[r * dim + j]) * s }
                        }
                    }
                }
            }
            return [Tensor(shape: g.shape, data: dx)]
        }
    }

    /// Layer norm over the last dimension, as torch.nn.LayerNorm.
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        let dim = shape.last!
        return normalize(
            NormLayout(groups: count / dim, groupsPerSample: 1, blocksPerGroup: dim, blockSize: 1),
            weight: weight, bias: bias, eps: eps)
    }

    /// Group norm over NC… tensors, as torch.nn.GroupNorm: per-channel affine.
    public func groupNorm(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        normalize(groupLayout(groups), weight: weight, bias: bias, eps: eps)
    }

    /// silu(groupNorm(…)) in one pass: the pair every resnet of the UNet and the VAE runs twice.
    /// The two ops' values to float rounding (the affine is one fused multiply-add here); keeps
    /// only x̂ for the backward (the pair kept x̂ and the norm's output) and writes once.
    public func groupNormSiLU(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        normalize(groupLayout(groups), weight: weight, bias: bias, eps: eps, thenSiLU: true)
    }

    func groupLayout(_ groups: Int) -> NormLayout {
        let channels = shape[1]
        precondition(channels % groups == 0, "group norm: \(channels) channels into \(groups) groups")
        return NormLayout(
            groups: shape[0] * groups, groupsPerSample: groups,
            blocksPerGroup: channels / groups, blockSize: shape[2...].reduce(1, *))
    }

    // Long on purpose: the forward pass and its VJP closure share buffers, geometry and the
    // threading plan; split apart, the hot path would be spread over helpers that only it uses.
    /// Shared kernel: normalise each of `layout.groups` contiguous runs, then apply the affine.
    /// `thenSiLU`: the output is silu(x̂·w + b), and the VJP passes g through silu' first.
    func normalize(_ layout: NormLayout, weight: Tensor?, bias: Tensor?, eps: Float, thenSiLU: Bool = false) -> Tensor {
        let size = layout.groupSize
        var invStd = [Float](repeating: 0, count: layout.groups)
        // x̂ is kept: it is both the output before the affine and what the VJP needs.
        let normalized = data.withPointer { p in
            makeArray(count) { o in
                let (pa, oa) = (Int(bitPattern: p), Int(bitPattern: o))
                invStd.withUnsafeMutableBufferPointer { inv in
                    let ia = Int(bitPattern: inv.baseAddress)
                    parallelFor(layout.groups, work: count) { g in
                        let x = UnsafePointer<Float>(bitPattern: pa)! + g * size
                        let y = UnsafeMutablePointer<Float>(bitPattern: oa)! + g * size
                        var sum = 0.0
                        for j in 0..<size { sum += Double(x[j]) }
                        let mean = sum / Double(size)
                        var squares = 0.0
                        for j in 0..<size {
                            let d = Double(x[j]) - mean
                            squares += d * d
                        }
                        let s = Float(1 / (squares / Double(size) + Double(eps)).squareRoot())
                        let m = Float(mean)
                        UnsafeMutablePointer<Float>(bitPattern: ia)![g] = s
                        for j in 0..<size { y[j] = (x[j] - m) * s }
                    }
                }
            }
        }
        let w = weight?.data
        let b = bias?.data
        let out =
            w == nil && b == nil && !thenSiLU
            ? normalized
            : normalized.withPointer { xh in
                makeArray(count) { o in
                    let (xa, oa) = (Int(bitPattern: xh), Int(bitPattern: o))
                    parallelFor(layout.groups, work: count) { group in
                        let xh = UnsafePointer<Float>(bitPattern: xa)!
                        let o = UnsafeMutablePointer<Float>(bitPattern: oa)!
                        layout.forEachBlock(inGroup: group) { start, a in
                            let scale = w?[a] ?? 1
                            let shift = b?[a] ?? 0
                            if thenSiLU {
                                muse_affine_silu(xh + start, o + start, layout.blockSize, scale, shift)
                            } else {
                                for j in start..<(start + layout.blockSize) { o[j] = xh[j] * scale + shift }
                            }
                        }
                    }
                }
            }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let (xShape, xNeeds, xCount) = (shape, requiresGrad, count)
        return .result(shape: shape, data: out, inputs: inputs) { gOut in
            // Through silu' first (x̂ and the affine give back its input), then as a plain norm.
            let g =
                !thenSiLU
                ? gOut
                : Tensor(
                    shape: gOut.shape,
                    data: gOut.data.withPointer { gp in
                        normalized.withPointer { xh in
                            makeArray(xCount) { o in
                                let (ga, xa, oa) = (Int(bitPattern: gp), Int(bitPattern: xh), Int(bitPattern: o))
                                parallelFor(layout.groups, work: xCount) { group in
                                    layout.forEachBlock(inGroup: group) { start, a in
                                        muse_affine_silu_grad(
                                            UnsafePointer<Float>(bitPattern: xa)! + start,
                                            UnsafePointer<Float>(bitPattern: ga)! + start,
                                            UnsafeMutablePointer<Float>(bitPattern: oa)! + start, layout.blockSize,
                                            w?[a] ?? 1, b?[a] ?? 0)
                                    }
                                }
                            }
                        }
                    })
            let affineCount = weight?.count ?? bias?.count ?? 0
            var dw = [Float](repeating: 0, count: affineCount)
            var db = dw
            if affineCount > 0 {
                g.data.withPointer { gp in
                    normalized.withPointer { xh in
                        layout.forEachBlock { start, a in
                            var sw: Float = 0
                            var sb: Float = 0
                            for j in start..<(start + layout.blockSize) {
                                sw += gp[j] * xh[j]
                                sb += gp[j]
                            }
                            dw[a] += sw
                            db[a] += sb
                        }
                    }
                }
            }
            var results: [Tensor?] = [nil]
            if xNeeds {
                // dx = inv · (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·w, per group.
                let dx = g.data.withPointer { gp in
                    normalized.withPointer { xh in
                        makeArray(xCount) { o in
                            let (ga, xa, oa) = (Int(bitPattern: gp), Int(bitPattern: xh), Int(bitPattern: o))
                            parallelFor(layout.groups, work: xCount) { group in
                                let gp = UnsafePointer<Float>(bitPattern: ga)!
                                let xh = UnsafePointer<Float>(bitPattern: xa)!
                                let o = UnsafeMutablePointer<Float>(bitPattern: oa)!
                                let base = group * size
                                var sumG = 0.0
                                var sumGX = 0.0
                                layout.forEachBlock(inGroup: group) { start, a in
                                    let scale = w?[a] ?? 1
                                    var partG: Float = 0
                                    var partGX: Float = 0
                                    for j in start..<(start + layout.blockSize) {
                                        let gh = gp[j] * scale
                                        o[j] = gh
                                        partG += gh
                                        partGX += gh * xh[j]
                                    }
                                    sumG += Double(partG)
                                    sumGX += Double(partGX)
                                }
                                let inv = invStd[group]
                                let mG = Float(sumG / Double(size))
                                let mGX = Float(sumGX / Double(size))
                                for j in base..<(base + size) { o[j] = inv * (o[j] - mG - xh[j] * mGX) }
                            }
                        }
                    }
                }
                results[0] = Tensor(shape: xShape, data: dx)
            }
            if let weight { results.append(weight.requiresGrad ? Tensor(shape: weight.shape, data: dw) : nil) }
            if let bias { results.append(bias.requiresGrad ? Tensor(shape: bias.shape, data: db) : nil) }
            return results
        }
    }
}

/// How a normalisation partitions a tensor: `groups` contiguous runs, each made of
/// `blocksPerGroup` blocks of `blockSize` values that share one affine index. Layer norm:
/// blocks of one value, indexed by position. Group norm: blocks are channels' planes.
struct NormLayout {
    let groups, groupsPerSample, blocksPerGroup, blockSize: Int
    var groupSize: Int { blocksPerGroup * blockSize }

    /// Calls `body(first element, affine index)` for each block of `group`.
    @inline(__always)
    func forEachBlock(inGroup group: Int, _ body: (Int, Int) -> Void) {
        let affineBase = (group % groupsPerSample) * blocksPerGroup
        for k in 0..<blocksPerGroup { body(group * groupSize + k * blockSize, affineBase + k) }
    }

    @inline(__always)
    func forEachBlock(_ body: (Int, Int) -> Void) {
        for g in 0..<groups { forEachBlock(inGroup: g, body) }
    }
}
