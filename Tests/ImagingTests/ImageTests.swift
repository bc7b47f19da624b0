import Foundation
import Support
import XCTest

@testable import Imaging

final class ImageTests: XCTestCase {
    private func gradient(_ w: Int, _ h: Int, channels: Int = 3) -> RGBImage {
        var p = [UInt8]()
        for y in 0..<h {
            for x in 0..<w {
                p += [UInt8(x * 255 / max(w - 1, 1)), UInt8(y * 255 / max(h - 1, 1)), UInt8((x * 7 + y * 13) & 0xFF)]
                if channels == 4 { p.append(UInt8((x + y) & 0xFF)) }
            }
        }
        return RGBImage(width: w, height: h, channels: channels, pixels: p)
    }

    func testPNGRoundTripRGBAndRGBA() throws {
        let img = gradient(37, 23)
        let png = try PNGCodec.encode(img)
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(try PNGCodec.decode(png), img)
        let rgba = gradient(5, 4, channels: 4)
        XCTAssertEqual(try PNGCodec.decode(try PNGCodec.encode(rgba), alpha: true), rgba)
        // RGB requested from an RGBA file: alpha composed over white (libpng blends in linear
        // light, so allow a few levels against the naive sRGB blend).
        let flat = try PNGCodec.decode(try PNGCodec.encode(rgba))
        XCTAssertEqual(flat.channels, 3)
        let maxDiff = zip(flat.pixels, rgba.rgb().pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(maxDiff, 8)
        // Incompressible noise still fits (the encoder's buffer guess must grow if needed).
        var rng = SystemRandomNumberGenerator()
        let noise = RGBImage(
            width: 64, height: 64, channels: 3,
            pixels: (0..<(64 * 64 * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        XCTAssertEqual(try PNGCodec.decode(try PNGCodec.encode(noise)), noise)
    }

    func testCorruptPNGGivesNamedError() throws {
        let png = try PNGCodec.encode(gradient(16, 16))
        XCTAssertThrowsError(try PNGCodec.decode(Data("not a png at all".utf8))) { error in
            guard case .decode(let message) = error as? PNGError else { return XCTFail("\(error)") }
            XCTAssertFalse(message.isEmpty)
            XCTAssertTrue("\(error)".hasPrefix("cannot decode PNG: "), "\(error)")
        }
        XCTAssertThrowsError(try PNGCodec.decode(Data())) { XCTAssertEqual($0 as? PNGError, .decode("empty input")) }
        XCTAssertThrowsError(try PNGCodec.decode(png.prefix(png.count / 2))) { error in
            guard case .decode = error as? PNGError else { return XCTFail("\(error)") }
        }
        var flipped = png
        flipped[png.count / 2] ^= 0xFF  // inside IDAT: CRC/zlib error
        XCTAssertThrowsError(try PNGCodec.decode(flipped)) { error in
            guard case .decode = error as? PNGError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try PNGCodec.decode(png, maxPixels: 100)) { error in
            XCTAssertEqual(error as? PNGError, .tooLarge(width: 16, height: 16))
        }
    }

    func testBoxResizeAverages() {
        // 4x2 of alternating black/white columns -> 2x1 mid-grey.
        var p = [UInt8]()
        for _ in 0..<2 { for x in 0..<4 { p += Array(repeating: x % 2 == 0 ? 0 : 255, count: 3) } }
        let small = RGBImage(width: 4, height: 2, channels: 3, pixels: p).resized(width: 2, height: 1)
        XCTAssertEqual(small.pixels, [128, 128, 128, 128, 128, 128])
        let up = RGBImage(width: 1, height: 1, fill: (1, 2, 3)).resized(width: 3, height: 2)
        XCTAssertEqual(up.pixels, Array(repeating: [1, 2, 3], count: 6).flatMap { $0 })
    }

    func testContactSheetTilesImagesOfDifferentSizes() throws {
        let red = RGBImage(width: 64, height: 64, fill: (255, 0, 0))
        let green = RGBImage(width: 10, height: 20, fill: (0, 255, 0))  // tall: letterboxed
        let blue = RGBImage(width: 200, height: 100, fill: (0, 0, 255))
        let sheet = ContactSheet.make(
            [red, green, blue], columns: 2, cellWidth: 32, cellHeight: 32, gap: 2,
            background: (255, 255, 255))
        XCTAssertEqual(sheet.width, 2 * 32 + 3 * 2)
        XCTAssertEqual(sheet.height, 2 * 32 + 3 * 2)
        func px(_ x: Int, _ y: Int) -> [UInt8] {
            Array(sheet.pixels[(y * sheet.width + x) * 3..<(y * sheet.width + x) * 3 + 3])
        }
        XCTAssertEqual(px(0, 0), [255, 255, 255], "gap")
        XCTAssertEqual(px(2 + 16, 2 + 16), [255, 0, 0], "cell 0 centre")
        XCTAssertEqual(px(36 + 16, 2 + 16), [0, 255, 0], "cell 1 centre")
        XCTAssertEqual(px(36 + 1, 2 + 16), [255, 255, 255], "cell 1 is letterboxed (16 wide)")
        XCTAssertEqual(px(2 + 16, 36 + 16), [0, 0, 255], "cell 2 centre")
        XCTAssertEqual(px(2 + 16, 36 + 2), [255, 255, 255], "cell 2 is letterboxed (16 high)")
        XCTAssertEqual(px(36 + 16, 36 + 16), [255, 255, 255], "empty cell")
        XCTAssertNoThrow(try PNGCodec.encode(sheet))
    }
}
