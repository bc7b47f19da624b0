import Foundation
import Support
import XCTest

@testable import Jobs

/// The typed contracts of the wire formats: `JobStatus` and the two kinds of `ModelSet`.
final class ContractsTests: XCTestCase {
    // MARK: JobStatus

    func testJobStatusRawValuesAreTheManifestSpellings() throws {
        XCTAssertEqual(JobStatus.allCases.map(\.rawValue), ["done", "failed", "cancelled"])
        for status in JobStatus.allCases {
            let json = try JSONEncoder().encode([status])
            XCTAssertEqual(String(decoding: json, as: UTF8.self), #"["\#(status.rawValue)"]"#)
            XCTAssertEqual(try JSONDecoder().decode([JobStatus].self, from: json), [status])
        }
    }

    func testUnknownStatusIsAnErrorNamingIt() throws {
        let line = try WireFormatTests.line(
            ManifestEntry(job: try WireFormatTests.job(), batchID: "b", status: .done, attempts: 1))
        let paused = line.replacingOccurrences(of: #""status":"done""#, with: #""status":"paused""#)
        XCTAssertNotEqual(paused, line)
        XCTAssertThrowsError(try JSONDecoder().decode(ManifestEntry.self, from: Data(paused.utf8))) { error in
            guard case DecodingError.dataCorrupted(let context) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(context.codingPath.map(\.stringValue), ["status"])
            XCTAssertEqual(context.debugDescription, "unknown job status 'paused' (one of done, failed, cancelled)")
        }
    }

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
