import ArgumentParser
import DiffusersLayout
import Foundation
import Support

/// `muse fingerprint PATH…`: a model's fingerprint, the value a spec may give as
/// `fingerprint:` so a coordinator without the weights can submit (workers check what they
/// load against it). The same computation the coordinator and workers run.
struct FingerprintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fingerprint",
        abstract: "Print the fingerprint of model folders or files (what a spec's `fingerprint:` holds).")

    @Argument(help: "Model folders (diffusers/transformers layout) or files (a classifier head).")
    var paths: [String]

    @Flag(help: "Also list the files the fingerprint covers (those the loader reads).")
    var files = false

    func validate() throws {
        guard !paths.isEmpty else { throw ValidationError("give at least one model folder or file") }
    }

    func run() throws {
        var failed = false
        for path in paths {
            do {
                print("\(try ModelFingerprint.compute(path: path))  \(path)")
                if files {
                    for file in try ModelFingerprint.files(path: path) { print("    \(file.isEmpty ? path : file)") }
                }
            } catch {
                FileHandle.standardError.write(Data("muse fingerprint: \(error)\n".utf8))
                failed = true
            }
        }
        if failed { throw ExitCode(66) }
    }
}
