import Crypto
import Foundation

/// SHA-256 and SHA-1 through swift-crypto (BoringSSL's assembly on Linux). Content ids,
/// blob names, PNG digests and model fingerprints are SHA-256 hex strings; Redis names Lua
/// scripts by their SHA-1.
public enum Hashing {
    public static func sha256<D: DataProtocol>(_ data: D) -> [UInt8] { Array(Crypto.SHA256.hash(data: data)) }

    public static func sha256Hex<D: DataProtocol>(_ data: D) -> String { sha256(data).hexString }

    public static func sha256Hex(_ string: String) -> String { sha256Hex(Array(string.utf8)) }

    public static func sha1Hex(_ string: String) -> String { Insecure.SHA1.hash(data: Array(string.utf8)).hexString }

    /// Incremental SHA-256 over chunks (files too large to hold).
    public struct SHA256Stream {
        private var state = Crypto.SHA256()
        public init() {}
        public mutating func update<D: DataProtocol>(_ data: D) { state.update(data: data) }
        public mutating func finalize() -> [UInt8] { Array(state.finalize()) }
    }
}

extension Sequence where Element == UInt8 {
    /// Lower-case hexadecimal.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(underestimatedCount * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
