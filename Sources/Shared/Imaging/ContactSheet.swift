/// Tiles results into one overview image, the first thing a user opens after a batch.
public enum ContactSheet {
    /// Lays `images` out row by row in a grid of `columns` (default: near-square), each
    /// scaled to fit a `cellWidth`×`cellHeight` cell keeping its aspect ratio, centred,
    /// separated by `gap` pixels of `background`. No text labels: the manifest maps
    /// cell index (row-major) to job id.
    public static func make(
        _ images: [RGBImage], columns: Int? = nil, cellWidth: Int = 128, cellHeight: Int = 128,
        gap: Int = 4, background: (UInt8, UInt8, UInt8) = (255, 255, 255)
    ) -> RGBImage {
        precondition(cellWidth > 0 && cellHeight > 0 && gap >= 0)
        let n = max(images.count, 1)
        let cols = max(1, min(columns ?? Int(Double(n).squareRoot().rounded(.up)), n))
        let rows = (n + cols - 1) / cols
        let width = cols * cellWidth + (cols + 1) * gap
        let height = rows * cellHeight + (rows + 1) * gap
        var sheet = RGBImage(width: width, height: height, fill: background)
        for (index, source) in images.enumerated() {
            let img = source.rgb(background: background)
            guard img.width > 0, img.height > 0 else { continue }
            let scale = min(Double(cellWidth) / Double(img.width), Double(cellHeight) / Double(img.height))
            let w = max(1, min(cellWidth, Int((Double(img.width) * scale).rounded())))
            let h = max(1, min(cellHeight, Int((Double(img.height) * scale).rounded())))
            let thumb = img.resized(width: w, height: h)
            let cellX = gap + (index % cols) * (cellWidth + gap) + (cellWidth - w) / 2
            let cellY = gap + (index / cols) * (cellHeight + gap) + (cellHeight - h) / 2
            for y in 0..<h {
                let dst = ((cellY + y) * width + cellX) * 3
                let src = y * w * 3
                sheet.pixels.replaceSubrange(dst..<dst + w * 3, with: thumb.pixels[src..<src + w * 3])
            }
        }
        return sheet
    }
}
