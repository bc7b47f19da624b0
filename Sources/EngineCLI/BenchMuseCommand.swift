import ArgumentParser
import Diffusion
import Foundation
import MUSE
import Tensor
import Vocabulary

/// `muse bench-muse`: what one MUSE image costs at full SD 1.5 size, through the engine's own
/// step machine (`start`, `advance`, `finish`) on the random-weight stand-ins of
/// tools/reference/build_sd15_random.py, plus each phase of one inner iteration on its own.
/// tools/reference/bench_muse.py prints the same labels for PyTorch; ops/bench-muse pairs them.
struct BenchMuseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-muse",
        abstract: "Time a plain step, a guided step and their phases at full SD 1.5 size; estimate one image.")

    @Option(help: "Folder written by tools/reference/build_sd15_random.py --root (sd15/, clip-vit-l14/, …).")
    var root = "/tmp/sd15-random-full"

    @Option(
        name: .customLong("tiny-decoder"),
        help: "AutoencoderTiny folder (tools/reference/build_taesd_random.py --out). Default: ROOT/taesd.")
    var tinyDecoder: String?

    @Option(help: "DDIM steps of the estimated image (the engine's default).")
    var steps = 50

    @Option(help: "DPM-Solver++(2M) steps of the third estimate.")
    var dpmSteps = 20

    @Option(help: "K, inner iterations per guided step. Default: MUSESettings().innerIterations.")
    var k = MUSESettings().innerIterations

    @Option(help: "Timed runs of each phase; the best is reported.")
    var repeats = 1

    @Flag(help: "Skip the tiny decoder (its steps, phases and estimate).")
    var noTiny = false

    @Option(help: "Prompt of the benchmark job.")
    var prompt = "a quiet lake at dawn"

    @Flag(help: "Time only the phases of one inner iteration (no steps, no estimate).")
    var phasesOnly = false

    func run() throws {
        let blas = BLAS.ensureConfigured()
        BenchLine.header(blas: blas)
        let tinyFolder = noTiny ? nil : (tinyDecoder ?? root + "/taesd")
        var began = DispatchTime.now().uptimeNanoseconds
        let engine = try SynthesisEngine.load(
            model: root + "/sd15", tower: root + "/clip-vit-l14", head: root + "/emotion-head.safetensors",
            text: root + "/clip-text-l14", tinyDecoder: tinyFolder)
        print(String(format: "models loaded in %.1f s from %@", BenchLine.seconds(since: began), root))
        fflush(stdout)

        // Guidance from step 0 (latest start at 0) so the first two steps are guided; the
        // plain job keeps the default timing, whose first steps are never guided (min start 10 %).
        var plainSettings = JobSettings(steps: steps)
        plainSettings.muse.innerIterations = k
        var guided = plainSettings
        guided.muse.minStartFraction = 0
        guided.muse.latestStartFraction = 0
        let emotion = Emotion.awe
        if phasesOnly {
            let state = try engine.start(SynthesisJob(prompt: prompt, emotion: emotion, settings: guided))
            try phases(engine, job: state.job, token: state.token, latent: state)
            BenchLine.print("peak RSS", BenchLine.peakRSSGigabytes(), unit: "GB")
            return
        }

        func twoSteps(_ settings: JobSettings) throws -> (Double, Double, SynthesisState) {
            var state = try engine.start(SynthesisJob(prompt: prompt, emotion: emotion, settings: settings))
            var times: [Double] = []
            for _ in 0..<2 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                state = try engine.advance(state)
                times.append(BenchLine.seconds(since: t0))
            }
            return (times[0], times[1], state)
        }

        let (plainFirst, plainSecond, plainState) = try twoSteps(plainSettings)
        precondition(plainState.trace.stepTraces.allSatisfy { !$0.guided }, "the plain job's first steps were guided")
        let plain = min(plainFirst, plainSecond)
        BenchLine.print("plain DDIM step (CFG: 2 UNet calls, s_t preview)", plain)

        let (guidedFirst, guidedStep, guidedState) = try twoSteps(guided)
        precondition(guidedState.trace.stepTraces.allSatisfy(\.guided), "the guided job's first steps were not guided")
        BenchLine.print("first guided step (WHICH + K=\(k)), full VAE decoder", guidedFirst)
        BenchLine.print("guided step, K=\(k), full VAE decoder", guidedStep)
        // The other memory mode, in the same run (peak RSS needs a process each: /usr/bin/time -v).
        let recomputing = Autograd.recomputeActivations
        Autograd.recomputeActivations = !recomputing
        let (_, otherMode, _) = try twoSteps(guided)
        Autograd.recomputeActivations = recomputing
        BenchLine.print(
            "guided step, K=\(k), full VAE, activations \(recomputing ? "kept" : "recomputed") (other mode)", otherMode)

        var tinyFirst = 0.0
        var tinyStep = 0.0
        if tinyFolder != nil {
            var tiny = guided
            tiny.muse.guidanceDecoder = .tiny
            (tinyFirst, tinyStep, _) = try twoSteps(tiny)
            BenchLine.print("first guided step (WHICH + K=\(k)), tiny decoder", tinyFirst)
            BenchLine.print("guided step, K=\(k), tiny decoder", tinyStep)
        }

        var dpmSettings = plainSettings
        dpmSettings.steps = dpmSteps
        dpmSettings.scheduler = .dpmpp2m
        let (_, dpmPlain, _) = try twoSteps(dpmSettings)
        BenchLine.print("plain DPM-Solver++(2M) step (second, 2M update)", dpmPlain)

        var done = plainState
        done.stepIndex = done.job.settings.steps
        began = DispatchTime.now().uptimeNanoseconds
        _ = engine.finish(done)
        let finish = BenchLine.seconds(since: began)
        BenchLine.print("finish (VAE decode to 512x512, 8-bit, classify)", finish)

        try phases(engine, job: guidedState.job, token: guidedState.token, latent: guidedState)

        let ddim = Window(steps: steps)
        let dpm = Window(steps: dpmSteps)
        print(
            "estimate = plain steps x plain step + first guided step + (guided steps - 1) x guided step + finish; "
                + "guidance assumed to start at the latest start (latest_start_fraction "
                + "\(MUSESettings().latestStartFraction): the shortest window, fewest guided steps) "
                + "and stop at stop_fraction "
                + "\(MUSESettings().stopFraction)")
        print(
            "DDIM \(steps): \(ddim.plain) plain + \(ddim.guided) guided; DPM \(dpmSteps): \(dpm.plain) + \(dpm.guided)")
        print("DPM-Solver++ estimate uses the guided steps measured with DDIM (the inner loop is the same)")
        let full = ddim.estimate(plain: plain, first: guidedFirst, guided: guidedStep, finish: finish)
        BenchLine.print("image 512x512, DDIM \(steps), K=\(k), full VAE decoder", full / 60, unit: "min")
        if tinyFolder != nil {
            let tiny = ddim.estimate(plain: plain, first: tinyFirst, guided: tinyStep, finish: finish)
            BenchLine.print("image 512x512, DDIM \(steps), K=\(k), tiny decoder", tiny / 60, unit: "min")
        }
        let dpmImage = dpm.estimate(plain: dpmPlain, first: guidedFirst, guided: guidedStep, finish: finish)
        BenchLine.print("image 512x512, DPM-Solver++(2M) \(dpmSteps), K=\(k), full VAE", dpmImage / 60, unit: "min")
        if tinyFolder != nil {
            let fastest = dpm.estimate(plain: dpmPlain, first: tinyFirst, guided: tinyStep, finish: finish)
            BenchLine.print(
                "image 512x512, DPM-Solver++(2M) \(dpmSteps), K=\(k), tiny decoder", fastest / 60, unit: "min")
        }
        BenchLine.print("peak RSS", BenchLine.peakRSSGigabytes(), unit: "GB")
        print("load after: \(BenchLine.loadAverage())")
    }

    /// One inner iteration's phases, each on its own, with the engine's own pieces on the
    /// guided job's state (its token and latent).
    func phases(_ engine: SynthesisEngine, job: SynthesisJob, token values: [Float], latent state: SynthesisState)
        throws
    {
        let sd = engine.sd
        let z = Tensor(shape: state.latentShape, data: state.latent)
        let t = sd.scheduler.timesteps(steps: job.settings.steps)[state.stepIndex]
        let token = Tensor(shape: [values.count], data: values)

        convPhase()
        let cond = Autograd.noGrad { engine.tokenConditioning(job, token: token) }
        phase("text encoder forward (token in its slot)") { _ = engine.tokenConditioning(job, token: token) }
        phase("text encoder forward+backward to the token") {
            let v = token.asVariable()
            _ = Autograd.gradients(of: engine.tokenConditioning(job, token: v).sum(), withRespectTo: [v])
        }
        phase("UNet forward, 64x64 latent, batch 1") {
            _ = Autograd.noGrad { sd.unet(z, timestep: Float(t), context: cond) }
        }
        // Classifier-free guidance's two branches as one batch of 2, as diffusers' pipeline runs them.
        let uncond = engine.unconditional(job.settings.negativePrompt)
        phase("UNet forward, 64x64 latent, batch 2 (both CFG branches)") {
            _ = Autograd.noGrad {
                sd.unet(
                    Tensor.concat([z, z], axis: 0), timestep: Float(t),
                    context: Tensor.concat([uncond, cond], axis: 0))
            }
        }
        phase("UNet forward+backward to the conditioning") {
            let c = cond.asVariable()
            _ = Autograd.gradients(of: sd.unet(z, timestep: Float(t), context: c).sum(), withRespectTo: [c])
        }
        let eps = Autograd.noGrad { sd.unet(z, timestep: Float(t), context: cond) }
        let x0 = sd.scheduler.predictedOriginal(eps: eps, timestep: t, sample: z)
        var decoders: [(String, GuidanceDecoder)] = [("VAE", .vae)]
        if engine.tinyDecoder != nil { decoders.append(("tiny", .tiny)) }
        for (name, decoder) in decoders {
            phase("\(name) decoder forward, x0 -> 512x512") {
                _ = Autograd.noGrad { engine.guidanceImage(x0, decoder: decoder) }
            }
            phase("\(name) decoder forward+backward to x0") {
                let v = x0.asVariable()
                _ = Autograd.gradients(of: engine.guidanceImage(v, decoder: decoder).sum(), withRespectTo: [v])
            }
        }
        let image = Autograd.noGrad { engine.guidanceImage(x0, decoder: .vae) }
        let target = job.emotion.index
        phase("CLIP vision tower + head forward (224x224)") {
            _ = Autograd.noGrad { engine.classifier.logits(images: image) }
        }
        phase("CLIP vision tower + head forward+backward to pixels") {
            let v = image.asVariable()
            let logP = engine.classifier.logits(images: v).logSoftmax()
            _ = Autograd.gradients(of: -logP.narrowed(axis: 1, start: target, length: 1).sum(), withRespectTo: [v])
        }
    }

    /// The kernel target of the cost issue, beside the model phases: the UNet's commonest 3×3
    /// convolution (weights constant, so their Winograd transform is cached as in a model).
    func convPhase() {
        let x = Tensor.randomNormal([1, 320, 64, 64], seed: 3)
        let w = Tensor.randomNormal([320, 320, 3, 3], seed: 4) * 0.02
        _ = x.conv2d(w, padding: 1)
        phase("conv 3x3 320->320 at 64x64 forward") { _ = x.conv2d(w, padding: 1) }
    }

    func phase(_ name: String, _ body: () -> Void) {
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            best = min(best, BenchLine.seconds(since: start))
        }
        BenchLine.print("phase: " + name, best)
    }
}

