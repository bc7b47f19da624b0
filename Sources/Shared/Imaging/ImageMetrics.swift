import Foundation

/// Source-vs-edit fidelity, defined to match scikit-image so the report's numbers compare
/// with published ones (checked against skimage in Tests/CoordinatorCoreTests/ReportMetricsTests).
/// In Imaging so that the report, the engine CLI and the tests measure reconstruction alike.
public enum ImageMetrics {
    /// PSNR over the RGB channels of two 8-bit images: 10·log10(255² / MSE), MSE over every
    /// pixel and channel — `skimage.metrics.peak_signal_noise_ratio(a, b, data_range=255)`.
    /// `.infinity` when the images are identical (MSE 0); nil when their sizes differ.
    public static func psnr(_ a: RGBImage, _ b: RGBImage) -> Double? {
        let a = a.rgb()
        let b = b.rgb()
        guard a.width == b.width, a.height == b.height, !a.pixels.isEmpty else { return nil }
        var sum = 0.0
        for i in 0..<a.pixels.count {
            let d = Double(a.pixels[i]) - Double(b.pixels[i])
            sum += d * d
        }
        let mse = sum / Double(a.pixels.count)
        return mse == 0 ? .infinity : 10 * log10(255.0 * 255.0 / mse)
    }

    /// Mean SSIM, as `skimage.metrics.structural_similarity(a, b, channel_axis=2, data_range=255)`
    /// with its defaults: per channel, a uniform `window`×`window` window (7), sample covariance
    /// (·N/(N−1), N = window²), K1 = 0.01, K2 = 0.03; the SSIM map is averaged over the pixels
    /// whose window lies inside the image (skimage crops a border of (window−1)/2, where its
    /// reflect-padded filter would otherwise count), then the channel means are averaged.
    /// nil when the sizes differ or a side is shorter than the window (skimage raises there).
    public static func ssim(_ a: RGBImage, _ b: RGBImage, window: Int = 7) -> Double? {
        let a = a.rgb()
        let b = b.rgb()
        guard a.width == b.width, a.height == b.height, window % 2 == 1, a.width >= window, a.height >= window
        else { return nil }
        var total = 0.0
        for c in 0..<3 { total += ssimChannel(a, b, channel: c, window: window) }
        return total / 3
    }

    /// One channel's mean SSIM. The window sums are exact (integer inputs in Double), so
    /// they may be taken separably: along rows, then along columns of the row sums.
    static func ssimChannel(_ a: RGBImage, _ b: RGBImage, channel: Int, window w: Int) -> Double {
        let width = a.width
        let height = a.height
        let outW = width - w + 1
        let outH = height - w + 1
        // Row sums of x, y, x², y², xy over w consecutive columns: [height][outW] each.
        var rows = [[Double]](repeating: [Double](repeating: 0, count: outW * height), count: 5)
        for y in 0..<height {
            for x0 in 0..<outW {
                var s = (0.0, 0.0, 0.0, 0.0, 0.0)
                for x in x0..<(x0 + w) {
                    let i = (y * width + x) * 3 + channel
                    let p = Double(a.pixels[i])
                    let q = Double(b.pixels[i])
                    s.0 += p
                    s.1 += q
                    s.2 += p * p
                    s.3 += q * q
                    s.4 += p * q
                }
                let o = y * outW + x0
                rows[0][o] = s.0
                rows[1][o] = s.1
                rows[2][o] = s.2
                rows[3][o] = s.3
                rows[4][o] = s.4
            }
        }
        let n = Double(w * w)
        let covNorm = n / (n - 1)
        let c1 = (0.01 * 255.0) * (0.01 * 255.0)
        let c2 = (0.03 * 255.0) * (0.03 * 255.0)
        var total = 0.0
        for y0 in 0..<outH {
            for x in 0..<outW {
                var s = (0.0, 0.0, 0.0, 0.0, 0.0)
                for y in y0..<(y0 + w) {
                    let o = y * outW + x
                    s.0 += rows[0][o]
                    s.1 += rows[1][o]
                    s.2 += rows[2][o]
                    s.3 += rows[3][o]
                    s.4 += rows[4][o]
                }
                let ux = s.0 / n
                let uy = s.1 / n
                let vx = covNorm * (s.2 / n - ux * ux)
                let vy = covNorm * (s.3 / n - uy * uy)
                let vxy = covNorm * (s.4 / n - ux * uy)
                let num = (2 * ux * uy + c1) * (2 * vxy + c2)
                let den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
                total += num / den
            }
        }
        return total / Double(outW * outH)
    }
}

/// Cosines between CLIP embeddings, and Sem-D.
public enum EmbeddingMetrics {
    /// cos(a, b) = a·b / (|a| |b|) (the trace's embeddings are already L2-normalised; dividing
    /// again costs nothing and keeps hand-made ones honest). nil for empty, mismatched or zero vectors.
    public static func cosine(_ a: [Double], _ b: [Double]) -> Double? {
        guard a.count == b.count, !a.isEmpty else { return nil }
        var dot = 0.0
        var na = 0.0
        var nb = 0.0
        for i in 0..<a.count {
            dot += a[i] * b[i]
            na += a[i] * a[i]
            nb += b[i] * b[i]
        }
        guard na > 0, nb > 0 else { return nil }
        return dot / (na.squareRoot() * nb.squareRoot())
    }

    /// Mean of 1 − cos(e_i, e_j) over unordered pairs i < j: one (method, emotion) group's
    /// diversity. nil for fewer than two usable embeddings.
    public static func meanPairwiseDistance(_ embeddings: [[Double]]) -> Double? {
        guard embeddings.count >= 2 else { return nil }
        var sum = 0.0
        var pairs = 0
        for i in 0..<embeddings.count {
            for j in (i + 1)..<embeddings.count {
                guard let c = cosine(embeddings[i], embeddings[j]) else { continue }
                sum += 1 - c
                pairs += 1
            }
        }
        return pairs > 0 ? sum / Double(pairs) : nil
    }
}
