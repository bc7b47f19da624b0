import DiffusersLayout
import Foundation
import XCTest

@testable import Vocabulary

/// The step-count check the spec and the command line make before any weights load, on the
/// one timestep rule (`TimestepSpacing`) the schedulers use too.
final class StepRulesTests: XCTestCase {
    /// The first timestep the check computes is the first of the schedule the scheduler
    /// builds, for every spacing, offset and step count.
    func testFirstTimestepIsTheSchedulesFirst() throws {
        for spacing in TimestepSpacing.allCases {
            for offset in [0, 1] {
                let rules = try StepRules(trainSteps: 1000, spacing: spacing.rawValue, stepsOffset: offset)
                for steps in 1...1000 {
                    let schedule = spacing.timesteps(steps: steps, trainSteps: 1000, stepsOffset: offset)
                    XCTAssertEqual(rules.firstTimestep(steps: steps), schedule.first, "\(spacing) +\(offset) \(steps)")
                    XCTAssertEqual(schedule, schedule.sorted(by: >), "\(spacing) \(steps): descending")
                }
            }
        }
    }

    /// SD 1.5's scheduler (leading, steps_offset 1): 1000 steps would start at timestep 1000,
    /// so the check refuses it and names the largest count that fits; trailing takes 1000.
    func testLeadingOffsetRefusesTheLastStepCount() throws {
        let sd15 = try StepRules(trainSteps: 1000, spacing: "leading", stepsOffset: 1)
        XCTAssertNil(sd15.problem(steps: 50))
        XCTAssertNil(sd15.problem(steps: 999))
        let problem = try XCTUnwrap(sd15.problem(steps: 1000))
        XCTAssertTrue(problem.contains("put a timestep at 1000") && problem.contains("use at most 999"), problem)
        XCTAssertNil(try StepRules(trainSteps: 1000, spacing: "trailing", stepsOffset: 1).problem(steps: 1000))
        XCTAssertThrowsError(try StepRules(spacing: "karras")) {
            XCTAssertTrue("\($0)".contains("timestep_spacing") && "\($0)".contains("'karras'"), "\($0)")
        }
    }

    /// Read from the model folder's scheduler config alone.
    func testReadFromTheSchedulerConfig() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models/tiny-sd").path
        let rules = try StepRules(modelFolder: root)
        XCTAssertEqual(rules.trainSteps, 1000)
        XCTAssertThrowsError(try StepRules(modelFolder: root + "/unet")) {
            XCTAssertTrue("\($0)".contains(DiffusersLayout.schedulerConfig), "\($0)")
        }
    }
}
