import Foundation

/// A results-stream entry or dead letter that cannot be read: which record, which field, and
/// what is wrong with it.
public struct StreamRecordError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    public enum Problem: Equatable, Sendable {
        case missing
        /// Present but unreadable: why.
        case invalid(String)
    }

    /// "result" or "dead letter".
    public var record: String
    public var field: String
    public var problem: Problem

    public init(record: String, field: String, problem: Problem) {
        self.record = record
        self.field = field
        self.problem = problem
    }

    public var description: String {
        switch problem {
        case .missing: return "\(record) has no '\(field)' field"
        case .invalid(let why): return "\(record) field '\(field)' \(why)"
        }
    }

    public var errorDescription: String? { description }
}

/// Reads the fields of one stream entry by a record's field names, throwing
/// `StreamRecordError` that names the field.
struct StreamFields<Field: RawRepresentable> where Field.RawValue == String {
    let record: String
    let fields: [String: Data]

    func data(_ field: Field) throws -> Data {
        guard let bytes = fields[field.rawValue] else {
            throw StreamRecordError(record: record, field: field.rawValue, problem: .missing)
        }
        return bytes
    }

    func string(_ field: Field) throws -> String { String(decoding: try data(field), as: UTF8.self) }

    /// A decimal number, as Redis writes integers.
    func number<T: FixedWidthInteger>(_ field: Field, as type: T.Type = T.self) throws -> T {
        let text = try string(field)
        guard let n = T(text) else {
            throw StreamRecordError(
                record: record, field: field.rawValue, problem: .invalid("is not a number: '\(text)'"))
        }
        return n
    }

    /// The field's text, nil when absent.
    func optionalString(_ field: Field) -> String? {
        fields[field.rawValue].map { String(decoding: $0, as: UTF8.self) }
    }

    /// The field as a decimal number; nil when absent or not a number.
    func optionalNumber<T: FixedWidthInteger>(_ field: Field, as type: T.Type = T.self) -> T? {
        optionalString(field).flatMap { T($0) }
    }
}

/// A value as a stream field holds it: its text, UTF-8 (integers in decimal, as Redis writes them).
func streamBytes(_ value: some CustomStringConvertible) -> Data { Data(value.description.utf8) }
