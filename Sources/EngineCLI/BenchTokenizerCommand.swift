import ArgumentParser
import Diffusion
import Foundation
import Tensor

/// `muse bench-tokenizer`: the CLIP tokenizer's speed on ordinary and hostile prompts (what
/// the tokenizer tests once asserted by wall clock; their ids are still checked there).
struct BenchTokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-tokenizer",
        abstract: "Measure CLIP tokenization: 200 prompts cold, long run-together words, 1 MB inputs.")

    @Option(help: "A folder with vocab.json and merges.txt (default: the bundled models/clip-bpe).")
    var vocabulary: String?

    @Option(help: "Repetitions per measurement; the best is reported.")
    var repeats = 3

    func validate() throws {
        guard (1...100).contains(repeats) else { throw ValidationError("--repeats must be in 1...100, got \(repeats)") }
    }

    func run() throws {
        let folder = try vocabulary ?? (EngineCLI.BundledModels.root() + "/models/clip-bpe")
        print(
            "CPU: \(BLAS.cpuModelName()), \(ProcessInfo.processInfo.activeProcessorCount) cores; vocabulary \(folder)")
        let words = ["a", "photo", "of", "the", "cat", "mountain", "lake", "dawn", "highly", "detailed", "quiet"]
        var state: UInt64 = 7
        func word() -> String {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return words[Int((state >> 33) % UInt64(words.count))]
        }
        func text(_ bytes: Int, separator: String) -> String {
            var s = ""
            while s.utf8.count < bytes { s += word() + separator }
            return String(s.utf8.prefix(bytes))!
        }
        let prompts = (0..<200).map { i in (0..<12).map { _ in word() }.joined(separator: " ") + " \(i)" }
        report("200 prompts, fresh tokenizer (cold cache)", folder: folder) { t in
            for p in prompts { _ = t.tokenize(p) }
        }
        for bytes in [5_000, 40_000, 100_000] {
            let long = text(bytes, separator: "")
            report("encode of a \(bytes)-byte run-together word", folder: folder) { t in _ = t.encode(long) }
        }
        let megabytePrompt = text(1 << 20, separator: " ")
        report("tokenize of a 1 MB prompt", folder: folder) { t in _ = t.tokenize(megabytePrompt) }
        let megabyteWord = text(1 << 20, separator: "")
        report("tokenize of a 1 MB word", folder: folder) { t in _ = t.tokenize(megabyteWord) }
    }

    /// Best of `repeats`, each on a fresh tokenizer (its merge cache empty), loading not timed.
    func report(_ what: String, folder: String, _ body: (CLIPTokenizer) -> Void) {
        var best = Double.infinity
        for _ in 0..<repeats {
            guard let t = try? CLIPTokenizer(folder: folder) else {
                print("\(what): cannot load the tokenizer from \(folder)")
                return
            }
            let start = DispatchTime.now().uptimeNanoseconds
            body(t)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        print(String(format: "%@: %.4f s (best of %d)", what, best, repeats))
    }
}
