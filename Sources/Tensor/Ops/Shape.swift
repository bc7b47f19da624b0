// Reshape, permute, concat, slice: data movement with exact VJPs.

extension Tensor {
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var target = newShape
        if let wild = target.firstIndex(of: -1) {
            let known = target.filter { $0 != -1 }.reduce(1, *)
            target[wild] = known == 0 ? 0 : count / known
        }
        precondition(target.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        let original = shape
        return .result(shape: target, data: data, inputs: [self]) { g in
            [Tensor(shape: original, data: g.data)]
        }
    }

    /// Reorder dimensions: output dimension i is input dimension `order[i]`.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "bad permutation \(order) for rank \(rank)")
        if order == Array(0..<rank) { return self }
        let outShape = order.map { shape[$0] }
        let data = permuteData(data, shape: shape, order: order)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        let inShape = shape
        return .result(shape: outShape, data: data, inputs: [self]) { g in
            [Tensor(shape: inShape, data: permuteData(g.data, shape: outShape, order: inverse))]
        }
    }

    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(a, b)
        return permuted(order)
    }

    /// Elements [start, start+length) along `axis`.
    public func narrowed(axis: Int, start: Int, length: Int) -> Tensor {
        precondition(
            start >= 0 && length >= 0 && start + length <= shape[axis],
            "narrow \(start)..<\(start + length) out of \(shape[axis]) on axis \(axis)")
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        let dim = shape[axis]
        var outShape = shape
        outShape[axis] = length
        let block = length * inner
        let out = data.withPointer { p in
            makeArray(outer * block) { o in
                for i in 0..<outer {
                    (o + i * block).update(from: p + (i * dim + start) * inner, count: block)
                }
            }
        }
        let inShape = shape
        return .result(shape: outShape, data: out, inputs: [self]) { g in
            var full = [Float](repeating: 0, count: inShape.reduce(1, *))
            g.data.withPointer { gp in
                full.withUnsafeMutableBufferPointer { f in
                    for i in 0..<outer {
                        (f.baseAddress! + (i * dim + start) * inner).update(from: gp + i * block, count: block)
                    }
                }
            }
            return [Tensor(shape: inShape, data: full)]
        }
    }

    /// Split into `parts` equal pieces along `axis` (torch.chunk with even sizes).
    public func chunked(_ parts: Int, axis: Int) -> [Tensor] {
        precondition(shape[axis] % parts == 0, "cannot split \(shape[axis]) into \(parts) on axis \(axis)")
        let size = shape[axis] / parts
        return (0..<parts).map { narrowed(axis: axis, start: $0 * size, length: size) }
    }

    public static func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
        precondition(!tensors.isEmpty, "concat of nothing")
        let first = tensors[0].shape
        for t in tensors {
            precondition(
                t.rank == first.count && (0..<first.count).allSatisfy { $0 == axis || t.shape[$0] == first[$0] },
                "concat shapes \(tensors.map(\.shape)) differ off axis \(axis)")
        }
        let outer = first[..<axis].reduce(1, *)
        let inner = first[(axis + 1)...].reduce(1, *)
        let dims = tensors.map { $0.shape[axis] }
        let total = dims.reduce(0, +)
        var outShape = first
        outShape[axis] = total
        var out = [Float](repeating: 0, count: outer * total * inner)
        out.withUnsafeMutableBufferPointer { o in
            var offset = 0
            for (t, d) in zip(tensors, dims) {
                t.data.withPointer { p in
                    for i in 0..<outer {
                        (o.baseAddress! + (i * total + offset) * inner).update(
                            from: p + i * d * inner, count: d * inner)
                    }
                }
                offset += d
            }
        }
        let needs = tensors.map(\.requiresGrad)
        return .result(shape: outShape, data: out, inputs: tensors) { g in
            var start = 0
            return zip(needs, dims).map { need, d in
                defer { start += d }
                return need ? g.narrowed(axis: axis, start: start, length: d) : nil
            }
        }
    }

    /// Rows of `table` ([vocab, dim]) picked by `ids`: [ids.count, dim].
    public static func embedding(_ table: Tensor, ids: [Int]) -> Tensor {
        precondition(table.rank == 2, "embedding table must be 2-D, got \(table.shape)")
        let dim = table.shape[1]
        let out = table.data.withPointer { p in
            makeArray(ids.count * dim) { o in
                for (row, id) in ids.enumerated() {
                    precondition(
                        id >= 0 && id < table.shape[0], "token id \(id) outside vocabulary of \(table.shape[0])")
                    (o + row * dim).update(from: p + id * dim, count: dim)
                }
            }
        }
        return .result(shape: [ids.count, dim], data: out, inputs: [table]) { g in
            var grad = [Float](repeating: 0, count: table.count)
            g.data.withPointer { gp in
                for (row, id) in ids.enumerated() { for j in 0..<dim { grad[id * dim + j] += gp[row * dim + j] } }
            }
            return [Tensor(shape: table.shape, data: grad)]
        }
    }
}

func permuteData(_ data: [Float], shape: [Int], order: [Int]) -> [Float] {
    let rank = shape.count
    var inStrides = [Int](repeating: 1, count: rank)
    for d in stride(from: rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * shape[d + 1] }
    let outShape = order.map { shape[$0] }
    let strides = order.map { inStrides[$0] }
    let total = data.count
    // The innermost output dimension is copied in a tight loop; the rest by an odometer.
    let lastDim = outShape.last ?? 1
    let lastStride = strides.last ?? 1
    return data.withPointer { p in
        makeArray(total) { o in
            var counter = [Int](repeating: 0, count: rank)
            var base = 0
            var i = 0
            while i < total {
                for j in 0..<lastDim { o[i + j] = p[base + j * lastStride] }
                i += lastDim
                var d = rank - 2
                while d >= 0 {
                    counter[d] += 1
                    base += strides[d]
                    if counter[d] < outShape[d] { break }
                    base -= strides[d] * outShape[d]
                    counter[d] = 0
                    d -= 1
                }
            }
        }
    }
}
