import Diffusion
import Foundation
import Tensor
import Vocabulary

/// An emotion classifier over images, giving 8 logits in EmoSet order: a CLIP vision tower's
/// image_embeds followed by a linear or zero-shot head, or a whole image classifier (a
/// transformers ViTForImageClassification folder). Differentiable with respect to the pixels,
/// so MUSE's loss reaches the image decoder through it. Heads name their classes (a linear
/// head's `classes` metadata, a ViT's id2label); rows and logits are put in EmoSet order by name.
public final class EmotionClassifier {
    /// What a linear head was trained on: its file's `features` metadata.
    public enum HeadFeatures: String, CaseIterable, Sendable {
        /// CLIP's image_embeds as they come, EmoGen's Linear(768→8) over CLIP ViT-L/14 (the
        /// default when a head file does not say).
        case imageEmbeds = "image_embeds"
        /// A probe trained on L2-normalised image_embeds: normalised before the head.
        case normalizedImageEmbeds = "normalized_image_embeds"
    }

    public enum Head {
        /// logits = features · weightᵀ + bias; rows already in EmoSet order.
        case linear(weight: Tensor, bias: Tensor, features: HeadFeatures)
        /// logits = scale · cos(image_embeds, class text embedding): CLIP zero-shot.
        /// `classEmbeddings` [8, D] are already L2-normalised.
        case zeroShot(classEmbeddings: Tensor, logitScale: Float)
        /// A whole image classifier with its own preprocessing and head; `emotionColumns[i]` is
        /// the logit column of `Emotion.allCases[i]`.
        case imageClassifier(ViTImageClassifier, emotionColumns: [Int])
    }

    /// The CLIP vision tower the linear and zero-shot heads read; nil for an image classifier,
    /// which has no CLIP embedding.
    public let tower: CLIPVisionEncoder?
    public let head: Head
    /// Where the head came from and how its classes map to EmoSet's, for traces and logs.
    public let headDescription: String

    private init(clipTower: CLIPVisionEncoder?, head: Head, description: String) {
        self.tower = clipTower
        self.head = head
        self.headDescription = description
    }

    /// A linear or zero-shot head over `tower`'s image_embeds.
    public convenience init(tower: CLIPVisionEncoder, head: Head, description: String) {
        if case .imageClassifier = head { preconditionFailure("an image classifier has no CLIP tower") }
        self.init(clipTower: tower, head: head, description: description)
    }

    /// The same classifier under another description (the evaluator's, in traces).
    public func described(as description: String) -> EmotionClassifier {
        EmotionClassifier(clipTower: tower, head: head, description: description)
    }

    /// A linear head from safetensors with tensors `weight` [8, D] and `bias` [8] and metadata
    /// `classes` (the emotion of each row, comma-separated; the rows are matched to EmoSet's
    /// order by name) and optionally `features` (`HeadFeatures`, default image_embeds).
    /// tools/reference/convert_emogen_head.py writes EmoGen's head in this form.
    public convenience init(tower: CLIPVisionEncoder, headFile: String) throws {
        guard FileManager.default.fileExists(atPath: headFile) else {
            throw ModelLoadError("classifier head \(headFile) does not exist")
        }
        let file = try SafeTensorsFile(path: headFile)
        let n = Emotion.allCases.count
        guard file.contains("weight"), file.contains("bias") else {
            throw ModelLoadError(
                "classifier head \(headFile): needs tensors 'weight' [\(n), D] and 'bias' [\(n)], has \(file.names)")
        }
        guard let classes = file.metadata["classes"] else { throw ModelLoadError(Self.missingClasses(headFile)) }
        let names = classes.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let rows = try Self.emotionPositions(names, source: "classifier head \(headFile): metadata 'classes'")
        let features = try Self.features(file.metadata["features"], headFile)
        let weight = try file.tensor("weight")
        let bias = try file.tensor("bias")
        guard weight.rank == 2, weight.shape[0] == n, bias.shape == [n] else {
            throw ModelLoadError(
                "classifier head \(headFile): weight \(weight.shape) / bias \(bias.shape), expected [\(n), D] / [\(n)] (one output per emotion)"
            )
        }
        guard weight.shape[1] == tower.projectionDim else {
            throw ModelLoadError(
                "classifier head \(headFile) takes \(weight.shape[1])-d features but the vision tower projects to \(tower.projectionDim)"
            )
        }
        self.init(
            tower: tower,
            head: .linear(weight: Self.gathered(weight, rows), bias: Self.gathered(bias, rows), features: features),
            description: "linear head \(headFile) (\(features.rawValue); \(Self.mapping(names, rows)))")
    }

