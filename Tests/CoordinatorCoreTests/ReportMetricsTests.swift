import Foundation
import XCTest

@testable import CoordinatorCore
@testable import Imaging

/// The report's metrics against values computed independently: PSNR and SSIM by scikit-image,
/// cosines, mean pairwise distances and Sem-D by numpy (tools/reference/make_report_fixtures.py
/// wrote Tests/Fixtures/report/). Measured differences (scikit-image 0.26, numpy 2.4): PSNR
/// ≤ 3.6e-15 dB, SSIM ≤ 2.0e-15, Sem-D 1e-16 — both sides compute in float64 and the Swift window
/// sums are exact. Asserted: 1e-10 on PSNR (~20 dB), 1e-12 on SSIM, cosines and Sem-D.
final class ReportMetricsTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/report").standardizedFileURL

    static func image(_ name: String) throws -> RGBImage {
        try PNGCodec.decode(try Data(contentsOf: fixtures.appendingPathComponent(name)))
    }

    static func expected() throws -> [String: Any] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("expected.json"))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testPSNRAndSSIMMatchScikitImage() throws {
        let pairs = try XCTUnwrap(try Self.expected()["pairs"] as? [[String: Any]])
        XCTAssertEqual(pairs.count, 4)
        for pair in pairs {
            let a = try Self.image(try XCTUnwrap(pair["a"] as? String))
            let b = try Self.image(try XCTUnwrap(pair["b"] as? String))
            let label = "\(pair["a"]!) vs \(pair["b"]!)"
            let psnr = try XCTUnwrap(ImageMetrics.psnr(a, b), label)
            if pair["identical"] as? Bool == true {
                XCTAssertEqual(psnr, .infinity, label)
            } else {
                let want = try XCTUnwrap(pair["psnr"] as? Double)
                XCTAssertEqual(psnr, want, accuracy: 1e-10, label)
                print("PSNR \(label): swift \(psnr) skimage \(want) |diff| \(abs(psnr - want))")
            }
            let ssim = try XCTUnwrap(ImageMetrics.ssim(a, b), label)
            let want = try XCTUnwrap(pair["ssim"] as? Double)
            XCTAssertEqual(ssim, want, accuracy: 1e-12, label)
            print("SSIM \(label): swift \(ssim) skimage \(want) |diff| \(abs(ssim - want))")
            let channels = try XCTUnwrap(pair["ssim_channels"] as? [Double])
            for c in 0..<3 {
                XCTAssertEqual(
                    ImageMetrics.ssimChannel(a, b, channel: c, window: 7), channels[c], accuracy: 1e-12, label)
            }
        }
    }

    func testSizeMismatchAndTinyImagesGiveNoValue() throws {
        let a = try Self.image("a64.png")
        let c = try Self.image("c48x40.png")
        XCTAssertEqual(c.width, 48)
        XCTAssertEqual(c.height, 40)
        XCTAssertNil(ImageMetrics.psnr(a, c))
        XCTAssertNil(ImageMetrics.ssim(a, c))
        let tiny = RGBImage(width: 6, height: 9, fill: (1, 2, 3))
        XCTAssertNil(ImageMetrics.ssim(tiny, tiny), "skimage refuses images smaller than the 7×7 window")
        XCTAssertEqual(ImageMetrics.psnr(tiny, tiny), .infinity)
    }

    func testCosinesAndSemDMatchNumpy() throws {
        let e = try XCTUnwrap(try Self.expected()["embeddings"] as? [String: Any])
        let groups = try XCTUnwrap(e["groups"] as? [String: [[Double]]])
        for c in try XCTUnwrap(e["cosines"] as? [[String: Any]]) {
            let g = try XCTUnwrap(groups[try XCTUnwrap(c["group"] as? String)])
            let got = try XCTUnwrap(EmbeddingMetrics.cosine(g[c["i"] as! Int], g[c["j"] as! Int]))
            XCTAssertEqual(got, try XCTUnwrap(c["cosine"] as? Double), accuracy: 1e-12)
        }
        let means = try XCTUnwrap(e["mean_pairwise"] as? [String: Double])
        for (name, want) in means {
            let got = try XCTUnwrap(EmbeddingMetrics.meanPairwiseDistance(try XCTUnwrap(groups[name])))
            XCTAssertEqual(got, want, accuracy: 1e-12, name)
        }
        XCTAssertNil(EmbeddingMetrics.meanPairwiseDistance(groups["sadness"]!), "one image: no pairs")
        // Sem-D of one method over these groups, through the same code path the report uses.
        var jobs: [ReportJob] = []
        for (emotion, vectors) in groups {
            for v in vectors {
                var j = ReportJob.synthetic(emotion: emotion)
                j.embedding = v
                jobs.append(j)
            }
        }
        let semD = try XCTUnwrap(GroupMetrics(jobs).semD)
        XCTAssertEqual(semD, try XCTUnwrap(e["sem_d"] as? Double), accuracy: 1e-12)
        XCTAssertEqual(GroupMetrics(jobs).semDEmotions, 2)
        print("Sem-D: swift \(semD) numpy \(e["sem_d"]!)")
    }
}

extension ReportJob {
    /// A done generation job with nothing measured, for metric tests.
    static func synthetic(emotion: String, method: String = "muse") -> ReportJob {
        let json =
            #"{"job_id":"\#(UUID())","status":"done","kind":"generate","emotion":"\#(emotion)","method":"\#(method)"}"#
        let line = try! JSONDecoder().decode(ReportLine.self, from: Data(json.utf8))
        return ReportJob(line: line, trace: nil, folder: URL(fileURLWithPath: "/nonexistent"), order: 0)
    }
}
