import ArgumentParser
import Support

/// The one `main` of the three executables: take `--log-format` out of the arguments and
/// bootstrap logging with it (`Log.bootstrap`), give negative numbers to their options
/// (`NegativeNumbers`), then parse and run the command, exiting with
/// ArgumentParser's code for an error (64 for usage, the error's own for `ExitCode`).
public protocol LoggedCommand: ParsableCommand {}

extension LoggedCommand {
    public static func main() {
        let arguments = NegativeNumbers.attach(Log.bootstrap(arguments: Array(CommandLine.arguments.dropFirst())))
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
