import CKernels

// Softmax and exp live in C (Sources/CKernels), compiled per CPU level: Swift's SIMD types
// compile for baseline x86-64 here, which left exp 4-wide and the largest cost in attention.

/// y[i] = exp(x[i] − shift); returns Σ y (fixed order). Relative error ~2e-7 (ForwardTests).
@inline(__always)
func expShiftedSum(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
    muse_exp_shift_sum(x, y, n, shift)
}

/// Softmax of one row of `n` values; `x` and `y` may be the same buffer.
@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    muse_softmax_row(x, y, n)
}

/// y = silu(x·scale + shift) over n values, in chunks split over the engine's threads (each
/// value on its own, so the thread count does not change a bit).
func affineSiLU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, scale: Float, shift: Float) {
    forEachChunk(n) { start, length in muse_affine_silu(x + start, y + start, length, scale, shift) }
}

/// dh = g·silu'(x·scale + shift) over n values, split as affineSiLU.
func affineSiLUGradient(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dh: UnsafeMutablePointer<Float>, _ n: Int,
    scale: Float, shift: Float
) {
    forEachChunk(n) { start, length in muse_affine_silu_grad(x + start, g + start, dh + start, length, scale, shift) }
}

/// y = gelu(x) (erf form) over n values, split as affineSiLU.
func vectorGELU(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    forEachChunk(n) { start, length in muse_gelu(x + start, y + start, length) }
}

/// dx = g·gelu'(x) over n values, split as affineSiLU.
func vectorGELUGradient(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int
) {
    forEachChunk(n) { start, length in muse_gelu_grad(x + start, g + start, dx + start, length) }
}

/// Calls body(start, length) for consecutive chunks of n, in parallel when n is large.
private func forEachChunk(_ n: Int, _ body: (Int, Int) -> Void) {
    let chunk = 1 << 15
    parallelFor((n + chunk - 1) / chunk, work: n) { c in body(c * chunk, Swift.min(chunk, n - c * chunk)) }
}
