import Foundation
import XCTest

@testable import Tensor

/// Forward values against direct, naive definitions.
final class ForwardTests: XCTestCase {
    func assertClose(
        _ a: [Float], _ b: [Float], tolerance: Float = 1e-4, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let worst = zip(a, b).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        XCTAssertLessThan(worst, tolerance, file: file, line: line)
    }

    func naiveConv(_ x: Tensor, _ w: Tensor, _ b: Tensor, stride: Int, padding: Int) -> [Float] {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let oh = (h + 2 * padding - kh) / stride + 1
        let ow = (wd + 2 * padding - kw) / stride + 1
        var out = [Float]()
        for bi in 0..<n {
            for oc in 0..<o {
                for y in 0..<oh {
                    for xx in 0..<ow {
                        var s = Double(b.data[oc])
                        for ic in 0..<c {
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let iy = y * stride - padding + i
                                    let ix = xx * stride - padding + j
                                    if iy >= 0 && iy < h && ix >= 0 && ix < wd {
                                        s +=
                                            Double(x.data[((bi * c + ic) * h + iy) * wd + ix])
                                            * Double(w.data[((oc * c + ic) * kh + i) * kw + j])
                                    }
                                }
                            }
                        }
                        out.append(Float(s))
                    }
                }
            }
        }
        return out
    }

    func testConvMatchesDirectDefinition() {
        let x = random([2, 5, 9, 8], seed: 1)
        let w = random([6, 5, 3, 3], seed: 2)
        let b = random([6], seed: 3)
        for (stride, padding) in [(1, 1), (2, 1), (1, 0), (2, 0)] {
            assertClose(
                x.conv2d(w, b, stride: stride, padding: padding).data,
                naiveConv(x, w, b, stride: stride, padding: padding))
        }
        let w1 = random([6, 5, 1, 1], seed: 4)
        assertClose(x.conv2d(w1, b).data, naiveConv(x, w1, b, stride: 1, padding: 0))
        let saved = Tensor.convColumnBudget
        Tensor.convColumnBudget = 100
        defer { Tensor.convColumnBudget = saved }
        assertClose(x.conv2d(w, b, stride: 1, padding: 1).data, naiveConv(x, w, b, stride: 1, padding: 1))
    }

    func testParallelBandsMatchDirectDefinition() {
        // Large enough for output-row bands on separate cores (forward), and for the input
        // gradient's bands in even/odd phases; checked against the naive definition and FD.
        let x = random([1, 32, 32, 32], seed: 40)
        let w = random([8, 32, 3, 3], seed: 41)
        let b = random([8], seed: 42)
        for (stride, padding) in [(1, 1), (2, 1)] {
            assertClose(
                x.conv2d(w, b, stride: stride, padding: padding).data,
                naiveConv(x, w, b, stride: stride, padding: padding))
            checkGradients([x], epsilon: 1e-2, tolerance: 2e-2, samples: 16) {
                $0[0].conv2d(w, b, stride: stride, padding: padding)
            }
        }
    }

    func testAttentionMatchesDirectDefinition() {
        let (batch, tq, tk, heads, d) = (2, 7, 5, 3, 4)
        let q = random([batch, tq, heads * d], seed: 5)
        let k = random([batch, tk, heads * d], seed: 6)
        let v = random([batch, tk, heads * d], seed: 7)
        var expected = [Float](repeating: 0, count: q.count)
        for b in 0..<batch {
            for h in 0..<heads {
                for i in 0..<tq {
                    var scores = (0..<tk).map { j in
                        (0..<d).reduce(Float(0)) {
                            $0 + q.data[(b * tq + i) * heads * d + h * d + $1]
                                * k.data[(b * tk + j) * heads * d + h * d + $1]
                        } / Float(d).squareRoot()
                    }
                    let m = scores.max()!
                    scores = scores.map { Foundation.exp($0 - m) }
                    let total = scores.reduce(0, +)
                    for e in 0..<d {
                        expected[(b * tq + i) * heads * d + h * d + e] =
                            (0..<tk).reduce(Float(0)) {
                                $0 + scores[$1] / total * v.data[(b * tk + $1) * heads * d + h * d + e]
                            }
                    }
                }
            }
        }
        assertClose(Tensor.attention(query: q, key: k, value: v, heads: heads).data, expected)
        assertClose(Tensor.attention(query: q, key: k, value: v, heads: heads, maxScores: 5).data, expected)
    }

    func testParallelHeadsMatchSerialComputation() {
        // Large enough that heads run on separate workers with single-threaded sgemm.
        let q = random([2, 96, 32], seed: 14)
        let k = random([2, 130, 32], seed: 15)
        let v = random([2, 130, 32], seed: 16)
        let parallel = Tensor.attention(query: q, key: k, value: v, heads: 4)
        for b in 0..<2 {
            for h in 0..<4 {
                let pick = { (t: Tensor) in
                    t.narrowed(axis: 0, start: b, length: 1).narrowed(axis: 2, start: h * 8, length: 8)
                }
                // One head at a time, tiny chunks: the serial path.
                let single = Tensor.attention(query: pick(q), key: pick(k), value: pick(v), heads: 1, maxScores: 130)
                assertClose(pick(parallel).data, single.data)
            }
        }
        let qv = q.asVariable()
        let kv = k.asVariable()
        let vv = v.asVariable()
        let w = random([2, 96, 32], seed: 17)
        let grads = Autograd.gradients(
            of: (Tensor.attention(query: qv, key: kv, value: vv, heads: 4) * w).sum(),
            withRespectTo: [qv, kv, vv])
        let serial = Autograd.gradients(
            of: (Tensor.attention(query: qv, key: kv, value: vv, heads: 4, maxScores: 64) * w).sum(),
            withRespectTo: [qv, kv, vv])
        for (a, b) in zip(grads, serial) { assertClose(a.data, b.data) }
    }

    func testCausalAttentionIgnoresFutureKeys() {
        let q = random([1, 4, 6], seed: 11)
        let k = random([1, 4, 6], seed: 12)
        let v = random([1, 4, 6], seed: 13)
        let full = Tensor.attention(query: q, key: k, value: v, heads: 2, causal: true, maxScores: 4)
        // Row i must equal attention over the first i+1 keys only.
        for i in 0..<4 {
            let kk = k.narrowed(axis: 1, start: 0, length: i + 1)
            let vv = v.narrowed(axis: 1, start: 0, length: i + 1)
            let row = Tensor.attention(query: q.narrowed(axis: 1, start: i, length: 1), key: kk, value: vv, heads: 2)
            assertClose(Array(full.data[i * 6..<(i + 1) * 6]), row.data)
        }
    }

    func testGroupNormMatchesDefinition() {
        let x = random([2, 6, 3, 2], seed: 8) * 3 + 1
        let y = x.groupNorm(groups: 3, weight: nil, bias: nil, eps: 1e-5)
        for n in 0..<2 {
            for g in 0..<3 {
                let slice = Array(x.data[(n * 6 + g * 2) * 6..<(n * 6 + g * 2 + 2) * 6])
                let mean = slice.reduce(0, +) / Float(slice.count)
                let variance = slice.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(slice.count)
                let expected = slice.map { ($0 - mean) / (variance + 1e-5).squareRoot() }
                assertClose(Array(y.data[(n * 6 + g * 2) * 6..<(n * 6 + g * 2 + 2) * 6]), expected)
            }
        }
    }

    /// SiLU against its definition in double precision, over the range models produce and
    /// past the polynomial exp's clamps (±87): measured worst 2.4e-7 relative (the polynomial).
    func testSiLUMatchesDefinition() {
        var values: [Float] = [
            -1e30, -200, -88, -87.5, -86, -30, -10, -1, -1e-3, 0, 1e-3, 1, 10, 30, 88, 89, 200, 1e30,
        ]
        values += (0..<2000).map { Float($0 - 1000) / 50 }
        let y = Tensor(shape: [values.count], data: values).silu()
        for (x, got) in zip(values, y.data) {
            let expected = Double(x) / (1 + Foundation.exp(-Double(x)))
            XCTAssertEqual(Double(got), expected, accuracy: 1e-6 * max(1, abs(expected)), "silu(\(x))")
        }
        XCTAssertTrue(Tensor(shape: [1], data: [.nan]).silu().data[0].isNaN, "NaN must reach the step's finite check")
    }

    /// GELU (erf form), its derivative and quick_gelu against their definitions in double
    /// precision, over the range models produce and past erf's ±4 clamp. Measured worst (relative,
    /// or absolute below 1): gelu 5.9e-7, gelu' 1.7e-7, quick_gelu 1.8e-7, its slope 9.7e-7.
    func testGELUAndQuickGELUMatchDefinitions() {
        var values: [Float] = [-1e30, -100, -10, -6, -5.7, -4, -1e-3, 0, 1e-3, 4, 5.7, 6, 10, 100, 1e30]
        values += (0..<2000).map { Float($0 - 1000) / 100 }
        let x = Tensor(shape: [values.count], data: values).asVariable()
        let gelu = x.gelu()
        let slope = Autograd.gradients(of: gelu.sum(), withRespectTo: [x])[0]
        let quick = x.quickGelu()
        let quickSlope = Autograd.gradients(of: quick.sum(), withRespectTo: [x])[0]
        var worst = (gelu: 0.0, slope: 0.0, quick: 0.0, quickSlope: 0.0)
        for (i, v) in values.enumerated() where abs(v) < 1e29 {
            let d = Double(v)
            let cdf = 0.5 * (1 + Foundation.erf(d / 2.0.squareRoot()))
            let pdf = Foundation.exp(-0.5 * d * d) / (2 * Double.pi).squareRoot()
            let s = 1 / (1 + Foundation.exp(-1.702 * d))
            func err(_ got: Float, _ want: Double) -> Double { abs(Double(got) - want) / max(1, abs(want)) }
            worst.gelu = max(worst.gelu, err(gelu.data[i], d * cdf))
            worst.slope = max(worst.slope, err(slope.data[i], cdf + d * pdf))
            worst.quick = max(worst.quick, err(quick.data[i], d * s))
            worst.quickSlope = max(worst.quickSlope, err(quickSlope.data[i], s + 1.702 * d * s * (1 - s)))
        }
        XCTAssertLessThan(worst.gelu, 1e-6)
        XCTAssertLessThan(worst.slope, 1e-6)
        XCTAssertLessThan(worst.quick, 1e-6)
        XCTAssertLessThan(worst.quickSlope, 1e-6)
    }

    /// The fused group norm + SiLU gives the pair's values and gradients, in one sample and split
    /// over cores in four: measured within 2.0e-7 of the largest value (the C kernel rounds the
    /// affine's multiply-add once, as a fused multiply-add).
    func testFusedGroupNormSiLUEqualsThePair() {
        for shape in [[1, 8, 5, 3], [4, 32, 32, 32]] {
            let x = random(shape, seed: 30) * 2 + 0.5
            let w = random([shape[1]], seed: 31)
            let b = random([shape[1]], seed: 32)
            let seed = random(shape, seed: 33)
            func run(fused: Bool) -> [[Float]] {
                let (xv, wv, bv) = (x.asVariable(), w.asVariable(), b.asVariable())
                let y =
                    fused
                    ? xv.groupNormSiLU(groups: 4, weight: wv, bias: bv)
                    : xv.groupNorm(groups: 4, weight: wv, bias: bv).silu()
                return [y.data] + Autograd.gradients(of: (y * seed).sum(), withRespectTo: [xv, wv, bv]).map(\.data)
            }
            let (fused, pair) = (run(fused: true), run(fused: false))
            for (name, (a, b)) in zip(["output", "dx", "dw", "db"], zip(fused, pair)) {
                let scale = b.map(abs).max()!
                let worst = zip(a, b).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 1e-6 * scale, "\(name) of \(shape)")
            }
        }
    }

    func testParallelGroupNormMatchesPerSample() {
        // Four samples together are large enough to split groups across cores; one alone is not.
        let x = random([4, 32, 32, 32], seed: 18)
        let w = random([32], seed: 19)
        let b = random([32], seed: 20)
        let xv = x.asVariable()
        let seed = random([4, 32, 32, 32], seed: 21)
        let whole = xv.groupNorm(groups: 8, weight: w, bias: b)
        let grad = Autograd.gradients(of: (whole * seed).sum(), withRespectTo: [xv])[0]
        for n in 0..<4 {
            let xn = x.narrowed(axis: 0, start: n, length: 1).asVariable()
            let part = xn.groupNorm(groups: 8, weight: w, bias: b)
            let gn = Autograd.gradients(
                of: (part * seed.narrowed(axis: 0, start: n, length: 1)).sum(), withRespectTo: [xn])[0]
            XCTAssertEqual(whole.narrowed(axis: 0, start: n, length: 1).data, part.data)
            XCTAssertEqual(grad.narrowed(axis: 0, start: n, length: 1).data, gn.data)
        }
    }

    func testBilinearMatchesPyTorchConvention() {
        // F.interpolate([[0, 1], [2, 3]], size=(4, 4), mode="bilinear", align_corners=False)
        let x = Tensor(shape: [1, 1, 2, 2], data: [0, 1, 2, 3])
        assertClose(
            x.resizeBilinear(height: 4, width: 4).data,
            [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3])
        XCTAssertEqual(x.upsampleNearest2x().data, [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3])
    }

    func testAntialiasedBicubicWorkedExample() {
        // 4 → 2 (Pillow's BICUBIC / F.interpolate(mode="bicubic", antialias=True)): output 0 is
        // centred on input coordinate 1.0 with support 4, so its taps are the a = −0.5 cubic at
        // (−0.25, 0.25, 0.75, 1.25) = (0.8671875, 0.8671875, 0.2265625, −0.0703125) / 1.890625.
        let x = Tensor(shape: [1, 1, 1, 4], data: [1, 2, 3, 4])
        assertClose(x.resizeBicubicAntialiased(height: 1, width: 2).data, [3 / 1.890625, 5 - 3 / 1.890625])
        // Weights sum to one (constants stay), an axis of the same size is untouched.
        let c = Tensor(shape: [1, 2, 5, 7], data: [Float](repeating: 0.3, count: 70))
        assertClose(c.resizeBicubicAntialiased(height: 3, width: 11).data, [Float](repeating: 0.3, count: 66))
        let r = random([1, 1, 3, 4], seed: 36)
        XCTAssertEqual(r.resizeBicubicAntialiased(height: 3, width: 4).data, r.data)
    }

    func testMatmulAndLinearAgreeWithLoops() {
        let a = random([3, 4, 5], seed: 9)
        let b = random([5, 2], seed: 10)
        var expected = [Float]()
        for i in 0..<12 {
            for j in 0..<2 {
                expected.append((0..<5).reduce(Float(0)) { $0 + a.data[i * 5 + $1] * b.data[$1 * 2 + j] })
            }
        }
        assertClose(a.matmul(b).data, expected)
        let bt = b.transposed(0, 1)
        assertClose(a.linear(bt).data, expected)
    }

    func testVectorisedExpMatchesLibm() {
        let xs = (0..<4001).map { Float($0 - 3000) * 0.03 } + [-.infinity, -100, 0]  // softmax feeds x − max ≤ 0
        var ys = [Float](repeating: 0, count: xs.count)
        _ = xs.withUnsafeBufferPointer { x in
            ys.withUnsafeMutableBufferPointer { y in
                expShiftedSum(x.baseAddress!, y.baseAddress!, xs.count, shift: 0)
            }
        }
        for (x, y) in zip(xs, ys) {
            let expected = Foundation.exp(x)
            XCTAssertLessThanOrEqual(abs(y - expected), 4e-7 * expected + 1e-37, "exp(\(x))")
        }
    }

    func testSeededNoiseIsDeterministic() {
        XCTAssertEqual(Tensor.randomNormal([64], seed: 42).data, Tensor.randomNormal([64], seed: 42).data)
        XCTAssertNotEqual(Tensor.randomNormal([64], seed: 42).data, Tensor.randomNormal([64], seed: 43).data)
        let sample = Tensor.randomNormal([100_000], seed: 1).data
        let mean = sample.reduce(0, +) / Float(sample.count)
        let variance = sample.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(sample.count)
        XCTAssertEqual(mean, 0, accuracy: 0.02)
        XCTAssertEqual(variance, 1, accuracy: 0.02)
    }

    func testBLASRunsOnBestKernelsTheCPUSupports() {
        let config = BLAS.ensureConfigured()
        XCTAssertTrue(BLAS.selfCheckPasses())
        let flags = BLAS.cpuFlags()
        if ProcessInfo.processInfo.environment["MUSE_BLAS_CORE"] == nil, flags.contains("avx2") {
            XCTAssertNotEqual(config.core.lowercased(), "prescott", "\(config)")
        }
    }
}
