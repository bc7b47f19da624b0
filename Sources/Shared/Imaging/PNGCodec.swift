import CPNG
import Foundation
import Support

public enum PNGError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case decode(String)
    case encode(String)
    case tooLarge(width: Int, height: Int)

    public var description: String {
        switch self {
        case .decode(let m): return "cannot decode PNG: \(m)"
        case .encode(let m): return "cannot encode PNG: \(m)"
        case .tooLarge(let w, let h): return "PNG is \(w)x\(h), over the pixel limit"
        }
    }

    public var errorDescription: String? { description }
}

/// PNG through libpng's simplified API only: the classic API reports errors by longjmp,
/// which would skip Swift frames and corrupt memory. libpng converts any bit depth,
/// palette, grey or interlaced input to the 8-bit layout asked for.
public enum PNGCodec {
    /// Decompression-bomb guard: refuse before allocating.
    public static let defaultMaxPixels = 64 * 1024 * 1024

    // png.h builds these from flag macros Swift cannot import (COLOR = 2, ALPHA = 1).
    private static let formatRGB: png_uint_32 = 0x02
    private static let formatRGBA: png_uint_32 = 0x03

    public static func decode(_ data: Data, alpha: Bool = false, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        let began = data.withUnsafeBytes { raw -> Int32 in
            guard let base = raw.baseAddress else { return 0 }
            return png_image_begin_read_from_memory(&image, base, raw.count)
        }
        guard began != 0 else { throw PNGError.decode(data.isEmpty ? "empty input" : message(image)) }
        let w = Int(image.width)
        let h = Int(image.height)
        guard w > 0, h > 0, w * h <= maxPixels else { throw PNGError.tooLarge(width: w, height: h) }
        let channels = alpha ? 4 : 3
        image.format = alpha ? formatRGBA : formatRGB
        var pixels = [UInt8](repeating: 0, count: w * h * channels)
        // data must stay alive: libpng keeps reading from the memory given at begin_read.
        let ok = data.withUnsafeBytes { _ in
            pixels.withUnsafeMutableBytes { dst in
                // A white background composes away any alpha when RGB is asked for.
                var bg = png_color(red: 255, green: 255, blue: 255)
                return png_image_finish_read(&image, &bg, dst.baseAddress, Int32(w * channels), nil)
            }
        }
        guard ok != 0 else { throw PNGError.decode(message(image)) }
        return RGBImage(width: w, height: h, channels: channels, pixels: pixels)
    }

    public static func encode(_ img: RGBImage) throws -> Data {
        guard img.width > 0, img.height > 0 else {
            throw PNGError.encode("image is empty (\(img.width)x\(img.height))")
        }
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(img.width)
        image.height = png_uint_32(img.height)
        image.format = img.channels == 4 ? formatRGBA : formatRGB
        defer { png_image_free(&image) }
        let stride = Int32(img.width * img.channels)
        // Generous first guess (raw size + filter bytes + zlib/chunk overhead); retry once
        // with the size libpng asks for if that was still short.
        var capacity = img.pixels.count + img.height + 1024 + img.pixels.count / 100
        for _ in 0..<2 {
            var out = [UInt8](repeating: 0, count: capacity)
            var size = png_alloc_size_t(capacity)
            let ok = img.pixels.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { dst in
                    png_image_write_to_memory(&image, dst.baseAddress, &size, 0, src.baseAddress, stride, nil)
                }
            }
            if ok != 0 {
                out.removeSubrange(Int(size)...)
                return Data(out)
            }
            guard Int(size) > capacity else { throw PNGError.encode(message(image)) }
            capacity = Int(size)
            image.warning_or_error = 0
        }
        throw PNGError.encode("libpng kept asking for a larger buffer")
    }

    private static func message(_ image: png_image) -> String {
        let text = withUnsafeBytes(of: image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return text.isEmpty ? "unknown libpng error" : text
    }
}
