import Foundation
import Support

/// An 8-bit image, rows top to bottom, channels interleaved (3 = RGB, 4 = RGBA).
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int = 3, pixels: [UInt8]) {
        precondition(channels == 3 || channels == 4, "channels must be 3 or 4")
        precondition(
            width >= 0 && height >= 0 && pixels.count == width * height * channels,
            "pixel buffer does not match \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A solid image.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            p[3 * i] = fill.0
            p[3 * i + 1] = fill.1
            p[3 * i + 2] = fill.2
        }
        self.init(width: width, height: height, channels: 3, pixels: p)
    }

    /// Drops alpha, compositing over `background` (so transparent areas do not turn black).
    public func rgb(background: (UInt8, UInt8, UInt8) = (255, 255, 255)) -> RGBImage {
        guard channels == 4 else { return self }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let bg = [background.0, background.1, background.2]
        for i in 0..<(width * height) {
            let a = Int(pixels[4 * i + 3])
            for c in 0..<3 {
                out[3 * i + c] = UInt8((Int(pixels[4 * i + c]) * a + Int(bg[c]) * (255 - a) + 127) / 255)
            }
        }
        return RGBImage(width: width, height: height, channels: 3, pixels: out)
    }

    /// Area-averaging (box) resample: each output pixel averages the source pixels it
    /// covers, so downscaled thumbnails do not alias; upscaling degenerates to nearest.
    public func resized(width w: Int, height h: Int) -> RGBImage {
        precondition(w > 0 && h > 0)
        if w == width && h == height { return self }
        let ch = channels
        var out = [UInt8](repeating: 0, count: w * h * ch)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for oy in 0..<h {
                    let y0 = oy * height / h
                    let y1 = max(y0 + 1, (oy + 1) * height / h)
                    for ox in 0..<w {
                        let x0 = ox * width / w
                        let x1 = max(x0 + 1, (ox + 1) * width / w)
                        var s0 = 0
                        var s1 = 0
                        var s2 = 0
                        var s3 = 0
                        for y in y0..<y1 {
                            var base = (y * width + x0) * ch
                            for _ in x0..<x1 {
                                s0 += Int(src[base])
                                s1 += Int(src[base + 1])
                                s2 += Int(src[base + 2])
                                if ch == 4 { s3 += Int(src[base + 3]) }
                                base += ch
                            }
                        }
                        let n = (y1 - y0) * (x1 - x0)
                        let o = (oy * w + ox) * ch
                        dst[o] = UInt8((s0 + n / 2) / n)
                        dst[o + 1] = UInt8((s1 + n / 2) / n)
                        dst[o + 2] = UInt8((s2 + n / 2) / n)
                        if ch == 4 { dst[o + 3] = UInt8((s3 + n / 2) / n) }
                    }
                }
            }
        }
        return RGBImage(width: w, height: h, channels: ch, pixels: out)
    }
}
