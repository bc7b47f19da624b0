import Foundation

/// A small line chart as inline SVG: no script and no library, so the report opens anywhere.
struct SVGChart {
    struct Series {
        var name: String
        var color: String
        var points: [(x: Double, y: Double)]
        var bold = false
    }

    /// A vertical line at `x` with a label at its top (a step boundary, the start, the stop).
    struct Marker {
        var x: Double
        var label: String
        var color: String
        var dashed = true
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var markers: [Marker] = []
    /// A shaded x range (the guidance window).
    var band: ClosedRange<Double>?
    /// nil: fitted to the data.
    var yRange: ClosedRange<Double>?
    var width = 560.0
    var height = 250.0
    var legend = true

    private let left = 58.0
    private let top = 28.0
    private let bottom = 36.0
    private var right: Double { legend ? 118 : 16 }

    func render() -> String {
        let xs = series.flatMap { $0.points.map(\.x) } + markers.map(\.x)
        let ys = series.flatMap { $0.points.map(\.y) }
        guard let x0 = xs.min(), let x1 = xs.max(), !ys.isEmpty else {
            return #"<p class="nochart">\#(HTML.escape(title)): no data</p>"#
        }
        var yr = yRange ?? (ys.min()!...ys.max()!)
        if yr.upperBound - yr.lowerBound < 1e-9 { yr = (yr.lowerBound - 0.5)...(yr.upperBound + 0.5) }
        if yRange == nil {  // a little headroom so lines do not sit on the frame
            let pad = (yr.upperBound - yr.lowerBound) * 0.08
            yr = (yr.lowerBound - pad)...(yr.upperBound + pad)
        }
        let xr = x1 > x0 ? x0...x1 : (x0 - 1)...(x1 + 1)
        let plotW = width - left - right
        let plotH = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - xr.lowerBound) / (xr.upperBound - xr.lowerBound) * plotW }
        func py(_ y: Double) -> Double { top + (1 - (y - yr.lowerBound) / (yr.upperBound - yr.lowerBound)) * plotH }
        var s = #"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="\#(f(width))" height="\#(f(height))" "#
        s += #"viewBox="0 0 \#(f(width)) \#(f(height))" role="img" aria-label="\#(HTML.escape(title))">"#
        s += #"<text x="\#(f(left))" y="16" class="ct">\#(HTML.escape(title))</text>"#
        if let band {
            s +=
                #"<rect x="\#(f(px(band.lowerBound)))" y="\#(f(top))" width="\#(f(px(band.upperBound) - px(band.lowerBound)))" "#
            s += #"height="\#(f(plotH))" fill='#fff3c4'/>"#
        }
        s +=
            #"<rect x="\#(f(left))" y="\#(f(top))" width="\#(f(plotW))" height="\#(f(plotH))" fill="none" stroke='#999'/>"#
        let yStep = Self.tickStep(yr, count: 5)
        for t in Self.ticks(yr, count: 5) {
            s += #"<line x1="\#(f(left - 4))" x2="\#(f(left))" y1="\#(f(py(t)))" y2="\#(f(py(t)))" stroke='#999'/>"#
            s += #"<text x="\#(f(left - 6))" y="\#(f(py(t) + 3))" class="yt">\#(Self.label(t, step: yStep))</text>"#
        }
        for t in Self.ticks(xr, count: 8, integers: true) {
            s +=
                #"<line x1="\#(f(px(t)))" x2="\#(f(px(t)))" y1="\#(f(top + plotH))" y2="\#(f(top + plotH + 4))" stroke='#999'/>"#
            s += #"<text x="\#(f(px(t)))" y="\#(f(top + plotH + 15))" class="xt">\#(Self.label(t, step: 1))</text>"#
        }
        s += #"<text x="\#(f(left + plotW / 2))" y="\#(f(height - 4))" class="xt">\#(HTML.escape(xLabel))</text>"#
        s += #"<text x="11" y="\#(f(top + plotH / 2))" class="xt" transform="rotate(-90 11 \#(f(top + plotH / 2)))">"#
        s += "\(HTML.escape(yLabel))</text>"
        for m in markers {
            let dash = m.dashed ? #" stroke-dasharray="3 3""# : ""
            s += #"<line x1="\#(f(px(m.x)))" x2="\#(f(px(m.x)))" y1="\#(f(top))" y2="\#(f(top + plotH))" "#
            s += #"stroke="\#(m.color)"\#(dash)/>"#
            if !m.label.isEmpty {
                s += #"<text x="\#(f(px(m.x) + 2))" y="\#(f(top + 9))" class="ml" fill="\#(m.color)">"#
                s += "\(HTML.escape(m.label))</text>"
            }
        }
        for line in series where !line.points.isEmpty {
            let pts = line.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            let w = line.bold ? 2.6 : 1.3
            s += #"<polyline points="\#(pts)" fill="none" stroke="\#(line.color)" stroke-width="\#(f(w))">"#
            s += "<title>\(HTML.escape(line.name))</title></polyline>"
            if line.points.count == 1 {
                s += #"<circle cx="\#(f(px(line.points[0].x)))" cy="\#(f(py(line.points[0].y)))" r="2.5" "#
                s += #"fill="\#(line.color)"/>"#
            }
        }
        if legend {
            for (i, line) in series.enumerated() {
                let y = top + 6 + Double(i) * 15
                let lx = left + plotW + 10
                s += #"<line x1="\#(f(lx))" x2="\#(f(lx + 16))" y1="\#(f(y))" y2="\#(f(y))" stroke="\#(line.color)" "#
                s += #"stroke-width="\#(line.bold ? "3" : "2")"/>"#
                let weight = line.bold ? #" font-weight="bold""# : ""
                s +=
                    #"<text x="\#(f(lx + 20))" y="\#(f(y + 4))" class="lg"\#(weight)>\#(HTML.escape(line.name))</text>"#
            }
        }
        return s + "</svg>"
    }

    /// Round tick positions inside `r`: steps of 1, 2 or 5 × 10^k.
    static func ticks(_ r: ClosedRange<Double>, count: Int, integers: Bool = false) -> [Double] {
        let step = tickStep(r, count: count, integers: integers)
        var t = (r.lowerBound / step).rounded(.up) * step
        var out: [Double] = []
        while t <= r.upperBound + step * 1e-9 && out.count < 50 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    static func tickStep(_ r: ClosedRange<Double>, count: Int, integers: Bool = false) -> Double {
        let span = r.upperBound - r.lowerBound
        guard span > 0, span.isFinite else { return 1 }
        let raw = span / Double(count)
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
        return integers ? max(1, step.rounded()) : step
    }

    /// A tick label with as many decimals as the tick step needs (so neighbours differ).
    static func label(_ v: Double, step: Double) -> String {
        let digits = max(0, Int(-floor(log10(step) + 1e-9)))
        return String(format: "%.\(min(digits, 8))f", v)
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }
}
