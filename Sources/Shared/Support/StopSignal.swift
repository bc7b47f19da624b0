import Foundation

/// SIGINT/SIGTERM as a flag a loop can poll, via DispatchSource (no async-signal-safety
/// pitfalls). The first signal requests a stop; a second one calls `onSecond`.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?
    private var sources: [DispatchSourceSignal] = []
    private var count = 0

    public init() {}

    public var requested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return reason != nil
    }

    public var why: String? {
        lock.lock()
        defer { lock.unlock() }
        return reason
    }

    public func request(_ why: String) {
        lock.lock()
        if reason == nil { reason = why }
        lock.unlock()
    }

    /// The signal that arrived first (for exit codes 128+n), if any.
    public private(set) var signalNumber: Int32?

    public func install(
        signals: [Int32] = [SIGINT, SIGTERM], onFirst: (@Sendable (Int32) -> Void)? = nil,
        onSecond: (@Sendable (Int32) -> Void)? = nil
    ) {
        for s in signals {
            Foundation.signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: DispatchQueue.global())
            src.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock()
                self.count += 1
                let n = self.count
                if self.reason == nil {
                    self.reason = s == SIGINT ? "SIGINT" : s == SIGTERM ? "SIGTERM" : "signal \(s)"
                    self.signalNumber = s
                }
                self.lock.unlock()
                if n == 1 { onFirst?(s) } else { onSecond?(s) }
            }
            src.resume()
            sources.append(src)
        }
    }

    /// Sleeps up to `seconds`, waking early once a stop is requested.
    public func sleep(_ seconds: TimeInterval) {
        let deadline = Date().addingTimeInterval(seconds)
        while !requested, Date() < deadline { usleep(20_000) }
    }
}
