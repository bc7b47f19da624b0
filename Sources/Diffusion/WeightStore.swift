import Foundation
import Tensor

/// How layers keep their weights: `MUSE_WEIGHTS_DTYPE=bf16` halves their memory (SD 1.5's
/// linear and convolution weights plus the ViT-L/14 towers: about 6 GB → 3 GB) by storing
/// bfloat16 and widening to float32 on each use; all arithmetic stays float32. The rounding
/// (8 significant bits) moves outputs by about 1e-2 relative: a different model, not the
/// same one faster — results are not comparable with float32 runs, and every worker of a
/// batch must use the same setting. Meant with `MUSE_RECOMPUTE=1`, where a block's widened
/// weights live only while that block runs.
public enum WeightPrecision: String, Sendable {
    case f32
    case bf16

    /// Read when a layer is built; `MUSE_WEIGHTS_DTYPE` (f32 when unset).
    nonisolated(unsafe) public static var current: WeightPrecision =
        ProcessInfo.processInfo.environment["MUSE_WEIGHTS_DTYPE"].flatMap(WeightPrecision.init(rawValue:)) ?? .f32
}

/// One layer's weight as stored: the float32 tensor, or its bfloat16 bits.
public final class WeightStore: @unchecked Sendable {
    public let shape: [Int]
    private let full: Tensor?
    private let halves: [UInt16]?

    public init(_ weight: Tensor, precision: WeightPrecision = .current) {
        shape = weight.shape
        switch precision {
        case .f32:
            full = weight
            halves = nil
        case .bf16:
            full = nil
            halves = weight.data.map(Self.bfloat16)
        }
    }

    /// Bytes the store holds.
    public var bytes: Int { full.map { $0.count * 4 } ?? (halves?.count ?? 0) * 2 }

    /// The float32 weight: the stored tensor, or a fresh widening of the bfloat16 bits
    /// (exact: every bfloat16 is a float32).
    public var tensor: Tensor {
        if let full { return full }
        let h = halves!
        let data = [Float](unsafeUninitializedCapacity: h.count) { buffer, initialized in
            h.withUnsafeBufferPointer { src in
                for i in 0..<src.count { buffer[i] = Float(bitPattern: UInt32(src[i]) << 16) }
            }
            initialized = h.count
        }
        return Tensor(shape: shape, data: data)
    }

    /// float32 → bfloat16, rounding to nearest, ties to even (NaN stays NaN).
    static func bfloat16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x40 }
        return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }
}
