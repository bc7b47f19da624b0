// Vectorised exp for softmax: libm's expf per element dominated attention time.
// Cephes-style range reduction x = n·ln2 + r, |r| ≤ ln2/2, with a degree-6 polynomial;
// relative error about 2e-7 (checked against expf in ForwardTests).

@inline(__always)
func expSIMD(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // Explicit masks: the generic clamped(lowerBound:upperBound:) is not specialised here.
    let clamped = x.replacing(with: -87.3, where: x .< -87.3).replacing(with: 88.3, where: x .> 88.3)
    // Adding 1.5·2²³ rounds to an integer in the low mantissa bits: n and its Int32 bits
    // without the generic (scalar) SIMD conversions.
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let shifted = clamped * 1.44269504088896341 + magic
    let n = shifted - magic
    // Two-part ln2 keeps the reduction exact in float32.
    var r = clamped - n * 0.693359375
    r = r + n * 2.12194440e-4
    var p = SIMD8<Float>(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    p = p * r * r + r + 1
    let integer = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
    let bits = (integer &+ 127) &<< 23
    let scaled = p * unsafeBitCast(bits, to: SIMD8<Float>.self)
    // exp(−∞) and anything below the float range is exactly 0 (masked attention scores).
    return scaled.replacing(with: 0, where: x .< -87.3)
}

/// y[i] = exp(x[i] − shift); returns Σ y.
@inline(__always)
func expShiftedSum(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
    var total = SIMD8<Float>(repeating: 0)
    var i = 0
    let rawX = UnsafeRawPointer(x), rawY = UnsafeMutableRawPointer(y)
    while i + 8 <= n {
        let v = expSIMD(rawX.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - shift)
        rawY.storeBytes(of: v, toByteOffset: i * 4, as: SIMD8<Float>.self)
        total += v
        i += 8
    }
    var tail = total.sum()
    if i < n {
        var chunk = SIMD8<Float>(repeating: -.infinity)
        for j in i..<n { chunk[j - i] = x[j] - shift }
        let v = expSIMD(chunk)
        for j in i..<n { y[j] = v[j - i]; tail += v[j - i] }
    }
    return tail
}
