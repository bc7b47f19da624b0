import Foundation
import XCTest

@testable import CoordinatorCore

/// ops/report-check on the synthetic folder's report: headless Chromium renders report.html,
/// and every number of report.json must be in the rendered table cell that names it.
final class ReportChromiumTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
        .standardizedFileURL

    static var chromium: String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            for name in ["chromium", "chromium-browser"]
            where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
                return "\(dir)/\(name)"
            }
        }
        return nil
    }

    func testRenderedReportShowsEveryNumberOfReportJSON() throws {
        guard Self.chromium != nil else {
            throw XCTSkip(
                "chromium is not installed, so the headless render check (ops/report-check) is skipped; "
                    + "apt-get install --no-install-recommends chromium to run it")
        }
        let fixture = try ReportFixture.make()
        defer { try? FileManager.default.removeItem(at: fixture.folder) }
        _ = try Report.write(folder: fixture.folder)
        let shot = fixture.folder.appendingPathComponent("shot.png")
        let p = Process()
        p.executableURL = Self.root.appendingPathComponent("ops/report-check")
        p.arguments = [fixture.folder.path, shot.path, "1200x1600"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, out)
        XCTAssertTrue(out.contains("rendered cells match report.json"), out)
        let png = try Data(contentsOf: shot)
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "a PNG screenshot")
    }
}
