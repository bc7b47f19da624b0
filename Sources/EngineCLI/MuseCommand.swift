import ArgumentParser
import Support

/// `muse`: the engine on its own — one image at a time, and the engine's benchmarks.
/// The batch pipeline is muse-coordinator + muse-worker.
@main
struct MuseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "muse",
        abstract: "MUSE engine: generate or edit one image with an emotion, or measure the engine.",
        version: MUSEVersion.current,
        subcommands: [
            GenerateCommand.self, EditCommand.self, BenchCommand.self, BenchEngineCommand.self,
            BenchMuseCommand.self, BenchTokenizerCommand.self,
        ])

    static func main() {
        let arguments = Log.bootstrap(arguments: Array(CommandLine.arguments.dropFirst()))
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
