import Foundation

/// Unicode NFC with the reference's data: `tokenizers` normalises with the
/// unicode-normalization-alignments crate, whose tables are Unicode 9.0, so characters
/// assigned after 9.0 have combining class 0 and take part in no (de)composition there.
/// The tables are derived once from the standard library's Unicode data restricted to
/// characters of age <= 9.0 (decompositions, classes and exclusions of assigned characters
/// are stable across versions). The standard library's own NFC (`_nfcCodeUnits`,
/// Foundation's `precomposedStringWithCanonicalMapping`) is not used: it is newer Unicode,
/// and it skips canonical reordering in some cases (marks around U+0F75; marks after some
/// starters such as U+01C4 or Hangul vowels).
enum ReferenceNFC {
    static let maxMajorVersion = 9

    struct Tables {
        var decomposition: [UInt32: [Unicode.Scalar]] = [:]
        var composition: [UInt64: Unicode.Scalar] = [:]
    }

    static let tables: Tables = build()

    @inline(__always)
    static func isKnown(_ s: Unicode.Scalar) -> Bool {
        guard let age = s.properties.age else { return false }
        return age.major <= maxMajorVersion
    }

    @inline(__always)
    static func combiningClass(_ s: Unicode.Scalar) -> UInt8 {
        if s.value < 0x300 { return 0 }
        guard isKnown(s) else { return 0 }
        return s.properties.canonicalCombiningClass.rawValue
    }

    static func build() -> Tables {
        var t = Tables()
        // Ranges with no canonical decompositions are skipped (CJK ideographs, Hangul
        // syllables, which are algorithmic, Yi, private use).
        let skip: [ClosedRange<UInt32>] = [
            0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF, 0xAC00...0xD7A3,
            0xE000...0xF8FF, 0x20000...0x2F7FF,
        ]
        var v: UInt32 = 0xC0
        while v <= 0x2FFFF {
            if let r = skip.first(where: { $0.contains(v) }) {
                v = r.upperBound + 1
                continue
            }
            defer { v += 1 }
            guard let s = Unicode.Scalar(v), isKnown(s) else { continue }
            let d = Array(String(s).decomposedStringWithCanonicalMapping.unicodeScalars)
            if d.count != 1 || d[0] != s { t.decomposition[v] = d }
        }
        var byFull: [[UInt32]: [Unicode.Scalar]] = [:]
        for (v, d) in t.decomposition { byFull[d.map(\.value), default: []].append(Unicode.Scalar(v)!) }
        for (v, d) in t.decomposition where d.count >= 2 {
            let x = Unicode.Scalar(v)!
            guard !x.properties.isFullCompositionExclusion else { continue }
            let rest = Array(d.dropLast())
            let first: Unicode.Scalar?
            if rest.count == 1 {
                first = rest[0]
            } else {
                first = byFull[rest.map(\.value)]?.filter { !$0.properties.isFullCompositionExclusion }.min {
                    $0.value < $1.value
                }
            }
            if let first { t.composition[UInt64(first.value) << 32 | UInt64(d.last!.value)] = x }
        }
        return t
    }

    // Hangul syllable arithmetic (Unicode ch. 3.12).
    static let sBase: UInt32 = 0xAC00, lBase: UInt32 = 0x1100, vBase: UInt32 = 0x1161, tBase: UInt32 = 0x11A7
    static let lCount: UInt32 = 19, vCount: UInt32 = 21, tCount: UInt32 = 28
    static let nCount = vCount * tCount, sCount = lCount * vCount * tCount

    // Long on purpose: one pass of the reference algorithm, kept in its published order so
    // it can be read against the reference side by side.
    static func normalize(_ text: String) -> String {
        let tables = Self.tables
        // Decompose.
        var d: [Unicode.Scalar] = []
        d.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            let v = s.value
            if v < 0xC0 {
                d.append(s)
                continue
            }
            if v >= sBase && v < sBase + sCount {
                let i = v - sBase
                d.append(Unicode.Scalar(lBase + i / nCount)!)
                d.append(Unicode.Scalar(vBase + (i % nCount) / tCount)!)
                if i % tCount != 0 { d.append(Unicode.Scalar(tBase + i % tCount)!) }
                continue
            }
            if let m = tables.decomposition[v] { d += m } else { d.append(s) }
        }
        // Canonical ordering: stable sort of each run of non-starters by class.
        let classes = d.map(combiningClass)
        var i = 0
        var ordered = d
        var orderedClasses = classes
        while i < d.count {
            if classes[i] == 0 {
                i += 1
                continue
            }
            var j = i
            while j < d.count && classes[j] != 0 { j += 1 }
            if j - i > 1 {
                let run = (i..<j).sorted { a, b in classes[a] != classes[b] ? classes[a] < classes[b] : a < b }
                for (k, src) in run.enumerated() {
                    ordered[i + k] = d[src]
                    orderedClasses[i + k] = classes[src]
                }
            }
            i = j
        }
        // Canonical composition.
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(ordered.count)
        var starter: Int?
        var lastClass: UInt8 = 0
        for (k, c) in ordered.enumerated() {
            let cc = orderedClasses[k]
            if let sp = starter {
                let adjacent = out.count - 1 == sp
                if adjacent || (lastClass != 0 && lastClass < cc) {
                    if let composite = compose(out[sp], c, tables) {
                        out[sp] = composite
                        continue
                    }
                }
            }
            if cc == 0 { starter = out.count }
            lastClass = cc
            out.append(c)
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: out)
        return String(view)
    }

    @inline(__always)
    static func compose(_ a: Unicode.Scalar, _ b: Unicode.Scalar, _ tables: Tables) -> Unicode.Scalar? {
        let av = a.value
        let bv = b.value
        if av >= lBase && av < lBase + lCount && bv >= vBase && bv < vBase + vCount {
            return Unicode.Scalar(sBase + ((av - lBase) * vCount + (bv - vBase)) * tCount)
        }
        if av >= sBase && av < sBase + sCount && (av - sBase) % tCount == 0 && bv > tBase && bv < tBase + tCount {
            return Unicode.Scalar(av + (bv - tBase))
        }
        return tables.composition[UInt64(av) << 32 | UInt64(bv)]
    }
}
