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

    /// At most this many worker lines by default; above it, a summary and a selection.
    public static let workerLineLimit = 12

    /// One line per worker: alive, jobs done, what it holds. With more than `limit` workers:
    /// a summary line, then the busiest (most jobs done), the slowest (most seconds per job)
    /// and the dead ones, three of each — what an operator of 100 workers looks for.
    public func workerLines(limit: Int? = workerLineLimit) -> [String] {
        var names = Set(status.workers.map(\.name))
        names.formUnion(totals.keys)
        guard let limit, names.count > limit else { return names.sorted().map(workerLine) }
        let alive = status.workers.filter(\.alive)
        let busy = Set(progress.values.map(\.worker)).union(alive.compactMap { $0.jobID == nil ? nil : $0.name })
        let dead = status.workers.filter { !$0.alive }.sorted { $0.lastSeenMsAgo > $1.lastSeenMsAgo }
        var lines = [
            "\(names.count) workers: \(alive.count) alive (\(busy.intersection(alive.map(\.name)).count) busy), "
                + "\(dead.count) dead; the busiest, slowest and dead below (--workers lists all)"
        ]
        let byDone = names.sorted { (totals[$0]?.done ?? 0, $1) > (totals[$1]?.done ?? 0, $0) }
        let perJob = { (n: String) -> Double in
            guard let t = totals[n], t.done > 0 else { return 0 }
            return t.seconds / Double(t.done)
        }
        let slowest = names.filter { perJob($0) > 0 }.sorted { (perJob($0), $1) > (perJob($1), $0) }
        var shown = Set<String>()
        for (tag, group) in [
            ("busiest", Array(byDone.prefix(3))), ("slowest", Array(slowest.prefix(3))),
            ("dead", dead.prefix(3).map(\.name)),
        ] {
            for name in group where shown.insert(name).inserted {
                var line = "[\(tag)] " + workerLine(name)
                if tag == "slowest" { line += String(format: ", %.1f s/job", perJob(name)) }
                lines.append(line)
            }
        }
        return lines
    }

    private func workerLine(_ name: String) -> String {
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

/// A progress bar with counts, rate and ETA. On a terminal it redraws in place (one line
/// for the batch, one per worker); otherwise it prints a line when something changes, at
/// most every `quietInterval` seconds.
public final class ProgressReporter {
    public let isTTY: Bool
    /// Worker lines shown before a summary takes over (nil: all; `--workers`).
    public var workerLimit: Int? = BatchSnapshot.workerLineLimit
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
        let workers = s.workerLines(limit: workerLimit)
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
