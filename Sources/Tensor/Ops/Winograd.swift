import CKernels
import Foundation

// Stride-1 3×3 convolution (padding 1) by Winograd F(2×2,3×3): 16 sgemms over transformed
// tiles instead of one over 9× expanded columns, 2.25× fewer multiplies (CKernels has the
// transforms). The input gradient is the same convolution of the output gradient with the
// flipped, transposed kernel, whose transform is the forward one with elements 0 and 3 of
// each axis swapped and the channel matrices transposed: one cached transform serves both.

/// Which algorithm stride-1 3×3 convolutions use.
public enum ConvAlgorithm: String, Sendable {
    /// Winograd where it wins (enough channels and tiles), im2col elsewhere.
    case automatic
    /// Always im2col + sgemm (the A/B baseline: `MUSE_CONV=im2col`).
    case im2col
    /// Winograd for every stride-1, padding-1 3×3 convolution (tests).
    case winograd

    /// `MUSE_CONV` (automatic, im2col, winograd); automatic when unset or unknown.
    static let fromEnvironment: ConvAlgorithm =
        ProcessInfo.processInfo.environment["MUSE_CONV"].flatMap(ConvAlgorithm.init(rawValue:)) ?? .automatic
}

extension Tensor {
    /// The stride-1 3×3 algorithm; `MUSE_CONV` sets it, tests switch it to compare the two.
    nonisolated(unsafe) public static var convAlgorithm = ConvAlgorithm.fromEnvironment

    /// Floats of transformed tiles (input and output) per band (32 MB). Bands bound memory on
    /// large images; each band re-reads all the weights, so they must be wide (1M floats gave
    /// 48-tile bands at 640 channels, too narrow for sgemm to run at speed).
    nonisolated(unsafe) public static var winogradBandBudget = 8 << 20
}

extension Tensor {
    /// Fewest 2×2 tiles (over the batch) for the automatic choice to take Winograd;
    /// `MUSE_WINOGRAD_MIN_TILES` overrides it, for measuring.
    nonisolated(unsafe) static var winogradMinTiles =
        ProcessInfo.processInfo.environment["MUSE_WINOGRAD_MIN_TILES"].flatMap(Int.init) ?? 16
}

extension ConvGeometry {
    var winogradShape: Bool { kernelH == 3 && kernelW == 3 && stride == 1 && padding == 1 }

    /// Winograd pays when the channel products are big enough for sgemm to run at speed and
    /// there are enough tiles to amortise the weight transform's extra memory traffic.
    var usesWinograd: Bool {
        guard winogradShape else { return false }
        switch Tensor.convAlgorithm {
        case .im2col: return false
        case .winograd: return true
        case .automatic:
            // Measured with cached weights: 2× im2col's speed from 1280 channels at 8×8 (16 tiles)
            // to 128 at 512×512. The choice depends on the shape alone, never on what is cached,
            // so a resumed job takes the same path as the run it resumes.
            let tiles = batch * ((height + 1) / 2) * ((width + 1) / 2)
            return min(inChannels, outChannels) >= 32 && tiles >= Tensor.winogradMinTiles
        }
    }
}

/// Weights in the Winograd domain, u[e][cout][cin], made once per weight tensor.
struct WinogradWeights {
    let outChannels, inChannels: Int
    let u: [Float]

    init(_ weight: Tensor) {
        (outChannels, inChannels) = (weight.shape[0], weight.shape[1])
        let (o, i) = (outChannels, inChannels)
        u = makeArray(16 * o * i) { u in
            weight.data.withPointer { w in
                // Per call for weights not cached: in slices across the cores.
                let slices = 64
                parallelFor(slices, work: 25 * o * i) { s in
                    let (k0, k1) = (s * o * i / slices, (s + 1) * o * i / slices)
                    muse_wino_weights(w + 9 * k0, k1 - k0, o * i, u + k0)
                }
            }
        }
    }

    /// Constant weights are transformed once and kept while the tensor lives (within the
    /// cache's limit); weights being trained change between calls and are transformed every
    /// time. Either way the values are the same: caching changes only the speed.
    static func of(_ weight: Tensor) -> WinogradWeights {
        weight.requiresGrad ? WinogradWeights(weight) : WinogradCache.lookup(weight)
    }
}

/// Transformed weights keyed by the weight tensor's identity. An entry holds its tensor
/// weakly: a freed tensor's address may be reused, so a hit must be the same live object,
/// and entries of freed tensors are dropped whenever a new one is added. Past the limit,
/// transforms are made per call (memory-bound: 1280² channels take ~50 ms, about a third of
/// a cached 16×16 convolution's time).
enum WinogradCache {
    /// `MUSE_WINOGRAD_CACHE_MB` (0: cache nothing), by default 4 GB: all of SD 1.5's UNet and VAE.
    nonisolated(unsafe) static var limitFloats: Int =
        (ProcessInfo.processInfo.environment["MUSE_WINOGRAD_CACHE_MB"].flatMap(Int.init) ?? 4096) << 18

    private final class Entry {
        weak var owner: Tensor?
        let weights: WinogradWeights
        init(_ owner: Tensor, _ weights: WinogradWeights) { (self.owner, self.weights) = (owner, weights) }
    }
    nonisolated(unsafe) private static var entries: [ObjectIdentifier: Entry] = [:]
    private static let lock = NSLock()

