import Foundation
import Vocabulary
import XCTest

@testable import MUSE

final class AdamTests: XCTestCase {
    func testAdamFirstStepMovesByLearningRate() {
        var adam = AdamState(count: 3)
        var p: [Float] = [1, 1, 1]
        var s = MUSESettings()
        s.learningRate = 0.1
        adam.update(&p, gradient: [2, -0.001, 0], settings: s)
        // Bias correction makes the first step lr·g/|g| (0 for g = 0).
        XCTAssertEqual(p[0], 0.9, accuracy: 1e-5)
        XCTAssertEqual(p[1], 1.1, accuracy: 1e-4)
        XCTAssertEqual(p[2], 1)
        XCTAssertEqual(adam.step, 1)
        adam.update(&p, gradient: [2, -0.001, 0], settings: s)
        XCTAssertEqual(p[0], 0.8, accuracy: 1e-5, "a constant gradient keeps the step at lr")
    }
}
