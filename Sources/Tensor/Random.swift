import Foundation

/// SplitMix64: tiny, seedable, the same sequence on every platform and build.
public struct SplitMix64: RandomNumberGenerator, Sendable, Codable, Equatable {
    public private(set) var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal by Box–Muller; both outputs of a pair are used, in order.
    public mutating func normals(_ count: Int) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(count)
        while out.count < count {
            let u1 = max(nextUniform(), 0x1p-53)
            let u2 = nextUniform()
            let r = (-2 * Foundation.log(u1)).squareRoot()
            out.append(Float(r * cos(2 * .pi * u2)))
            if out.count < count { out.append(Float(r * sin(2 * .pi * u2))) }
        }
        return out
    }
}

extension Tensor {
    /// Standard-normal tensor from a seed: identical bytes on every platform and build.
    public static func randomNormal(_ shape: [Int], seed: UInt64) -> Tensor {
        var generator = SplitMix64(seed: seed)
        return Tensor(shape: shape, data: generator.normals(shape.reduce(1, *)))
    }

    public static func randomUniform(_ shape: [Int], seed: UInt64, range: ClosedRange<Float> = 0...1) -> Tensor {
        var generator = SplitMix64(seed: seed)
        let span = Double(range.upperBound - range.lowerBound)
        return Tensor(
            shape: shape,
            data: (0..<shape.reduce(1, *)).map { _ in
                range.lowerBound + Float(generator.nextUniform() * span)
            })
    }
}
