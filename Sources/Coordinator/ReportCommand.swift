import ArgumentParser
import CoordinatorCore
import Foundation

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract:
            "Write OUTPUT_DIR/report.json and report.html: metrics per method and emotion, curves, a contact sheet.",
        discussion: """
            Reads manifest.jsonl, the PNGs, the edit sources and the per-job trace files. Emo-A, target \
            probability, CLIP score and Sem-D per method and emotion; Emo-S, PSNR, SSIM and CLIP-I for \
            edits; 95 % bootstrap intervals and paired differences against muse (definitions: \
            manifests/SPEC.md, "Report"). Fields an older manifest lacks are reported as missing, not \
            fatal. The HTML needs no network: images are linked relative to the folder.
            """)

    @Argument(help: "The output folder (holds manifest.jsonl).")
    var output: String

    @Option(help: "Put per-job sections on their own pages (report/<job>.html) above this many jobs.")
    var pagesAbove = 60

    @Flag(help: "Also print the method tables (95 % intervals), differences against muse, start reasons as Markdown.")
    var markdown = false

    func run() throws {
        try guarded {
            let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            let folder = URL(fileURLWithPath: output, relativeTo: cwd).standardizedFileURL
            let written = try Report.write(folder: folder, pagesAbove: pagesAbove)
            let s = written.summary
            for note in s.notes { say("note: \(note)") }
            for w in s.evaluation.warnings { say("warning: \(w)") }
            let done = s.counts.map(\.done).reduce(0, +)
            let failed = s.counts.map(\.failed).reduce(0, +)
            let pages = written.pages > 0 ? " and \(written.pages) job pages under \(Report.pagesFolder)/" : ""
            say("report: \(done) done, \(failed) failed; wrote \(written.json.path), \(written.html.path)\(pages)")
            if markdown { print(Report.markdown(s)) }
            return 0
        }
    }
}