    static func lookup(_ weight: Tensor) -> WinogradWeights {
        lock.lock()
        defer { lock.unlock() }
        if let entry = entries[ObjectIdentifier(weight)], entry.owner === weight { return entry.weights }
        entries = entries.filter { $0.value.owner != nil }
        let made = WinogradWeights(weight)
        let held = entries.values.reduce(0) { $0 + $1.weights.u.count }
        if held + made.u.count <= limitFloats { entries[ObjectIdentifier(weight)] = Entry(weight, made) }
        return made
    }

    /// Floats held by live entries (for benchmarks' memory reports).
    static var floats: Int {
        lock.lock()
        defer { lock.unlock() }
        return entries.values.reduce(0) { $0 + ($1.owner == nil ? 0 : $1.weights.u.count) }
    }
}

extension Tensor {
    /// The instruction set CKernels' cloned functions run on here (for benchmark headers).
    public static var cKernelSet: String { String(cString: muse_kernel_set()) }

    /// Floats held by cached Winograd weight transforms.
    public static var winogradCacheFloats: Int { WinogradCache.floats }
}

/// One stride-1 3×3 convolution in the Winograd domain: y = conv(x, w) with u = transform(w),
/// or, `adjoint`, the input gradient conv(g, flip(wᵀ)) from the same u.
struct WinogradConv {
    let batch, height, width: Int
    let inChannels, outChannels: Int
    let adjoint: Bool
    var tilesH: Int { (height + 1) / 2 }
    var tilesW: Int { (width + 1) / 2 }

    init(geometry geo: ConvGeometry, adjoint: Bool) {
        (batch, height, width, self.adjoint) = (geo.batch, geo.height, geo.width, adjoint)
        // The adjoint maps output channels back to input channels.
        (inChannels, outChannels) = adjoint ? (geo.outChannels, geo.inChannels) : (geo.inChannels, geo.outChannels)
    }

    /// Rows of tiles (over all images, so small images still fill a product) per band.
    var bandRows: Int {
        max(1, min(batch * tilesH, Tensor.winogradBandBudget / (16 * (inChannels + outChannels) * tilesW)))
    }

    /// out = conv(x) (+ bias), x [batch, inChannels, height, width] → out [batch, outChannels, …].
    func run(
        _ x: UnsafePointer<Float>, _ weights: WinogradWeights, bias: [Float]?, into out: UnsafeMutablePointer<Float>
    ) {
        let rows = bandRows
        let tb = rows * tilesW
        let v = UnsafeMutablePointer<Float>.allocate(capacity: 16 * inChannels * tb)
        let m = UnsafeMutablePointer<Float>.allocate(capacity: 16 * outChannels * tb)
        defer {
            v.deallocate()
            m.deallocate()
        }
        weights.u.withPointer { u in
            for g0 in stride(from: 0, to: batch * tilesH, by: rows) {
                band(g0, min(batch * tilesH, g0 + rows), x, u, bias, v, m, out)
            }
        }
    }

    /// Tile rows [g0, g1) (row g is image g / tilesH, tile row g % tilesH): transform, multiply,
    /// transform back. Each phase splits work the same way whatever the thread count, and
    /// every value is computed by one task, so results do not depend on scheduling.
    private func band(
        _ g0: Int, _ g1: Int, _ x: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ bias: [Float]?,
        _ v: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>
    ) {
        let (t, plane) = ((g1 - g0) * tilesW, height * width)
        let (cin, cout) = (inChannels, outChannels)
        parallelFor(cin, work: 16 * cin * t) { c in
            for g in g0..<g1 {
                let (n, ty) = g.quotientAndRemainder(dividingBy: tilesH)
                let row = v + c * t + (g - g0) * tilesW
                muse_wino_input_row(x + (n * cin + c) * plane, height, width, ty, tilesW, row, cin * t)
            }
        }
        multiply(u, v, m, tiles: t)
        parallelFor(cout, work: 16 * cout * t) { o in
            for g in g0..<g1 {
                let (n, ty) = g.quotientAndRemainder(dividingBy: tilesH)
                let row = m + o * t + (g - g0) * tilesW
                muse_wino_output_row(
                    row, cout * t, tilesW, bias?[o] ?? 0, out + (n * cout + o) * plane, height, width, ty)
            }
        }
    }

    /// m[e] = u[e]·v[e] for the 16 elements, one single-threaded sgemm per task.
    private func multiply(
        _ u: UnsafePointer<Float>, _ v: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>, tiles t: Int
    ) {
        let (cin, cout) = (inChannels, outChannels)
        BLAS.withSingleThreadedKernels {
            parallelFor(16, work: Int.max) { e in
                // Flipping the kernel swaps elements 0 and 3 along each axis.
                let flip = [3, 1, 2, 0]
                let source = adjoint ? 4 * flip[e / 4] + flip[e % 4] : e
                BLAS.gemm(
                    transA: adjoint, transB: false, m: cout, n: t, k: cin, alpha: 1,
                    a: u + source * cin * cout, lda: adjoint ? cout : cin, b: v + e * cin * t, ldb: t,
                    beta: 0, c: m + e * cout * t, ldc: t)
            }
        }
    }
}
