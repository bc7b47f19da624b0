import Foundation
import Support
import XCTest

@testable import Jobs

/// The typed contracts of the wire formats: `JobStatus`, the two kinds of `ModelSet`,
/// `JobResult` and `DeadLetter` — their errors name what is wrong.
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

    // MARK: JobResult

    static func resultFields() throws -> [String: Data] {
        let png = Data([1, 2, 3])
        let result = JobResult(jobID: "j", epoch: 4, worker: "w", png: png, metrics: WireFormatTests.metrics(png: png))
        var fields = Dictionary(uniqueKeysWithValues: try result.fields())
        // What the queue's publish script stamps.
        fields["job"] = Data("j".utf8)
        fields["epoch"] = Data("4".utf8)
        fields["worker"] = Data("w".utf8)
        return fields
    }

    func testResultRoundTrip() throws {
        let fields = try Self.resultFields()
        let result = try JobResult(fields: fields)
        XCTAssertEqual(result.jobID, "j")
        XCTAssertEqual(result.epoch, 4)
        XCTAssertEqual(result.worker, "w")
        XCTAssertEqual(result.png, Data([1, 2, 3]))
        XCTAssertEqual(result.metrics, WireFormatTests.metrics(png: Data([1, 2, 3])))
        var again = Dictionary(uniqueKeysWithValues: try result.fields())
        XCTAssertEqual(again["metrics"], try CanonicalJSON.encode(result.metrics))
        for stamp in ["job", "epoch", "worker"] { again[stamp] = fields[stamp] }
        XCTAssertEqual(again, fields)
        XCTAssertEqual(Set(JobResult.Field.allCases.map(\.rawValue)), Set(fields.keys))
    }

    func testResultMissingFieldIsNamed() throws {
        for field in JobResult.Field.allCases {
            var fields = try Self.resultFields()
            fields[field.rawValue] = nil
            XCTAssertThrowsError(try JobResult(fields: fields)) { error in
                XCTAssertEqual(
                    error as? StreamRecordError,
                    StreamRecordError(record: "result", field: field.rawValue, problem: .missing))
                XCTAssertEqual("\(error)", "result has no '\(field.rawValue)' field")
            }
        }
    }

    func testResultBadFieldIsNamed() throws {
        var fields = try Self.resultFields()
        fields["epoch"] = Data("x".utf8)
        XCTAssertThrowsError(try JobResult(fields: fields)) { error in
            XCTAssertEqual("\(error)", "result field 'epoch' is not a number: 'x'")
        }
        fields = try Self.resultFields()
        fields["metrics"] = Data("{}".utf8)
        XCTAssertThrowsError(try JobResult(fields: fields)) { error in
            XCTAssertEqual((error as? StreamRecordError)?.field, "metrics")
            XCTAssertTrue("\(error)".hasPrefix("result field 'metrics' is not JobMetrics JSON: "), "\(error)")
        }
    }

    func testStampOfADamagedResult() throws {
        let damaged = ["job": Data("j".utf8), "png": Data("garbage".utf8), "epoch": Data("x".utf8)]
        XCTAssertThrowsError(try JobResult(fields: damaged))
        let stamp = try XCTUnwrap(JobResult.Stamp(fields: damaged))
        XCTAssertEqual(stamp.jobID, "j")
        XCTAssertNil(stamp.epoch)
        XCTAssertNil(stamp.worker)
        XCTAssertNil(JobResult.Stamp(fields: ["png": Data()]), "names no job")
        XCTAssertEqual(JobResult.Stamp(fields: try Self.resultFields())?.epoch, 4)
    }

    // MARK: DeadLetter

    static let letterFields: [String: Data] = [
        "job": Data("j".utf8), "error": Data("boom".utf8), "attempts": Data("3".utf8), "worker": Data("w".utf8),
        "epoch": Data("7".utf8),
    ]

    func testDeadLetterRoundTrip() throws {
        let letter = try DeadLetter(fields: Self.letterFields)
        XCTAssertEqual(letter, DeadLetter(jobID: "j", error: "boom", attempts: 3, worker: "w", epoch: 7))
        XCTAssertEqual(letter.status, .failed)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: letter.fields()), Self.letterFields)
        var cancelled = Self.letterFields
        cancelled["cancelled"] = Data("1".utf8)
        let c = try DeadLetter(fields: cancelled)
        XCTAssertTrue(c.cancelled)
        XCTAssertEqual(c.status, .cancelled)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: c.fields()), cancelled)
    }

    func testDeadLetterMissingFieldIsNamed() throws {
        for field in ["job", "error", "worker"] {
            var fields = Self.letterFields
            fields[field] = nil
            XCTAssertThrowsError(try DeadLetter(fields: fields)) { error in
                XCTAssertEqual(
                    error as? StreamRecordError,
                    StreamRecordError(record: "dead letter", field: field, problem: .missing))
                XCTAssertEqual("\(error)", "dead letter has no '\(field)' field")
            }
        }
        var fields = Self.letterFields
        fields["cancelled"] = Data("0".utf8)
        XCTAssertThrowsError(try DeadLetter(fields: fields)) { error in
            XCTAssertEqual("\(error)", "dead letter field 'cancelled' is '0', not '1'")
        }
    }

    /// A damaged job record's numbers are copied into its letter as found: read as nil, and the
    /// letter still reads (the collector writes its failure line).
    func testDeadLetterOfADamagedRecord() throws {
        var fields = Self.letterFields
        fields["attempts"] = Data("many".utf8)
        fields["epoch"] = Data("x".utf8)
        let letter = try DeadLetter(fields: fields)
        XCTAssertNil(letter.attempts)
        XCTAssertNil(letter.epoch)
        XCTAssertEqual(letter.fields().map(\.0), ["job", "error", "worker"])
    }
}
