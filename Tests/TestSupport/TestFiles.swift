import Foundation

/// Fixtures more than one test target uses: the package's own files and temporary folders
/// holding specs over the bundled tiny models.

/// The package root (for the bundled models and manifests/).
public let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// A fresh temporary folder with a short path (unix sockets allow 107 bytes).
public func makeTempDir(_ prefix: String = "pt") -> URL {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    let made = mkdtemp(&template)!
    return URL(fileURLWithPath: String(cString: made))
}

/// Writes a spec file into `dir` and returns its path.
@discardableResult
public func writeSpec(_ text: String, in dir: URL, name: String = "spec.yaml") throws -> String {
    let url = dir.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}

/// The bundled tiny models, as spec lines.
public let tinyModels = """
    model: bundled:tiny-sd
    classifier:
      tower: bundled:tiny-clip-vision
      head: bundled:tiny-emotion-head.safetensors
      text: bundled:tiny-clip-text
    """

/// Copies the demo's source images next to a test spec.
public func copyDemoImages(to dir: URL) throws {
    let images = dir.appendingPathComponent("images")
    try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
    for name in ["sunset.png", "house.png", "miniworld-house.png", "miniworld-boat.png"] {
        let src = packageRoot.appendingPathComponent("manifests/images/\(name)")
        try? FileManager.default.removeItem(at: images.appendingPathComponent(name))
        try FileManager.default.copyItem(at: src, to: images.appendingPathComponent(name))
    }
}
