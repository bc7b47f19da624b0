/// ArgumentParser reads `--steps -3` as the option `--steps` with its value missing, because
/// `-3` looks like an option, and says "Missing value for '--steps <steps>'". None of the
/// executables has an option named by digits, so a negative number right after a long option
/// is that option's value: joined as `--steps=-3`, it reaches the option's range check, which
/// says what is wrong ("--steps must be in 1...1000, got -3").
enum NegativeNumbers {
    static func attach(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" {
                out += arguments[index...]
                break
            }
            if argument.hasPrefix("--"), !argument.contains("="), index + 1 < arguments.count,
                isNegativeNumber(arguments[index + 1])
            {
                out.append(argument + "=" + arguments[index + 1])
                index += 2
                continue
            }
            out.append(argument)
            index += 1
        }
        return out
    }

    /// "-3", "-0.5", "-1e-3": a minus sign, then a number.
    static func isNegativeNumber(_ text: String) -> Bool {
        guard text.hasPrefix("-"), text.count > 1 else { return false }
        return Double(text) != nil && text.dropFirst().first.map { $0.isNumber || $0 == "." } == true
    }
}
