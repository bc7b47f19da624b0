import Foundation
import Support
import XCTest

@testable import Imaging
@testable import Jobs

/// Source images from globs with a captions file, JPEG sources, and `editing.fit`.
final class ImageInputsTests: SpecFixture {
    func gradient(_ w: Int, _ h: Int) -> RGBImage {
        var p: [UInt8] = []
        for y in 0..<h {
            for x in 0..<w { p += [UInt8(x * 255 / (w - 1)), UInt8(y * 255 / (h - 1)), UInt8((x ^ y) & 255)] }
        }
        return RGBImage(width: w, height: h, channels: 3, pixels: p)
    }

    func png(_ name: String, _ img: RGBImage) throws { try write(name, try PNGCodec.encode(img)) }

    func testGlobOrderDepthHiddenFilesAndConfinement() throws {
        let small = RGBImage(width: 32, height: 32, fill: (1, 2, 3))
        for name in ["b.png", "a.png", "sub/c.png", "sub/deeper/d.png", ".hidden.png", "B.png"] {
            try png("root/photos/\(name)", small)
        }
        try write("root/photos/notes.txt", "not an image")
        let root = dir.appendingPathComponent("root")
        func paths(_ pattern: String, limit: Int = 100) throws -> [String] {
            try ImageGlob.matches(pattern, under: root, limit: limit).map(\.path)
        }
        XCTAssertEqual(try paths("photos/*.png"), ["photos/B.png", "photos/a.png", "photos/b.png"], "byte order")
        XCTAssertEqual(
            try paths("photos/**/*.png"),
            ["photos/B.png", "photos/a.png", "photos/b.png", "photos/sub/c.png", "photos/sub/deeper/d.png"])
        XCTAssertEqual(try paths("**/c.png"), ["photos/sub/c.png"])
        XCTAssertEqual(try paths("./photos/[ab].png"), ["photos/a.png", "photos/b.png"])
        XCTAssertEqual(try paths("photos/.*.png"), ["photos/.hidden.png"], "dot files only when asked for")
        XCTAssertEqual(try paths("photos/*.jpg"), [])
        // A folder link back up is not walked (no loop, no duplicates).
        try FileManager.default.createSymbolicLink(
            at: root.appendingPathComponent("photos/sub/loop"),
            withDestinationURL: root.appendingPathComponent("photos"))
        XCTAssertEqual(try paths("photos/**/*.png").count, 5)
        // A file link out of the root is refused by name; so are patterns that leave it.
        let outside = dir.appendingPathComponent("outside.png")
        try PNGCodec.encode(small).write(to: outside)
        try FileManager.default.createSymbolicLink(
            at: root.appendingPathComponent("photos/escape.png"), withDestinationURL: outside)
        XCTAssertThrowsError(try paths("photos/*.png")) { XCTAssertTrue("\($0)".contains("outside"), "\($0)") }
        XCTAssertThrowsError(try paths("../*.png")) { XCTAssertTrue("\($0)".contains("leaves its root"), "\($0)") }
        XCTAssertThrowsError(try paths("/etc/*")) { XCTAssertTrue("\($0)".contains("must be relative"), "\($0)") }
        XCTAssertThrowsError(try paths("photos/**")) { XCTAssertTrue("\($0)".contains("ends in '**'"), "\($0)") }
        XCTAssertThrowsError(try paths("photos/sub/**/*.png", limit: 1)) {
            XCTAssertTrue("\($0)".contains("matches more than 1 files"), "\($0)")
        }
    }

