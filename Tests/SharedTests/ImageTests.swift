import Foundation
import XCTest
@testable import Shared

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
        var rng = SplitMix64(seed: 1)
        let noise = RGBImage(width: 64, height: 64, channels: 3, pixels: (0..<(64 * 64 * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        XCTAssertEqual(try PNGCodec.decode(try PNGCodec.encode(noise)), noise)
    }

    func testCorruptPNGGivesNamedError() throws {
        let png = try PNGCodec.encode(gradient(16, 16))
        XCTAssertThrowsError(try PNGCodec.decode(Data("not a png at all".utf8))) { error in
            guard case let .decode(message) = error as? PNGError else { return XCTFail("\(error)") }
            XCTAssertFalse(message.isEmpty)
            XCTAssertTrue("\(error)".hasPrefix("cannot decode PNG: "), "\(error)")
        }
        XCTAssertThrowsError(try PNGCodec.decode(Data())) { XCTAssertEqual($0 as? PNGError, .decode("empty input")) }
        XCTAssertThrowsError(try PNGCodec.decode(png.prefix(png.count / 2))) { error in
            guard case .decode = error as? PNGError else { return XCTFail("\(error)") }
        }
        var flipped = png
        flipped[png.count / 2] ^= 0xFF // inside IDAT: CRC/zlib error
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
        let green = RGBImage(width: 10, height: 20, fill: (0, 255, 0)) // tall: letterboxed
        let blue = RGBImage(width: 200, height: 100, fill: (0, 0, 255))
        let sheet = ContactSheet.make([red, green, blue], columns: 2, cellWidth: 32, cellHeight: 32, gap: 2,
                                      background: (255, 255, 255))
        XCTAssertEqual(sheet.width, 2 * 32 + 3 * 2)
        XCTAssertEqual(sheet.height, 2 * 32 + 3 * 2)
        func px(_ x: Int, _ y: Int) -> [UInt8] { Array(sheet.pixels[(y * sheet.width + x) * 3..<(y * sheet.width + x) * 3 + 3]) }
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

final class DigestTests: XCTestCase {
    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hexDigest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hexDigest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hexDigest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hexDigest("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(SHA256.hexDigest(Data(repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testSHA256IncrementalMatchesOneShot() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 131) }
        for chunk in [1, 7, 63, 64, 65, 500] {
            var s = SHA256()
            var i = 0
            while i < bytes.count { s.update(bytes[i..<min(i + chunk, bytes.count)]); i += chunk }
            XCTAssertEqual(s.finalize(), SHA256.hash(bytes), "chunk \(chunk)")
        }
    }

    func testCRC32AndSHA1Vectors() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
        XCTAssertEqual(SHA1.hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(SHA1.hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    }
}
