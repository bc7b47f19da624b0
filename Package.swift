// swift-tools-version:6.0
import PackageDescription

// Numeric kernels are hot even in debug builds (the test command builds debug):
// optimise the engine modules always, so a test run on the tiny models stays fast.
let engineSettings: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "MUSE",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "muse-coordinator", targets: ["Coordinator"]),
        .executable(name: "muse-worker", targets: ["Worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        // hiredis and libpng pkg-config files add -D_FILE_OFFSET_BITS=64, which SwiftPM rejects: link by name.
        .systemLibrary(name: "CPNG", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),

        // Softmax/exp compiled per CPU level (AVX-512, AVX2, baseline), picked at load time.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "Tensor", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: engineSettings),
        .target(name: "Diffusion", dependencies: ["Tensor"], swiftSettings: engineSettings),
        .target(name: "MUSE", dependencies: ["Diffusion", "Tensor"], swiftSettings: engineSettings),
        // Shared hashes model files (fingerprints), checksums and shuffles checkpoints: optimised too.
        .target(name: "Shared", dependencies: ["CHiredis", "CPNG", "CZstd", "Yams"], swiftSettings: engineSettings),

        .executableTarget(name: "Coordinator", dependencies: [
            "Shared", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "Worker", dependencies: [
            "Shared", "MUSE", "Diffusion", "Tensor",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "DiffusionTests", dependencies: ["Diffusion", "Tensor"]),
        .testTarget(name: "MUSETests", dependencies: ["MUSE", "Diffusion", "Tensor"]),
        .testTarget(name: "SharedTests", dependencies: ["Shared"]),
        // End-to-end: spawns the built muse-coordinator/muse-worker against private redis-servers.
        // Depending on the executables makes `swift test` build them; MUSE is for vocabulary checks.
        .testTarget(name: "PipelineTests", dependencies: ["Shared", "MUSE", "Coordinator", "Worker"]),
    ],
    swiftLanguageModes: [.v5]
)