    func testGlobWithCaptionsFile() throws {
        for name in ["b.png", "a.png", "c.png"] { try png("data/photos/\(name)", gradient(64, 64)) }
        try png("data/photos/b.png", RGBImage(width: 64, height: 64, fill: (9, 9, 9)))
        try png("data/photos/c.png", RGBImage(width: 64, height: 64, fill: (200, 9, 9)))
        try png("data/extra.png", RGBImage(width: 64, height: 64, fill: (0, 90, 9)))
        try write(
            "data/captions.jsonl",
            """
            {"file_name": "photos/a.png", "source_prompt": "a gradient"}
            {"file_name": "./photos/b.png", "text": "a grey square", "other_column": 3}
            {"file_name": "extra.png", "text": "ignored: the list entry has its own"}
            """)
        let loaded = try load(
            """
            images_root: data
            editing:
              images: [{path: extra.png, source_prompt: a green square}]
              images_glob: "photos/*.png"
              captions: captions.jsonl
              source_prompt: a photo
              emotions: [awe]
            """)
        XCTAssertEqual(
            loaded.jobs.map { "\($0.imagePath!): \($0.content.prompt)" },
            [
                "extra.png: a green square", "photos/a.png: a gradient", "photos/b.png: a grey square",
                "photos/c.png: a photo",
            ])
        XCTAssertEqual(loaded.blobs.count, 4)
        // A glob that repeats a listed file adds nothing.
        let again = try load(
            """
            images_root: data
            editing:
              images: [photos/a.png]
              images_glob: ["photos/a.png", "*.png"]
              source_prompt: a photo
              emotions: [awe]
            """)
        XCTAssertEqual(again.jobs.map(\.imagePath!), ["photos/a.png", "extra.png"])
    }

    func testCSVCaptionsAndWrongCaptionFiles() throws {
        try png("data/a.png", gradient(64, 64))
        try png("data/b.png", RGBImage(width: 64, height: 64, fill: (9, 9, 9)))
        try write("data/captions.csv", "file_name,text,split\na.png,\"a gradient, soft\",train\nb.png,,train\n")
        let body =
            "images_root: data\nediting:\n  images_glob: \"*.png\"\n  source_prompt: a photo\n  emotions: [awe]\n"
        assertMentions(
            try problems(body + "  captions: captions.csv"),
            [
                "editing.captions: captions.csv row 2: no caption (a non-empty \"source_prompt\", \"caption\" or \"text\")"
            ])
        try write("data/captions.csv", "file_name,text,split\na.png,\"a gradient, soft\",train\n")
        XCTAssertEqual(
            try load(body + "  captions: captions.csv").jobs.map(\.content.prompt), ["a gradient, soft", "a photo"])
        try write("data/captions.txt", "a.png a gradient")
        try write("data/nofile.csv", "name,text\na.png,x\n")
        assertMentions(
            try problems(body + "  captions: captions.txt"),
            ["editing.captions: captions.txt: captions must be a .jsonl or .csv file"])
        assertMentions(
            try problems(body + "  captions: nofile.csv"), ["nofile.csv: no \"file_name\" column (header: name, text)"])
        assertMentions(
            try problems(body + "  captions: ../spec.yaml"), ["editing.captions: '../spec.yaml' leaves its root"])
    }

