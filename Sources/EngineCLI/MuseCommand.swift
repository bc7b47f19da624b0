import ArgumentParser
import CommandLineBootstrap
import Support

/// `muse`: the engine on its own — one image at a time, and the engine's benchmarks.
/// The batch pipeline is muse-coordinator + muse-worker.
@main
struct MuseCommand: LoggedCommand {
    static let configuration = CommandConfiguration(
        commandName: "muse",
        abstract: "MUSE engine: generate or edit one image with an emotion, or measure the engine.",
        version: MUSEVersion.current,
        subcommands: [
            GenerateCommand.self, EditCommand.self, BenchCommand.self, BenchEngineCommand.self,
            BenchMuseCommand.self, BenchTokenizerCommand.self, FingerprintCommand.self,
        ])

}
