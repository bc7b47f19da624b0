import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

/// Everything `watch`, `run` and `status` show about a batch at one moment.
public struct BatchSnapshot {
    public var status: BatchStatus
    public var progress: [String: BatchQueue.JobProgress]
    public var totals: [String: BatchQueue.WorkerTotals]

    public static func take(_ q: BatchQueue) throws -> BatchSnapshot {
        BatchSnapshot(
            status: try q.status(), progress: (try? q.progress()) ?? [:], totals: (try? q.workerTotals()) ?? [:])
    }

    /// One line per worker: alive, jobs done, what it holds.
    public func workerLines() -> [String] {
        var names = Set(status.workers.map(\.name))
        names.formUnion(totals.keys)
        return names.sorted().map { name in
            let w = status.workers.first { $0.name == name }
            let done = totals[name]?.done ?? 0
            var line = "\(name): \(done) done"
            // The progress hash is updated every step; the heartbeat only every few seconds.
            let current = progress.first { $0.value.worker == name && !(w.map { !$0.alive } ?? false) }
            if let (job, p) = current.map({ ($0.key, $0.value) }) {
                line += ", on \(job.prefix(8)) step \(p.step)/\(p.total)"
            } else if let w, w.alive {
                line += w.jobID.map { ", on \($0.prefix(8))" } ?? ", idle"
            } else if let w {
                line += ", dead (no heartbeat for \(formatDuration(Double(w.lastSeenMsAgo) / 1000)))"
            } else {
                line += ", no heartbeat"
            }
            return line
        }
    }
}

/// A progress bar with counts, rate and ETA. On a terminal it redraws in place (one line
/// for the batch, one per worker); otherwise it prints a line when something changes, at
/// most every `quietInterval` seconds.
public final class ProgressReporter {
    public let isTTY: Bool
    public let quietInterval: TimeInterval
    private var samples: [(time: Date, finished: Int)] = []
    private var drawnLines = 0
    private var lastPrinted = ""
    private var lastPrintTime = Date.distantPast
    private let started = Date()

    public init(isTTY: Bool = isatty(2) == 1, quietInterval: TimeInterval = 5) {
        self.isTTY = isTTY
        self.quietInterval = quietInterval
    }

    /// jobs/s over the last minute (or since start), nil until something finished.
    public func rate(now: Date, finished: Int) -> Double? {
        samples.append((now, finished))
        samples.removeAll { now.timeIntervalSince($0.time) > 60 }
        guard let first = samples.first, finished > first.finished else { return nil }
        let dt = now.timeIntervalSince(first.time)
        return dt > 0 ? Double(finished - first.finished) / dt : nil
    }

    public func line(_ s: BatchSnapshot, collected: Int?) -> String {
        let st = s.status
        let finished = st.done + st.failed
        let width = 24
        let filled = st.total == 0 ? 0 : min(width, finished * width / st.total)
        var text = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
        text += "\(finished)/\(st.total) finished: \(st.done) done, \(st.failed) failed, \(st.running) running"
        if st.stalled > 0 { text += ", \(st.stalled) stalled" }
        text += ", \(st.queued) queued"
        if let collected { text += "; \(collected) collected" }
        let now = Date()
        if let r = rate(now: now, finished: finished) {
            text += String(format: " | %.2f jobs/s, ETA %@", r, formatDuration(Double(st.total - finished) / r))
        } else if finished < st.total {
            text += " | elapsed \(formatDuration(now.timeIntervalSince(started)))"
        }
        return text
    }

    public func update(_ s: BatchSnapshot, collected: Int? = nil) {
        let head = line(s, collected: collected)
        let workers = s.workerLines()
        if isTTY {
            var out = ""
            if drawnLines > 1 { out += "\u{1B}[\(drawnLines - 1)A" }
            out += "\r"
            let lines = [head] + workers.map { "  " + $0 }
            for (i, l) in lines.enumerated() { out += "\u{1B}[2K" + l + (i < lines.count - 1 ? "\n" : "") }
            // Clear lines left over from a longer previous frame.
            if drawnLines > lines.count {
                for _ in 0..<(drawnLines - lines.count) { out += "\n\u{1B}[2K" }
                out += "\u{1B}[\(drawnLines - lines.count)A"
            }
            drawnLines = lines.count
            FileHandle.standardError.write(Data(out.utf8))
        } else {
            let counts = head.components(separatedBy: " | ").first ?? head
            let now = Date()
            let changed = counts != lastPrinted
            let since = now.timeIntervalSince(lastPrintTime)
            guard (changed && (since >= quietInterval / 5 || s.status.finished)) || since >= quietInterval * 6 else {
                return
            }
            lastPrinted = counts
            lastPrintTime = now
            let w = workers.isEmpty ? "" : " | workers: " + workers.joined(separator: "; ")
            say(head + w)
        }
    }

    /// Ends the in-place drawing so following output starts on a fresh line.
    public func finish() {
        if isTTY && drawnLines > 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        drawnLines = 0
    }
}