    /// A transformers ViTForImageClassification folder whose id2label names the 8 emotions (in
    /// any order, matched by name).
    public convenience init(imageClassifierFolder folder: String) throws {
        let model = try ViTImageClassifier(folder: folder)
        let columns = try Self.emotionPositions(model.labels, source: "\(folder)/config.json: 'id2label'")
        self.init(
            clipTower: nil, head: .imageClassifier(model, emotionColumns: columns),
            description: "ViT image classifier \(folder) (id2label \(Self.mapping(model.labels, columns)))")
    }

    /// The refusal of a head file without `classes`, with the line that adds them.
    static func missingClasses(_ headFile: String) -> String {
        let emoSet = Emotion.allCases.map(\.rawValue).joined(separator: ",")
        let path = headFile.replacingOccurrences(of: "'", with: "\\'")
        return "classifier head \(headFile) has no 'classes' metadata, so which row is which emotion is unknown. "
            + "If its rows are in EmoSet order (EmoGen's), add it with:\n"
            + "  python -c \"from safetensors.torch import load_file, save_file; p = '\(path)'; "
            + "save_file(load_file(p), p, metadata={'classes': '\(emoSet)', 'features': 'image_embeds'})\"\n"
            + "listing the rows' emotions in their order otherwise (alphabetical for torchvision's ImageFolder), "
            + "and features 'normalized_image_embeds' for a probe trained on L2-normalised embeddings"
    }

