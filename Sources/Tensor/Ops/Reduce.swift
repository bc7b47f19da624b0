extension Tensor {
    public func sum() -> Tensor {
        var total: Float = 0
        data.withPointer { p in for i in 0..<count { total += p[i] } }
        let inShape = shape
        return .result(shape: [], data: [total], inputs: [self]) { g in
            [Tensor.full(inShape, g.data[0])]
        }
    }

    public func mean() -> Tensor { sum() * (1 / Float(Swift.max(count, 1))) }

    /// Sum over `axis`, keeping it as size 1.
    public func sum(axis: Int) -> Tensor {
        let outer = shape[..<axis].reduce(1, *)
        let dim = shape[axis]
        let inner = shape[(axis + 1)...].reduce(1, *)
        var outShape = shape
        outShape[axis] = 1
        let out = data.withPointer { p in
            makeArray(outer * inner) { o in
                for i in 0..<outer {
                    for k in 0..<inner { o[i * inner + k] = 0 }
                    for j in 0..<dim { for k in 0..<inner { o[i * inner + k] += p[(i * dim + j) * inner + k] } }
                }
            }
        }
        let inShape = shape
        return .result(shape: outShape, data: out, inputs: [self]) { g in
            [g * Tensor.full(inShape, 1)]
        }
    }

    public func mean(axis: Int) -> Tensor { sum(axis: axis) * (1 / Float(shape[axis])) }
}
