import Foundation
import Support
import XCTest

@testable import Imaging
@testable import Jobs

final class ManifestWriterTests: XCTestCase {
    struct Entry: Codable, Equatable {
        var jobID: String
        var emotion: String
        var png: String

        enum CodingKeys: String, CodingKey {
            case emotion, png
            case jobID = "job_id"
        }
    }

    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("manifest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    func testAppendSkipsDuplicatesAndReadsBackAfterReopen() throws {
        let url = dir.appendingPathComponent("manifest.jsonl")
        let w = try ManifestWriter(url: url)
        XCTAssertTrue(try w.append(Entry(jobID: "a", emotion: "awe", png: "out/a.png")))
        XCTAssertTrue(try w.append(Entry(jobID: "b", emotion: "fear", png: "out/b.png")))
        XCTAssertFalse(try w.append(Entry(jobID: "a", emotion: "other", png: "x")), "written once")
        w.close()
        let text = try String(contentsOf: url, encoding: .utf8)
        XCTAssertEqual(
            text,
            #"{"emotion":"awe","job_id":"a","png":"out/a.png"}"# + "\n"
                + #"{"emotion":"fear","job_id":"b","png":"out/b.png"}"# + "\n")

        // A restarted coordinator sees what is done and appends only the rest.
        let again = try ManifestWriter(url: url)
        XCTAssertEqual(again.jobIDs, ["a", "b"])
        XCTAssertFalse(try again.append(Entry(jobID: "b", emotion: "fear", png: "out/b.png")))
        XCTAssertTrue(try again.append(Entry(jobID: "c", emotion: "sadness", png: "out/c.png")))
        XCTAssertEqual(try ManifestWriter.readEntries(url, as: Entry.self).map(\.jobID), ["a", "b", "c"])
    }

    func testTornLastLineIsCutOnReopen() throws {
        let url = dir.appendingPathComponent("m.jsonl")
        try Data((#"{"job_id":"a"}"# + "\n" + #"{"job_id":"b","#).utf8).write(to: url)
        XCTAssertEqual(try ManifestWriter.readLines(url).count, 1)
        let w = try ManifestWriter(url: url)
        XCTAssertEqual(w.jobIDs, ["a"])
        XCTAssertTrue(try w.appendLine(Data(#"{"job_id":"b"}"#.utf8)))
        XCTAssertEqual(
            try String(contentsOf: url, encoding: .utf8), #"{"job_id":"a"}"# + "\n" + #"{"job_id":"b"}"# + "\n")
    }

    /// A last line that parses is a whole record, newline or not: it is kept (its result may
    /// already be gone from Redis) and the newline is added before the next append.
    func testCompleteLastLineWithoutNewlineIsKept() throws {
        let url = dir.appendingPathComponent("m.jsonl")
        try Data((#"{"job_id":"a"}"# + "\n" + #"{"job_id":"b"}"#).utf8).write(to: url)
        XCTAssertEqual(try ManifestWriter.readLines(url).count, 2)
        let w = try ManifestWriter(url: url)
        XCTAssertEqual(w.jobIDs, ["a", "b"])
        XCTAssertEqual(
            try String(contentsOf: url, encoding: .utf8), #"{"job_id":"a"}"# + "\n" + #"{"job_id":"b"}"# + "\n")
        XCTAssertFalse(try w.appendLine(Data(#"{"job_id":"b"}"#.utf8)), "b is collected")
        XCTAssertTrue(try w.appendLine(Data(#"{"job_id":"c"}"#.utf8)))
        XCTAssertEqual(try ManifestWriter.readLines(url).count, 3)
        w.close()
        // Whitespace alone after the last newline is nothing to keep.
        try Data((#"{"job_id":"a"}"# + "\n  ").utf8).write(to: url)
        XCTAssertEqual(try ManifestWriter(url: url).jobIDs, ["a"])
        XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), #"{"job_id":"a"}"# + "\n")
    }

    func testCorruptLineAndMissingIDAreErrors() throws {
        let url = dir.appendingPathComponent("bad.jsonl")
        try Data("{\"job_id\":\"a\"}\nnot json\n".utf8).write(to: url)
        XCTAssertThrowsError(try ManifestWriter(url: url)) { error in
            XCTAssertEqual(error as? ManifestError, .corruptLine(path: url.path, line: 2))
        }
        let w = try ManifestWriter(url: dir.appendingPathComponent("ok.jsonl"))
        XCTAssertThrowsError(try w.appendLine(Data(#"{"id":"x"}"#.utf8))) { error in
            XCTAssertEqual(error as? ManifestError, .missingID(key: "job_id"))
        }
    }
}

/// Reading a manifest names the file and line of a line it cannot use, and says what is wrong.
final class ManifestReadErrorsTests: XCTestCase {
    func testBadLinesAndFoldersAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("manifest-read-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent("manifest.jsonl")
        for (text, expected) in [
            ("\n{not json}\n", "line 2: not valid JSON"),
            (#"{"job_id": "a", "batch_id": "b", "status": "done"}"# + "\n", "line 1: no 'index'"),
        ] {
            try Data(text.utf8).write(to: url)
            XCTAssertThrowsError(try ManifestWriter.readEntries(url, as: ManifestEntry.self)) {
                XCTAssertTrue("\($0)".contains(url.path) && "\($0)".contains(expected), "\($0)")
            }
        }
        let folder = dir.appendingPathComponent("folder.jsonl")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        XCTAssertThrowsError(try ManifestWriter.readEntries(folder, as: ManifestEntry.self)) {
            XCTAssertEqual("\($0)", "manifest I/O error: \(folder.path) is a folder, not a manifest file")
        }
    }
}
