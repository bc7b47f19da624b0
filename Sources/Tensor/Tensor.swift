import Foundation

/// A dense, row-major float32 tensor. Values are immutable once made; every op returns a
/// new tensor. When an input requires gradients (and recording is on) the op attaches a
/// `GradNode`, so inference paths build no graph at all. Nodes link to their inputs'
/// nodes, not to the inputs, so a tensor's values live only as long as something (the
/// caller, or a VJP that needs them) holds them.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: [Int]
    public let data: [Float]
    let gradNode: GradNode?

    public var requiresGrad: Bool { gradNode != nil }

    public init(shape: [Int], data: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(
            shape.reduce(1, *) == data.count,
            "shape \(shape) holds \(shape.reduce(1, *)) values, got \(data.count)")
        self.shape = shape
        self.data = data
        self.gradNode = nil
    }

    init(shape: [Int], data: [Float], gradNode: GradNode?) {
        self.shape = shape
        self.data = data
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
        Tensor(shape: shape, data: data, gradNode: GradNode(shape: shape, parents: [], backward: nil))
    }

    /// The same values (the same storage), cut off from any graph.
    public func detached() -> Tensor {
        gradNode != nil ? Tensor(shape: shape, data: data) : self
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
    /// `backward` maps the output's gradient to one gradient per input (nil: none needed);
    /// it should capture only what it needs (shapes, flags, the values its formula uses).
    static func result(
        shape: [Int], data: [Float], inputs: [Tensor],
        backward: @escaping (Tensor) -> [Tensor?]
    ) -> Tensor {
        if Autograd.isRecording && inputs.contains(where: { $0.requiresGrad }) {
            let node = GradNode(shape: shape, parents: inputs.map(\.gradNode), backward: backward)
            return Tensor(shape: shape, data: data, gradNode: node)
        }
        return Tensor(shape: shape, data: data)
    }

    /// This tensor's values for a VJP to keep, when `needed` (else nothing is kept).
    func saved(if needed: Bool) -> Tensor? { needed ? detached() : nil }
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
