import Foundation
import Tensor

/// transformers' CLIPImageProcessor, differentiably, for images [B, C, H, W] in [-1, 1] (the
/// VAE's range; x ↦ (x + 1)/2 is the uint8 image u/255 the processor would be given):
/// resize so the shortest edge is size["shortest_edge"] (the long edge int(s·long/short), as
/// get_resize_output_image_size), centre crop to crop_size (zero padding a smaller image, as
/// center_crop), × 255·rescale_factor, (x − image_mean)/image_std.
///
/// The resize is Pillow's antialiased bicubic (what the processor's PIL backend runs, and the
/// torchvision one approximates), horizontal pass then vertical, each clamped to [0, 1] as
/// Pillow clamps to 0…255; only the rounding to uint8 after each pass is left out, so the
/// result is exact for the float image and within PIL's rounding of the processor's output on
/// the uint8 image (measured ≤ 0.0158 in normalised units, about one level of 255; see
/// CLIPPreprocessTests). Saturated pixels after a pass pass no gradient, as in the engine's
/// clamp of decoded images; the input itself is not clamped.
public struct CLIPImagePreprocessor: Sendable {
    public enum Resize: Equatable, Sendable {
        case shortestEdge(Int)
        case exact(height: Int, width: Int)
        case none
    }

    public let resize: Resize
    /// (height, width) of the centre crop, nil without one.
    public let crop: [Int]?
    /// 255 · rescale_factor (1 for the usual 1/255), 255 without do_rescale.
    public let rescale: Float
    public let mean: [Float]
    public let std: [Float]

    public static let openAIMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let openAIStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    public init(resize: Resize, crop: [Int]?, rescale: Float = 1, mean: [Float], std: [Float]) {
        precondition(crop == nil || crop!.count == 2, "crop is (height, width)")
        self.resize = resize
        self.crop = crop
        self.rescale = rescale
        self.mean = mean
        self.std = std
    }

    /// From preprocessor_config.json (`config`), or, without one, CLIP's defaults at the tower's
    /// `imageSize`: shortest edge and crop `imageSize`, OpenAI's mean and std. `size` and
    /// `crop_size` may be objects ({"shortest_edge"}, {"height", "width"}) or plain integers
    /// (older files: size is then the shortest edge, crop_size the square's side).
    public init(config p: ModelConfig?, imageSize: Int, channels: Int) throws {
        guard let p else {
            self.init(
                resize: .shortestEdge(imageSize), crop: [imageSize, imageSize], mean: Self.openAIMean,
                std: Self.openAIStd)
            return
        }
        var mean = try p.floats("image_mean", count: channels...channels, in: -1000...1000, default: Self.openAIMean)
        var std = try p.floats("image_std", count: channels...channels, in: 1e-6...1000, default: Self.openAIStd)
        guard mean.count == channels, std.count == channels else {
            throw ModelLoadError("\(p.path): image_mean \(mean) / image_std \(std) do not fit \(channels) channels")
        }
        if try !p.bool("do_normalize", default: true) {
            mean = [Float](repeating: 0, count: channels)
            std = [Float](repeating: 1, count: channels)
        }
        let resample = try p.int("resample", default: 3)
        guard resample == 3 else { throw p.fail("resample", "must be 3 (bicubic), the only filter supported") }
        var resize = Resize.none
        if try p.bool("do_resize", default: true) {
            let size = try Self.size(p, "size", integerMeans: "shortest_edge", default: ["shortest_edge": imageSize])
            if let edge = size["shortest_edge"], size.count == 1 {
                resize = .shortestEdge(edge)
            } else if let h = size["height"], let w = size["width"], size.count == 2 {
                resize = .exact(height: h, width: w)
            } else {
                throw p.fail("size", "must be {\"shortest_edge\": n} or {\"height\": h, \"width\": w}, got \(size)")
            }
        }
        var crop: [Int]? = nil
        if try p.bool("do_center_crop", default: true) {
            let c = try Self.size(
                p, "crop_size", integerMeans: "square", default: ["height": imageSize, "width": imageSize])
            guard let h = c["height"], let w = c["width"], c.count == 2 else {
                throw p.fail("crop_size", "must be {\"height\": h, \"width\": w} or an integer, got \(c)")
            }
            crop = [h, w]
        }
        var rescale: Float = 255
        if try p.bool("do_rescale", default: true) {
            let factor = try p.double("rescale_factor", default: 1 / 255.0, "a number > 0") { $0 > 0 && $0.isFinite }
            rescale = Float(255 * factor)
        }
        self.init(resize: resize, crop: crop, rescale: rescale, mean: mean, std: std)
        let fits: Bool
        switch (crop, resize) {
        case (let c?, _): fits = c == [imageSize, imageSize]
        case (nil, .exact(let h, let w)): fits = h == imageSize && w == imageSize
        // Without a crop, only an exact resize guarantees the tower's square: a shortest-edge
        // resize of a 512×768 edit, or no resize at all, would reach the tower at another size.
        case (nil, .shortestEdge), (nil, .none): fits = false
        }
        guard fits else {
            throw ModelLoadError(
                "\(p.path): size/crop_size do not give the tower's \(imageSize)×\(imageSize) pixels "
                    + "(resize \(resize), crop \(crop.map { "\($0)" } ?? "none"))")
        }
    }

