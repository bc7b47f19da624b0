/// The release the three executables report with `--version`; job ids and checkpoint
/// formats carry their own version numbers.
public enum MUSEVersion {
    public static let current = "0.3.0"
}
