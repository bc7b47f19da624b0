import DiffusersLayout
import Foundation
import Tensor

// CLIP's text transformer, as transformers' CLIPTextModel(WithProjection). Everything from
// the input embeddings on is built from differentiable Tensor ops: MUSE takes gradients
// with respect to one learnable token embedding.

extension ModelConfig {
    /// A full CLIPModel config nests the towers' settings under text_config/vision_config;
    /// a single-tower config (CLIPTextModel, CLIPVisionModelWithProjection) is flat.
    func clipTower(_ key: String) -> ModelConfig {
        guard let nested = values[key] as? [String: Any] else { return self }
        return ModelConfig(path: "\(path) [\(key)]", values: nested)
    }
}

public final class CLIPTextEncoder {
    public let hiddenSize: Int
    public let eosTokenID: Int
    public let maxPositions: Int
    let tokenEmbedding: Tensor  // [vocab, hidden]
    let positionEmbedding: Tensor  // [maxPositions, hidden]
    let layers: [PreNormEncoderLayer]
    let finalLayerNorm: LayerNorm
    let textProjection: Linear?

    /// `folder`: an SD text_encoder/ folder (CLIPTextModel), a CLIPTextModelWithProjection
    /// folder or a full CLIPModel folder (config.json + safetensors weights).
    public convenience init(folder: String) throws {
        try self.init(
            config: try ModelConfig(path: DiffusersLayout.configPath(folder)),
            weights: { try ModelWeights(folder: folder) })
    }

    /// The text tower `top` (a config.json) describes, its weights opened by `weights` once the
    /// config is checked.
    public init(config top: ModelConfig, weights load: () throws -> ModelWeights) throws {
        let c = top.clipTower("text_config")
        let shape = try EncoderShape(c, defaults: (512, 2048, 12, 8))
        let vocab = try c.int("vocab_size", default: 49408, in: 1...1_000_000)
        hiddenSize = shape.hidden
        // At least bos and eos: the tokenizer frames every prompt to this length.
        maxPositions = try c.int("max_position_embeddings", default: 77, in: 2...4096)
        eosTokenID = try c.int("eos_token_id", default: 49407, in: 0...Int(Int32.max))
        // CLIPModel keeps projection_dim at the top level, single-tower configs in their own.
        let projectionDim = try top.int("projection_dim", default: 512, in: 1...8192)

        let all = try load()
        let w = all.towerScope("text_model", probe: "embeddings.token_embedding.weight")
        tokenEmbedding = try w.tensor("embeddings.token_embedding.weight", shape: [vocab, hiddenSize])
        positionEmbedding = try w.tensor("embeddings.position_embedding.weight", shape: [maxPositions, hiddenSize])
        layers = try PreNormEncoderLayer.stack(w, shape, names: .clip)
        finalLayerNorm = try LayerNorm(w, "final_layer_norm", dim: hiddenSize, eps: shape.eps)
        if all.contains("text_projection.weight") {
            textProjection = try Linear(all, "text_projection", in: hiddenSize, out: projectionDim, bias: false)
        } else {
            textProjection = nil
        }
    }

    /// Rows of the token-embedding table: [ids.count, hidden].
    public func tokenEmbeddings(_ ids: [Int]) -> Tensor { Tensor.embedding(tokenEmbedding, ids: ids) }

    /// last_hidden_state (after final_layer_norm) for token embeddings [B, T, hidden]
    /// given before position embeddings are added.
    public func encode(inputEmbeddings x: Tensor) -> Tensor {
        precondition(
            x.rank == 3 && x.shape[2] == hiddenSize, "CLIP text: inputs \(x.shape), want [B, T, \(hiddenSize)]")
        precondition(x.shape[1] <= maxPositions, "CLIP text: \(x.shape[1]) tokens, at most \(maxPositions)")
        var h = x + positionEmbedding.narrowed(axis: 0, start: 0, length: x.shape[1])
        for layer in layers { h = Autograd.checkpointed([h]) { layer($0[0], causal: true) } }
        return finalLayerNorm(h)
    }

    public func encode(ids: [[Int]]) -> Tensor {
        let length = ids.first?.count ?? 0
        precondition(
            !ids.isEmpty && ids.allSatisfy { $0.count == length },
            "CLIP text: ids must be a non-empty batch of equal lengths")
        return encode(inputEmbeddings: tokenEmbeddings(ids.flatMap { $0 }).reshaped([ids.count, length, hiddenSize]))
    }

    /// The position pooled for each sequence, transformers' rule: configs with the legacy
    /// eos_token_id 2 take the largest id (the end token of the original vocabulary), others
    /// the first eos_token_id (padding may repeat it); position 0 when absent, as argmax gives.
    public func eosPosition(_ ids: [Int]) -> Int {
        if eosTokenID == 2 {
            return ids.max().flatMap { ids.firstIndex(of: $0) } ?? 0
        }
        return ids.firstIndex(of: eosTokenID) ?? 0
    }

    /// pooler_output: [B, hidden], the hidden state at each sequence's eos position.
    public func pooled(lastHidden: Tensor, ids: [[Int]]) -> Tensor {
        precondition(
            lastHidden.rank == 3 && lastHidden.shape[0] == ids.count,
            "CLIP text: pooled of \(lastHidden.shape) with \(ids.count) id rows")
        let rows = ids.enumerated().map { b, row in
            lastHidden.narrowed(axis: 0, start: b, length: 1)
                .narrowed(axis: 1, start: eosPosition(row), length: 1)
                .reshaped([1, hiddenSize])
        }
        return Tensor.concat(rows, axis: 0)
    }

    /// text_embeds: the projected pooled output [B, projectionDim]; nil without text_projection.
    public func textEmbeds(ids: [[Int]]) -> Tensor? {
        guard let textProjection else { return nil }
        return textProjection(pooled(lastHidden: encode(ids: ids), ids: ids))
    }

    public var projectionDim: Int? { textProjection?.weight.shape[0] }
}
