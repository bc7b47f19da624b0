import Foundation
import Tensor
import Vocabulary
import XCTest

@testable import MUSE

final class LossTests: XCTestCase {
    let logits = Tensor(shape: [1, 8], data: [0.3, 2.0, 1.5, -1, 0.2, -3, 0, 1.1])

    func probabilities(_ l: [Float]) -> [Float] {
        let m = l.max()!
        let e = l.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    func testLossMatchesTheFormula() {
        let loss = EmotionLoss(
            target: .sadness, inherent: .awe, similar: [.anger, .fear],
            lambdaInherent: 0.5, lambdaSimilar: 0.25)
        let (value, p) = loss(logits: logits)
        let q = probabilities(logits.data)
        let expected =
            -Foundation.log(q[7]) + 0.5 * -Foundation.log(1 - q[1])
            + 0.25 * (-Foundation.log(1 - q[4]) - Foundation.log(1 - q[6]))
        XCTAssertEqual(value.scalar, expected, accuracy: 1e-5)
        for i in 0..<8 { XCTAssertEqual(p.data[i], q[i], accuracy: 1e-6) }
    }

    func testLogComplementStaysFiniteWhenOneClassDominates() {
        let peaked = Tensor(shape: [1, 8], data: [80, 0, 0, 0, 0, 0, 0, 0]).asVariable()
        let value = EmotionLoss.logComplement(peaked.logSoftmax(), .amusement)
        // log(1 − p) = log(7·e^-80 / (1 + 7·e^-80)) ≈ log 7 − 80.
        XCTAssertEqual(value.scalar, Foundation.log(7) - 80, accuracy: 1e-3)
        let g = Autograd.gradients(of: value, withRespectTo: [peaked])[0]
        XCTAssertTrue(g.data.allSatisfy(\.isFinite))
        XCTAssertEqual(g.data[0], -1, accuracy: 1e-4, "pushing the dominant class down has full gradient")
    }

    func testGradientMatchesFiniteDifferences() {
        let loss = EmotionLoss(
            target: .awe, inherent: .contentment, similar: [.amusement, .excitement],
            lambdaInherent: 0.5, lambdaSimilar: 0.25)
        let x = logits.asVariable()
        let g = Autograd.gradients(of: loss(logits: x).loss, withRespectTo: [x])[0]
        for i in 0..<8 {
            var plus = logits.data
            var minus = logits.data
            plus[i] += 1e-2
            minus[i] -= 1e-2
            let fd =
                (loss(logits: Tensor(shape: [1, 8], data: plus)).loss.scalar
                    - loss(logits: Tensor(shape: [1, 8], data: minus)).loss.scalar) / 2e-2
            XCTAssertEqual(g.data[i], fd, accuracy: 2e-3, "logit \(i)")
        }
    }
}
