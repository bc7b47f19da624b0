import Foundation

/// One recorded op (or a leaf variable, with no parents and no backward): the nodes of its
/// inputs (nil for those that need no gradient) and the function from its output gradient
/// to theirs.
final class GradNode {
    let shape: [Int]
    let parents: [GradNode?]
    let backward: ((Tensor) -> [Tensor?])?
    init(shape: [Int], parents: [GradNode?], backward: ((Tensor) -> [Tensor?])?) {
        self.shape = shape
        self.parents = parents
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
    public static func gradients(
        of output: Tensor, withRespectTo inputs: [Tensor],
        seed: Tensor? = nil
    ) -> [Tensor] {
        precondition(
            seed != nil || output.count == 1,
            "gradients(of:) needs a scalar output or a seed, got shape \(output.shape)")
        guard let root = output.gradNode else { return inputs.map { Tensor.zeros($0.shape) } }
        var grads: [ObjectIdentifier: Tensor] = [:]
        grads[ObjectIdentifier(root)] = seed ?? Tensor(shape: output.shape, data: [1])
        let wanted = Set(inputs.compactMap { $0.gradNode.map(ObjectIdentifier.init) })
        noGrad {
            for node in topologicalOrder(from: root) {
                let id = ObjectIdentifier(node)
                guard let backward = node.backward, let grad = grads[id] else { continue }
                // Interior gradients are dropped once used, so memory follows the frontier.
                if !wanted.contains(id) { grads[id] = nil }
                for (parent, g) in zip(node.parents, backward(grad)) {
                    guard let parent, let g else { continue }
                    precondition(g.shape == parent.shape, "VJP gave \(g.shape) for an input of shape \(parent.shape)")
                    let key = ObjectIdentifier(parent)
                    grads[key] = grads[key].map { $0 + g } ?? g
                }
            }
        }
        return inputs.map { input in input.gradNode.flatMap { grads[ObjectIdentifier($0)] } ?? Tensor.zeros(input.shape)
        }
    }

    /// Nodes in an order where each comes before every node it was computed from.
    static func topologicalOrder(from root: GradNode) -> [GradNode] {
        var visited = Set<ObjectIdentifier>([ObjectIdentifier(root)])
        var postOrder: [GradNode] = []
        // Iterative DFS: UNet graphs are deep enough to overflow a recursive one.
        var stack: [(GradNode, Int)] = [(root, 0)]
        while let (node, next) = stack.popLast() {
            if next < node.parents.count {
                stack.append((node, next + 1))
                if let parent = node.parents[next], visited.insert(ObjectIdentifier(parent)).inserted {
                    stack.append((parent, 0))
                }
            } else {
                postOrder.append(node)
            }
        }
        return postOrder.reversed()
    }
}

/// Gradient checkpointing: a block's activations are recomputed in the backward pass
/// instead of being kept from the forward one. The recomputed forward is the same bit for
/// bit; gradients differ only in the order a tensor's contributions are summed (a few 1e-7),
/// the same on every run; memory falls to the blocks' inputs plus one block's activations at
/// a time, for one more forward of each block.
extension Autograd {
    /// On: `checkpointed` blocks keep only their inputs. `MUSE_RECOMPUTE=1` turns it on for
    /// the process (tests switch it to compare); like the recording flag, not for sharing.
    nonisolated(unsafe) public static var recomputeActivations =
        ProcessInfo.processInfo.environment["MUSE_RECOMPUTE"] == "1"

    /// `body(inputs)`, recorded as one op whose backward runs `body` again with recording on
    /// and back-propagates through that copy. `body` must be a pure function of `inputs`
    /// (weights it captures are constants). Plain `body(inputs)` when recomputation is off,
    /// nothing is recorded, or no input needs a gradient.
    public static func checkpointed(_ inputs: [Tensor], _ body: @escaping ([Tensor]) -> Tensor) -> Tensor {
        guard recomputeActivations, isRecording, inputs.contains(where: \.requiresGrad) else { return body(inputs) }
        let output = noGrad { body(inputs) }
        let saved = inputs.map { (value: $0.detached(), needsGradient: $0.requiresGrad) }
        return Tensor.result(shape: output.shape, data: output.data, inputs: inputs) { gradient in
            // Backward closures run with recording off; this one records its own copy.
            let depth = recordingDisabledDepth
            recordingDisabledDepth = 0
            defer { recordingDisabledDepth = depth }
            let replay = saved.map { $0.needsGradient ? $0.value.asVariable() : $0.value }
            let variables = replay.filter(\.requiresGrad)
            var grads = gradients(of: body(replay), withRespectTo: variables, seed: gradient).makeIterator()
            return saved.map { $0.needsGradient ? grads.next() : nil }
        }
    }
}