    static func features(_ value: String?, _ headFile: String) throws -> HeadFeatures {
        guard let value else { return .imageEmbeds }
        guard let features = HeadFeatures(rawValue: value.trimmingCharacters(in: .whitespaces)) else {
            throw ModelLoadError(
                "classifier head \(headFile): metadata 'features' is '\(value)'; allowed: "
                    + HeadFeatures.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return features
    }

    /// For each emotion in EmoSet order, the position of its name in `names` (case and
    /// surrounding spaces ignored). `names` must be the 8 emotions, each once; otherwise the
    /// error names `source`, what was found and what is missing, unknown or repeated.
    static func emotionPositions(_ names: [String], source: String) throws -> [Int] {
        var positions: [Emotion: Int] = [:]
        var unknown: [String] = []
        var repeated: [String] = []
        for (i, name) in names.enumerated() {
            guard let emotion = try? Emotion.parse(name) else {
                unknown.append("'\(name)'")
                continue
            }
            if positions[emotion] != nil { repeated.append(emotion.rawValue) } else { positions[emotion] = i }
        }
        let missing = Emotion.allCases.filter { positions[$0] == nil }.map(\.rawValue)
        guard unknown.isEmpty, repeated.isEmpty, missing.isEmpty else {
            // A file may list thousands of classes (an ImageNet head): the message shows the first few.
            func listed(_ items: [String]) -> String {
                let shown = items.prefix(16).joined(separator: ", ")
                return items.count > 16 ? shown + ", … (\(items.count - 16) more)" : shown
            }
            var problems: [String] = []
            if !missing.isEmpty { problems.append("missing \(listed(missing))") }
            if !unknown.isEmpty { problems.append("unknown \(listed(unknown))") }
            if !repeated.isEmpty { problems.append("repeated \(listed(repeated))") }
            throw ModelLoadError(
                "\(source) must name the \(Emotion.allCases.count) emotions (\(Emotion.validNames)), each once; "
                    + "found \(names.count): \(listed(names)) (\(problems.joined(separator: "; ")))")
        }
        return Emotion.allCases.map { positions[$0]! }
    }

    /// How a file's classes map to EmoSet's order, for the description.
    static func mapping(_ names: [String], _ positions: [Int]) -> String {
        positions == Array(0..<positions.count)
            ? "classes in EmoSet order" : "classes \(names.joined(separator: ",")) mapped to EmoSet order"
    }

    /// Rows `rows` of `x` along axis 0, in that order.
    static func gathered(_ x: Tensor, _ rows: [Int]) -> Tensor {
        Tensor.concat(rows.map { x.narrowed(axis: 0, start: $0, length: 1) }, axis: 0)
    }

    /// Prompt ensembling templates for the zero-shot head ({} = the emotion word). They
    /// describe the feeling an image evokes rather than its content, as the emotion
    /// classification literature does for CLIP zero-shot baselines.
    public static let zeroShotTemplates = [
        "a photo that evokes {}.",
        "an image that makes people feel {}.",
        "a picture full of {}.",
        "a photo expressing {}.",
    ]

    /// The zero-shot head: for each emotion, the mean of its templates' L2-normalised
    /// text_embeds, renormalised (CLIP's prompt ensembling). `text` must project to the
    /// tower's dimension. The logit scale is the model's `logit_scale` (exp'd) when the
    /// folder holds a full CLIPModel, else CLIP's trained value 100.
    public static func zeroShot(
        tower: CLIPVisionEncoder, textFolder: String,
        templates: [String] = zeroShotTemplates
    ) throws -> EmotionClassifier {
        let text = try CLIPTextEncoder(folder: textFolder)
        guard let dim = text.projectionDim else {
            throw ModelLoadError(
                "\(textFolder): the zero-shot head needs a text model with a projection (CLIPTextModelWithProjection or CLIPModel)"
            )
        }
        guard dim == tower.projectionDim else {
            throw ModelLoadError(
                "\(textFolder) projects text to \(dim) dimensions but the vision tower to \(tower.projectionDim)")
        }
        let tokenizer = try CLIPTokenizer(folder: textFolder)
        var rows: [Tensor] = []
        for emotion in Emotion.allCases {
            let ids = templates.map {
                tokenizer.tokenize($0.replacingOccurrences(of: "{}", with: emotion.word), length: text.maxPositions)
            }
            let embeds = Autograd.noGrad { text.textEmbeds(ids: ids)! }
            rows.append(l2Normalized(l2Normalized(embeds).mean(axis: 0)))
        }
        var scale: Float = 100
        let weights = try ModelWeights(folder: textFolder)
        if let logScale = try weights.optionalTensor("logit_scale") { scale = Foundation.exp(logScale.data[0]) }
        return EmotionClassifier(
            tower: tower, head: .zeroShot(classEmbeddings: Tensor.concat(rows, axis: 0), logitScale: scale),
            description: "zero-shot head from \(textFolder) (\(templates.count) templates, scale \(scale))")
    }

    /// Images [B, 3, H, W] in [-1, 1] → logits [B, 8], EmoSet order.
    public func logits(images: Tensor) -> Tensor {
        switch head {
        case .linear(let weight, let bias, let features):
            let embeds = clipImageEmbeds(images)
            return (features == .normalizedImageEmbeds ? l2Normalized(embeds) : embeds).linear(weight, bias)
        case .zeroShot(let classEmbeddings, let logitScale):
            return l2Normalized(clipImageEmbeds(images)).linear(classEmbeddings) * logitScale
        case .imageClassifier(let model, let columns):
            let logits = model.logits(pixelValues: model.preprocess(images))
            return Tensor.concat(columns.map { logits.narrowed(axis: 1, start: $0, length: 1) }, axis: 1)
        }
    }

    private func clipImageEmbeds(_ images: Tensor) -> Tensor {
        guard let tower else { preconditionFailure("a CLIP head without its tower") }
        return tower.imageEmbeds(pixelValues: tower.preprocess(images))
    }

    /// Images [B, 3, H, W] in [-1, 1] → softmax probabilities [B, 8] in EmoSet order.
    public func probabilities(images: Tensor) -> Tensor { logits(images: images).softmax() }
}

/// Rows divided by their L2 norm (differentiable). x: [B, D] or [D].
public func l2Normalized(_ x: Tensor) -> Tensor {
    let axis = x.rank - 1
    return x / (x.square().sum(axis: axis) + 1e-12).sqrt()
}
