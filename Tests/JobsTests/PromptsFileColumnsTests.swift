import Foundation
import Vocabulary
import XCTest

@testable import Jobs

/// `generation.prompts_file` rows with their own emotions, seeds and ids.
final class PromptsFileColumnsTests: SpecFixture {
    func testJSONLRowsOverrideEmotionsAndSeeds() throws {
        try write(
            "p.jsonl",
            """
            {"prompt": "a lake", "emotion": "fear", "seed": 7, "id": "lake-1"}
            {"prompt": "a lake", "emotions": ["awe", "sadness"], "seed": 8, "id": 2}
            {"prompt": "a hill", "extra": [1, 2]}
            {"prompt": "a road", "emotions": "all", "id": "road"}

            """)
        let loaded = try load(
            "generation:\n  prompts_file: p.jsonl\n  emotions: [contentment]\n  seed: 3\n  count: 2")
        let jobs = loaded.jobs
        // lake-1: 1 seed × 1 emotion; 2: 1 × 2; hill: 2 derived seeds × contentment; road: 2 × 8.
        XCTAssertEqual(jobs.count, 1 + 2 + 2 + 16)
        XCTAssertEqual(jobs[0].content.emotion, .fear)
        XCTAssertEqual(jobs[0].content.seed, 7)
        XCTAssertEqual(jobs[0].sourceID, "lake-1")
        XCTAssertEqual(jobs[1...2].map(\.content.emotion), [.awe, .sadness])
        XCTAssertEqual(jobs[1...2].map(\.content.seed), [8, 8])
        XCTAssertEqual(jobs[1].sourceID, "2")
        XCTAssertEqual(jobs[3].content.emotion, .contentment)
        XCTAssertEqual(jobs[3].content.seed, SeedDerivation.seed(batchSeed: 3, prompt: "a hill", sample: 0))
        XCTAssertNil(jobs[3].sourceID)
        XCTAssertEqual(Set(jobs[5...].map(\.content.emotion)), Set(Emotion.allCases))
        // Columns: the spec's emotions first, then the rows' own in first use; one per emotion.
        XCTAssertEqual(loaded.info.sheetColumns, 8)
        XCTAssertEqual(jobs[0].sheetColumn, 1, "contentment, fear, …")
        XCTAssertEqual(jobs[3].sheetColumn, 0)
        XCTAssertEqual(jobs.map(\.sheetRow).last, 5, "rows: lake 7, lake 8, hill ×2, road ×2")

        // The id is a label: the job ids are those of the same rows without it, and stable.
        try write(
            "p.jsonl",
            """
            {"prompt": "a lake", "emotion": "fear", "seed": 7, "id": "renamed"}
            {"prompt": "a lake", "emotions": ["awe", "sadness"], "seed": 8}
            {"prompt": "a hill"}
            {"prompt": "a road", "emotions": "all"}
            """)
        let again = try load("generation:\n  prompts_file: p.jsonl\n  emotions: [contentment]\n  seed: 3\n  count: 2")
        XCTAssertEqual(again.jobs.map(\.id), jobs.map(\.id))
        XCTAssertEqual(again.batchID, loaded.batchID)
        XCTAssertEqual(again.jobs[0].sourceID, "renamed")
        // A row seed is the seed an inline prompt with `seeds: [7]` would get.
        let inline = try load("generation:\n  prompts: [a lake]\n  emotions: [fear]\n  seeds: [7]")
        XCTAssertEqual(inline.jobs[0].id, jobs[0].id)
    }

    func testCSVColumnsWithSeparatedEmotions() throws {
        try write(
            "p.csv",
            """
            id,prompt,emotions,seed,notes
            a,"a boat, red",awe;fear,11,x
            b,a field,sadness | anger,,
            c,a barn,,12,
            """)
        let loaded = try load("generation:\n  prompts_file: p.csv\n  emotions: [excitement]\n  seeds: [1, 2]")
        XCTAssertEqual(
            loaded.jobs.map { "\($0.sourceID ?? "-") \($0.content.prompt) \($0.content.emotion) \($0.content.seed)" },
            [
                "a a boat, red awe 11", "a a boat, red fear 11",
                "b a field sadness 1", "b a field anger 1", "b a field sadness 2", "b a field anger 2",
                "c a barn excitement 12",
            ])
    }

