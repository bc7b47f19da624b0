import ArgumentParser
import Support

/// `muse-worker`: the stateless worker of the batch pipeline. The engine's own commands
/// (generate, edit, benchmarks) are the `muse` executable's.
@main
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "muse-worker",
        abstract: "MUSE worker: runs emotion synthesis jobs from Redis.",
        version: MUSEVersion.current,
        subcommands: [WorkerRunCommand.self],
        defaultSubcommand: WorkerRunCommand.self)

    static func main() {
        Log.bootstrap()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
