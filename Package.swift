// swift-tools-version:6.0
import PackageDescription

// Module map (docs/ARCHITECTURE.md has the why; ops/check-imports keeps it true):
//   Vocabulary ← MUSE, Jobs          Tensor ← Diffusion ← MUSE ← WorkerEngine ← Worker, EngineCLI
//   DiffusersLayout ← Support ← RedisQueue, Checkpoints, Imaging, Jobs ← WorkerCore ← WorkerEngine
//                                                  ← CoordinatorCore ← Coordinator
// The coordinator links no engine module; the engine knows no Redis; the queue knows no
// job types; the checkpoint codec knows no engine.
let package = Package(
    name: "MUSE",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "muse-coordinator", targets: ["Coordinator"]),
        .executable(name: "muse-worker", targets: ["Worker"]),
        .executable(name: "muse", targets: ["EngineCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swiftcsv/SwiftCSV", from: "0.10.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        // hiredis and libpng pkg-config files add -D_FILE_OFFSET_BITS=64, which SwiftPM rejects: link by name.
        .systemLibrary(name: "CPNG", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),

        // The engine: tensors, Stable Diffusion, MUSE. No Redis, no job files.
        // Softmax/exp compiled per CPU level (AVX-512, AVX2, baseline), picked at load time.
        .target(name: "CKernels"),
        .target(name: "Tensor", dependencies: ["COpenBLAS", "CKernels"]),
        .target(name: "Diffusion", dependencies: ["Tensor", "DiffusersLayout"]),
        .target(name: "DiffusersLayout", path: "Sources/Shared/DiffusersLayout"),
        .target(name: "Vocabulary", dependencies: ["DiffusersLayout"], path: "Sources/Shared/Vocabulary"),
        .target(name: "MUSE", dependencies: ["Diffusion", "DiffusersLayout", "Tensor", "Vocabulary"]),

        // Sources/Shared: the modules both executables use, each its own target.
        .target(
            name: "Support",
            dependencies: [
                "DiffusersLayout", .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/Shared/Support"),
        .target(name: "RedisQueue", dependencies: ["CHiredis", "Support"], path: "Sources/Shared/RedisQueue"),
        .target(name: "Checkpoints", dependencies: ["CZstd", "CZlib", "Support"], path: "Sources/Shared/Checkpoints"),
        .target(name: "Imaging", dependencies: ["CPNG", "CJPEG", "Support"], path: "Sources/Shared/Imaging"),
        .target(
            name: "Jobs",
            dependencies: [
                "Vocabulary", "DiffusersLayout", "Support", "Imaging", "RedisQueue", "Yams",
                .product(name: "SwiftCSV", package: "SwiftCSV"),
            ],
            path: "Sources/Shared/Jobs"),
        .target(
            name: "WorkerCore",
            dependencies: [
                "Jobs", "RedisQueue", "Checkpoints", "Imaging", "Support",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .target(
            name: "WorkerEngine",
            dependencies: ["WorkerCore", "MUSE", "Tensor", "Diffusion", "Jobs", "Checkpoints", "Imaging", "Support"]),
        .target(
            name: "CoordinatorCore",
            dependencies: [
                "Jobs", "RedisQueue", "Checkpoints", "Imaging", "Support", "Vocabulary",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),

        // Executables parse arguments and call in.
        // The executables' shared `main` (logging bootstrap, then ArgumentParser).
        .target(
            name: "CommandLineBootstrap",
            dependencies: ["Support", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Shared/CommandLineBootstrap"),
        .executableTarget(
            name: "Coordinator",
            dependencies: [
                "CoordinatorCore", "Jobs", "RedisQueue", "Checkpoints", "Imaging", "Support", "Vocabulary",
                "CommandLineBootstrap", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "Worker",
            dependencies: [
                "WorkerEngine", "WorkerCore", "RedisQueue", "Support", "CommandLineBootstrap",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "EngineCLI",
            dependencies: [
                "MUSE", "Diffusion", "DiffusersLayout", "Tensor", "Vocabulary", "Imaging", "Support",
                "CommandLineBootstrap", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "DiffusionTests", dependencies: ["Diffusion", "Tensor"]),
        .testTarget(name: "VocabularyTests", dependencies: ["Vocabulary", "DiffusersLayout"]),
        .testTarget(name: "MUSETests", dependencies: ["MUSE", "Diffusion", "Tensor", "Vocabulary", "Imaging"]),
        .testTarget(name: "SupportTests", dependencies: ["Support"]),
        .testTarget(name: "RedisQueueTests", dependencies: ["RedisQueue", "Support", "CHiredis"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "CZstd", "CZlib"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "CPNG", "CJPEG"]),
        // Fixtures more than one test target uses (the package root, temporary spec folders).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(
            name: "JobsTests",
            dependencies: [
                "Jobs", "Vocabulary", "Imaging", "Support", "RedisQueue", "CPNG", "CJPEG", "CHiredis", "TestSupport",
                "DiffusersLayout",
            ]),
        .testTarget(
            name: "WorkerCoreTests",
            dependencies: [
                "WorkerCore", "Jobs", "RedisQueue", "Checkpoints", "Imaging", "Support", "Vocabulary", "CPNG",
                "CHiredis", "CZstd", "CZlib",
            ]),
        .testTarget(
            name: "CoordinatorCoreTests",
            dependencies: [
                "CoordinatorCore", "Jobs", "RedisQueue", "Imaging", "Support", "Vocabulary", "CPNG", "CHiredis",
            ]),
        // End-to-end: spawns the built executables against private redis-servers.
        // Depending on the executables makes `swift test` build them.
        .testTarget(
            name: "PipelineTests",
            dependencies: [
                "Jobs", "RedisQueue", "Checkpoints", "Imaging", "Support", "Vocabulary", "CPNG", "CHiredis", "CZstd",
                "CZlib", "TestSupport",
                "Coordinator", "Worker", "EngineCLI",
            ]),
    ],
    swiftLanguageModes: [.v5]
)