    /// A size entry as a dictionary of positive integers: an integer n is {integerMeans: n}
    /// ("square": {height: n, width: n}).
    static func size(_ p: ModelConfig, _ key: String, integerMeans: String, default value: [String: Int]) throws
        -> [String: Int]
    {
        guard p.has(key) else { return value }
        if let object = p.values[key] as? [String: Any] {
            let inner = ModelConfig(path: "\(p.path) '\(key)'", values: object)
            var out: [String: Int] = [:]
            for name in object.keys where inner.has(name) { out[name] = try inner.int(name, in: 1...65536) }
            return out
        }
        let n = try p.int(key, in: 1...65536)
        return integerMeans == "square" ? ["height": n, "width": n] : [integerMeans: n]
    }

    /// The resize's output (height, width) for an input of (height, width).
    public func resizedSize(height h: Int, width w: Int) -> (height: Int, width: Int) {
        switch resize {
        case .none: return (h, w)
        case .exact(let oh, let ow): return (oh, ow)
        case .shortestEdge(let s):
            // get_resize_output_image_size(default_to_square=False): int() of a double.
            let long = Int(Double(s) * Double(max(h, w)) / Double(min(h, w)))
            return w <= h ? (long, s) : (s, long)
        }
    }

    public func callAsFunction(_ images: Tensor) -> Tensor {
        precondition(
            images.rank == 4 && images.shape[1] == mean.count,
            "CLIP preprocess: images \(images.shape), want [B, \(mean.count), H, W]")
        var x = images * 0.5 + 0.5
        let (h, w) = (x.shape[2], x.shape[3])
        let (oh, ow) = resizedSize(height: h, width: w)
        if ow != w { x = x.resampledBicubic(axis: 3, size: ow).clamp(0...1) }
        if oh != h { x = x.resampledBicubic(axis: 2, size: oh).clamp(0...1) }
        if let crop { x = Self.centreCropped(x, height: crop[0], width: crop[1]) }
        if rescale != 1 { x = x * rescale }
        let channels = mean.count
        let m = Tensor(shape: [1, channels, 1, 1], data: mean)
        let s = Tensor(shape: [1, channels, 1, 1], data: std)
        return (x - m) / s
    }

    /// transformers' center_crop: start ⌊(size − crop)/2⌋; a side shorter than the crop is
    /// zero padded, ⌈(crop − size)/2⌉ before it.
    static func centreCropped(_ image: Tensor, height ch: Int, width cw: Int) -> Tensor {
        var x = image
        let (h, w) = (x.shape[2], x.shape[3])
        if h >= ch { x = x.narrowed(axis: 2, start: (h - ch) / 2, length: ch) }
        if w >= cw { x = x.narrowed(axis: 3, start: (w - cw) / 2, length: cw) }
        let (top, left) = (h < ch ? (ch - h + 1) / 2 : 0, w < cw ? (cw - w + 1) / 2 : 0)
        if h < ch || w < cw {
            x = x.padded(left: left, right: max(cw - w - left, 0), top: top, bottom: max(ch - h - top, 0))
        }
        return x
    }
}
