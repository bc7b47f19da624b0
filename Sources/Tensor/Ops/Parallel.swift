import Foundation

// Work split across the cores. OpenBLAS is single-threaded inside tasks, so the cores run
// our loops and many small products instead of one core idling while the other computes.

/// Runs `body(index, scratch)` for every index in 0..<count, spread over the cores, each
/// worker with its own scratch buffer of `scratch` floats and single-threaded sgemm.
func forEachTask(_ count: Int, scratch: Int, _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
    let workers = min(count, ProcessInfo.processInfo.activeProcessorCount)
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
    let workers = min(count, ProcessInfo.processInfo.activeProcessorCount)
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
