import ArgumentParser

@main
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "muse-worker",
        abstract: "MUSE worker: runs emotion synthesis jobs, or the engine directly.",
        subcommands: [RunCommand.self, GenerateCommand.self, EditCommand.self, Bench.self, BenchEngine.self],
        defaultSubcommand: RunCommand.self)
}
