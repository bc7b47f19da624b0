import XCTest

@testable import Tensor

/// Every op's VJP against finite differences.
final class GradientTests: XCTestCase {
    func testBroadcastArithmetic() {
        let a = random([2, 3, 4], seed: 1)
        let b = random([3, 1], seed: 2)
        let c = random([4], seed: 3)
        checkGradients([a, b]) { $0[0] + $0[1] }
        checkGradients([a, b]) { $0[0] - $0[1] }
        checkGradients([a, b]) { $0[0] * $0[1] }
        checkGradients([a, c]) { $0[0] * $0[1] }
        checkGradients([a, random([2, 3, 1], seed: 40)]) { $0[0] + $0[1] }
        checkGradients([random([2, 3, 1], seed: 41), a]) { $0[0] * $0[1] }
        let positive = Tensor.randomUniform([3, 1], seed: 4, range: 1...2)
        checkGradients([a, positive]) { $0[0] / $0[1] }
        checkGradients([a]) { $0[0] * 3 + 1 - 0.5 }
        checkGradients([a]) { -$0[0] }
    }

    func testUnaryFunctions() {
        let x = random([3, 5], seed: 5)
        let positive = Tensor.randomUniform([3, 5], seed: 6, range: 0.5...2)
        checkGradients([x]) { $0[0].exp() }
        checkGradients([positive]) { $0[0].log() }
        checkGradients([positive]) { $0[0].sqrt() }
        checkGradients([x]) { $0[0].square() }
        checkGradients([x]) { $0[0].sigmoid() }
        checkGradients([x]) { $0[0].tanh() }
        checkGradients([x]) { $0[0].silu() }
        checkGradients([x]) { $0[0].gelu() }
        checkGradients([x]) { $0[0].quickGelu() }
        checkGradients([random([2, 3, 8], seed: 7)]) { $0[0].geglu() }
        // Away from the kinks, where finite differences are defined.
        let offKink = Tensor(shape: [6], data: [-2, -0.7, 0.4, 0.9, 1.6, 3])
        checkGradients([offKink], epsilon: 1e-3) { $0[0].clamp(-1...1) }
        checkGradients([offKink], epsilon: 1e-3) { $0[0].clampMin(0.5) }
    }

    func testShapeOps() {
        let x = random([2, 3, 4], seed: 8)
        checkGradients([x]) { $0[0].reshaped([4, -1]) }
        checkGradients([x]) { $0[0].permuted([2, 0, 1]) }
        checkGradients([x]) { $0[0].transposed(1, 2) }
        checkGradients([x]) { $0[0].narrowed(axis: 1, start: 1, length: 2) }
        checkGradients([x, random([2, 2, 4], seed: 9)]) { Tensor.concat([$0[0], $0[1]], axis: 1) }
        checkGradients([random([10, 4], seed: 10)]) { Tensor.embedding($0[0], ids: [3, 1, 3, 9]) }
    }

    func testReductions() {
        let x = random([2, 3, 4], seed: 11)
        checkGradients([x]) { $0[0].sum() }
        checkGradients([x]) { $0[0].mean() }
        checkGradients([x]) { $0[0].sum(axis: 1) }
        checkGradients([x]) { $0[0].mean(axis: 2) }
    }

    func testLinearAndMatmul() {
        let x = random([2, 3, 5], seed: 12)
        let w = random([4, 5], seed: 13)
        let b = random([4], seed: 14)
        checkGradients([x, w, b]) { $0[0].linear($0[1], $0[2]) }
        checkGradients([x, w]) { $0[0].linear($0[1]) }
        checkGradients([x, random([2, 5, 3], seed: 15)]) { $0[0].matmul($0[1]) }
        checkGradients([x, random([5, 6], seed: 16)]) { $0[0].matmul($0[1]) }
    }

    func testSoftmaxAndNorms() {
        let x = random([3, 7], seed: 17)
        checkGradients([x]) { $0[0].softmax() }
        checkGradients([x]) { $0[0].logSoftmax() }
        let seq = random([2, 3, 8], seed: 18)
        checkGradients([seq, random([8], seed: 19), random([8], seed: 20)]) {
            $0[0].layerNorm(weight: $0[1], bias: $0[2])
        }
        let image = random([2, 8, 3, 3], seed: 21)
        checkGradients([image, random([8], seed: 22), random([8], seed: 23)]) {
            $0[0].groupNorm(groups: 4, weight: $0[1], bias: $0[2], eps: 1e-6)
        }
        checkGradients([image]) { $0[0].groupNorm(groups: 2, weight: nil, bias: nil) }
        checkGradients([image, random([8], seed: 22), random([8], seed: 23)]) {
            $0[0].groupNormSiLU(groups: 4, weight: $0[1], bias: $0[2], eps: 1e-6)
        }
    }

    func testConvolution() {
        let x = random([2, 3, 7, 6], seed: 24)
        let b = random([4], seed: 25)
        checkGradients([x, random([4, 3, 3, 3], seed: 26), b]) { $0[0].conv2d($0[1], $0[2], stride: 1, padding: 1) }
        checkGradients([x, random([4, 3, 3, 3], seed: 27), b]) { $0[0].conv2d($0[1], $0[2], stride: 2, padding: 1) }
        checkGradients([x, random([4, 3, 3, 3], seed: 28)]) { $0[0].conv2d($0[1], stride: 2, padding: 0) }
        checkGradients([x, random([4, 3, 1, 1], seed: 29), b]) { $0[0].conv2d($0[1], $0[2]) }
        // Banded im2col: a tiny column budget forces one output row per band.
        let saved = Tensor.convColumnBudget
        Tensor.convColumnBudget = 1
        defer { Tensor.convColumnBudget = saved }
        checkGradients([x, random([4, 3, 3, 3], seed: 30), b]) { $0[0].conv2d($0[1], $0[2], stride: 1, padding: 1) }
    }

