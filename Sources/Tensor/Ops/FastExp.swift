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
