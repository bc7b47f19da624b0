import Foundation
import Imaging
import Support
import Vocabulary

/// `editing.fit`: what happens to a source image whose size the model cannot take.
enum ImageFit: String, CaseIterable {
    /// The image must already fit (today's behaviour).
    case refuse
    /// Centre-crop to `editing.width`×`editing.height`, or to the largest allowed size
    /// inside the image (each side rounded down to the model's size step).
    case crop
    /// Scale, keeping the aspect ratio, to cover `editing.width`×`editing.height` (default: the
    /// model's native square), then centre-crop to it.
    case resize
}

/// A source image as the batch uses it: decoded, fitted, and the PNG workers receive.
struct PreparedSource {
    var image: RGBImage
    /// The blob uploaded to Redis: the file's own bytes for a PNG used as it is, else a
    /// canonical PNG of the fitted pixels (so workers only ever decode PNG).
    var png: Data
    var sha256: String { Hashing.sha256Hex(png) }
}

enum SourceImagePreparer {
    /// The size a `width`×`height` image becomes, or why it cannot.
    static func target(
        width: Int, height: Int, fit: ImageFit, requested: (width: Int?, height: Int?), rules: ImageSizeRules
    ) -> Result<(width: Int, height: Int), SourceImageError> {
        switch fit {
        case .refuse:
            if let problem = rules.problem(width: width, height: height) {
                return .failure(SourceImageError("\(problem): resize or crop it first (or set editing.fit)"))
            }
            return .success((width, height))
        case .crop:
            let m = rules.multiple
            let w = requested.width ?? width / m * m
            let h = requested.height ?? height / m * m
            guard w > 0, h > 0 else {
                return .failure(
                    SourceImageError("\(width)×\(height) is smaller than one size step (\(m)×\(m)): nothing to crop to")
                )
            }
            guard w <= width, h <= height else {
                return .failure(SourceImageError("\(width)×\(height) is smaller than the crop \(w)×\(h)"))
            }
            return .success((w, h))
        case .resize:
            return .success((requested.width ?? rules.nativeSide, requested.height ?? rules.nativeSide))
        }
    }

    /// Decodes PNG or JPEG (by signature, whatever `name` says), fits it, and makes the blob.
    static func prepare(
        _ bytes: Data, named name: String, fit: ImageFit, requested: (width: Int?, height: Int?),
        rules: ImageSizeRules?
    ) throws -> PreparedSource {
        let isJPEG = JPEGCodec.isJPEG(bytes)
        let isPNG = bytes.starts(with: [0x89, 0x50, 0x4E, 0x47])
        if !isJPEG && !isPNG && !name.lowercased().hasSuffix(".png") {
            throw SourceImageError("is neither a PNG nor a JPEG image (no PNG or JPEG signature)")
        }
        let decoded: RGBImage
        do { decoded = isJPEG ? try JPEGCodec.decode(bytes) : try PNGCodec.decode(bytes) } catch {
            let hint = isJPEG || isPNG ? "" : " (sources are PNG or JPEG files)"
            throw SourceImageError("is not a readable \(isJPEG ? "JPEG" : "PNG") image: \(error)\(hint)")
        }
        guard let rules else { return PreparedSource(image: decoded, png: bytes) }
        let size = try target(
            width: decoded.width, height: decoded.height, fit: fit, requested: requested, rules: rules
        ).get()
        var image = decoded
        if size.width != decoded.width || size.height != decoded.height {
            image =
                fit == .crop
                ? decoded.centreCropped(width: size.width, height: size.height)
                : decoded.coverResized(width: size.width, height: size.height)
        }
        if !isJPEG && image == decoded { return PreparedSource(image: image, png: bytes) }
        do { return PreparedSource(image: image, png: try PNGCodec.encode(image)) } catch {
            throw SourceImageError("cannot re-encode as PNG: \(error)")
        }
    }
}

struct SourceImageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
