import ArgumentParser
import CommandLineBootstrap
import Support

/// `muse-worker`: the stateless worker of the batch pipeline. The engine's own commands
/// (generate, edit, benchmarks) are the `muse` executable's.
@main
struct WorkerCommand: LoggedCommand {
    static let configuration = CommandConfiguration(
        commandName: "muse-worker",
        abstract: "MUSE worker: runs emotion synthesis jobs from Redis.",
        discussion: """
            Logs: --log-format text|json (or MUSE_LOG_FORMAT) anywhere on the command line; JSON gives one \
            object per line (time, level, program, name, message). MUSE_LOG_LEVEL sets the level.
            """,
        version: MUSEVersion.current,
        subcommands: [WorkerRunCommand.self],
        defaultSubcommand: WorkerRunCommand.self)

}
