"""Full-size random-weight stand-ins for the real models MUSE runs on, to measure the
engine at its real sizes (not for CI; ~5 GB on disk):

  ROOT/sd15/            Stable Diffusion 1.5 layout: UNet, VAE, CLIP ViT-L/14 text encoder,
                        the real CLIP BPE tokenizer (models/clip-bpe), DDIM scheduler
  ROOT/clip-vit-l14/    CLIPModel-sized vision tower with projection (ViT-L/14, 224², 768-d)
  ROOT/clip-text-l14/   CLIP text model with projection (768-d), for timing
  ROOT/emotion-head.safetensors   Linear(768 → 8), EmoGen's classifier shape

Then, e.g.:
  muse generate --model ROOT/sd15 --classifier-tower ROOT/clip-vit-l14 \\
      --classifier-head ROOT/emotion-head.safetensors --clip-text ROOT/clip-text-l14 \\
      --prompt "a quiet lake at dawn" --emotion awe --steps 4 --out /tmp/full.png
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from bench_engine import SD15_VAE_CONFIG  # noqa: E402
from full_sd15_parity import SD15_UNET_CONFIG  # noqa: E402

TEXT_L14 = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
VISION_L14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")


def write_tokenizer(folder):
    os.makedirs(folder, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(REPO, "models", "clip-bpe", name), os.path.join(folder, name))
    config = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="/tmp/sd15-random")
    args = ap.parse_args()
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    sd = os.path.join(args.root, "sd15")
    os.makedirs(sd, exist_ok=True)
    torch.manual_seed(1234)
    UNet2DConditionModel(**SD15_UNET_CONFIG).save_pretrained(os.path.join(sd, "unet"), safe_serialization=True)
    torch.manual_seed(1235)
    AutoencoderKL(**SD15_VAE_CONFIG).save_pretrained(os.path.join(sd, "vae"), safe_serialization=True)
    torch.manual_seed(1236)
    CLIPTextModel(CLIPTextConfig(**TEXT_L14)).save_pretrained(os.path.join(sd, "text_encoder"), safe_serialization=True)
    write_tokenizer(os.path.join(sd, "tokenizer"))
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(os.path.join(sd, "scheduler"))
    with open(os.path.join(sd, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "DDIMScheduler"],
                   "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                   "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, f, indent=2)

    torch.manual_seed(1237)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION_L14)).save_pretrained(
        os.path.join(args.root, "clip-vit-l14"), safe_serialization=True)
    torch.manual_seed(1238)
    text = os.path.join(args.root, "clip-text-l14")
    CLIPTextModelWithProjection(CLIPTextConfig(**TEXT_L14, projection_dim=768)).save_pretrained(
        text, safe_serialization=True)
    write_tokenizer(text)
    torch.manual_seed(1239)
    save_file({"weight": torch.randn(8, 768) * 0.05, "bias": torch.zeros(8)},
              os.path.join(args.root, "emotion-head.safetensors"),
              metadata={"classes": "amusement,awe,contentment,excitement,anger,disgust,fear,sadness",
                        "features": "image_embeds"})
    print(f"wrote {args.root}")


if __name__ == "__main__":
    main()
