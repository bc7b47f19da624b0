import Foundation

// Multi-head scaled-dot-product attention, chunked over queries so that at most
// `chunk × keys` scores exist at once per worker (SD's 4096×4096 self-attention never
// materialises whole). Heads run in parallel, one per core, each with single-threaded
// sgemm: splitting each small gemm across cores left the second core spinning in
// OpenBLAS while the first computed the softmax. The backward pass recomputes each chunk's
// probabilities instead of storing them.

extension Tensor {
    // Long on purpose: the forward pass and its VJP closure share buffers, geometry and the
    // threading plan; split apart, the hot path would be spread over helpers that only it uses.
    /// q: [B, Tq, H·D], k and v: [B, Tk, H·D] → [B, Tq, H·D].
    /// `causal` masks keys after each query's own position (CLIP's text encoder).
    public static func attention(
        query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
        causal: Bool = false, maxScores: Int = 1 << 18
    ) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention wants [B, T, C] tensors")
        let (batch, tq, width) = (q.shape[0], q.shape[1], q.shape[2])
        let tk = k.shape[1]
        precondition(
            k.shape == [batch, tk, width] && v.shape == k.shape,
            "attention: q \(q.shape), k \(k.shape), v \(v.shape) disagree")
        precondition(width % heads == 0, "attention: width \(width) not divisible by \(heads) heads")
        precondition(!causal || tq == tk, "causal attention needs as many queries as keys")
        let d = width / heads
        let scale = 1 / Float(d).squareRoot()
        let chunk = max(1, min(tq, maxScores / max(tk, 1)))

        let out = makeArray(q.count) { o in
            let outAddress = Int(bitPattern: o)
            q.data.withPointer { qp in
                k.data.withPointer { kp in
                    v.data.withPointer { vp in
                        forEachTask(batch * heads, scratch: chunk * tk) { index, s in
                            let (b, h) = index.quotientAndRemainder(dividingBy: heads)
                            let o = UnsafeMutablePointer<Float>(bitPattern: outAddress)!
                            let qh = qp + b * tq * width + h * d
                            let kh = kp + b * tk * width + h * d
                            let vh = vp + b * tk * width + h * d
                            let oh = o + b * tq * width + h * d
                            var r0 = 0
                            while r0 < tq {
                                let rows = min(chunk, tq - r0)
                                BLAS.gemm(
                                    transA: false, transB: true, m: rows, n: tk, k: d, alpha: scale,
                                    a: qh + r0 * width, lda: width, b: kh, ldb: width, beta: 0, c: s, ldc: tk)
                                if causal { maskFuture(s, firstRow: r0, rows: rows, cols: tk) }
                                for r in 0..<rows { softmaxRow(s + r * tk, s + r * tk, tk) }
                                BLAS.gemm(
                                    transA: false, transB: false, m: rows, n: d, k: tk, alpha: 1,
                                    a: s, lda: tk, b: vh, ldb: width, beta: 0, c: oh + r0 * width, ldc: width)
                                r0 += rows
                            }
                        }
                    }
                }
            }
        }
        return .result(shape: q.shape, data: out, inputs: [q, k, v]) { g in
            var dq = [Float](repeating: 0, count: q.count)
            var dk = [Float](repeating: 0, count: k.count)
            var dv = [Float](repeating: 0, count: v.count)
            q.data.withPointer { qp in
                k.data.withPointer { kp in
                    v.data.withPointer { vp in
                        g.data.withPointer { gp in
                            out.withPointer { op in
                                dq.withUnsafeMutableBufferPointer { dqb in
                                    dk.withUnsafeMutableBufferPointer { dkb in
                                        dv.withUnsafeMutableBufferPointer { dvb in
                                            // Heads write disjoint column slices of dq, dk and dv, so workers never collide.
                                            let (dqAddress, dkAddress, dvAddress) = (
                                                Int(bitPattern: dqb.baseAddress), Int(bitPattern: dkb.baseAddress),
                                                Int(bitPattern: dvb.baseAddress)
                                            )
                                            forEachTask(batch * heads, scratch: 2 * chunk * tk) { index, scratch in
                                                let (b, h) = index.quotientAndRemainder(dividingBy: heads)
                                                let dqp = UnsafeMutablePointer<Float>(bitPattern: dqAddress)!
                                                let dkp = UnsafeMutablePointer<Float>(bitPattern: dkAddress)!
                                                let dvp = UnsafeMutablePointer<Float>(bitPattern: dvAddress)!
                                                let ps = scratch
                                                let dps = scratch + chunk * tk
                                                let offQ = b * tq * width + h * d
                                                let offK = b * tk * width + h * d
                                                var r0 = 0
                                                while r0 < tq {
                                                    let rows = min(chunk, tq - r0)
                                                    let qc = qp + offQ + r0 * width
                                                    let gc = gp + offQ + r0 * width
                                                    let oc = op + offQ + r0 * width
                                                    BLAS.gemm(
                                                        transA: false, transB: true, m: rows, n: tk, k: d, alpha: scale,
                                                        a: qc, lda: width, b: kp + offK, ldb: width, beta: 0, c: ps,
                                                        ldc: tk)
                                                    if causal { maskFuture(ps, firstRow: r0, rows: rows, cols: tk) }
                                                    for r in 0..<rows { softmaxRow(ps + r * tk, ps + r * tk, tk) }
                                                    // dV += Pᵀ·dO
                                                    BLAS.gemm(
                                                        transA: true, transB: false, m: tk, n: d, k: rows, alpha: 1,
                                                        a: ps, lda: tk, b: gc, ldb: width, beta: 1, c: dvp + offK,
                                                        ldc: width)
                                                    // dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(dO ⊙ O))
                                                    BLAS.gemm(
                                                        transA: false, transB: true, m: rows, n: tk, k: d, alpha: 1,
                                                        a: gc, lda: width, b: vp + offK, ldb: width, beta: 0, c: dps,
                                                        ldc: tk)
                                                    for r in 0..<rows {
                                                        var dot: Float = 0
                                                        for j in 0..<d { dot += gc[r * width + j] * oc[r * width + j] }
                                                        let prow = ps + r * tk
                                                        let drow = dps + r * tk
                                                        for j in 0..<tk { drow[j] = prow[j] * (drow[j] - dot) }
                                                    }
                                                    // dQ = scale·dS·K, dK += scale·dSᵀ·Q
                                                    BLAS.gemm(
                                                        transA: false, transB: false, m: rows, n: d, k: tk,
                                                        alpha: scale,
                                                        a: dps, lda: tk, b: kp + offK, ldb: width, beta: 0,
                                                        c: dqp + offQ + r0 * width, ldc: width)
                                                    BLAS.gemm(
                                                        transA: true, transB: false, m: tk, n: d, k: rows, alpha: scale,
                                                        a: dps, lda: tk, b: qc, ldb: width, beta: 1, c: dkp + offK,
                                                        ldc: width)
                                                    r0 += rows
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return [
                q.requiresGrad ? Tensor(shape: q.shape, data: dq) : nil,
                k.requiresGrad ? Tensor(shape: k.shape, data: dk) : nil,
                v.requiresGrad ? Tensor(shape: v.shape, data: dv) : nil,
            ]
        }
    }
}

/// Scores of keys after the query's position become −∞ (zero probability).
func maskFuture(_ s: UnsafeMutablePointer<Float>, firstRow: Int, rows: Int, cols: Int) {
    for r in 0..<rows where firstRow + r + 1 < cols {
        (s + r * cols + firstRow + r + 1).update(repeating: -.infinity, count: cols - firstRow - r - 1)
    }
}
