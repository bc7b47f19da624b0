import ArgumentParser

@main
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "muse-worker",
        abstract: "MUSE worker: runs emotion synthesis jobs, or the engine directly.",
        subcommands: [Bench.self, ParityUNet.self])
}
