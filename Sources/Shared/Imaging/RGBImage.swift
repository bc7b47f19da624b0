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

    /// Area-averaging resample: each output pixel averages exactly the source area it covers
    /// (fractional edge pixels weighted), so downscaling does not alias; upscaling is bilinear.
    /// Integer arithmetic: the same bytes on every machine.
    public func resized(width w: Int, height h: Int) -> RGBImage {
        precondition(w > 0 && h > 0)
        if w == width && h == height { return self }
        return Resample.resize(self, width: w, height: h)
    }

    /// The `width`×`height` rectangle at (`x`, `y`), which must lie inside the image.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> RGBImage {
        precondition(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= width && y + h <= height, "crop outside the image")
        if x == 0 && y == 0 && w == width && h == height { return self }
        var out = [UInt8]()
        out.reserveCapacity(w * h * channels)
        for row in y..<(y + h) {
            let start = (row * width + x) * channels
            out += pixels[start..<(start + w * channels)]
        }
        return RGBImage(width: w, height: h, channels: channels, pixels: out)
    }

    /// The centred `width`×`height` rectangle (at most the image's size).
    public func centreCropped(width w: Int, height h: Int) -> RGBImage {
        cropped(x: (width - w) / 2, y: (height - h) / 2, width: w, height: h)
    }

    /// Scaled, keeping the aspect ratio, to the smallest size covering `width`×`height`, then
    /// centre-cropped to it. The crop is taken from the source first (the centred rectangle of
    /// the target's aspect), so only the pixels kept are resampled.
    public func coverResized(width w: Int, height h: Int) -> RGBImage {
        precondition(w > 0 && h > 0 && width > 0 && height > 0)
        // The source rectangle of aspect w:h: full width or full height.
        var cw = width
        var ch = Int((Double(width) * Double(h) / Double(w)).rounded())
        if ch > height {
            ch = height
            cw = max(1, min(width, Int((Double(height) * Double(w) / Double(h)).rounded())))
        }
        return centreCropped(width: cw, height: max(1, ch)).resized(width: w, height: h)
    }
}
