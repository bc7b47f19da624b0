// Matrix products, all through sgemm.

extension Tensor {
    /// x·Wᵀ + b over the last dimension, as torch.nn.Linear: weight is [out, in].
    public func linear(_ weight: Tensor, _ bias: Tensor? = nil) -> Tensor {
        let inFeatures = shape.last!
        precondition(
            weight.rank == 2 && weight.shape[1] == inFeatures,
            "linear: input \(shape) does not fit weight \(weight.shape)")
        let outFeatures = weight.shape[0]
        let rows = count / Swift.max(inFeatures, 1)
        let out = makeArray(rows * outFeatures) { o in
            if let bias {
                bias.data.withPointer { b in
                    for r in 0..<rows { (o + r * outFeatures).update(from: b, count: outFeatures) }
                }
            }
            data.withPointer { x in
                weight.data.withPointer { w in
                    BLAS.matmul(
                        transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures,
                        a: x, b: w, beta: bias == nil ? 0 : 1, c: o)
                }
            }
        }
        // The input's values are kept only for the weight's gradient (weights are constants in MUSE).
        let xSaved = saved(if: weight.requiresGrad)
        let (xShape, xNeeds) = (shape, requiresGrad)
        let outShape = Array(shape.dropLast()) + [outFeatures]
        let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
        return .result(shape: outShape, data: out, inputs: inputs) { g in
            var grads: [Tensor?] = [nil, nil, nil]
            if xNeeds {
                let dx = makeArray(rows * inFeatures) { o in
                    g.data.withPointer { gp in
                        weight.data.withPointer { w in
                            BLAS.matmul(
                                transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures, a: gp, b: w, c: o)
                        }
                    }
                }
                grads[0] = Tensor(shape: xShape, data: dx)
            }
            if let x = xSaved {
                let dw = makeArray(outFeatures * inFeatures) { o in
                    g.data.withPointer { gp in
                        x.data.withPointer { xp in
                            BLAS.matmul(
                                transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows, a: gp, b: xp, c: o)
                        }
                    }
                }
                grads[1] = Tensor(shape: weight.shape, data: dw)
            }
            if let bias, bias.requiresGrad {
                grads[2] = g.reshaped([rows, outFeatures]).sum(axis: 0).reshaped(bias.shape)
            }
            return Array(grads.prefix(inputs.count))
        }
    }

    // Long on purpose: the forward pass and its VJP closure share buffers, geometry and the
    // threading plan; split apart, the hot path would be spread over helpers that only it uses.
    /// Batched product: [..., M, K]·[..., K, N]. `other` may also be a plain [K, N] matrix.
    public func matmul(_ other: Tensor) -> Tensor {
        precondition(rank >= 2 && other.rank >= 2, "matmul needs matrices, got \(shape) and \(other.shape)")
        let m = shape[rank - 2]
        let k = shape[rank - 1]
        let n = other.shape[other.rank - 1]
        precondition(other.shape[other.rank - 2] == k, "matmul: \(shape) and \(other.shape) do not agree")
        let batch = count / Swift.max(m * k, 1)
        let shared = other.rank == 2
        precondition(
            shared || other.shape.dropLast(2) == shape.dropLast(2),
            "matmul batch mismatch \(shape) vs \(other.shape)")
        let out = makeArray(batch * m * n) { o in
            data.withPointer { a in
                other.data.withPointer { b in
                    for i in 0..<batch {
                        BLAS.matmul(
                            transA: false, transB: false, m: m, n: n, k: k,
                            a: a + i * m * k, b: shared ? b : b + i * k * n, c: o + i * m * n)
                    }
                }
            }
        }
        // Each side's gradient needs the other side's values: keep only those that will be used.
        let a = saved(if: other.requiresGrad)
        let b = other.saved(if: requiresGrad)
        let (aShape, bShape, aCount, bCount) = (shape, other.shape, count, other.count)
        return .result(shape: Array(shape.dropLast(2)) + [m, n], data: out, inputs: [self, other]) { g in
            var da: Tensor? = nil
            var db: Tensor? = nil
            g.data.withPointer { gp in
                if let other = b {  // dA = G·Bᵀ
                    da = Tensor(
                        shape: aShape,
                        data: makeArray(aCount) { o in
                            other.data.withPointer { b in
                                for i in 0..<batch {
                                    BLAS.matmul(
                                        transA: false, transB: true, m: m, n: k, k: n,
                                        a: gp + i * m * n, b: shared ? b : b + i * k * n, c: o + i * m * k)
                                }
                            }
                        })
                }
                if let a {  // dB = Aᵀ·G, summed over the batch when B is shared
                    db = Tensor(
                        shape: bShape,
                        data: makeArray(bCount) { o in
                            a.data.withPointer { ap in
                                for i in 0..<batch {
                                    BLAS.matmul(
                                        transA: true, transB: false, m: k, n: n, k: m, a: ap + i * m * k,
                                        b: gp + i * m * n, beta: shared && i > 0 ? 1 : 0,
                                        c: shared ? o : o + i * k * n)
                                }
                            }
                        })
                }
            }
            return [da, db]
        }
    }
}
