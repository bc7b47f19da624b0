import Foundation
import XCTest

@testable import Imaging

/// Fixtures made by Tests/Fixtures/imaging/make.py with Pillow: a 48×32 image saved as JPEG
/// (4:2:0, progressive 4:4:4, greyscale), Pillow's own decodes of them, and resize references.
let imagingFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/imaging")

func fixture(_ name: String) throws -> Data { try Data(contentsOf: imagingFixtures.appendingPathComponent(name)) }

func maxDifference(_ a: RGBImage, _ b: RGBImage) -> Int {
    zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
}

final class JPEGTests: XCTestCase {
    /// libjpeg-turbo 2.1 here and Pillow's bundled libjpeg-turbo decode the same files; the
    /// measured difference is 0 for all three (the bound leaves room for another IDCT build).
    func testDecodesLikePillow() throws {
        for name in ["photo-420", "photo-progressive", "photo-grey"] {
            let decoded = try JPEGCodec.decode(try fixture("\(name).jpg"))
            let pillow = try PNGCodec.decode(try fixture("\(name).pil.png"))
            XCTAssertEqual(decoded.width, 48, name)
            XCTAssertEqual(decoded.height, 32, name)
            XCTAssertEqual(decoded.channels, 3, name)
            XCTAssertLessThanOrEqual(maxDifference(decoded, pillow), 1, name)
        }
    }

    func testEncodeDecodeRoundTrip() throws {
        let source = try PNGCodec.decode(try fixture("photo-source.png"))
        let jpeg = try JPEGCodec.encode(source, quality: 95)
        XCTAssertTrue(JPEGCodec.isJPEG(jpeg))
        let back = try JPEGCodec.decode(jpeg)
        XCTAssertEqual(back.width, source.width)
        // Quality 95, 4:4:4: measured max difference 17, mean 1.74 on this textured image.
        let diffs = zip(back.pixels, source.pixels).map { abs(Int($0) - Int($1)) }
        XCTAssertLessThanOrEqual(diffs.max() ?? 0, 24)
        XCTAssertLessThan(Double(diffs.reduce(0, +)) / Double(diffs.count), 2)
    }

    func testCorruptTruncatedAndHugeJPEGsAreErrors() throws {
        let jpeg = try fixture("photo-420.jpg")
        for (what, data) in [
            ("empty", Data()), ("not a JPEG", Data("hello".utf8)), ("header only", jpeg.prefix(20)),
            ("truncated", jpeg.prefix(jpeg.count * 2 / 3)),
        ] {
            XCTAssertThrowsError(try JPEGCodec.decode(data), what) { error in
                guard case .decode(let message) = error as? JPEGError else { return XCTFail("\(what): \(error)") }
                XCTAssertFalse(message.isEmpty, what)
            }
        }
        // Scrambled entropy-coded data: an error or an image, never a trap.
        var scrambled = jpeg
        for i in stride(from: jpeg.count / 2, to: jpeg.count - 2, by: 7) { scrambled[i] ^= 0x5A }
        _ = try? JPEGCodec.decode(scrambled)
        // The size is checked from the header, before pixels are allocated: a 65000×65000
        // header (SOF0 patched) is refused as too large.
        var huge = [UInt8](jpeg)
        let sof = try XCTUnwrap((0..<(huge.count - 1)).first { huge[$0] == 0xFF && huge[$0 + 1] == 0xC0 })
        huge[sof + 5] = 0xFD
        huge[sof + 6] = 0xE8
        huge[sof + 7] = 0xFD
        huge[sof + 8] = 0xE8
        XCTAssertThrowsError(try JPEGCodec.decode(Data(huge))) { error in
            XCTAssertEqual(error as? JPEGError, .tooLarge(width: 65000, height: 65000))
        }
        XCTAssertThrowsError(try JPEGCodec.decode(jpeg, maxPixels: 100)) { error in
            XCTAssertEqual(error as? JPEGError, .tooLarge(width: 48, height: 32))
        }
    }
}

final class ResampleTests: XCTestCase {
    /// Downscaling is exact area averaging: Pillow's BOX for a whole factor, a floating-point
    /// reference (make.py) for 48×32 → 20×13; upscaling is Pillow's BILINEAR. Measured max
    /// difference: 1 for each (Pillow rounds between its two passes, numpy's reference at .5 ties).
    func testResizeMatchesReferences() throws {
        let source = try PNGCodec.decode(try fixture("photo-source.png"))
        let box = try PNGCodec.decode(try fixture("photo-box-12x8.pil.png"))
        let area = try PNGCodec.decode(try fixture("photo-area-20x13.numpy.png"))
        let bilinear = try PNGCodec.decode(try fixture("photo-bilinear-70x50.pil.png"))
        XCTAssertLessThanOrEqual(maxDifference(source.resized(width: 12, height: 8), box), 1)
        XCTAssertLessThanOrEqual(maxDifference(source.resized(width: 20, height: 13), area), 1)
        XCTAssertLessThanOrEqual(maxDifference(source.resized(width: 70, height: 50), bilinear), 1)
    }

    func testNonIntegerDownscaleKeepsTheMeanAndIsDeterministic() {
        // 3-pixel stripes to 2 pixels: each output pixel covers 1.5 source pixels.
        let stripes = RGBImage(
            width: 3, height: 1, channels: 3, pixels: [0, 0, 0, 255, 255, 255, 90, 90, 90])
        let two = stripes.resized(width: 2, height: 1)
        // (0 + 255/2) / 1.5 = 85, (255/2 + 90) / 1.5 = 145.
        XCTAssertEqual(two.pixels, [85, 85, 85, 145, 145, 145])
        var rng = SystemRandomNumberGenerator()
        let noise = RGBImage(
            width: 97, height: 61, channels: 3,
            pixels: (0..<(97 * 61 * 3)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let a = noise.resized(width: 31, height: 17)
        XCTAssertEqual(a, noise.resized(width: 31, height: 17))
        let mean = { (img: RGBImage) in Double(img.pixels.reduce(0) { $0 + Int($1) }) / Double(img.pixels.count) }
        XCTAssertEqual(mean(a), mean(noise), accuracy: 1.0, "area averaging keeps the mean")
    }

    func testCropsAndCoverResize() {
        var p: [UInt8] = []
        for y in 0..<4 { for x in 0..<6 { p += [UInt8(x), UInt8(y), 0] } }
        let img = RGBImage(width: 6, height: 4, channels: 3, pixels: p)
        let centre = img.centreCropped(width: 2, height: 2)
        XCTAssertEqual(centre.pixels, [2, 1, 0, 3, 1, 0, 2, 2, 0, 3, 2, 0])
        // Wide 6×4 to a 2×2 square: the centred 4×4 is taken, then halved.
        let square = img.coverResized(width: 2, height: 2)
        XCTAssertEqual(square.width, 2)
        XCTAssertEqual(square.height, 2)
        XCTAssertEqual(square.pixels, [2, 1, 0, 4, 1, 0, 2, 3, 0, 4, 3, 0])
        // Tall to wide: the centred band of rows.
        let tall = RGBImage(width: 4, height: 12, fill: (9, 9, 9))
        XCTAssertEqual(tall.coverResized(width: 8, height: 4), RGBImage(width: 8, height: 4, fill: (9, 9, 9)))
    }
}
