import Diffusion
import Foundation
import Tensor
import Vocabulary
import XCTest

@testable import MUSE

/// The bundled tiny random-weight models, loaded once for all MUSE tests.
enum Tiny {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let models = repo + "/models"
    static let sd = models + "/tiny-sd"
    static let tower = models + "/tiny-clip-vision"
    static let head = models + "/tiny-emotion-head.safetensors"
    static let text = models + "/tiny-clip-text"
    static let taesd = models + "/tiny-taesd"
    static let fixtures = repo + "/Tests/Fixtures"

    static let loaded = Result {
        try SynthesisEngine.load(model: sd, tower: tower, head: head, text: text, tinyDecoder: taesd)
    }
    static func engine() throws -> SynthesisEngine { try loaded.get() }

    /// Settings for quick tiny-model runs. Guidance from the first step: with random weights
    /// the UNet fixes x̂0 within the first few steps (s_t and the class probabilities of x̂0
    /// barely move afterwards), so a window starting later has almost nothing left to steer.
    /// No drift bound: these tests show the token's mechanics on random weights (the bound's
    /// own test sets it; its defaults were chosen on the trained miniworld).
    static func quickSettings(iterations: Int = 2) -> MUSESettings {
        var s = MUSESettings()
        s.innerIterations = iterations
        s.learningRate = 0.02
        s.tokenDriftBound = 0
        s.editTokenDriftBound = 0
        s.minStartFraction = 0
        s.latestStartFraction = 0
        return s
    }

    static func run(_ job: SynthesisJob, image: Tensor? = nil) throws -> SynthesisResult {
        try engine().run(job, image: image)
    }
}

func logit(_ p: Float) -> Float { Foundation.log(p / (1 - p)) }

func meanAbs(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.data, b.data).map { abs($0 - $1) }.reduce(0, +) / Float(a.count)
}

func relativeL2(_ a: Tensor, _ reference: Tensor) -> Float {
    let num = zip(a.data, reference.data).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
    let den = reference.data.map { $0 * $0 }.reduce(0, +)
    return (num / den).squareRoot()
}

func assertThrows<T>(
    _ body: @autoclosure () throws -> T, containing fragments: [String],
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        let text = "\(error)"
        for f in fragments { XCTAssertTrue(text.contains(f), "'\(text)' lacks '\(f)'", file: file, line: line) }
    }
}
