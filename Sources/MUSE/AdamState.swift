import Foundation
import Vocabulary

/// Adam's moments and step count for one parameter vector, as plain floats so they are
/// part of the saved synthesis state (resuming continues the same trajectory).
public struct AdamState: Codable, Equatable, Sendable {
    public var m: [Float]
    public var v: [Float]
    public var step: Int

    public init(count: Int) {
        m = [Float](repeating: 0, count: count)
        v = [Float](repeating: 0, count: count)
        step = 0
    }

    /// One bias-corrected Adam step (Kingma & Ba; torch.optim.Adam without weight decay).
    public mutating func update(_ parameter: inout [Float], gradient: [Float], settings s: MUSESettings) {
        precondition(parameter.count == m.count && gradient.count == m.count, "Adam: sizes differ")
        step += 1
        let b1 = s.adamBeta1
        let b2 = s.adamBeta2
        let correction1 = 1 - Float(pow(Double(b1), Double(step)))
        let correction2 = 1 - Float(pow(Double(b2), Double(step)))
        let stepSize = s.learningRate / correction1
        let root2 = correction2.squareRoot()
        for i in parameter.indices {
            let g = gradient[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            parameter[i] -= stepSize * m[i] / (v[i].squareRoot() / root2 + s.adamEpsilon)
        }
    }
}