/// The guidance window of the estimate: from the latest start to the stop (the defaults).
struct Window {
    let plain: Int
    let guided: Int

    init(steps: Int, settings: MUSESettings = MUSESettings()) {
        let start = MUSESettings.stepIndex(settings.latestStartFraction, steps: steps)
        let stop = MUSESettings.stepIndex(settings.stopFraction, steps: steps)
        guided = max(0, stop - start)
        plain = steps - guided
    }

    func estimate(plain p: Double, first: Double, guided g: Double, finish: Double) -> Double {
        Double(plain) * p + (guided > 0 ? first + Double(guided - 1) * g : 0) + finish
    }
}

/// The line format ops/bench-muse pairs: a 64-character ASCII label, then the value and its unit.
enum BenchLine {
    static let width = 64

    static func print(_ label: String, _ value: Double, unit: String = "s") {
        Swift.print(
            label.padding(toLength: width, withPad: " ", startingAt: 0) + String(format: " %10.3f %@", value, unit))
        fflush(stdout)
    }

    static func seconds(since start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

    static func header(blas: BLAS.Configuration) {
        Swift.print("CPU: \(BLAS.cpuModelName()), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        Swift.print("BLAS: \(blas)")
        Swift.print("engine threads: \(Threads.count) (MUSE_THREADS)")
        Swift.print(
            "activations for the backward: "
                + (Autograd.recomputeActivations
                    ? "recomputed per block (MUSE_RECOMPUTE=1)" : "kept (MUSE_RECOMPUTE unset)")
                + "; Winograd weight cache: MUSE_WINOGRAD_CACHE_MB="
                + (ProcessInfo.processInfo.environment["MUSE_WINOGRAD_CACHE_MB"] ?? "unset (4096)"))
        Swift.print("load before: \(loadAverage())")
        fflush(stdout)
    }

    /// /proc/loadavg's three averages (the machine may be shared).
    static func loadAverage() -> String {
        let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "unknown"
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    /// getrusage's ru_maxrss (KiB on Linux) in GB.
    static func peakRSSGigabytes() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_maxrss) * 1024 / 1e9
    }
}
