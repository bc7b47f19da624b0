import Foundation
import XCTest

@testable import Support

final class HashingTests: XCTestCase {
    func testSHA256KnownVectors() {
        XCTAssertEqual(Hashing.sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(Hashing.sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(
            Hashing.sha256Hex(Data(repeating: 0x61, count: 1_000_000)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testSHA256StreamMatchesOneShot() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 131) }
        for chunk in [1, 7, 63, 64, 65, 500] {
            var s = Hashing.SHA256Stream()
            var i = 0
            while i < bytes.count {
                s.update(bytes[i..<min(i + chunk, bytes.count)])
                i += chunk
            }
            XCTAssertEqual(s.finalize(), Hashing.sha256(bytes), "chunk \(chunk)")
        }
    }

    func testSHA1Vectors() {
        XCTAssertEqual(Hashing.sha1Hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(Hashing.sha1Hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    }
}
