/// One recorded op: its inputs and the function from its output gradient to theirs.
final class GradNode {
    let inputs: [Tensor]
    let backward: (Tensor) -> [Tensor?]
    init(inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        self.inputs = inputs
        self.backward = backward
    }
}

/// Reverse-mode differentiation over the graph that ops attach to their results.
public enum Autograd {
    /// Off while backward closures run (their own ops must not record) and inside `noGrad`.
    /// The engine runs one synthesis per process thread; this is not meant to be shared.
    nonisolated(unsafe) static var recordingDisabledDepth = 0
    static var isRecording: Bool { recordingDisabledDepth == 0 }

    /// Run `body` without recording any graph, even for inputs that require gradients.
    public static func noGrad<R>(_ body: () throws -> R) rethrows -> R {
        recordingDisabledDepth += 1
        defer { recordingDisabledDepth -= 1 }
        return try body()
    }

    /// Gradients of the scalar `output` with respect to each of `inputs` (zeros where
    /// `output` does not depend on one).
    public static func gradients(of output: Tensor, withRespectTo inputs: [Tensor],
                                 seed: Tensor? = nil) -> [Tensor] {
        precondition(seed != nil || output.count == 1,
                     "gradients(of:) needs a scalar output or a seed, got shape \(output.shape)")
        let order = topologicalOrder(from: output)
        var grads: [ObjectIdentifier: Tensor] = [:]
        grads[ObjectIdentifier(output)] = seed ?? Tensor(shape: output.shape, data: [1])
        let wanted = Set(inputs.map(ObjectIdentifier.init))
        noGrad {
            for tensor in order {
                let id = ObjectIdentifier(tensor)
                guard let node = tensor.gradNode, let grad = grads[id] else { continue }
                // Interior gradients are dropped once used, so memory follows the frontier.
                if !wanted.contains(id) { grads[id] = nil }
                let inputGrads = node.backward(grad)
                for (input, g) in zip(node.inputs, inputGrads) {
                    guard input.requiresGrad, let g else { continue }
                    precondition(g.shape == input.shape,
                                 "VJP gave \(g.shape) for an input of shape \(input.shape)")
                    let key = ObjectIdentifier(input)
                    grads[key] = grads[key].map { $0 + g } ?? g
                }
            }
        }
        return inputs.map { grads[ObjectIdentifier($0)] ?? Tensor.zeros($0.shape) }
    }

    /// Nodes in an order where each comes before every node it was computed from.
    static func topologicalOrder(from root: Tensor) -> [Tensor] {
        var visited = Set<ObjectIdentifier>()
        var postOrder: [Tensor] = []
        // Iterative DFS: UNet graphs are deep enough to overflow a recursive one.
        var stack: [(Tensor, Int)] = [(root, 0)]
        visited.insert(ObjectIdentifier(root))
        while let (tensor, next) = stack.popLast() {
            let inputs = tensor.gradNode?.inputs ?? []
            if next < inputs.count {
                stack.append((tensor, next + 1))
                let child = inputs[next]
                if child.requiresGrad, visited.insert(ObjectIdentifier(child)).inserted {
                    stack.append((child, 0))
                }
            } else {
                postOrder.append(tensor)
            }
        }
        return postOrder.reversed()
    }
}
