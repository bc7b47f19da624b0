import Foundation

// 2-D convolution as im2col + sgemm, over bands of output rows so the column buffer stays
// bounded (a 512² VAE layer would otherwise need a 1.2 GB buffer). Stride-1 3×3 layers with
// enough channels take the Winograd path instead (Winograd.swift), forward and input gradient;
// the weight gradient, never needed when weights are constants, stays on im2col.

struct ConvGeometry {
    let batch, inChannels, height, width: Int
    let outChannels, kernelH, kernelW, stride, padding: Int
    var outH: Int { (height + 2 * padding - kernelH) / stride + 1 }
    var outW: Int { (width + 2 * padding - kernelW) / stride + 1 }
    var patch: Int { inChannels * kernelH * kernelW }
    var isPointwise: Bool { kernelH == 1 && kernelW == 1 && stride == 1 && padding == 0 }

    /// Output rows per band: keeps the column buffer within `Tensor.convColumnBudget` floats.
    var bandRows: Int { max(1, min(outH, Tensor.convColumnBudget / max(1, patch * outW))) }

    /// Output rows per band, and whether bands run in parallel (one per core at a time, each
    /// with single-threaded sgemm: im2col/col2im then run on every core, not just one).
    func bands(workers: Int) -> (rows: Int, parallel: Bool) {
        guard workers > 1, !isPointwise, patch * outH * outW >= 1 << 18 else { return (bandRows, false) }
        let budgetRows = max(1, Tensor.convColumnBudget / workers / max(1, patch * outW))
        let rows = max(1, min(budgetRows, (outH + 2 * workers - 1) / (2 * workers)))
        return (rows, (outH + rows - 1) / rows >= 2)
    }

    /// Calls `body(r0, r1, column buffer)` for every band of `rows` output rows. With
    /// `disjointInputs`, bands run in two phases (even, then odd) so that bands running
    /// together never touch the same input rows (what col2im writes); that needs bands
    /// taller than the kernel's reach, else they run in order.
    func forEachBand(
        rows: Int, parallel: Bool, disjointInputs: Bool = false,
        _ body: (_ r0: Int, _ r1: Int, _ column: UnsafeMutablePointer<Float>) -> Void
    ) {
        let count = (outH + rows - 1) / rows
        let scratch = patch * rows * outW
        func run(_ band: Int, _ column: UnsafeMutablePointer<Float>) {
            body(band * rows, min(outH, (band + 1) * rows), column)
        }
        if !parallel || (disjointInputs && rows * stride < kernelH) {
            let column = UnsafeMutablePointer<Float>.allocate(capacity: max(1, scratch))
            defer { column.deallocate() }
            for band in 0..<count { run(band, column) }
            return
        }
        for phase in disjointInputs ? [0, 1] : [0] {
            let bandsNow = Array(Swift.stride(from: phase, to: count, by: disjointInputs ? 2 : 1))
            forEachTask(bandsNow.count, scratch: scratch) { i, column in run(bandsNow[i], column) }
        }
    }

