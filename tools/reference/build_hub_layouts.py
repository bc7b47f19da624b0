#!/usr/bin/env python3
"""Re-save bundled tiny models in the layouts the hub delivers, with diffusers/transformers'
own save_pretrained, so the loaders are tested on what people download.

Writes (relative to the repository root, ~1 MB):
  models/hub-layouts/clip-text-sharded/   transformers CLIPTextModel.save_pretrained(max_shard_size="150KB"):
                                          model-0000K-of-0000N.safetensors + model.safetensors.index.json
  models/hub-layouts/taesd-fp16/          diffusers AutoencoderTiny.save_pretrained(variant="fp16") of
                                          models/tiny-taesd cast to float16: only
                                          diffusion_pytorch_model.fp16.safetensors
  models/hub-layouts/tokenizer-json-only/ transformers 5 CLIPTokenizer.save_pretrained of
                                          models/tiny-sd/tokenizer: tokenizer.json + tokenizer_config.json
                                          (no vocab.json, no merges.txt)
  models/hub-layouts/clip-full/           a whole CLIPModel (both towers, projections, logit_scale) with
                                          its tokenizer and CLIPImageProcessor, as openai/clip-vit-large-patch14
                                          ships, at the tiny models' sizes (random weights): the stand-in
                                          manifests/sd15-emogen.yaml is validated against

Each is checked here: reloaded by the same library, its outputs equal the plain model's
(the fp16 variant within float16 rounding). The Swift tests compare the engine's loads of
these folders with its loads of the plain ones.

Usage: python tools/reference/build_hub_layouts.py
"""
import json
import os
import shutil

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "models", "hub-layouts")


def fresh(name):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    return path


def main():
    torch.manual_seed(0)
    from diffusers import AutoencoderTiny
    from transformers import CLIPTextModel, CLIPTokenizer

    ids = torch.tensor([[2512, 320, 1125, 539, 320, 2368, 2513, 2513]]) % 2514

    text = CLIPTextModel.from_pretrained(os.path.join(REPO, "models", "tiny-clip-text")).eval()
    path = fresh("clip-text-sharded")
    text.save_pretrained(path, max_shard_size="150KB")
    shards = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
    assert len(shards) > 1 and os.path.exists(os.path.join(path, "model.safetensors.index.json")), shards
    again = CLIPTextModel.from_pretrained(path).eval()
    with torch.no_grad():
        assert torch.equal(text(ids).last_hidden_state, again(ids).last_hidden_state)

    taesd = AutoencoderTiny.from_pretrained(os.path.join(REPO, "models", "tiny-taesd")).eval()
    path = fresh("taesd-fp16")
    taesd.to(torch.float16).save_pretrained(path, variant="fp16")
    assert sorted(os.listdir(path)) == ["config.json", "diffusion_pytorch_model.fp16.safetensors"], os.listdir(path)
    again = AutoencoderTiny.from_pretrained(path, variant="fp16", torch_dtype=torch.float32).eval()
    latent = torch.randn(1, 4, 4, 4)
    taesd32 = AutoencoderTiny.from_pretrained(os.path.join(REPO, "models", "tiny-taesd")).eval()
    with torch.no_grad():
        a, b = taesd32.decode(latent).sample, again.decode(latent).sample
    assert (a - b).abs().max() / a.abs().max() < 2e-2, (a - b).abs().max()

    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(REPO, "models", "tiny-sd", "tokenizer"))
    path = fresh("tokenizer-json-only")
    tokenizer.save_pretrained(path)
    for extra in ["vocab.json", "merges.txt", "special_tokens_map.json"]:
        if os.path.exists(os.path.join(path, extra)):
            os.remove(os.path.join(path, extra))
    assert sorted(os.listdir(path)) == ["tokenizer.json", "tokenizer_config.json"], os.listdir(path)
    again = CLIPTokenizer.from_pretrained(path)
    prompt = "a photo of a cat, in the rain!"
    assert again(prompt).input_ids == tokenizer(prompt).input_ids
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(1)
    text_config = json.load(open(os.path.join(REPO, "models", "tiny-clip-text", "config.json")))
    vision_config = json.load(open(os.path.join(REPO, "models", "tiny-clip-vision", "config.json")))
    keep = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "max_position_embeddings", "hidden_act", "layer_norm_eps", "bos_token_id", "eos_token_id",
            "pad_token_id", "image_size", "patch_size", "num_channels", "projection_dim"]
    config = CLIPConfig(
        text_config={k: v for k, v in text_config.items() if k in keep},
        vision_config={k: v for k, v in vision_config.items() if k in keep},
        projection_dim=32)
    model = CLIPModel(config).eval()
    path = fresh("clip-full")
    model.save_pretrained(path)
    CLIPImageProcessor.from_pretrained(os.path.join(REPO, "models", "tiny-clip-vision")).save_pretrained(path)
    tokenizer.save_pretrained(path)
    for extra in ["special_tokens_map.json"]:
        if os.path.exists(os.path.join(path, extra)):
            os.remove(os.path.join(path, extra))
    again = CLIPModel.from_pretrained(path).eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    os.chmod(os.path.join(path, "model.safetensors"), 0o644)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