    func testAttention() {
        let q = random([2, 5, 8], seed: 31)
        let k = random([2, 6, 8], seed: 32)
        let v = random([2, 6, 8], seed: 33)
        checkGradients([q, k, v]) { Tensor.attention(query: $0[0], key: $0[1], value: $0[2], heads: 2) }
        // Chunked over queries (two rows of scores at a time), self-attention.
        checkGradients([q]) { Tensor.attention(query: $0[0], key: $0[0], value: $0[0], heads: 4, maxScores: 10) }
        checkGradients([q, random([2, 5, 8], seed: 37), random([2, 5, 8], seed: 38)]) {
            Tensor.attention(query: $0[0], key: $0[1], value: $0[2], heads: 2, causal: true, maxScores: 10)
        }
    }

    func testResampling() {
        let x = random([1, 2, 3, 4], seed: 34)
        checkGradients([x]) { $0[0].upsampleNearest2x() }
        checkGradients([x]) { $0[0].padded(left: 1, right: 2, top: 0, bottom: 1) }
        checkGradients([x]) { $0[0].resizeBilinear(height: 7, width: 5) }
        checkGradients([x]) { $0[0].resizeBilinear(height: 2, width: 3) }
        checkGradients([x]) { $0[0].resizeBicubicAntialiased(height: 7, width: 2) }
        checkGradients([random([2, 1, 9, 10], seed: 35)]) { $0[0].resizeBicubicAntialiased(height: 4, width: 13) }
        checkGradients([random([2, 3, 5], seed: 35)]) { $0[0].resampledBicubic(axis: 1, size: 2) }
    }

    func testGraphKeepsNoIntermediateTensorsAlive() {
        let x = random([4, 8], seed: 42).asVariable()
        let w = random([8, 8], seed: 43)
        weak var intermediate: Tensor?
        let loss: Tensor = {
            let h = x.linear(w)
            intermediate = h
            return (h + 1).sum()  // `+` needs no values: nothing should hold h
        }()
        XCTAssertNil(intermediate, "the graph kept an intermediate tensor")
        let grad = Autograd.gradients(of: loss, withRespectTo: [x])[0]
        XCTAssertEqual(grad.data, Autograd.gradients(of: x.linear(w).sum(), withRespectTo: [x])[0].data)
    }

    func testNoGraphOnInferencePaths() {
        let w = random([4, 5], seed: 35)
        let y = random([2, 5], seed: 36).linear(w).softmax()
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNil(y.gradNode)
        let recorded = Autograd.noGrad { random([2, 5], seed: 36).asVariable().linear(w) }
        XCTAssertNil(recorded.gradNode)
    }

    /// Recomputed blocks give the gradients of kept activations — for a block with an input
    /// that needs no gradient, a nested block, and inputs used twice — up to the order in
    /// which a tensor's gradient contributions are summed, the same on every run; and they
    /// keep the block's intermediate tensors out of the graph.
    func testCheckpointedBlocksGiveIdenticalGradients() {
        let weight = random([4, 3, 3, 3], seed: 50)
        let weight2 = random([3, 4, 3, 3], seed: 51)
        let bias = random([4], seed: 52)
        let context = random([2, 3, 7, 6], seed: 54)
        func block(_ xs: [Tensor]) -> Tensor {
            let h = xs[0].conv2d(weight, bias, padding: 1).groupNorm(groups: 2, weight: nil, bias: nil).silu()
            let inner = Autograd.checkpointed([h]) { $0[0].conv2d(weight2, padding: 1).silu() }
            return inner * xs[1] + xs[0]
        }
        func run(recompute: Bool, contextIsVariable: Bool) -> [[Float]] {
            let saved = Autograd.recomputeActivations
            Autograd.recomputeActivations = recompute
            defer { Autograd.recomputeActivations = saved }
            let x = random([2, 3, 7, 6], seed: 53).asVariable()
            let c = contextIsVariable ? context.asVariable() : context
            let y = Autograd.checkpointed([x, c], block)
            let loss = (Autograd.checkpointed([y, c], block) * y).sum()
            return Autograd.gradients(of: loss, withRespectTo: contextIsVariable ? [x, c] : [x]).map(\.data)
        }
        for contextIsVariable in [true, false] {
            let kept = run(recompute: false, contextIsVariable: contextIsVariable)
            let recomputed = run(recompute: true, contextIsVariable: contextIsVariable)
            XCTAssertEqual(recomputed, run(recompute: true, contextIsVariable: contextIsVariable), "deterministic")
            for (a, b) in zip(kept, recomputed) {
                let scale = a.map(abs).max()!
                XCTAssertGreaterThan(scale, 1)
                // Measured: 1.9e-7 of the largest gradient (float summation order).
                XCTAssertLessThan(
                    zip(a, b).map { abs($0 - $1) }.max()! / scale, 2e-6, "variable context: \(contextIsVariable)")
            }
        }
        // And against finite differences through the checkpointed path.
        Autograd.recomputeActivations = true
        defer { Autograd.recomputeActivations = false }
        checkGradients([random([1, 3, 5, 4], seed: 55), random([1, 3, 5, 4], seed: 56)]) {
            Autograd.checkpointed($0, block)
        }

        weak var intermediate: Tensor?
        let x = random([2, 3, 7, 6], seed: 57).asVariable()
        let out = Autograd.checkpointed([x]) { xs in
            let h = xs[0].conv2d(weight, bias, padding: 1)
            intermediate = h
            return h.silu()
        }
        XCTAssertNil(intermediate, "a recomputed block's activations are not kept")
        XCTAssertTrue(out.requiresGrad)
    }
}