    /// Columns for output rows [r0, r1): [patch, (r1−r0)·outW].
    func im2col(_ x: UnsafePointer<Float>, rows r0: Int, _ r1: Int, into col: UnsafeMutablePointer<Float>) {
        let cols = (r1 - r0) * outW
        for c in 0..<inChannels {
            let plane = x + c * height * width
            for ki in 0..<kernelH {
                for kj in 0..<kernelW {
                    let row = col + ((c * kernelH + ki) * kernelW + kj) * cols
                    for oy in r0..<r1 {
                        let dst = row + (oy - r0) * outW
                        let iy = oy * stride - padding + ki
                        if iy < 0 || iy >= height {
                            dst.update(repeating: 0, count: outW)
                            continue
                        }
                        let src = plane + iy * width
                        if stride == 1 {
                            // Valid ox range where 0 ≤ ox − padding + kj < width.
                            let lo = max(0, padding - kj)
                            let hi = min(outW, width + padding - kj)
                            if lo > 0 { dst.update(repeating: 0, count: lo) }
                            if hi > lo { (dst + lo).update(from: src + lo - padding + kj, count: hi - lo) }
                            if hi < outW { (dst + max(hi, 0)).update(repeating: 0, count: outW - max(hi, 0)) }
                        } else {
                            for ox in 0..<outW {
                                let ix = ox * stride - padding + kj
                                dst[ox] = ix >= 0 && ix < width ? src[ix] : 0
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds columns back into the image (the adjoint of im2col).
    func col2im(_ col: UnsafePointer<Float>, rows r0: Int, _ r1: Int, into x: UnsafeMutablePointer<Float>) {
        let cols = (r1 - r0) * outW
        for c in 0..<inChannels {
            let plane = x + c * height * width
            for ki in 0..<kernelH {
                for kj in 0..<kernelW {
                    let row = col + ((c * kernelH + ki) * kernelW + kj) * cols
                    for oy in r0..<r1 {
                        let iy = oy * stride - padding + ki
                        if iy < 0 || iy >= height { continue }
                        let src = row + (oy - r0) * outW
                        let dst = plane + iy * width
                        if stride == 1 {
                            // Contiguous, branch-free range (vectorises): 0 ≤ ox − padding + kj < width.
                            let lo = max(0, padding - kj)
                            let hi = min(outW, width + padding - kj)
                            if hi > lo {
                                let shifted = dst + kj - padding
                                for ox in lo..<hi { shifted[ox] += src[ox] }
                            }
                        } else {
                            for ox in 0..<outW {
                                let ix = ox * stride - padding + kj
                                if ix >= 0 && ix < width { dst[ix] += src[ox] }
                            }
                        }
                    }
                }
            }
        }
    }
}

extension Tensor {
    /// Largest im2col buffer, in floats (64 MB by default); lowered by tests to exercise banding.
    nonisolated(unsafe) public static var convColumnBudget = 16 << 20

    // Long on purpose: the forward pass and its VJP closure share buffers, geometry and the
    // threading plan; split apart, the hot path would be spread over helpers that only it uses.
    /// torch.nn.functional.conv2d on NCHW input with an OIHW weight.
    public func conv2d(_ weight: Tensor, _ bias: Tensor? = nil, stride: Int = 1, padding: Int = 0) -> Tensor {
        precondition(
            rank == 4 && weight.rank == 4 && weight.shape[1] == shape[1],
            "conv2d: input \(shape) does not fit weight \(weight.shape)")
        let geo = ConvGeometry(
            batch: shape[0], inChannels: shape[1], height: shape[2], width: shape[3],
            outChannels: weight.shape[0], kernelH: weight.shape[2], kernelW: weight.shape[3],
            stride: stride, padding: padding)
        let (outH, outW, cout, patch) = (geo.outH, geo.outW, geo.outChannels, geo.patch)
        let planeOut = outH * outW
        let planeIn = geo.inChannels * geo.height * geo.width
        let band = geo.bandRows
        let (parallelRows, parallel) = geo.bands(workers: Threads.count)
        let winograd = geo.usesWinograd
        let out = makeArray(geo.batch * cout * planeOut) { o in
            if winograd {
                data.withPointer {
                    WinogradConv(geometry: geo, adjoint: false).run($0, .of(weight), bias: bias?.data, into: o)
                }
                return
            }
            data.withPointer { x in
                weight.data.withPointer { w in
                    for n in 0..<geo.batch {
                        let xn = x + n * planeIn
                        let on = o + n * cout * planeOut
                        if let bias {
                            for c in 0..<cout { (on + c * planeOut).update(repeating: bias.data[c], count: planeOut) }
                        }
                        let beta: Float = bias == nil ? 0 : 1
                        if geo.isPointwise {
                            BLAS.gemm(
                                transA: false, transB: false, m: cout, n: planeOut, k: patch, alpha: 1,
                                a: w, lda: patch, b: xn, ldb: planeOut, beta: beta, c: on, ldc: planeOut)
                            continue
                        }
                        // Bands write disjoint columns of the output.
                        geo.forEachBand(rows: parallelRows, parallel: parallel) { r0, r1, column in
                            let cols = (r1 - r0) * outW
                            geo.im2col(xn, rows: r0, r1, into: column)
                            BLAS.gemm(
                                transA: false, transB: false, m: cout, n: cols, k: patch, alpha: 1,
                                a: w, lda: patch, b: column, ldb: cols, beta: beta, c: on + r0 * outW, ldc: planeOut)
                        }
                    }
                }
            }
        }
        // The input's values are kept only for the weight's gradient (weights are constants in MUSE).
        let xSaved = saved(if: weight.requiresGrad) ?? Tensor.zeros([0])
        let (xShape, xNeeds, xCount) = (shape, requiresGrad, count)
        let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
        return .result(shape: [geo.batch, cout, outH, outW], data: out, inputs: inputs) { g in
            let x = xSaved
            var dx = xNeeds ? [Float](repeating: 0, count: xCount) : []
            var dw = weight.requiresGrad ? [Float](repeating: 0, count: weight.count) : []
            var col = [Float](repeating: 0, count: geo.isPointwise || !weight.requiresGrad ? 0 : patch * band * outW)
            g.data.withPointer { gp in
                x.data.withPointer { xp in
                    weight.data.withPointer { w in
                        dx.withUnsafeMutableBufferPointer { dxb in
                            dw.withUnsafeMutableBufferPointer { dwb in
                                col.withUnsafeMutableBufferPointer { colb in
                                    if xNeeds && winograd {  // dX = conv(G, flipped Wᵀ), all images at once
                                        WinogradConv(geometry: geo, adjoint: true).run(
                                            gp, .of(weight), bias: nil, into: dxb.baseAddress!)
                                    }
                                    for n in 0..<geo.batch {
                                        let gn = gp + n * cout * planeOut
                                        let xn = xp + n * planeIn
                                        if geo.isPointwise {
                                            if weight.requiresGrad {  // dW += G·Xᵀ
                                                BLAS.gemm(
                                                    transA: false, transB: true, m: cout, n: patch, k: planeOut,
                                                    alpha: 1,
                                                    a: gn, lda: planeOut, b: xn, ldb: planeOut, beta: 1,
                                                    c: dwb.baseAddress!, ldc: patch)
                                            }
                                            if xNeeds {  // dX = Wᵀ·G
                                                BLAS.gemm(
                                                    transA: true, transB: false, m: patch, n: planeOut, k: cout,
                                                    alpha: 1,
                                                    a: w, lda: patch, b: gn, ldb: planeOut, beta: 0,
                                                    c: dxb.baseAddress! + n * planeIn, ldc: planeOut)
                                            }
                                            continue
                                        }
                                        if weight.requiresGrad {  // dW += G·colᵀ, band by band
                                            var r0 = 0
                                            while r0 < outH {
                                                let r1 = min(outH, r0 + band)
                                                let cols = (r1 - r0) * outW
                                                geo.im2col(xn, rows: r0, r1, into: colb.baseAddress!)
                                                BLAS.gemm(
                                                    transA: false, transB: true, m: cout, n: patch, k: cols, alpha: 1,
                                                    a: gn + r0 * outW, lda: planeOut, b: colb.baseAddress!, ldb: cols,
                                                    beta: 1, c: dwb.baseAddress!, ldc: patch)
                                                r0 = r1
                                            }
                                        }
                                        // dX = col2im(Wᵀ·G), bands sharing no input rows at a time
                                        if xNeeds && !winograd {
                                            let dxn = dxb.baseAddress! + n * planeIn
                                            geo.forEachBand(
                                                rows: parallelRows, parallel: parallel, disjointInputs: true
                                            ) { r0, r1, column in
                                                let cols = (r1 - r0) * outW
                                                BLAS.gemm(
                                                    transA: true, transB: false, m: patch, n: cols, k: cout, alpha: 1,
                                                    a: w, lda: patch, b: gn + r0 * outW, ldb: planeOut, beta: 0,
                                                    c: column, ldc: cols)
                                                geo.col2im(column, rows: r0, r1, into: dxn)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            var grads: [Tensor?] = [
                xNeeds ? Tensor(shape: xShape, data: dx) : nil,
                weight.requiresGrad ? Tensor(shape: weight.shape, data: dw) : nil,
            ]
            if let bias {
                grads.append(
                    bias.requiresGrad
                        ? Tensor(
                            shape: bias.shape,
                            data: g.reshaped([geo.batch, cout, planeOut]).sum(axis: 2).sum(axis: 0).data)
                        : nil)
            }
            return grads
        }
    }
}
