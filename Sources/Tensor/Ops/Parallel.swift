import Foundation

// Work split across the cores. OpenBLAS is single-threaded inside tasks, so the cores run
// our loops and many small products instead of one core idling while the other computes.

/// How many cores the engine uses: `MUSE_THREADS` (1...1024) when set, else every core the
/// process may run on. OpenBLAS is set to the same number (see BLAS).
public enum Threads {
    public static let count: Int = {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if let text = ProcessInfo.processInfo.environment["MUSE_THREADS"], let n = Int(text), (1...1024).contains(n) {
            return n
        }
        return cores
    }()

    /// Problems with a `MUSE_THREADS` value (nil when fine or unset), for start-up checks.
    public static func problem(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let text = environment["MUSE_THREADS"] else { return nil }
        guard let n = Int(text), (1...1024).contains(n) else { return "MUSE_THREADS='\(text)' is not in 1...1024" }
        return nil
    }
}

/// Runs `body(index, scratch)` for every index in 0..<count, spread over the cores, each
/// worker with its own scratch buffer of `scratch` floats and single-threaded sgemm.
func forEachTask(_ count: Int, scratch: Int, _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
    let workers = min(count, Threads.count)
    func run(_ worker: Int, _ stride: Int) {
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(scratch, 1))
        defer { buffer.deallocate() }
        var index = worker
        while index < count {
            body(index, buffer)
            index += stride
        }
    }
    if workers <= 1 || count * scratch < 1 << 14 {
        run(0, 1)
        return
    }
    BLAS.withSingleThreadedKernels {
        DispatchQueue.concurrentPerform(iterations: workers) { run($0, workers) }
    }
}

/// `body(i)` for i in 0..<count, across the cores when `work` (values touched) is large.
func parallelFor(_ count: Int, work: Int, _ body: (Int) -> Void) {
    let workers = min(count, Threads.count)
    if workers <= 1 || work < 1 << 16 {
        for i in 0..<count { body(i) }
        return
    }
    DispatchQueue.concurrentPerform(iterations: workers) { worker in
        var i = worker
        while i < count {
            body(i)
            i += workers
        }
    }
}