    func testCaptionAndGlobProblems() throws {
        try png("data/photos/a.png", gradient(64, 64))
        try write(
            "data/captions.jsonl",
            """
            {"file_name": "photos/a.png", "text": "one"}
            {"file_name": "photos/a.png", "text": "two"}
            {"file_name": "photos/missing.png", "text": "typo"}
            {"file_name": "photos/a.png", "text": "x", "source_prompt": "y"}
            {"file_name": "../escape.png", "text": "x"}
            {"file_name": "photos/z.png", "text": ""}
            {"file_name": "photos/z.png", "text": 3}
            {"text": "no file"}
            not json
            """)
        let text = try problems(
            """
            images_root: data
            editing:
              images_glob: "photos/*.png"
              captions: captions.jsonl
              source_prompt: a photo
              emotions: [awe]
            """)
        assertMentions(
            text,
            [
                "editing.captions: captions.jsonl line 2: file_name 'photos/a.png' already has a caption at captions.jsonl line 1",
                "editing.captions: captions.jsonl line 3: file_name 'photos/missing.png' is not among the editing images",
                "captions.jsonl line 4: give one of \"source_prompt\", \"caption\" or \"text\", not several",
                "captions.jsonl line 5: file_name '../escape.png' leaves its root folder",
                "captions.jsonl line 6: no caption",
                "captions.jsonl line 7: text: expected a string, got 3",
                "captions.jsonl line 8: no \"file_name\"",
                "captions.jsonl line 9: not a JSON object",
            ])
        // file_name is relative to the captions file's folder; a failed glob is reported alone
        // (its missing images would make every captions row look unmatched).
        try write("data/photos/meta.jsonl", #"{"file_name": "nope.png", "text": "x"}"# + "\n")
        assertMentions(
            try problems(
                "images_root: data\nediting:\n  images_glob: photos/*.png\n  captions: photos/meta.jsonl\n"
                    + "  source_prompt: a photo\n  emotions: [awe]"),
            [
                "meta.jsonl line 1: file_name 'nope.png' (photos/nope.png under images_root) is not among the editing images"
            ])
        let globs = try problems(
            """
            images_root: data
            editing:
              images_glob: ["photos/*.png", "nothing/*.png", "../*.png"]
              captions: photos/meta.jsonl
              source_prompt: a photo
              emotions: [awe]
            """)
        assertMentions(
            globs,
            [
                "editing.images_glob[1]: 'nothing/*.png' matches no file",
                "editing.images_glob[2]: '../*.png': '../*.png' leaves its root folder",
            ])
        XCTAssertFalse(globs.contains("not among"), globs)
        // Images without any caption are named (MUSE edits need one).
        try png("data/photos/b.png", gradient(64, 64))
        assertMentions(
            try problems("images_root: data\nediting:\n  images_glob: photos/*.png\n  emotions: [awe]"),
            ["editing.images_glob: 'photos/a.png': a muse edit needs a source prompt"])
    }

    func testJPEGSourceIsUploadedAsACanonicalPNG() throws {
        let jpeg = try JPEGCodec.encode(gradient(64, 64), quality: 90)
        try write("photo.jpg", jpeg)
        let body = "editing:\n  images: [photo.jpg]\n  source_prompt: a photo\n  emotions: [awe, fear]"
        let loaded = try load(body)
        let sha = try XCTUnwrap(loaded.jobs[0].content.imageSHA256)
        let blob = try XCTUnwrap(loaded.blobs[sha])
        XCTAssertEqual(Hashing.sha256Hex(blob), sha, "the blob's name is its own hash")
        XCTAssertEqual(Array(blob.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "a PNG: workers decode PNG only")
        XCTAssertEqual(try PNGCodec.decode(blob), try JPEGCodec.decode(jpeg), "the JPEG's pixels, losslessly")
        XCTAssertEqual(loaded.jobs[0].imagePath, "photo.jpg")
        XCTAssertEqual(try load(body).jobs.map(\.id), loaded.jobs.map(\.id), "same file, same jobs")

        try write("broken.jpg", jpeg.prefix(jpeg.count / 2))
        try write("fake.png", Data("GIF89a nope".utf8))
        try write("fake.jpg", Data("GIF89a nope".utf8))
        assertMentions(
            try problems(
                "editing:\n  images: [broken.jpg, fake.png, fake.jpg]\n  source_prompt: a photo\n  emotions: [awe]"),
            [
                "editing.images[0]: 'broken.jpg' is not a readable JPEG image: cannot decode JPEG: Premature end of JPEG file",
                "editing.images[1]: 'fake.png' is not a readable PNG image: cannot decode PNG:",
                "(sources are PNG or JPEG files)",
                "editing.images[2]: 'fake.jpg' is neither a PNG nor a JPEG image",
            ])
        // The same image listed twice under two names makes the same jobs: refused by name.
        try write("copy.jpg", jpeg)
        assertMentions(
            try problems("editing:\n  images: [photo.jpg, copy.jpg]\n  source_prompt: a photo\n  emotions: [awe]"),
            ["editing.images[1] 'copy.jpg': makes the same job (awe, seed 0) as editing.images[0] 'photo.jpg'"])
    }

    func testFitCropAndResize() throws {
        let wide = gradient(100, 70)
        try png("wide.png", wide)
        func source(_ fitLines: String) throws -> RGBImage {
            let loaded = try load(
                "editing:\n  images: [wide.png]\n  source_prompt: a photo\n  emotions: [awe]\n" + fitLines)
            return try PNGCodec.decode(loaded.blobs[try XCTUnwrap(loaded.jobs[0].content.imageSHA256)]!)
        }
        assertMentions(
            try problems("editing:\n  images: [wide.png]\n  source_prompt: a photo\n  emotions: [awe]"),
            ["'wide.png': 100×70 does not fit this model", "(or set editing.fit)"])
        // crop: the largest multiple of 32 inside, centred.
        XCTAssertEqual(try source("  fit: crop"), wide.centreCropped(width: 96, height: 64))
        XCTAssertEqual(
            try source("  fit: crop\n  width: 64\n  height: 64"), wide.cropped(x: 18, y: 3, width: 64, height: 64))
        // resize: cover the native 64×64, centre-crop; or a given size.
        let square = try source("  fit: resize")
        XCTAssertEqual(square, wide.coverResized(width: 64, height: 64))
        XCTAssertEqual(square, wide.cropped(x: 15, y: 0, width: 70, height: 70).resized(width: 64, height: 64))
        XCTAssertEqual(try source("  fit: resize\n  width: 128\n  height: 64").width, 128)
        // An image that already fits is uploaded as it is, whatever the fit.
        try png("fits.png", gradient(64, 32))
        let kept = try load(
            "editing:\n  images: [fits.png]\n  fit: resize\n  width: 64\n  height: 32\n"
                + "  source_prompt: a photo\n  emotions: [awe]")
        let original = try Data(contentsOf: dir.appendingPathComponent("fits.png"))
        XCTAssertEqual(kept.jobs[0].content.imageSHA256, Hashing.sha256Hex(original))

        try png("tiny.png", gradient(20, 20))
        let base = "editing:\n  images: [tiny.png, wide.png]\n  source_prompt: a photo\n  emotions: [awe]\n"
        assertMentions(
            try problems(base + "  fit: stretch"), ["editing.fit: unknown fit 'stretch' (valid: refuse, crop, resize)"])
        assertMentions(
            try problems(base + "  width: 64"), ["editing.width: a target size needs editing.fit: crop or resize"])
        assertMentions(
            try problems(base + "  fit: resize\n  width: 100"), ["editing.width: 100×64 does not fit this model"])
        assertMentions(
            try problems(base + "  fit: crop"),
            ["editing.images[0]: 'tiny.png': 20×20 is smaller than one size step (32×32): nothing to crop to"])
        assertMentions(
            try problems(base + "  fit: crop\n  width: 128"),
            ["editing.images[1]: 'wide.png': 100×70 is smaller than the crop 128×64"])
    }

    /// manifests/dataset-inputs.yaml: prompts-file rows, a glob of JPEGs and a PNG, captions, resize.
    func testExampleSpecLoads() throws {
        let env = ["MUSE_MODELS_DIR": Self.packageRoot.appendingPathComponent("models").path]
        let loaded = try JobSpec.load(
            path: Self.packageRoot.appendingPathComponent("manifests/dataset-inputs.yaml").path, environment: env)
        let generated = loaded.jobs.filter { $0.content.kind == .generate }
        XCTAssertEqual(generated.map(\.content.emotion), [.awe, .fear, .contentment])
        XCTAssertEqual(generated.map(\.sourceID), ["house-007", "house-007", "boat-dawn"])
        XCTAssertEqual(generated[0].content.seed, 7)
        let edits = loaded.jobs.filter { $0.content.kind == .edit }
        XCTAssertEqual(
            edits.map(\.imagePath!),
            [
                "photos/boat.jpg", "photos/boat.jpg", "photos/house.jpg", "photos/house.jpg", "photos/boat-tall.png",
                "photos/boat-tall.png",
            ])
        XCTAssertEqual(edits[4].content.prompt, "a house by a lake", "no captions row: editing.source_prompt")
        XCTAssertTrue(edits[0].content.prompt.hasPrefix("a blue boat"))
        for sha in Set(edits.compactMap(\.content.imageSHA256)) {
            let image = try PNGCodec.decode(try XCTUnwrap(loaded.blobs[sha]))
            XCTAssertEqual([image.width, image.height], [64, 64])
        }
    }
}
