import Foundation
import XCTest

@testable import Vocabulary

final class SettingsTests: XCTestCase {
    func testDecodeTakesDefaultsAndNamesAreSnakeCase() throws {
        let json = #"{"inner_iterations": 5, "similar_emotions": {"awe": []}}"#
        let s = try JSONDecoder().decode(MUSESettings.self, from: Data(json.utf8))
        XCTAssertEqual(s.innerIterations, 5)
        XCTAssertEqual(s.learningRate, MUSESettings().learningRate)
        XCTAssertEqual(s.similarEmotions.similar(to: .awe), [])
        XCTAssertEqual(
            s.similarEmotions.similar(to: .fear), [.anger, .disgust, .sadness], "other targets keep their defaults")
        XCTAssertEqual(try JSONDecoder().decode(MUSESettings.self, from: JSONEncoder().encode(s)), s)
        // Every field is written, under the name specs use.
        let written = try JSONSerialization.jsonObject(with: JSONEncoder().encode(MUSESettings())) as! [String: Any]
        XCTAssertEqual(Set(written.keys), Set(MUSESettings.settingNames))
        XCTAssertTrue(MUSESettings.settingNames.allSatisfy { $0 == $0.lowercased() && !$0.contains("-") })
    }

    func testFloatsAreWrittenAsTheyWereGiven() throws {
        var s = MUSESettings()
        s.learningRate = 0.02
        let text = String(decoding: try JSONEncoder().encode(s), as: UTF8.self)
        XCTAssertTrue(text.contains(#""learning_rate":0.02"#), text)
    }

    func testUnknownNamesWrongKindsAndRangesAreErrorsNamingTheSetting() {
        let decode = { (json: String) in try JSONDecoder().decode(MUSESettings.self, from: Data(json.utf8)) }
        assertThrows(try decode(#"{"innerIterations": 5}"#), containing: ["innerIterations", "unknown setting"])
        assertThrows(try decode(#"{"inner_iterations": "five"}"#), containing: ["inner_iterations", "an integer"])
        assertThrows(try decode(#"{"inner_iterations": 0}"#), containing: ["inner_iterations", "outside 1...1000"])
        assertThrows(try decode(#"{"learning_rate": -1}"#), containing: ["learning_rate", "(0, 10.0]"])
        assertThrows(try decode(#"{"universal_scale": 1e30}"#), containing: ["universal_scale"])
        assertThrows(try decode(#"{"preview": "full"}"#), containing: ["preview", "decoded, vae-decode, latent-rgb"])
        assertThrows(
            try decode(#"{"similar_emotions": {"awe": ["awe"]}}"#), containing: ["similar_emotions", "lists itself"])
        assertThrows(
            try decode(#"{"min_start_fraction": 0.9}"#),
            containing: ["min_start_fraction", "exceeds latest_start_fraction"])
        var bad = MUSESettings()
        bad.adamBeta1 = .nan
        assertThrows(try bad.validate(), containing: ["adam_beta1", "finite"])
    }

    func testJobSettingsBoundsEveryNumber() {
        XCTAssertNoThrow(try JobSettings().validate())
        for (settings, key) in [
            (JobSettings(steps: 0), "steps"), (JobSettings(steps: 1001), "steps"),
            (JobSettings(guidance: .nan), "guidance"), (JobSettings(guidance: 1e30), "guidance"),
            (JobSettings(width: 5), "width"), (JobSettings(strength: 0), "strength"),
        ] {
            assertThrows(try settings.validate(), containing: [key])
        }
    }

    func testImageSizeRules() throws {
        let sd15 = try ImageSizeRules(unetSampleSize: 64, unetLevels: 4, vaeLevels: 4)
        XCTAssertEqual(sd15.nativeSide, 512)
        XCTAssertEqual(sd15.multiple, 64)
        XCTAssertNil(sd15.problem(width: 768, height: 512))
        XCTAssertNotNil(sd15.problem(width: 500, height: 512))
        // Values that would overflow the shifts are refused, not computed.
        assertThrows(
            try ImageSizeRules(unetSampleSize: 64, unetLevels: 70, vaeLevels: 4),
            containing: ["unet block_out_channels"])
        assertThrows(
            try ImageSizeRules(unetSampleSize: 1 << 60, unetLevels: 4, vaeLevels: 4), containing: ["sample_size"])
        assertThrows(try ImageSizeRules(unetSampleSize: 64, unetLevels: 0, vaeLevels: 4), containing: ["outside 1...8"])
    }
}
