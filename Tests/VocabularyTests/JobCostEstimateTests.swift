import XCTest

@testable import Vocabulary

/// The compute-time model that `submit` refuses with and `--dry-run` prints.
final class JobCostEstimateTests: XCTestCase {
    let sd15 = try! ImageSizeRules(unetSampleSize: 64, unetLevels: 4, vaeLevels: 4)

    func estimate(
        _ method: SynthesisMethod = .muse, side: Int = 512, edit: Bool = false,
        _ change: (inout JobSettings) -> Void = { _ in }
    ) -> JobCostEstimate {
        var settings = JobSettings()
        change(&settings)
        return JobCostEstimate(settings: settings, method: method, width: side, height: side, rules: sd15, isEdit: edit)
    }

    /// docs/PERFORMANCE.md's quiet K = 3 `bench-muse` run estimated 58.5 min for a 512² image with guidance
    /// from the latest start (15 guided steps of 50); the model, built from that run's unit
    /// costs, has to agree with it when given the same window and that run's decoder-free
    /// latent-rgb preview.
    func testAgreesWithTheMeasuredRunItIsBuiltFrom() {
        let e = estimate {
            $0.muse.minStartFraction = 0.5
            $0.muse.latestStartFraction = 0.5
            $0.muse.preview = .latentRGB
        }
        XCTAssertEqual(e.guidedSteps, 15)
        XCTAssertEqual(e.seconds / 60, 58.5, accuracy: 58.5 * 0.05)
    }

    func testGrowsWithWhatTheJobDoes() {
        let base = estimate()
        XCTAssertEqual(base.guidedSteps, 35, "the widest window the timing rule allows: 10 % to 80 % of 50")
        XCTAssertGreaterThan(estimate { $0.muse.innerIterations = 6 }.seconds, base.seconds * 1.5)
        XCTAssertLessThan(estimate { $0.muse.guidanceDecoder = .tiny }.seconds, base.seconds * 0.6)
        XCTAssertEqual(estimate(side: 1024).seconds, base.seconds * 4, accuracy: 1e-6)
        let plain = estimate(.promptOnly)
        XCTAssertEqual(plain.guidedSteps, 0)
        XCTAssertLessThan(plain.seconds, base.seconds / 5)
        let edit = estimate(edit: true) { $0.strength = 0.5 }
        XCTAssertLessThan(edit.seconds, base.seconds, "an edit denoises only its part of the schedule")
    }

    /// The decoded s_t preview adds a decoder forward per denoised step (the full VAE's unless
    /// guidance loads the tiny one); null-text inversion adds its optimisation per step.
    func testPreviewAndInversionCosts() {
        let rgb = estimate { $0.muse.preview = .latentRGB }
        XCTAssertEqual(estimate().seconds - rgb.seconds, 50 * 8.61, accuracy: 1e-6)
        let tiny = estimate { $0.muse.guidanceDecoder = .tiny }
        let tinyRGB = estimate {
            $0.muse.guidanceDecoder = .tiny
            $0.muse.preview = .latentRGB
        }
        XCTAssertEqual(tiny.seconds - tinyRGB.seconds, 50 * 0.90, accuracy: 1e-6)
        let negativePrompt = estimate(edit: true) { $0.strength = 0.5 }
        let nullText = estimate(edit: true) {
            $0.strength = 0.5
            $0.inversion = .nullText
        }
        XCTAssertEqual(nullText.seconds - negativePrompt.seconds, 25 * (10 * 9.85 + 4.23), accuracy: 1e-6)
    }

    func testRefusesOverTheLimitAndSaysWhatToChange() {
        let big = estimate(side: 2048)
        XCTAssertGreaterThan(big.seconds, 24 * 3600)
        let problem = big.problem(environment: [:]) ?? ""
        XCTAssertTrue(problem.hasPrefix("would take about "), problem)
        XCTAssertTrue(problem.contains("over the limit of 24.0 h per job (MUSE_MAX_JOB_HOURS"), problem)
        XCTAssertNil(big.problem(environment: ["MUSE_MAX_JOB_HOURS": "100"]))
        XCTAssertNil(estimate().problem(environment: [:]), "the defaults at 512² fit the default limit")
        XCTAssertNotNil(estimate().problem(environment: ["MUSE_MAX_JOB_HOURS": "0.5"]))
        XCTAssertNil(estimate().problem(environment: ["MUSE_MAX_JOB_HOURS": "nonsense"]), "ignored: default 24 h")
    }
}
