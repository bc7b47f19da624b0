import Foundation
import XCTest
@testable import MUSE

final class EmotionTests: XCTestCase {
    func testEmoSetOrderAndPolarity() {
        XCTAssertEqual(Emotion.allCases.map(\.rawValue),
                       ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"])
        XCTAssertEqual(Emotion.allCases.filter { $0.polarity == .positive }, [.amusement, .awe, .contentment, .excitement])
        XCTAssertEqual(Emotion.sadness.index, 7)
        XCTAssertEqual(Emotion(index: 1), .awe)
    }

    func testParsing() throws {
        XCTAssertEqual(try Emotion.parse("Awe"), .awe)
        XCTAssertEqual(try Emotion.parse("  SADNESS\n"), .sadness)
        assertThrows(try Emotion.parse("joy"), containing: ["unknown emotion 'joy'", Emotion.validNames])
        assertThrows(try Emotion.parse(""), containing: ["unknown emotion ''", "amusement, awe"])
        XCTAssertEqual(try SynthesisMethod.parse("muse-no-inh"), .museNoInh)
        XCTAssertEqual(try SynthesisMethod.parse("Prompt-Only"), .promptOnly)
        assertThrows(try SynthesisMethod.parse("muse-fast"),
                     containing: ["unknown method 'muse-fast'", "muse, prompt-only, universal-guidance, muse-no-inh, muse-no-sim, muse-fixed-timing, muse-no-token-opt"])
    }

    func testSimilarityMap() throws {
        let map = SimilarityMap.samePolarity
        XCTAssertEqual(map.similar(to: .awe), [.amusement, .contentment, .excitement])
        XCTAssertEqual(map.similar(to: .fear), [.anger, .disgust, .sadness])
        var custom = map
        try custom.set(.awe, [.excitement])
        XCTAssertEqual(custom.similar(to: .awe), [.excitement])
        assertThrows(try custom.set(.awe, [.awe]), containing: ["awe lists itself"])
        let json = try JSONEncoder().encode(custom)
        XCTAssertEqual(try JSONDecoder().decode(SimilarityMap.self, from: json), custom)
        assertThrows(try JSONDecoder().decode(SimilarityMap.self, from: Data(#"{"awe": ["joy"]}"#.utf8)),
                     containing: ["unknown emotion 'joy'"])
    }

    func testSettingsDecodeWithDefaultsAndValidate() throws {
        let s = try JSONDecoder().decode(MUSESettings.self, from: Data(#"{"innerIterations": 5, "similarity": {"awe": []}}"#.utf8))
        XCTAssertEqual(s.innerIterations, 5)
        XCTAssertEqual(s.learningRate, MUSESettings().learningRate)
        XCTAssertEqual(s.similarity.similar(to: .awe), [])
        XCTAssertEqual(s.similarity.similar(to: .fear), [.anger, .disgust, .sadness], "other targets keep their defaults")
        XCTAssertEqual(try JSONDecoder().decode(MUSESettings.self, from: JSONEncoder().encode(s)), s)
        var bad = MUSESettings()
        bad.minStartFraction = 0.9
        assertThrows(try bad.validate(), containing: ["minStartFraction must not exceed latestStartFraction"])
        bad = MUSESettings()
        bad.innerIterations = 0
        assertThrows(try bad.validate(), containing: ["innerIterations"])
    }

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
