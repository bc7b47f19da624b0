import ArgumentParser
import Diffusion
import Foundation
import Imaging
import MUSE
import Support
import Tensor
import Vocabulary

/// Helpers of the engine commands (generate, edit), namespaced to stay clear of the
/// pipeline commands' names.
enum EngineCLI {
    /// Runs a job step by step with progress on stderr, then writes the PNG (and trace).
    static func runJob(_ engine: SynthesisEngine, _ job: SynthesisJob, image: Tensor?, options: MUSEEngineOptions)
        throws
    {
        var state = try engine.start(job, image: image)
        if job.isEdit {
            EngineCLI.log(
                String(
                    format: "inverted to step %d of %d in %.1f s", state.stepIndex, job.settings.steps,
                    state.trace.timings.inversion))
        }
        while !engine.isFinished(state) {
            state = try engine.advance(state)
            let step = state.trace.stepTraces.last!
            var line = String(
                format: "step %d/%d t=%d s_t=%.4f", step.index + 1, job.settings.steps, step.timestep, step.promptScore)
            if step.guided, let last = step.inner.last {
                line += String(
                    format: " guided: loss %.3f p(%@) %.3f", last.loss, job.emotion.rawValue,
                    last.probabilities[job.emotion.index])
            }
            line += String(format: " (%.2f s)", step.seconds)
            EngineCLI.log(line)
        }
        let result = engine.finish(state)
        try EngineCLI.writePNG(result.rgb, width: result.width, height: result.height, to: options.out)
        if let tracePath = options.trace { try EngineCLI.writeJSON(result.trace, to: tracePath) }
        let p = result.probabilities
        let top = Emotion.allCases.max { p[$0.index] < p[$1.index] }!
        var summary = String(
            format: "wrote %@: p(%@) = %.3f, top %@ %.3f", options.out, job.emotion.rawValue, p[job.emotion.index],
            top.rawValue, p[top.index])
        if let start = result.trace.startStep {
            summary += ", guided steps \(start)..<\(result.trace.stopStep)"
            if let inherent = result.trace.inherent { summary += ", e_inh \(inherent.rawValue)" }
        }
        if let ratio = result.trace.previewCostRatio {
            summary += String(format: ", preview cost %.1f%% of a plain step", ratio * 100)
        }
        summary += String(format: ", %.1f s", result.trace.timings.total)
        EngineCLI.log(summary)
        if let image, job.isEdit { logReconstruction(engine, source: image, result: result, job: job) }
    }

    /// An edit's distance from its source (PSNR of the 8-bit images) beside the VAE's own
    /// round trip of the source (encode mean → decode), the ceiling any reconstruction reaches.
    static func logReconstruction(_ engine: SynthesisEngine, source: Tensor, result: SynthesisResult, job: SynthesisJob)
    {
        func rgb(_ t: Tensor) -> RGBImage {
            let (w, h, bytes) = t.rgbBytes()
            return RGBImage(width: w, height: h, channels: 3, pixels: bytes)
        }
        let sourceRGB = rgb(source.clamp(-1...1))
        let edited = RGBImage(width: result.width, height: result.height, channels: 3, pixels: result.rgb)
        guard let psnr = ImageMetrics.psnr(sourceRGB, edited),
            let roundTrip = try? Autograd.noGrad({ try engine.sd.decodeToImage(engine.sd.encodeImage(source)) }),
            let ceiling = ImageMetrics.psnr(sourceRGB, rgb(roundTrip))
        else { return }
        EngineCLI.log(
            String(
                format: "against the source: PSNR %.2f dB (the VAE's own round trip: %.2f dB), inversion %@",
                psnr, ceiling, job.settings.inversion.rawValue))
    }

    struct Failure: Error, CustomStringConvertible, LocalizedError {
        let message: String
        init(_ message: String) { self.message = message }
        var description: String { message }
        var errorDescription: String? { message }
    }

    static let logger = Log.logger("muse")

    static func log(_ line: String) { logger.info("\(line)") }

    /// Atomic: the file appears whole or not at all.
    static func writePNG(_ rgb: [UInt8], width: Int, height: Int, to path: String) throws {
        let data = try PNGCodec.encode(RGBImage(width: width, height: height, channels: 3, pixels: rgb))
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw writeFailure(path, error)
        }
    }

    /// "cannot write PATH: Is a directory" rather than Foundation's "NSCocoaErrorDomain error 512".
    static func writeFailure(_ path: String, _ error: Error) -> Failure {
        let ns = error as NSError
        let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError
        let why =
            [underlying, ns].compactMap { $0 }.first { $0.domain == NSPOSIXErrorDomain }
            .map { String(cString: strerror(Int32($0.code))) } ?? ns.localizedDescription
        return Failure("cannot write \(path): \(why)")
    }

    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw writeFailure(path, error)
        }
    }

    /// Finds the repository folder holding the bundled models: upward from the current
    /// directory, then upward from the executable's location.
    enum BundledModels {
        static func root() throws -> String {
            if let cached = cache { return cached }
            let fm = FileManager.default
            var starts = [fm.currentDirectoryPath]
            let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            starts.append(exe.deletingLastPathComponent().path)
            if let bundled = Bundle.main.executablePath {
                starts.append(URL(fileURLWithPath: bundled).deletingLastPathComponent().path)
            }
            for start in starts {
                var dir = URL(fileURLWithPath: start).standardizedFileURL
                while true {
                    if fm.fileExists(atPath: dir.path + "/models/miniworld/sd/model_index.json") {
                        cache = dir.path
                        return dir.path
                    }
                    let parent = dir.deletingLastPathComponent()
                    if parent.path == dir.path { break }
                    dir = parent
                }
            }
            throw EngineCLI.Failure(
                "cannot find the bundled models (a folder containing models/miniworld/sd) above the current directory or the executable; pass --model, --classifier-tower and --classifier-head/--clip-text explicitly"
            )
        }

        nonisolated(unsafe) static var cache: String?
    }
}

/// snake_case → camelCase, as JSONDecoder's convertFromSnakeCase does for plain names.
func camelCase(_ name: String) -> String {
    let parts = name.split(separator: "_", omittingEmptySubsequences: true)
    guard let first = parts.first else { return name }
    return String(first) + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
}
