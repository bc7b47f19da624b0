import COpenBLAS
import Foundation

/// The one door to matrix multiplication, and the choice of OpenBLAS kernels.
///
/// OpenBLAS 0.3.21 (Debian bookworm) does not recognise recent CPUs and falls back to its
/// 'Prescott' kernels, about 6× slower than the AVX-512 ones on the same cores. On first use
/// this picks the best kernel set the CPU supports, checks it against a naive product, and
/// steps down a level if the check fails. `MUSE_BLAS_CORE` pins a kernel set by name.
public enum BLAS {
    public struct Configuration: Sendable, CustomStringConvertible {
        public let core: String
        public let loadedCore: String
        public let threads: Int
        public let reason: String
        public var description: String {
            "OpenBLAS core \(core), \(threads) thread\(threads == 1 ? "" : "s") (\(reason))"
        }
    }

    /// Kernel sets best first, with the CPU features each needs.
    static let ladder: [(name: String, flags: [String])] = [
        ("SkylakeX", ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]),
        ("Haswell", ["avx2", "fma"]),
        ("Sandybridge", ["avx"]),
        ("Nehalem", ["sse4_2"]),
    ]

    public static let configuration: Configuration = configure()

    /// Call before timing anything: makes the kernel choice happen now, not inside a benchmark.
    @discardableResult
    public static func ensureConfigured() -> Configuration { configuration }

    private static func currentCore() -> String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    private static func rank(of core: String) -> Int {
        switch core.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 0
        case "haswell", "zen": return 1
        case "sandybridge": return 2
        case "nehalem", "barcelona", "bulldozer", "piledriver", "steamroller", "excavator": return 3
        default: return 4
        }
    }

    private static func switchCore(to name: String) {
        setenv("OPENBLAS_CORETYPE", name, 1)
        gotoblas_dynamic_quit()
        gotoblas_dynamic_init()
    }

    private static func configure() -> Configuration {
        keepFreedMemoryInProcess()
        shortenThreadSpin()
        let loaded = currentCore()
        // MUSE_THREADS sets OpenBLAS's threads too; otherwise OpenBLAS keeps its own setting.
        if ProcessInfo.processInfo.environment["MUSE_THREADS"] != nil { openblas_set_num_threads(Int32(Threads.count)) }
        let threads = Int(openblas_get_num_threads())
        if let pinned = ProcessInfo.processInfo.environment["MUSE_BLAS_CORE"], !pinned.isEmpty {
            switchCore(to: pinned)
            let core = currentCore()
            guard selfCheckPasses() else {
                fatalError("BLAS: kernels '\(core)' (MUSE_BLAS_CORE=\(pinned)) fail the sgemm self-check")
            }
            return Configuration(
                core: core, loadedCore: loaded, threads: threads,
                reason: "pinned by MUSE_BLAS_CORE=\(pinned)")
        }
        let flags = cpuFlags()
        let supported = ladder.filter { $0.flags.allSatisfy(flags.contains) }
        for candidate in supported where rank(of: candidate.name) <= rank(of: loaded) {
            if candidate.name.lowercased() != loaded.lowercased() { switchCore(to: candidate.name) }
            if selfCheckPasses() {
                let core = currentCore()
                let reason =
                    core.lowercased() == loaded.lowercased()
                    ? "as loaded" : "OpenBLAS had loaded \(loaded); CPU supports \(candidate.name)"
                return Configuration(core: core, loadedCore: loaded, threads: threads, reason: reason)
            }
        }
        switchCore(to: loaded)
        guard selfCheckPasses() else { fatalError("BLAS: no OpenBLAS kernel set passes the sgemm self-check") }
        return Configuration(
            core: currentCore(), loadedCore: loaded, threads: threads,
            reason: "no better kernels passed the self-check")
    }

    /// Every op returns a fresh array; with glibc's defaults each multi-megabyte one is a new
    /// mmap whose pages the kernel must zero, and freeing it returns them. Raising the mmap
    /// and trim thresholds keeps freed activations in the heap for the next op to reuse
    /// (measured: page clearing was a fifth of a full-size UNet forward).
    static func keepFreedMemoryInProcess() {
        // mallopt is not in Swift's Glibc module; glibc's constants: M_TRIM_THRESHOLD −1
        // (value −1: never trim), M_MMAP_MAX −4 (0: never mmap, since M_MMAP_THRESHOLD caps
        // at 32 MB and a 512² VAE activation is 134 MB).
        typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
        _ = mallopt(-4, 0)
        _ = mallopt(-1, -1)
    }

    /// OpenBLAS's idle workers busy-wait (sched_yield) for 2^28 cycles after each call, which
    /// takes a core from the engine's own parallel loops between products (measured: a
    /// seventh of a UNet forward+backward spent in the scheduler). 2^N cycles from
    /// `MUSE_BLAS_SPIN` (default 16, a few tens of microseconds) instead; the thread server is
    /// restarted to pick it up, before any product runs.
    static func shortenThreadSpin() {
        let spin = ProcessInfo.processInfo.environment["MUSE_BLAS_SPIN"] ?? "16"
        setenv("OPENBLAS_THREAD_TIMEOUT", spin, 1)
        openblas_read_env()
        _ = blas_thread_shutdown_()
        _ = blas_thread_init()
    }

    static func cpuFlags() -> Set<String> {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return [] }
        return Set(line.split(separator: ":").last!.split(separator: " ").map(String.init))
    }

    /// Compares sgemm against a double-precision naive product on awkward sizes and all
    /// four transpose combinations.
    static func selfCheckPasses() -> Bool {
        var generator = SplitMix64(seed: 12345)
        for (m, n, k) in [(67, 45, 129), (256, 200, 96), (5, 300, 17)] {
            let a = (0..<(m * k)).map { _ in Float(generator.nextUniform() * 2 - 1) }
            let b = (0..<(k * n)).map { _ in Float(generator.nextUniform() * 2 - 1) }
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                var c = [Float](repeating: 0, count: m * n)
                a.withPointer { pa in
                    b.withPointer { pb in
                        c.withUnsafeMutableBufferPointer { pc in
                            rawGemm(
                                transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1,
                                a: pa, lda: ta ? m : k, b: pb, ldb: tb ? k : n, beta: 0,
                                c: pc.baseAddress!, ldc: n)
                        }
                    }
                }
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0
                        for p in 0..<k {
                            let av = ta ? a[p * m + i] : a[i * k + p]
                            let bv = tb ? b[j * k + p] : b[p * n + j]
                            sum += Double(av) * Double(bv)
                        }
                        if abs(Double(c[i * n + j]) - sum) > 1e-4 * (1 + abs(sum)) { return false }
                    }
                }
            }
        }
        return true
    }

    /// Runs `body` with OpenBLAS on one thread, for callers that parallelise across
    /// independent products themselves.
    public static func withSingleThreadedKernels<R>(_ body: () throws -> R) rethrows -> R {
        let threads = configuration.threads
        if threads > 1 { openblas_set_num_threads(1) }
        defer { if threads > 1 { openblas_set_num_threads(Int32(threads)) } }
        return try body()
    }

    /// C = alpha·op(A)·op(B) + beta·C, row-major.
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        _ = configuration
        rawGemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// sgemm without the first-use kernel choice (which itself runs sgemm to check kernels).
    @inline(__always)
    static func rawGemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
            beta, c, Int32(ldc))
    }

    /// Checked entry for callers holding tensors: configures kernels on first use.
    @inline(__always)
    static func matmul(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        beta: Float = 0, c: UnsafeMutablePointer<Float>
    ) {
        gemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: transA ? m : k, b: b, ldb: transB ? k : n, beta: beta, c: c, ldc: n)
    }
}

extension BLAS {
    public static func cpuModelName() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") })
        else { return "unknown CPU" }
        return line.split(separator: ":", maxSplits: 1).last!.trimmingCharacters(in: .whitespaces)
    }
}
