import Foundation

extension DiffusersLayout {
    /// The components `StableDiffusion` loads from a pipeline folder (safety_checker/,
    /// feature_extractor/ and the like are never opened).
    public static let pipelineComponents = ["scheduler", "text_encoder", "tokenizer", "unet", "vae"]

    /// Files beside the weights that loaders read: configs and tokenizer files.
    public static let metadataFiles = [
        "config.json", "preprocessor_config.json", "scheduler_config.json", tokenizerJSON, "tokenizer_config.json",
        "special_tokens_map.json", "added_tokens.json", vocabulary, merges,
    ]

    /// The files of the model at `path` that the loaders open, relative to `path` and sorted:
    /// for a pipeline folder (model_index.json) its five components' configs, tokenizer files
    /// and the weights `weightSources` picks (an index with its shards); for a component folder
    /// (config.json, or a tokenizer) the same for itself. nil when `path` is no layout known
    /// here (a file, or a folder of something else): then every file counts. So unused
    /// files (other variants, .bin copies, safety_checker/, READMEs) do not change what a
    /// model is.
    public static func filesALoaderReads(_ path: String) -> [String]? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return nil
        }
        if FileManager.default.fileExists(atPath: path + "/" + modelIndex) {
            return pipelineComponents.flatMap { component in
                componentFiles(path + "/" + component).map { component + "/" + $0 }
            }.sorted()
        }
        let files = componentFiles(path)
        let isComponent = files.contains { $0 == config || $0 == vocabulary || $0 == tokenizerJSON }
        return isComponent ? files.sorted() : nil
    }

    /// One component folder's metadata files and chosen weights (with the shards an index names).
    static func componentFiles(_ folder: String) -> [String] {
        var files = metadataFiles.filter { FileManager.default.fileExists(atPath: folder + "/" + $0) }
        guard let source = weightSources(in: folder).first(where: { FileManager.default.fileExists(atPath: $0.path) })
        else { return files }
        files.append((source.path as NSString).lastPathComponent)
        if case .index(let index) = source { files += shardNames(index: index) }
        return files
    }

    /// The file names a shard index maps tensors to; none when it cannot be read (the loader
    /// then reports why, and the index itself is still fingerprinted).
    static func shardNames(index: String) -> [String] {
        // jsonObject reads only regular files of config size, through links.
        guard let map = jsonObject(atPath: index)?["weight_map"] as? [String: String] else { return [] }
        return Set(map.values).filter { !$0.isEmpty && !$0.contains("/") && $0 != "." && $0 != ".." }.sorted()
    }
}
