import Foundation
import XCTest

@testable import Vocabulary

final class EmotionTests: XCTestCase {
    func testEmoSetOrderAndPolarity() {
        XCTAssertEqual(
            Emotion.allCases.map(\.rawValue),
            ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"])
        XCTAssertEqual(
            Emotion.allCases.filter { $0.polarity == .positive }, [.amusement, .awe, .contentment, .excitement])
        XCTAssertEqual(Emotion.sadness.index, 7)
        XCTAssertEqual(Emotion(index: 1), .awe)
        XCTAssertNil(Emotion(index: 8))
        for e in Emotion.allCases { XCTAssertEqual(Emotion.allCases[e.index], e) }
    }

    func testParsing() throws {
        XCTAssertEqual(try Emotion.parse("Awe"), .awe)
        XCTAssertEqual(try Emotion.parse("  SADNESS\n"), .sadness)
        assertThrows(try Emotion.parse("joy"), containing: ["unknown emotion 'joy'", Emotion.validNames])
        assertThrows(try Emotion.parse(""), containing: ["unknown emotion ''", "amusement, awe"])
        XCTAssertEqual(try SynthesisMethod.parse("muse-no-inh"), .museNoInh)
        XCTAssertEqual(try SynthesisMethod.parse("Prompt-Only"), .promptOnly)
        assertThrows(
            try SynthesisMethod.parse("muse-fast"),
            containing: [
                "unknown method 'muse-fast'",
                "muse, prompt-only, universal-guidance, muse-no-inh, muse-no-sim, muse-fixed-timing, muse-no-token-opt",
            ])
    }

    func testSimilarEmotions() throws {
        let map = SimilarEmotions.samePolarity
        XCTAssertEqual(map.similar(to: .awe), [.amusement, .contentment, .excitement])
        XCTAssertEqual(map.similar(to: .fear), [.anger, .disgust, .sadness])
        var custom = map
        try custom.set(.awe, [.excitement])
        XCTAssertEqual(custom.similar(to: .awe), [.excitement])
        assertThrows(try custom.set(.awe, [.awe]), containing: ["awe lists itself"])
        let json = try JSONEncoder().encode(custom)
        XCTAssertEqual(try JSONDecoder().decode(SimilarEmotions.self, from: json), custom)
        assertThrows(
            try JSONDecoder().decode(SimilarEmotions.self, from: Data(#"{"awe": ["joy"]}"#.utf8)),
            containing: ["unknown emotion 'joy'"])
    }
}

func assertThrows<T>(
    _ body: @autoclosure () throws -> T, containing fragments: [String],
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        let text = "\(error)"
        for f in fragments { XCTAssertTrue(text.contains(f), "'\(text)' lacks '\(f)'", file: file, line: line) }
    }
}
