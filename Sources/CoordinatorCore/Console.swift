import Foundation
import Support

public enum ExitCodes {
    public static let runtime: Int32 = 1
    public static let invalidInput: Int32 = 2
    public static let failedJobs: Int32 = 3
}

public let coordinatorLog = Log.logger("muse-coordinator")

/// Prints `message` on stderr without a timestamp (user-facing errors and summaries).
public func say(_ message: String) {
    if Log.format == .json {
        coordinatorLog.info("\(message)")
    } else {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}

/// A problem with what the user asked for (exit code 2).
public struct InputError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
