import Foundation
import Imaging
import Jobs
import RedisQueue
import Support

/// Turns a batch's results stream into files: one PNG per job, one fsynced manifest line
/// per job (done or failed) — written exactly once, even across coordinator crashes: the
/// manifest is the commit point, a result is deleted from Redis only after its line is
/// durable, and results whose job already has a line are skipped.
public final class Collector {
    public let queue: BatchQueue
    public let output: URL
    public let manifest: ManifestWriter
    public let log: (String) -> Void
    private var resultsCursor = "0-0"
    private var deadCursor = "0-0"
    private var jobCache: [String: PipelineJob] = [:]
    /// Lines written by this collector.
    public private(set) var written = 0
    /// Counts lines, PNG bytes and pass times when set (`--metrics-port`).
    public var metrics: CoordinatorMetrics?
    private(set) var failedWritten = 0

    public static let manifestName = "manifest.jsonl"
    public static let sheetName = "contact-sheet.png"

    /// The output folder's lock, held while this collector lives: two collectors (two
    /// `collect`s, or `collect` beside `run`) on one folder would each append the same jobs.
    public let lock: OutputLock

    /// Takes the output folder's lock (or uses `lock`, which the caller already holds on
    /// `output`), removes temporary files a killed collector left, and opens the manifest.
    /// Unless `allowMixed`, a manifest that already holds other batches is refused.
    public init(
        queue: BatchQueue, output: URL, lock: OutputLock? = nil, allowMixed: Bool = false,
        log: @escaping (String) -> Void
    ) throws {
        self.queue = queue
        self.output = output
        self.log = log
        do { try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true) } catch {
            throw InputError("cannot create the output folder \(output.path): \(error.localizedDescription)")
        }
        if let lock {
            precondition(lock.folder.standardizedFileURL == output.standardizedFileURL, "lock of another folder")
            self.lock = lock
        } else {
            self.lock = try OutputLock(folder: output)
        }
        for name in Self.removeStaleTemporaries(in: output) { log("removed \(name), left by a killed collector") }
        let manifestURL = output.appendingPathComponent(Self.manifestName)
        if !allowMixed { try Self.refuseMixing(manifest: manifestURL, batchID: queue.batchID) }
        manifest = try ManifestWriter(url: manifestURL)
    }

    // MARK: one batch per output folder

    /// The batches other than `batchID` with lines in the manifest, and how many lines each.
    public static func otherBatches(manifest url: URL, than batchID: String) throws -> [(batch: String, lines: Int)] {
        struct BatchOnly: Decodable {
            var batchID: String?
            enum CodingKeys: String, CodingKey { case batchID = "batch_id" }
        }
        var counts: [String: Int] = [:]
        for entry in try ManifestWriter.readEntries(url, as: BatchOnly.self) {
            if let b = entry.batchID, b != batchID { counts[b, default: 0] += 1 }
        }
        return counts.sorted { $0.key < $1.key }.map { (batch: $0.key, lines: $0.value) }
    }

    /// Throws when the manifest holds another batch: one manifest and one contact sheet per
    /// batch, unless the caller allows mixing (`--allow-mixed`).
    public static func refuseMixing(manifest url: URL, batchID: String) throws {
        let others = try otherBatches(manifest: url, than: batchID)
        guard !others.isEmpty else { return }
        let listed = others.prefix(3).map { "\($0.batch) (\($0.lines) jobs)" }.joined(separator: ", ")
        let more = others.count > 3 ? " and \(others.count - 3) more" : ""
        throw InputError(
            "\(url.path) already holds batch \(listed)\(more), and this is batch \(batchID): "
                + "use another output folder, or pass --allow-mixed to add this batch to the same manifest "
                + "(its contact sheet is then \(sheetName(batchID: batchID, mixed: true)))")
    }

    /// contact-sheet.png, or contact-sheet-BATCH.png in a folder that holds several batches.
    public static func sheetName(batchID: String, mixed: Bool) -> String {
        mixed ? "contact-sheet-\(batchID).png" : sheetName
    }

    // MARK: temporary files

    /// Removes `.NAME.tmp-PID` files (what `writeDurably` writes before its rename) in the
    /// output folder and its subfolders, down to the deepest the collector writes
    /// (traces/<emotion>/), whose process is gone: a collector killed mid-write leaves them.
    /// Hidden folders (.redis) and links are not entered. Returns the removed paths, relative to `output`.
    @discardableResult
    public static func removeStaleTemporaries(in output: URL) -> [String] {
        let fm = FileManager.default
        var removed: [String] = []
        var folders: [(relative: String, depth: Int)] = [("", 0)]
        while let (folder, depth) = folders.popLast() {
            let dir = folder.isEmpty ? output : output.appendingPathComponent(folder)
            for name in (try? fm.contentsOfDirectory(atPath: dir.path)) ?? [] {
                let relative = folder.isEmpty ? name : "\(folder)/\(name)"
                let path = dir.appendingPathComponent(name).path
                if let pid = temporaryOwner(name) {
                    if !processIsAlive(pid), unlink(path) == 0 { removed.append(relative) }
                    continue
                }
                var st = stat()
                guard depth < maxTemporaryDepth, !name.hasPrefix("."), lstat(path, &st) == 0,
                    st.st_mode & S_IFMT == S_IFDIR
                else { continue }
                folders.append((relative, depth + 1))
            }
        }
        return removed.sorted()
    }

    /// How deep under the output folder the collector writes: traces/<emotion>/FILE is depth 2.
    static let maxTemporaryDepth = 3

    /// The PID in a name `writeDurably` gives its temporary files (`.NAME.tmp-PID`), else nil.
    static func temporaryOwner(_ name: String) -> pid_t? {
        guard name.hasPrefix("."), let range = name.range(of: ".tmp-", options: .backwards),
            range.lowerBound > name.index(after: name.startIndex)
        else { return nil }
        let digits = name[range.upperBound...]
        guard !digits.isEmpty, digits.count <= 10, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
            let pid = pid_t(digits), pid > 0
        else { return nil }
        return pid
    }

    static func processIsAlive(_ pid: pid_t) -> Bool {
        if pid == getpid() { return false }  // nothing of ours is being written yet
        return kill(pid, 0) == 0 || errno == EPERM
    }

    public var manifestURL: URL { output.appendingPathComponent(Self.manifestName) }

    /// Collects every result and dead letter not yet in the manifest; returns lines written.
    @discardableResult
    public func collectNew() throws -> Int {
        let before = written
        let began = Date()
        defer { metrics?.pass(seconds: Date().timeIntervalSince(began)) }
        while true {
            let page = try queue.results(after: resultsCursor, count: 32)
            if page.isEmpty { break }
            for entry in page {
                try handleResult(entry)
                resultsCursor = entry.id
            }
        }
        while true {
            let page = try queue.deadLetters(after: deadCursor, count: 100)
            if page.isEmpty { break }
            for entry in page {
                try handleDeadLetter(entry)
                deadCursor = entry.id
            }
        }
        if written > before { try DatasetFiles.write(output: output, batchID: queue.batchID) }
        return written - before
    }

    private func job(_ id: String) throws -> PipelineJob? {
        if let j = jobCache[id] { return j }
        guard let data = try queue.payload(jobID: id) else { return nil }
        let j = try? PipelineJob.decode(data)
        jobCache[id] = j
        return j
    }

    private func handleResult(_ e: StreamEntry) throws {
        guard let stamp = JobResult.Stamp(fields: e.fields) else { return }
        let id = stamp.jobID
        // A failure line is replaced by a requeued job's result; anything else was collected
        // before a crash and its line is durable.
        if manifest.contains(id) && manifest.failure(id) == nil {
            try queue.deleteResult(id: e.id)
            return
        }
        guard let job = try job(id) else {
            log("result \(e.id) names job \(id), which this batch does not have; skipped")
            return
        }
        let record = try queue.job(id)
        var line = ManifestEntry(job: job, batchID: queue.batchID, status: .done, attempts: record?.attempts ?? 0)
        line.worker = stamp.worker
        line.epoch = stamp.epoch
        let result: JobResult
        do { result = try JobResult(fields: e.fields) } catch {
            // Only a published job's own result may end it: an unreadable entry for a job that
            // is still running is not its result (the real one is still to come). Drop it.
            if record?.isPublished != true || line.epoch.map({ $0 != record?.epoch }) == true {
                log("result \(e.id) for job \(id) is unreadable (\(error)) and not the job's published result; dropped")
                try queue.deleteResult(id: e.id)
                return
            }
            log("result \(e.id) for job \(id) is unreadable: \(error)")
            line.status = .failed
            line.error = "the worker's result has no readable png/metrics fields"
            try append(line)
            try queue.deleteResult(id: e.id)
            return
        }
        let png = result.png
        let metrics = result.metrics
        let sha = Hashing.sha256Hex(png)
        guard sha == metrics.pngSHA256 else {
            line.status = .failed
            line.error = "result PNG damaged: sha256 \(sha), the worker reported \(metrics.pngSHA256)"
            try append(line)
            try queue.deleteResult(id: e.id)
            return
        }
        let url = try PathConfinement.resolve(job.output, under: output)
        try Self.writeDurably(png, to: url)
        self.metrics?.wrotePNG(bytes: png.count)
        if let source = job.content.imageSHA256 { line.sourceOutput = try ensureSource(source, job: job) }
        if case .object(var document)? = metrics.traceDocument {
            document["job_id"] = .string(job.id)
            let path = "traces/" + (job.output as NSString).deletingPathExtension + ".json"
            try Self.writeDurably(
                try CanonicalJSON.encode(JSONValue.object(document)),
                to: try PathConfinement.resolve(path, under: output))
            line.traceFile = path
        }
        line.evaluation = metrics.evaluation
        line.output = job.output
        line.sha256 = sha
        line.width = metrics.width
        line.height = metrics.height
        line.probabilities = metrics.probabilities
        line.targetProbability = metrics.targetProbability
        line.topEmotion = metrics.topEmotion
        line.timings = metrics.timings
        line.worker = metrics.worker
        line.epoch = metrics.epoch
        line.resumedFromStep = metrics.resumedFromStep
        line.segments = metrics.segments
        line.trace = metrics.trace
        try append(line)
        try queue.deleteResult(id: e.id)
    }

    private func handleDeadLetter(_ e: StreamEntry) throws {
        let letter: DeadLetter
        do { letter = try DeadLetter(fields: e.fields) } catch {
            log("dead letter \(e.id) is unreadable (\(error)); skipped")
            return
        }
        let id = letter.jobID
        if manifest.contains(id) {
            // Only a requeued job's new failure (another epoch) replaces its old failure line.
            guard let old = manifest.failure(id), let epoch = letter.epoch, old != epoch else { return }
        }
        guard let job = try job(id) else {
            log("dead letter \(e.id) names job \(id), which this batch does not have; skipped")
            return
        }
        let recorded = try queue.job(id)?.attempts ?? 0
        var line = ManifestEntry(
            job: job, batchID: queue.batchID, status: letter.status, attempts: letter.attempts ?? recorded)
        line.error = letter.error
        line.worker = letter.worker
        line.epoch = letter.epoch
        try append(line)
        failedWritten += 1
    }

    private func append(_ line: ManifestEntry) throws {
        if manifest.contains(line.jobID) {
            try manifest.replace(line)
        } else if !(try manifest.append(line)) {
            return
        }
        written += 1
        metrics?.wroteLine(status: line.status)
    }

    /// Source images of edits, kept next to the results for the contact sheet and the
    /// report; returns the path relative to the output folder (nil: the blob is gone).
    private func ensureSource(_ sha: String, job: PipelineJob) throws -> String? {
        let path = "sources/\(sha.prefix(16)).png"
        let url = output.appendingPathComponent(path)
        if FileManager.default.fileExists(atPath: url.path) { return path }
        let stored: Data?
        if let shared = job.sharedSources {
            // This host may not mount the folder: then the source is left out, as a gone blob is.
            stored = try? SharedSources.read(sha256: sha, root: SharedSources.root(job: shared))
        } else {
            stored = try queue.blob(name: sha)
        }
        guard let bytes = stored else { return nil }
        try Self.writeDurably(bytes, to: url)
        return path
    }

    /// Write to a temporary file, fsync, rename over the target, fsync the folder: the
    /// file is either absent or complete, whatever happens.
    public static func writeDurably(_ data: Data, to url: URL) throws {
        try writeDurably(to: url) { try $0(data) }
    }

    /// `writeDurably` for contents written in pieces: `body` gets a function that appends.
    public static func writeDurably(to url: URL, _ body: (_ write: (Data) throws -> Void) throws -> Void) throws {
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw InputError("cannot write \(tmp.path): \(String(cString: strerror(errno)))") }
        func append(_ data: Data) throws {
            let ok = data.withUnsafeBytes { raw -> Bool in
                var done = 0
                while done < raw.count {
                    let n = write(fd, raw.baseAddress! + done, raw.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    done += n
                }
                return true
            }
            if !ok { throw InputError("cannot write \(url.path): \(String(cString: strerror(errno)))") }
        }
        do {
            try body(append)
            guard fsync(fd) == 0 else {
                throw InputError("cannot write \(url.path): \(String(cString: strerror(errno)))")
            }
        } catch {
            close(fd)
            unlink(tmp.path)
            throw error
        }
        close(fd)
        guard rename(tmp.path, url.path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp.path)
            throw InputError("cannot write \(url.path): \(why)")
        }
        let dfd = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }

    /// The contact sheet: one row per (prompt, seed) or source image, one column per
    /// emotion (edit rows start with their source). Failed cells are red, missing grey.
    /// `jobs`: the jobs to show with their cells; lines come from the manifest.
    public static func writeContactSheet(
        output: URL, jobs: [(id: String, row: Int, column: Int, source: String?)], columns: Int,
        maxRows: Int = 100, name: String = sheetName
    ) throws -> URL? {
        guard !jobs.isEmpty else { return nil }
        let lines = try ManifestWriter.readEntries(output.appendingPathComponent(manifestName), as: ManifestEntry.self)
        var byID: [String: ManifestEntry] = [:]
        for l in lines { byID[l.jobID] = l }
        let rows = min(maxRows, (jobs.map(\.row).max() ?? 0) + 1)
        var images: [[RGBImage?]] = Array(repeating: Array(repeating: nil, count: columns), count: rows)
        var side = 64
        func load(_ path: String) -> RGBImage? {
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            return try? PNGCodec.decode(data).rgb()
        }
        for j in jobs where j.row < rows && j.column < columns {
            let line = byID[j.id]
            var img: RGBImage
            if let line, line.status == .done, let rel = line.output,
                let decoded = load(output.appendingPathComponent(rel).path)
            {
                img = decoded
                side = max(side, decoded.width, decoded.height)
            } else if line?.status == .failed {
                img = RGBImage(width: 8, height: 8, fill: (214, 92, 92))
            } else {
                img = RGBImage(width: 8, height: 8, fill: (205, 205, 205))
            }
            images[j.row][j.column] = img
            if let source = j.source, j.column > 0, images[j.row][0] == nil,
                let s = load(output.appendingPathComponent("sources/\(source.prefix(16)).png").path)
            {
                images[j.row][0] = s
            }
        }
        let blank = RGBImage(width: 1, height: 1, fill: (255, 255, 255))
        let flat = images.flatMap { $0.map { $0 ?? blank } }
        let cell = max(128, min(256, side))
        let sheet = ContactSheet.make(flat, columns: columns, cellWidth: cell, cellHeight: cell, gap: 4)
        let url = output.appendingPathComponent(name)
        try writeDurably(try PNGCodec.encode(sheet), to: url)
        return url
    }
}
