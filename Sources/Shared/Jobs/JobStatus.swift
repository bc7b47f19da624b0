import Foundation

/// A job's outcome, as its manifest line records it (`status`, manifests/SPEC.md).
public enum JobStatus: String, CaseIterable, Codable, Sendable {
    /// Its result is collected: the PNG, its metrics and its trace.
    case done
    /// Dead-lettered after its last attempt, or its result arrived damaged.
    case failed
    /// Ended by `muse-coordinator cancel` before it finished.
    case cancelled

    /// Reads the raw value; anything else is an error that names the value and the ones allowed.
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let raw = try c.decode(String.self)
        guard let status = JobStatus(rawValue: raw) else {
            throw DecodingError.dataCorruptedError(
                in: c,
                debugDescription: "unknown job status '\(raw)' (one of "
                    + Self.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        self = status
    }
}
