import Foundation
import Support
import TestSupport
import XCTest

@testable import Checkpoints
@testable import Imaging
@testable import Jobs
@testable import RedisQueue

/// Built products sit next to the test bundle (swift test builds the executables first:
/// PipelineTests depends on them).
let binDir: URL = ExecutableLocation.directory

func binary(_ name: String) -> String { binDir.appendingPathComponent(name).path }

/// Environment for spawned tools: bundled models found from anywhere, no stray Redis settings.
func toolEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    for k in ["REDIS_URL", "REDIS_PASSWORD", "REDIS_PASSWORD_FILE", "REDIS_USERNAME"] { env.removeValue(forKey: k) }
    env["MUSE_MODELS_DIR"] = packageRoot.appendingPathComponent("models").path
    env["OPENBLAS_NUM_THREADS"] = "1"
    for (k, v) in extra { env[k] = v }
    return env
}

struct ToolResult {
    var status: ExitStatus
    var stdout: String
    var stderr: String
    var code: Int32 {
        if case .exited(let c) = status { return c }
        return -1
    }
}

/// A long-running tool whose output goes to files.
final class RunningTool {
    let process: ChildProcess
    let stdoutPath: String
    let stderrPath: String

    init(_ name: String, _ args: [String], env: [String: String] = toolEnvironment(), dir: URL, label: String) throws {
        stdoutPath = dir.appendingPathComponent("\(label).out").path
        stderrPath = dir.appendingPathComponent("\(label).err").path
        process = try ChildProcess.spawn(
            binary(name), args, name: label, environment: env, stdoutPath: stdoutPath,
            stderrPath: stderrPath, newProcessGroup: true)
    }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits for exit; kills and fails the test after `timeout`.
    func finish(timeout: TimeInterval, file: StaticString = #filePath, line: UInt = #line) -> ToolResult {
        guard let status = process.wait(timeout: timeout) else {
            process.signal(SIGKILL)
            process.wait(timeout: 10)
            XCTFail(
                "\(process.name) did not finish within \(timeout) s; stderr:\n\(stderr.suffix(3000))", file: file,
                line: line)
            return ToolResult(status: .signaled(SIGKILL), stdout: stdout, stderr: stderr)
        }
        return ToolResult(status: status, stdout: stdout, stderr: stderr)
    }

    func stop() {
        if process.isRunning { process.terminate(grace: 20) }
    }

    deinit {
        if process.isRunning {
            process.signal(SIGKILL)
            process.wait(timeout: 5)
        }
    }
}

/// Runs a tool to completion.
func runTool(
    _ name: String, _ args: [String], env: [String: String] = toolEnvironment(), dir: URL, timeout: TimeInterval = 120,
    file: StaticString = #filePath, line: UInt = #line
) throws -> ToolResult {
    let label = "\(name)-\(UUID().uuidString.prefix(8))"
    return try RunningTool(name, args, env: env, dir: dir, label: label).finish(
        timeout: timeout, file: file, line: line)
}

/// Polls `condition` every 10 ms up to `timeout` seconds.
func waitUntil(
    _ timeout: TimeInterval, _ what: String, file: StaticString = #filePath, line: UInt = #line,
    _ condition: () throws -> Bool
) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    XCTFail("timed out after \(timeout) s waiting for \(what)", file: file, line: line)
    return false
}

/// A private redis-server for one test (RedisServer.temporary), restartable on the same data.
final class TestRedis {
    let server: RedisServer
    var url: String { server.url }

    init(password: String? = nil) throws { server = try RedisServer.temporary(password: password) }

    func restart() throws { try server.restart() }

    func client(retry: RedisClient.RetryPolicy = RedisClient.RetryPolicy()) throws -> RedisClient {
        try server.client(options: .init(connectTimeout: 2, commandTimeout: 10, retry: retry))
    }
}

func manifestLines(_ folder: URL) throws -> [ManifestEntry] {
    try ManifestWriter.readEntries(folder.appendingPathComponent("manifest.jsonl"), as: ManifestEntry.self)
}

/// Processes (by /proc scan) whose command line contains `needle`: to prove nothing was left behind.
func processesMentioning(_ needle: String) -> [pid_t] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var out: [pid_t] = []
    for e in entries {
        guard let pid = pid_t(e), pid != getpid() else { continue }
        guard let data = FileManager.default.contents(atPath: "/proc/\(e)/cmdline") else { continue }
        let text = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        // Zombies have an empty command line.
        if text.contains(needle) { out.append(pid) }
    }
    return out
}
