import DiffusersLayout
import Foundation
import TestSupport
import XCTest

@testable import Jobs

/// A transformers image-classification folder (the tiny ViT) as a spec's guide classifier and as
/// its evaluator: what it may be given with, and what it needs (the CLIP pair for s_t).
final class ClassifierSpecTests: XCTestCase {
    var dir: URL!
    let env = ["MUSE_MODELS_DIR": packageRoot.appendingPathComponent("models").path]
    static let generation = "generation: {prompts: [a lake], emotions: [awe], seeds: [1]}\n"

    override func setUpWithError() throws { dir = makeTempDir("classifier-spec") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func load(_ text: String) throws -> LoadedSpec {
        try JobSpec.load(path: try writeSpec(text + Self.generation, in: dir), environment: env)
    }

    /// The error text of a spec that must be refused.
    func problems(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        do {
            _ = try load(text)
            XCTFail("accepted:\n\(text)", file: file, line: line)
        } catch let e as SpecError { return e.description }
        return ""
    }

    /// The detection rule both the spec reader and the engine use.
    func testImageClassifierFoldersAreTold() throws {
        let models = packageRoot.appendingPathComponent("models").path
        XCTAssertTrue(DiffusersLayout.isImageClassifier(models + "/tiny-vit-emotion"))
        for other in ["tiny-clip-vision", "tiny-clip-text", "tiny-sd", "tiny-emotion-head.safetensors", "none"] {
            XCTAssertFalse(DiffusersLayout.isImageClassifier(models + "/" + other), other)
        }
        // Through a symbolic link (the hub cache's layout), and never blocking on a FIFO.
        let linked = dir.appendingPathComponent("linked")
        try FileManager.default.createDirectory(at: linked, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: linked.path + "/config.json", withDestinationPath: models + "/tiny-vit-emotion/config.json")
        XCTAssertTrue(DiffusersLayout.isImageClassifier(linked.path))
        let fifo = dir.appendingPathComponent("fifo")
        try FileManager.default.createDirectory(at: fifo, withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(fifo.path + "/config.json", 0o644), 0)
        XCTAssertFalse(DiffusersLayout.isImageClassifier(fifo.path))
    }

    /// As evaluator, the folder alone; as guide, with classifier.text and the prompt tower (the
    /// CLIP pair that measures s_t). Both travel with the job like any model.
    func testViTAsEvaluatorAndAsGuide() throws {
        let evaluated = try load(tinyModels + "\nevaluation: {tower: bundled:tiny-vit-emotion}\n")
        let job = evaluated.jobs[0]
        XCTAssertEqual(job.locations.evaluatorTower, "bundled:tiny-vit-emotion")
        XCTAssertNil(job.locations.evaluatorHead)
        XCTAssertNil(job.locations.evaluatorText)
        XCTAssertNotNil(job.content.models.evaluatorTower)

        let guided = try load(
            """
            model: bundled:tiny-sd
            classifier:
              tower: bundled:tiny-vit-emotion
              text: bundled:tiny-clip-text
              prompt_tower: bundled:tiny-clip-vision
            evaluation: {tower: bundled:tiny-vit-emotion}

            """)
        let g = guided.jobs[0]
        XCTAssertEqual(g.locations.tower, "bundled:tiny-vit-emotion")
        XCTAssertNil(g.locations.head)
        XCTAssertEqual(g.locations.text, "bundled:tiny-clip-text")
        XCTAssertEqual(g.locations.promptTower, "bundled:tiny-clip-vision")
        XCTAssertEqual(g.content.models.tower, g.content.models.evaluatorTower)
    }

    /// Without the CLIP pair, with a head or a text model beside the ViT: refused, naming the field.
    func testViTSpecMistakesAreNamed() throws {
        let noPromptTower = try problems(
            "model: bundled:tiny-sd\nclassifier: {tower: bundled:tiny-vit-emotion, text: bundled:tiny-clip-text}\n")
        XCTAssertTrue(
            noPromptTower.contains(
                "classifier.prompt_tower: required: the tower 'bundled:tiny-vit-emotion' is an image "
                    + "classifier (ViT) without CLIP; the prompt score s_t needs the vision half of classifier.text's CLIP pair"
            ),
            noPromptTower)
        let noText = try problems("model: bundled:tiny-sd\nclassifier: {tower: bundled:tiny-vit-emotion}\n")
        XCTAssertTrue(
            noText.contains("classifier.text: required: the tower 'bundled:tiny-vit-emotion' is an image classifier"),
            noText)
        let withHead = try problems(
            """
            model: bundled:tiny-sd
            classifier:
              tower: bundled:tiny-vit-emotion
              head: bundled:tiny-emotion-head.safetensors
              text: bundled:tiny-clip-text
              prompt_tower: bundled:tiny-clip-vision

            """)
        XCTAssertTrue(
            withHead.contains(
                "classifier.head: 'bundled:tiny-vit-emotion' is an image classifier (ViT) with its own head"), withHead)
        let evaluatorHead = try problems(
            tinyModels
                + "\nevaluation: {tower: bundled:tiny-vit-emotion, head: bundled:tiny-emotion-head.safetensors}\n")
        XCTAssertTrue(
            evaluatorHead.contains("evaluation.head: 'bundled:tiny-vit-emotion' is an image classifier"), evaluatorHead)
        let evaluatorText = try problems(
            tinyModels + "\nevaluation: {tower: bundled:tiny-vit-emotion, text: bundled:tiny-clip-text}\n")
        XCTAssertTrue(
            evaluatorText.contains("evaluation.text: 'bundled:tiny-vit-emotion' is an image classifier"), evaluatorText)
        // A CLIP tower without a head still may not have a prompt tower (unchanged).
        let zeroShot = try problems(
            """
            model: bundled:tiny-sd
            classifier: {tower: bundled:tiny-clip-vision, text: bundled:tiny-clip-text, prompt_tower: bundled:tiny-clip-vision}

            """)
        XCTAssertTrue(zeroShot.contains("classifier.prompt_tower: needs classifier.head"), zeroShot)
    }
}
