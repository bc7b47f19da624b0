import CJPEG
import Foundation
import Support

public enum JPEGError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case decode(String)
    case encode(String)
    case tooLarge(width: Int, height: Int)

    public var description: String {
        switch self {
        case .decode(let m): return "cannot decode JPEG: \(m)"
        case .encode(let m): return "cannot encode JPEG: \(m)"
        case .tooLarge(let w, let h): return "JPEG is \(w)x\(h), over the pixel limit"
        }
    }

    public var errorDescription: String? { description }
}

/// JPEG through libjpeg-turbo's TurboJPEG API, which reports errors by return code (the
/// classic libjpeg API longjmps, skipping Swift frames). Decoding is strict: a libjpeg
/// warning (a truncated file, bad Huffman data) is an error, so a damaged photo is refused
/// instead of arriving half grey. EXIF orientation is not applied: pixels as stored.
public enum JPEGCodec {
    /// A JPEG starts with SOI (FF D8) and a marker.
    public static func isJPEG(_ data: Data) -> Bool { data.starts(with: [0xFF, 0xD8, 0xFF]) }

    public static func decode(_ data: Data, maxPixels: Int = PNGCodec.defaultMaxPixels) throws -> RGBImage {
        guard !data.isEmpty else { throw JPEGError.decode("empty input") }
        guard let handle = tjInitDecompress() else { throw JPEGError.decode("cannot start libjpeg-turbo") }
        defer { tjDestroy(handle) }
        return try data.withUnsafeBytes { raw -> RGBImage in
            let src = raw.bindMemory(to: UInt8.self).baseAddress
            var w: Int32 = 0
            var h: Int32 = 0
            var subsampling: Int32 = 0
            var colorspace: Int32 = 0
            // The header alone: the size is checked before anything is allocated for pixels.
            guard tjDecompressHeader3(handle, src, UInt(raw.count), &w, &h, &subsampling, &colorspace) == 0 else {
                throw JPEGError.decode(message(handle))
            }
            let width = Int(w)
            let height = Int(h)
            guard width > 0, height > 0 else { throw JPEGError.decode("no image size in the header (truncated?)") }
            guard width * height <= maxPixels else {
                throw JPEGError.tooLarge(width: width, height: height)
            }
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            // LIMITSCANS: a progressive file with thousands of scans would take minutes.
            let flags = TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS
            let status = pixels.withUnsafeMutableBufferPointer { dst in
                tjDecompress2(
                    handle, src, UInt(raw.count), dst.baseAddress, w, w * 3, h, Int32(TJPF_RGB.rawValue), flags)
            }
            guard status == 0 else { throw JPEGError.decode(message(handle)) }
            return RGBImage(width: width, height: height, channels: 3, pixels: pixels)
        }
    }

    /// Baseline JPEG, 4:2:0 below quality 90 and 4:4:4 from there (tests and tools).
    public static func encode(_ img: RGBImage, quality: Int = 90) throws -> Data {
        let rgb = img.rgb()
        guard rgb.width > 0, rgb.height > 0 else { throw JPEGError.encode("image is empty") }
        guard let handle = tjInitCompress() else { throw JPEGError.encode("cannot start libjpeg-turbo") }
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        defer { if let out { tjFree(out) } }
        let subsampling = quality >= 90 ? TJSAMP_444 : TJSAMP_420
        let status = rgb.pixels.withUnsafeBufferPointer { src in
            tjCompress2(
                handle, src.baseAddress, Int32(rgb.width), Int32(rgb.width * 3), Int32(rgb.height),
                Int32(TJPF_RGB.rawValue), &out, &size, Int32(subsampling.rawValue), Int32(min(max(quality, 1), 100)),
                TJFLAG_ACCURATEDCT)
        }
        guard status == 0, let out else { throw JPEGError.encode(message(handle)) }
        return Data(bytes: out, count: Int(size))
    }

    private static func message(_ handle: tjhandle) -> String {
        guard let text = tjGetErrorStr2(handle) else { return "unknown libjpeg-turbo error" }
        let s = String(cString: text)
        return s.isEmpty ? "unknown libjpeg-turbo error" : s
    }
}
