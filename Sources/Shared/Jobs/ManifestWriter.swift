import Foundation
import Imaging
import RedisQueue
import Support
import Vocabulary

public enum ManifestError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case io(String)
    case corruptLine(path: String, line: Int)
    case missingID(key: String)
    /// A line that is JSON but not an entry of the expected shape: the decoder's reason.
    case undecodable(path: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case .io(let m): return "manifest I/O error: \(m)"
        case .corruptLine(let p, let n): return "manifest \(p) line \(n) is not a JSON object with a job id"
        case .missingID(let k): return "manifest entry has no string field '\(k)'"
        case .undecodable(let p, let n, let reason): return "manifest \(p) line \(n): \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

/// JSON-lines manifest: one object per job, fsynced before `append` returns — so after a
/// coordinator crash the file says exactly which jobs are safely collected, and reopening it
/// skips them. Appends only, except that a failed job's line is replaced when the job is
/// requeued and runs again (`replace`: the file is rewritten and renamed into place), so the
/// manifest stays one line per job, its latest outcome.
public final class ManifestWriter: @unchecked Sendable {
    public let url: URL
    public let idKey: String
    private var fd: Int32
    private var ids: Set<String>
    /// Jobs whose line is not `JobStatus.done`, with that line's epoch (a retry's outcome has another).
    private var failures: [String: UInt64?]
    private let lock = NSLock()

    /// Opens (creating if needed) and loads the ids already present. A torn final line —
    /// a crash mid-write, which does not parse as JSON — is cut off so the next append starts
    /// on a clean line; a complete final line that only lacks its newline (an editor, a copy)
    /// is kept and its newline added: it may be the only record of a job whose result is
    /// already gone from Redis.
    public init(url: URL, idKey: String = "job_id") throws {
        self.url = url
        self.idKey = idKey
        let existed = FileManager.default.fileExists(atPath: url.path)
        let (lines, numbers, validLength, fileLength, unterminated) = try Self.scan(url)
        var ids = Set<String>()
        var failures: [String: UInt64?] = [:]
        for (n, line) in zip(numbers, lines) {
            guard let fields = Self.fields(line), let id = fields[idKey] as? String else {
                throw ManifestError.corruptLine(path: url.path, line: n)
            }
            ids.insert(id)
            if let failure = Self.failure(fields) { failures[id] = failure } else { failures[id] = nil }
        }
        self.ids = ids
        self.failures = failures
        fd = open(url.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ManifestError.io("cannot open \(url.path): \(String(cString: strerror(errno)))") }
        if unterminated {
            let newline: [UInt8] = [0x0A]
            guard write(fd, newline, 1) == 1, fsync(fd) == 0 else {
                let e = String(cString: strerror(errno))
                Glibc.close(fd)
                throw ManifestError.io("cannot end the last line of \(url.path): \(e)")
            }
        } else if validLength < fileLength {
            guard ftruncate(fd, off_t(validLength)) == 0, fsync(fd) == 0 else {
                let e = String(cString: strerror(errno))
                Glibc.close(fd)
                throw ManifestError.io("cannot cut torn line of \(url.path): \(e)")
            }
        }
        if !existed { Self.syncDirectory(of: url) }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    public var jobIDs: Set<String> {
        lock.lock()
        defer { lock.unlock() }
        return ids
    }

    public func contains(_ jobID: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return ids.contains(jobID)
    }

    /// The epoch of the job's failure line (`.some(nil)`: a failure line without one), or nil
    /// when the job has no line or a `done` one.
    public func failure(_ jobID: String) -> UInt64?? {
        lock.lock()
        defer { lock.unlock() }
        return failures[jobID]
    }

    /// Replaces the job's line with `entry` (or appends it): the other lines are copied to a
    /// temporary file beside the manifest, fsynced and renamed over it, so a crash leaves
    /// either the old manifest or the new one.
    public func replace<T: Encodable>(_ entry: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = try encoder.encode(entry)
        guard let fields = Self.fields(json), let id = fields[idKey] as? String else {
            throw ManifestError.missingID(key: idKey)
        }
        lock.lock()
        defer { lock.unlock() }
        guard fd >= 0 else { throw ManifestError.io("manifest \(url.path) is closed") }
        var out = Data()
        for line in try Self.scan(url).lines where Self.extractID(line, key: idKey) != id {
            out.append(line)
            out.append(0x0A)
        }
        out.append(json)
        out.append(0x0A)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        let tfd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard tfd >= 0 else { throw ManifestError.io("cannot create \(tmp.path): \(String(cString: strerror(errno)))") }
        let ok = out.withUnsafeBytes { raw -> Bool in
            var done = 0
            while done < raw.count {
                let n = write(tfd, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                done += n
            }
            return fsync(tfd) == 0
        }
        Glibc.close(tfd)
        guard ok, rename(tmp.path, url.path) == 0 else {
            unlink(tmp.path)
            throw ManifestError.io("cannot rewrite \(url.path): \(String(cString: strerror(errno)))")
        }
        Self.syncDirectory(of: url)
        Glibc.close(fd)
        fd = open(url.path, O_WRONLY | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ManifestError.io("cannot reopen \(url.path): \(String(cString: strerror(errno)))") }
        ids.insert(id)
        failures[id] = Self.failure(fields)
    }

    /// Appends `entry` (must encode to an object with a string `idKey`). Returns false and
    /// writes nothing if that id is already in the manifest.
    @discardableResult
    public func append<T: Encodable>(_ entry: T) throws -> Bool {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try appendLine(try encoder.encode(entry))
    }

    /// Appends one already-encoded JSON object (newlines inside are not allowed).
    @discardableResult
    public func appendLine(_ json: Data) throws -> Bool {
        guard let id = Self.extractID(json, key: idKey) else { throw ManifestError.missingID(key: idKey) }
        precondition(!json.contains(0x0A), "a manifest entry must be a single line")
        lock.lock()
        defer { lock.unlock() }
        guard fd >= 0 else { throw ManifestError.io("manifest \(url.path) is closed") }
        if ids.contains(id) { return false }
        var line = [UInt8](json)
        line.append(0x0A)
        try line.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ManifestError.io("write to \(url.path) failed: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
        guard fsync(fd) == 0 else {
            throw ManifestError.io("fsync of \(url.path) failed: \(String(cString: strerror(errno)))")
        }
        ids.insert(id)
        if let fields = Self.fields(json) { failures[id] = Self.failure(fields) }
        return true
    }

    public func close() {
        lock.lock()
        defer { lock.unlock() }
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// The complete lines of a manifest (a torn last line is ignored; a last line that parses
    /// is complete even without its newline), for reports and tools.
    public static func readLines(_ url: URL) throws -> [Data] {
        try scan(url).lines
    }

    /// Every line decoded as `T`; a line that does not decode is an error naming the file,
    /// the line and what is wrong with it.
    public static func readEntries<T: Decodable>(_ url: URL, as type: T.Type) throws -> [T] {
        let decoder = JSONDecoder()
        let scanned = try scan(url)
        return try zip(scanned.numbers, scanned.lines).map { number, line in
            do { return try decoder.decode(T.self, from: line) } catch {
                throw ManifestError.undecodable(path: url.path, line: number, reason: describe(error))
            }
        }
    }

    /// A decoding error in a sentence: which field, and why.
    static func describe(_ error: Error) -> String {
        let field = { (path: [CodingKey]) in
            path.isEmpty
                ? ""
                : " at '" + path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "'"
        }
        switch error as? DecodingError {
        case .dataCorrupted(let c)?:
            return c.codingPath.isEmpty ? "not valid JSON" : "bad value\(field(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let key, let c)?: return "no '\(key.stringValue)'\(field(c.codingPath))"
        case .typeMismatch(_, let c)?, .valueNotFound(_, let c)?:
            return "wrong type\(field(c.codingPath)): \(c.debugDescription)"
        default: return "\(error)"
        }
    }

    /// The lines, the length of the part that holds them, the file's length, and whether the
    /// last line is complete but lacks its newline.
    private static func scan(_ url: URL) throws -> (
        lines: [Data], numbers: [Int], validLength: Int, fileLength: Int, unterminated: Bool
    ) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            return ([], [], 0, 0, false)
        }
        if isDirectory.boolValue { throw ManifestError.io("\(url.path) is a folder, not a manifest file") }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ManifestError.io("cannot read \(url.path): \(error.localizedDescription)")
        }
        var lines: [Data] = []
        var numbers: [Int] = []
        var number = 0
        var start = data.startIndex
        var validEnd = data.startIndex
        while let nl = data[start...].firstIndex(of: 0x0A) {
            let line = data[start..<nl]
            number += 1
            if !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) {
                lines.append(Data(line))
                numbers.append(number)
            }
            start = nl + 1
            validEnd = start
        }
        // The rest has no newline: a torn write if it does not parse, else a whole line.
        let tail = data[start...]
        if !tail.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }),
            (try? JSONSerialization.jsonObject(with: Data(tail))) != nil
        {
            lines.append(Data(tail))
            numbers.append(number + 1)
            return (lines, numbers, data.count, data.count, true)
        }
        return (lines, numbers, validEnd - data.startIndex, data.count, false)
    }

    private static func extractID(_ line: Data, key: String) -> String? {
        fields(line)?[key] as? String
    }

    private static func fields(_ line: Data) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: line) as? [String: Any]
    }

    /// A line that is not `done`: its epoch (nil inside when it has none); nil for done lines
    /// and lines without a status (other manifests that use this writer).
    private static func failure(_ fields: [String: Any]) -> UInt64?? {
        guard let status = fields["status"] as? String, JobStatus(rawValue: status) != .done else { return nil }
        return .some((fields["epoch"] as? NSNumber)?.uint64Value)
    }

    private static func syncDirectory(of url: URL) {
        let dfd = open(url.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            Glibc.close(dfd)
        }
    }
}
