import Foundation

/// A dense, row-major float32 tensor. Values are immutable once made; every op returns a
/// new tensor. When an input requires gradients (and recording is on) the op attaches a
/// `GradNode`, so inference paths build no graph at all.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let data: [Float]
    public let requiresGrad: Bool
    let gradNode: GradNode?

    public init(shape: [Int], data: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == data.count,
                     "shape \(shape) holds \(shape.reduce(1, *)) values, got \(data.count)")
        self.shape = shape
        self.data = data
        self.requiresGrad = false
        self.gradNode = nil
    }

    init(shape: [Int], data: [Float], requiresGrad: Bool, gradNode: GradNode?) {
        self.shape = shape
        self.data = data
        self.requiresGrad = requiresGrad
        self.gradNode = gradNode
    }

    public convenience init(_ scalar: Float) { self.init(shape: [], data: [scalar]) }

    public static func zeros(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        Tensor(shape: shape, data: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    /// A leaf with the same values that gradients can be taken with respect to.
    public func asVariable() -> Tensor {
        Tensor(shape: shape, data: data, requiresGrad: true, gradNode: nil)
    }

    /// The same values, cut off from any graph.
    public func detached() -> Tensor {
        (requiresGrad || gradNode != nil) ? Tensor(shape: shape, data: data) : self
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }
    public var scalar: Float {
        precondition(data.count == 1, "scalar of a tensor with shape \(shape)")
        return data[0]
    }

    public var description: String {
        let head = data.prefix(6).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(data.count > 6 ? ", …" : "")]"
    }

    /// Build the result of an op: attaches `backward` only when some input needs gradients.
    /// `backward` maps the output's gradient to one gradient per input (nil: none needed).
    static func result(shape: [Int], data: [Float], inputs: [Tensor],
                       backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        if Autograd.isRecording && inputs.contains(where: { $0.requiresGrad }) {
            let node = GradNode(inputs: inputs, backward: backward)
            return Tensor(shape: shape, data: data, requiresGrad: true, gradNode: node)
        }
        return Tensor(shape: shape, data: data)
    }
}

/// Fill a new array of `count` floats through a pointer: no zero-fill, no bounds checks.
@inline(__always)
func makeArray(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        if count > 0 { body(buffer.baseAddress!) }
        initialized = count
    }
}

extension Array where Element == Float {
    @inline(__always)
    func withPointer<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try withUnsafeBufferPointer { try body($0.baseAddress ?? UnsafePointer(bitPattern: 8)!) }
    }
}
