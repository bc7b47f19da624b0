import DiffusersLayout
import Foundation
import Vocabulary

/// What `submit` (and `--dry-run`) can tell about the models it can see without loading them:
/// each component's weights are there, each tokenizer has its files, each linear head names
/// its rows' emotions. A worker would find the same problems only after a job was queued.
/// Models submitted by fingerprint alone (not on this machine) are not checked here.
enum ComponentChecks {
    /// Problems of a Stable Diffusion folder (a single checkpoint file has none to find here:
    /// its tensors are checked against the configs when it loads).
    static func stableDiffusion(_ folder: String) -> [String] {
        guard isFolder(folder), FileManager.default.fileExists(atPath: folder + "/" + DiffusersLayout.modelIndex) else {
            return []
        }
        var problems: [String] = []
        for component in ["unet", "vae", "text_encoder"] {
            problems += weights(folder + "/" + component)
        }
        problems += tokenizer(folder + "/tokenizer")
        return problems
    }

    /// Problems of a transformers model folder (a CLIP tower or text model, an image
    /// classifier, an AutoencoderTiny): its weights; for a text model, its tokenizer.
    static func modelFolder(_ folder: String, needsTokenizer: Bool = false) -> [String] {
        guard isFolder(folder) else { return [] }
        return weights(folder) + (needsTokenizer ? tokenizer(folder) : [])
    }

    static func weights(_ folder: String) -> [String] {
        let found = DiffusersLayout.weightSources(in: folder).contains {
            FileManager.default.fileExists(atPath: $0.path)
        }
        if found { return [] }
        let pickles = DiffusersLayout.pickledWeights(in: folder)
        let note =
            pickles.isEmpty
            ? ""
            : "; \(pickles.joined(separator: ", ")) are pickled checkpoints, which are never loaded: convert them to safetensors"
        return [
            "\(folder) has no safetensors weights (model.safetensors, diffusion_pytorch_model.safetensors, "
                + "their shards or fp16/bf16 variants)\(note)"
        ]
    }

    static func tokenizer(_ folder: String) -> [String] {
        let fm = FileManager.default
        let pair = [DiffusersLayout.vocabulary, DiffusersLayout.merges].allSatisfy {
            fm.fileExists(atPath: folder + "/" + $0)
        }
        if pair || fm.fileExists(atPath: folder + "/" + DiffusersLayout.tokenizerJSON) { return [] }
        return ["\(folder) has no tokenizer (vocab.json and merges.txt, or tokenizer.json)"]
    }

    /// A linear head's `classes` metadata must name the 8 emotions, each once.
    static func head(_ path: String) -> [String] {
        guard let header = DiffusersLayout.safetensorsHeader(path) else {
            return ["classifier head \(path) is not a readable safetensors file"]
        }
        guard let classes = (header["__metadata__"] as? [String: String])?["classes"] else {
            return [
                "classifier head \(path) has no 'classes' metadata (which row is which emotion); "
                    + "tools/reference/label_heads.py writes it"
            ]
        }
        let names = classes.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        let emotions = Set(names.compactMap { Emotion(rawValue: $0) })
        guard names.count == Emotion.allCases.count, emotions.count == Emotion.allCases.count else {
            let shown = names.prefix(16).joined(separator: ",") + (names.count > 16 ? ",…" : "")
            return [
                "classifier head \(path): metadata 'classes' lists \(names.count) (\(shown)), not the 8 emotions once each"
            ]
        }
        return []
    }

    static func isFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
