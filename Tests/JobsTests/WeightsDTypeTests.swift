import Foundation
import XCTest

@testable import Jobs
@testable import Vocabulary

/// `engine.weights_dtype` changes pixels, so it is a job setting: in the job id and the
/// manifest when bf16, absent (ids unchanged) when f32; and it halves the weights' share of
/// the memory estimate.
final class WeightsDTypeTests: SpecFixture {
    let body = "generation: {prompts: [a cat], emotions: [awe], seeds: [1]}\n"

    func testBF16IsPartOfTheJobAndF32LeavesIdsAlone() throws {
        let plain = try load("engine: {steps: 4}\n" + body)
        let f32 = try load("engine: {steps: 4, weights_dtype: f32}\n" + body)
        let bf16 = try load("engine: {steps: 4, weights_dtype: bf16}\n" + body)
        XCTAssertEqual(f32.jobs.map(\.id), plain.jobs.map(\.id))
        XCTAssertNotEqual(bf16.jobs.map(\.id), plain.jobs.map(\.id))
        XCTAssertEqual(bf16.jobs.first?.content.synthesis.settings.weightsDType, .bf16)
        let encoded = String(decoding: try JSONEncoder().encode(bf16.jobs[0].content.synthesis.settings), as: UTF8.self)
        XCTAssertTrue(encoded.contains("\"weights_dtype\":\"bf16\""), encoded)
        let plainEncoded = String(
            decoding: try JSONEncoder().encode(plain.jobs[0].content.synthesis.settings), as: UTF8.self)
        XCTAssertFalse(plainEncoded.contains("weights_dtype"), plainEncoded)
        XCTAssertLessThan(bf16.peakBytesPerWorker, plain.peakBytesPerWorker)
        XCTAssertGreaterThan(plain.peakBytesPerWorker, 0)
    }

    func testUnknownDTypeIsRefusedByKey() throws {
        assertMentions(
            try problems("engine: {weights_dtype: fp8}\n" + body), ["engine.weights_dtype", "fp8", "f32, bf16"])
    }

    /// The memory estimate counts weights from the safetensors headers (float32 in memory).
    func testWeightBytesComeFromTheParameterCount() throws {
        let rules = try ImageSizeRules(modelFolder: Self.packageRoot.appendingPathComponent("models/tiny-sd").path)
        XCTAssertGreaterThan(rules.weightBytes, 0)
        XCTAssertEqual(rules.weightBytes % 4, 0)
        XCTAssertEqual(
            rules.estimatedPeakBytes(width: 64, height: 64)
                - rules.estimatedPeakBytes(width: 64, height: 64, weightsDType: .bf16),
            Double(rules.weightBytes) / 2)
    }
}
