import Foundation
@_exported import Logging

/// One logging style for every program: swift-log loggers whose lines go to stderr as
/// `<ISO time> <program>[<name>] <message>` (warnings and errors say so), or as one JSON
/// object per line. `MUSE_LOG_LEVEL` (trace … critical) sets the level; default info.
public enum Log {
    public enum Format: String, Sendable, CaseIterable { case text, json }

    /// The format the process logs in (set by `bootstrap`).
    nonisolated(unsafe) public private(set) static var format = Format.text

    /// `main`'s first step: takes `--log-format text|json` (anywhere on the command line, or
    /// `MUSE_LOG_FORMAT`) out of `arguments`, bootstraps with it and returns the rest for the
    /// argument parser. A bad value exits 64 with a message naming it.
    public static func bootstrap(
        arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> [String] {
        var rest: [String] = []
        var chosen = environment["MUSE_LOG_FORMAT"]
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--log-format" {
                chosen = i + 1 < arguments.count ? arguments[i + 1] : ""
                i += 2
                continue
            }
            if a.hasPrefix("--log-format=") {
                chosen = String(a.dropFirst("--log-format=".count))
            } else {
                rest.append(a)
            }
            i += 1
        }
        var format = Format.text
        if let chosen {
            guard let f = Format(rawValue: chosen) else {
                FileHandle.standardError.write(
                    Data("error: --log-format (or MUSE_LOG_FORMAT) must be text or json, got '\(chosen)'\n".utf8))
                exit(64)
            }
            format = f
        }
        bootstrap(format: format, environment: environment)
        return rest
    }

    /// Call once, first thing in `main`. Later calls are ignored (swift-log allows one bootstrap).
    public static func bootstrap(
        format: Format = .text, environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        let level = environment["MUSE_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        bootstrapOnce.run {
            Log.format = format
            LoggingSystem.bootstrap { label in
                var handler = StderrLineHandler(label: label, format: format)
                handler.logLevel = level
                return handler
            }
        }
    }

    /// A logger for `program`, optionally for one named instance of it (a worker's name).
    public static func logger(_ program: String, name: String? = nil) -> Logger {
        var logger = Logger(label: program)
        if let name { logger[metadataKey: "name"] = .string(name) }
        return logger
    }

    private static let bootstrapOnce = Once()
}

/// Runs a closure at most once per process.
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    func run(_ body: () -> Void) {
        lock.lock()
        defer { lock.unlock() }
        guard !done else { return }
        done = true
        body()
    }
}

struct StderrLineHandler: LogHandler {
    let label: String
    let format: Log.Format
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String, format: Log.Format) {
        self.label = label
        self.format = format
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let lock = NSLock()
    private static let clock: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    func log(event: LogEvent) {
        let (level, message) = (event.level, event.message)
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        Self.lock.lock()
        defer { Self.lock.unlock() }
        let time = Self.clock.string(from: Date())
        let text: String
        switch format {
        case .text:
            let name = all.removeValue(forKey: "name").map { "[\($0)]" } ?? ""
            let severity = level >= .warning ? "\(level.rawValue): " : ""
            let tail =
                all.isEmpty
                ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            text = "\(time) \(label)\(name) \(severity)\(message)\(tail)\n"
        case .json:
            var object: [String: String] = [
                "time": time, "level": level.rawValue, "program": label, "message": "\(message)",
            ]
            for (key, value) in all where object[key] == nil { object[key] = "\(value)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            text = (String(data: data, encoding: .utf8) ?? "{}") + "\n"
        }
        FileHandle.standardError.write(Data(text.utf8))
    }
}

extension Logger {
    /// `log("...")`: an info line, the common case.
    public func callAsFunction(_ message: String) { info("\(Logger.Message(stringLiteral: message))") }
}
