import Foundation
import Support
import XCTest

@testable import Jobs

/// The typed contracts of the wire formats.
final class ContractsTests: XCTestCase {
    // MARK: ModelSet

    func testLocationsAndFingerprintsAreDistinctTypesThatEncodeAlike() throws {
        XCTAssertNotEqual(ObjectIdentifier(ModelLocations.self), ObjectIdentifier(ModelFingerprints.self))
        let locations = ModelLocations(model: "a", tower: "b", head: nil, text: "c", promptTower: "d")
        let fingerprints = ModelFingerprints(model: "a", tower: "b", head: nil, text: "c", promptTower: "d")
        XCTAssertEqual(try CanonicalJSON.encode(locations), try CanonicalJSON.encode(fingerprints))
        XCTAssertEqual(
            String(decoding: try CanonicalJSON.encode(locations), as: UTF8.self),
            #"{"model":"a","prompt_tower":"d","text":"c","tower":"b"}"#)
        XCTAssertEqual(
            try JSONDecoder().decode(ModelLocations.self, from: try CanonicalJSON.encode(locations)), locations)
    }
}