    func testEveryRowWithItsOwnEmotionsNeedsNoSpecEmotions() throws {
        try write("p.jsonl", #"{"prompt": "a lake", "emotion": "awe"}"# + "\n")
        XCTAssertEqual(try load("generation:\n  prompts_file: p.jsonl\n  seeds: [1]").jobs.count, 1)
        try write("q.jsonl", #"{"prompt": "a lake", "emotion": "awe"}"# + "\n" + #"{"prompt": "a hill"}"# + "\n")
        assertMentions(
            try problems("generation:\n  prompts_file: q.jsonl\n  seeds: [1]"),
            ["generation.emotions: required: 1 prompt name no emotions of their own"])
    }

    func testBadRowsAreReportedWithTheirLines() throws {
        try write(
            "bad.jsonl",
            """
            {"prompt": "ok", "emotion": "awe"}
            {"prompt": "joyful", "emotion": "joy"}
            {"prompt": "two", "emotion": "awe", "emotions": ["fear"]}
            {"prompt": "typed", "emotions": ["awe", 3]}
            {"prompt": "negative", "seed": -1}
            {"prompt": "huge", "seed": 9007199254740992}
            {"prompt": "fraction", "seed": 1.5}
            {"prompt": "text seed", "seed": "5"}
            {"prompt": "ok", "emotion": "fear"}
            {"prompt": "ided", "id": "x"}
            {"prompt": "ided again", "id": "x"}
            {"prompt": "bad id", "id": {"a": 1}}
            [1, 2]
            {"prompt": "twice", "emotions": ["awe", "awe"]}
            """)
        let text = try problems("generation:\n  prompts_file: bad.jsonl\n  emotions: [awe]\n  seeds: [1]")
        assertMentions(
            text,
            [
                "bad.jsonl line 2: emotion: unknown emotion 'joy'",
                "bad.jsonl line 3: give \"emotion\" or \"emotions\", not both",
                "bad.jsonl line 4: emotions: expected a list of emotion names, got 3 in it",
                "bad.jsonl line 5: seed -1 is out of range 0...9007199254740991",
                "bad.jsonl line 6: seed 9007199254740992 is out of range",
                "bad.jsonl line 7: seed: expected a whole number, got 1.5",
                "bad.jsonl line 8: seed: expected a whole number, got the string '5'",
                "bad.jsonl line 9: duplicate of bad.jsonl line 1 (prompt 'ok')",
                "bad.jsonl line 11: id 'x' is already used by bad.jsonl line 10",
                "bad.jsonl line 12: id: expected a string or a whole number, got an object",
                "bad.jsonl line 13: not a JSON object with a \"prompt\" string",
                "bad.jsonl line 14: emotions: 'awe' is listed twice",
            ])
        try write("bad.csv", "prompt,emotion,seed\na,awe,x\nb,joy,1\nc,awe,1\nc,fear,1\n")
        assertMentions(
            try problems("generation:\n  prompts_file: bad.csv\n  emotions: [awe]"),
            [
                "bad.csv row 1: seed 'x' is not a whole number in 0...9007199254740991",
                "bad.csv row 2: emotion: unknown emotion 'joy'",
                "bad.csv row 4: duplicate of bad.csv row 3 (prompt 'c' and seed 1)",
            ])
        try write("both.csv", "prompt,emotion,emotions\na,awe,fear\n")
        assertMentions(
            try problems("generation:\n  prompts_file: both.csv\n  emotions: [awe]"),
            ["both.csv: has both an \"emotion\" and an \"emotions\" column"])
        // A seedless row repeating an inline prompt; a row making the same jobs as an inline one.
        try write("dup.jsonl", #"{"prompt": "a sea"}"# + "\n")
        assertMentions(
            try problems("generation:\n  prompts: [a sea]\n  prompts_file: dup.jsonl\n  emotions: [awe]\n  seeds: [1]"),
            ["dup.jsonl line 1: duplicate of generation.prompts[0]"])
        try write("same.jsonl", #"{"prompt": "a hill", "seed": 1, "id": "h"}"# + "\n")
        assertMentions(
            try problems(
                "generation:\n  prompts: [a sea, a hill]\n  prompts_file: same.jsonl\n  emotions: [awe]\n  seeds: [1]"),
            [
                "generation (prompt 'a hill', id 'h'): makes the same job (awe, seed 1) as generation (prompt 2, 'a hill')"
            ])
    }

    func testManyBadRowsAreCountedNotAllListed() throws {
        let rows = (0..<50).map { #"{"prompt": "p\#($0)", "emotion": "nope"}"# }.joined(separator: "\n")
        try write("many.jsonl", rows)
        let text = try problems("generation:\n  prompts_file: many.jsonl\n  seeds: [1]")
        XCTAssertTrue(text.contains("… and 30 more problems"), text)
        XCTAssertLessThan(text.split(separator: "\n").count, 30)
    }
}

/// Prompts files are read by their extension, and only the known ones: a JSON array is rows,
/// not lines of text; TSV and NDJSON are read as such; `caption` names a prompt.
final class PromptsFileTypesTests: SpecFixture {
    func prompts(_ file: String) throws -> [String] {
        let loaded = try load("generation:\n  prompts_file: \(file)\n  emotions: [awe, fear]\n  seeds: [1]")
        return loaded.jobs.filter { $0.content.emotion == .awe }.map(\.content.prompt)
    }

    func testJSONArraysOfStringsAndOfRows() throws {
        try write("strings.json", #"["a lake at dawn", "a hill"]"#)
        XCTAssertEqual(try prompts("strings.json"), ["a lake at dawn", "a hill"])
        XCTAssertEqual(
            try load("generation:\n  prompts_file: strings.json\n  emotions: [awe, fear]\n  seeds: [1]").jobs.count, 4)
        try write("rows.json", #"[{"prompt": "a boat", "seed": 4}, {"caption": "a field", "id": "f"}]"#)
        XCTAssertEqual(try prompts("rows.json"), ["a boat", "a field"])
        try write("bad.json", #"{"prompt": "not an array"}"#)
        assertMentions(
            try problems("generation:\n  prompts_file: bad.json\n  emotions: [awe]"), ["bad.json: not a JSON array"])
        try write("mixed.json", #"["ok", 3, {"text": "x"}]"#)
        assertMentions(
            try problems("generation:\n  prompts_file: mixed.json\n  emotions: [awe]"),
            ["mixed.json item 2: expected a prompt string or an object, got 3", "mixed.json item 3: not a JSON object"])
    }

    func testTSVAndNDJSONAndCaptionColumns() throws {
        try write("p.tsv", "caption\tid\na boat, red\t1\na field\t2\n")
        XCTAssertEqual(try prompts("p.tsv"), ["a boat, red", "a field"])
        try write("p.ndjson", #"{"caption": "a barn"}"# + "\n" + #"{"prompt": "a road"}"# + "\n")
        XCTAssertEqual(try prompts("p.ndjson"), ["a barn", "a road"])
        try write("both.csv", "prompt,caption\na,b\n")
        assertMentions(
            try problems("generation:\n  prompts_file: both.csv\n  emotions: [awe]"),
            ["both a \"prompt\" and a \"caption\""])
        try write("both.jsonl", #"{"prompt": "a", "caption": "b"}"# + "\n")
        assertMentions(
            try problems("generation:\n  prompts_file: both.jsonl\n  emotions: [awe]"),
            ["give \"prompt\" or \"caption\", not both"])
    }

    func testUnknownExtensionsAreRefusedNamingTheAcceptedOnes() throws {
        for name in ["prompts.xyz", "prompts", "prompts.parquet"] {
            try write(name, "a lake\n")
            assertMentions(
                try problems("generation:\n  prompts_file: \(name)\n  emotions: [awe]"),
                ["unknown prompts file type", ".jsonl, .ndjson, .json, .csv, .tsv, .txt"])
        }
    }
}
