import Foundation

// Multi-head scaled-dot-product attention, chunked over queries so that at most
// `chunk × keys` scores exist at once (SD's 4096×4096 self-attention never materialises
// whole). The backward pass recomputes each chunk's probabilities instead of storing them.

extension Tensor {
    /// q: [B, Tq, H·D], k and v: [B, Tk, H·D] → [B, Tq, H·D].
    /// `causal` masks keys after each query's own position (CLIP's text encoder).
    public static func attention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                                 causal: Bool = false, maxScores: Int = 1 << 22) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention wants [B, T, C] tensors")
        let (batch, tq, width) = (q.shape[0], q.shape[1], q.shape[2])
        let tk = k.shape[1]
        precondition(k.shape == [batch, tk, width] && v.shape == k.shape,
                     "attention: q \(q.shape), k \(k.shape), v \(v.shape) disagree")
        precondition(width % heads == 0, "attention: width \(width) not divisible by \(heads) heads")
        precondition(!causal || tq == tk, "causal attention needs as many queries as keys")
        let d = width / heads
        let scale = 1 / Float(d).squareRoot()
        let chunk = max(1, min(tq, maxScores / max(tk, 1)))
        var scores = [Float](repeating: 0, count: chunk * tk)
        let out = makeArray(q.count) { o in
            q.data.withPointer { qp in k.data.withPointer { kp in v.data.withPointer { vp in
            scores.withUnsafeMutableBufferPointer { sb in
                let s = sb.baseAddress!
                for b in 0..<batch { for h in 0..<heads {
                    let qh = qp + b * tq * width + h * d, kh = kp + b * tk * width + h * d
                    let vh = vp + b * tk * width + h * d, oh = o + b * tq * width + h * d
                    var r0 = 0
                    while r0 < tq {
                        let rows = min(chunk, tq - r0)
                        BLAS.gemm(transA: false, transB: true, m: rows, n: tk, k: d, alpha: scale,
                                  a: qh + r0 * width, lda: width, b: kh, ldb: width, beta: 0, c: s, ldc: tk)
                        if causal { maskFuture(s, firstRow: r0, rows: rows, cols: tk) }
                        softmaxRows(s, rows: rows, cols: tk)
                        BLAS.gemm(transA: false, transB: false, m: rows, n: d, k: tk, alpha: 1,
                                  a: s, lda: tk, b: vh, ldb: width, beta: 0, c: oh + r0 * width, ldc: width)
                        r0 += rows
                    }
                } }
            } } } }
        }
        return .result(shape: q.shape, data: out, inputs: [q, k, v]) { g in
            var dq = [Float](repeating: 0, count: q.count)
            var dk = [Float](repeating: 0, count: k.count)
            var dv = [Float](repeating: 0, count: v.count)
            var p = [Float](repeating: 0, count: chunk * tk)
            var dp = [Float](repeating: 0, count: chunk * tk)
            q.data.withPointer { qp in k.data.withPointer { kp in v.data.withPointer { vp in
            g.data.withPointer { gp in out.withPointer { op in
            dq.withUnsafeMutableBufferPointer { dqb in dk.withUnsafeMutableBufferPointer { dkb in
            dv.withUnsafeMutableBufferPointer { dvb in
            p.withUnsafeMutableBufferPointer { pb in dp.withUnsafeMutableBufferPointer { dpb in
                let ps = pb.baseAddress!, dps = dpb.baseAddress!
                for b in 0..<batch { for h in 0..<heads {
                    let offQ = b * tq * width + h * d, offK = b * tk * width + h * d
                    var r0 = 0
                    while r0 < tq {
                        let rows = min(chunk, tq - r0)
                        let qc = qp + offQ + r0 * width, gc = gp + offQ + r0 * width, oc = op + offQ + r0 * width
                        BLAS.gemm(transA: false, transB: true, m: rows, n: tk, k: d, alpha: scale,
                                  a: qc, lda: width, b: kp + offK, ldb: width, beta: 0, c: ps, ldc: tk)
                        if causal { maskFuture(ps, firstRow: r0, rows: rows, cols: tk) }
                        softmaxRows(ps, rows: rows, cols: tk)
                        // dV += Pᵀ·dO
                        BLAS.gemm(transA: true, transB: false, m: tk, n: d, k: rows, alpha: 1,
                                  a: ps, lda: tk, b: gc, ldb: width, beta: 1, c: dvb.baseAddress! + offK, ldc: width)
                        // dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(dO ⊙ O))
                        BLAS.gemm(transA: false, transB: true, m: rows, n: tk, k: d, alpha: 1,
                                  a: gc, lda: width, b: vp + offK, ldb: width, beta: 0, c: dps, ldc: tk)
                        for r in 0..<rows {
                            var dot: Float = 0
                            for j in 0..<d { dot += gc[r * width + j] * oc[r * width + j] }
                            let prow = ps + r * tk, drow = dps + r * tk
                            for j in 0..<tk { drow[j] = prow[j] * (drow[j] - dot) }
                        }
                        // dQ = scale·dS·K, dK += scale·dSᵀ·Q
                        BLAS.gemm(transA: false, transB: false, m: rows, n: d, k: tk, alpha: scale,
                                  a: dps, lda: tk, b: kp + offK, ldb: width, beta: 0,
                                  c: dqb.baseAddress! + offQ + r0 * width, ldc: width)
                        BLAS.gemm(transA: true, transB: false, m: tk, n: d, k: rows, alpha: scale,
                                  a: dps, lda: tk, b: qc, ldb: width, beta: 1, c: dkb.baseAddress! + offK, ldc: width)
                        r0 += rows
                    }
                } }
            } } } } } } } } } }
            return [q.requiresGrad ? Tensor(shape: q.shape, data: dq) : nil,
                    k.requiresGrad ? Tensor(shape: k.shape, data: dk) : nil,
                    v.requiresGrad ? Tensor(shape: v.shape, data: dv) : nil]
        }
    }
}

/// Scores of keys after the query's position become −∞ (zero probability).
func maskFuture(_ s: UnsafeMutablePointer<Float>, firstRow: Int, rows: Int, cols: Int) {
    for r in 0..<rows where firstRow + r + 1 < cols {
        (s + r * cols + firstRow + r + 1).update(repeating: -.infinity, count: cols - firstRow - r - 1)
    }
}

/// In-place row softmax; rows split across cores when there is enough work.
func softmaxRows(_ s: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
    let work = rows * cols
    if work < 1 << 16 {
        for r in 0..<rows { softmaxRow(s + r * cols, s + r * cols, cols) }
        return
    }
    let parts = min(rows, ProcessInfo.processInfo.activeProcessorCount)
    let address = Int(bitPattern: s)
    DispatchQueue.concurrentPerform(iterations: parts) { part in
        let base = UnsafeMutablePointer<Float>(bitPattern: address)!
        let lo = rows * part / parts, hi = rows * (part + 1) / parts
        for r in lo..<hi { softmaxRow(base + r * cols, base + r * cols, cols) }
    }
}
