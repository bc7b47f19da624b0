#!/usr/bin/env python3
"""Build the tiny random-weight reference models used by the Swift parity tests.

Writes (relative to the repository root, or --out):
  models/tiny-sd/                      diffusers StableDiffusionPipeline folder
      model_index.json
      tokenizer/   reduced CLIP BPE (2000 merges, 2514 ids): vocab.json, merges.txt,
                   tokenizer.json, tokenizer_config.json
      text_encoder/ CLIPTextModel, weights stored as float16, tensor names with the
                   "text_model." prefix as in real SD 1.x checkpoints
      unet/        UNet2DConditionModel (3 levels, SD 1.5 structure), stored as float16
      vae/         AutoencoderKL (4 levels, downsample factor 8), stored as bfloat16
                   (--all-f32: UNet and VAE stored as float32)
      scheduler/   DDIMScheduler with SD 1.5's settings
  models/tiny-clip-vision/             CLIPVisionModelWithProjection + preprocessor_config.json
  models/tiny-emotion-head.safetensors Linear(32 -> 8): "weight" [8,32], "bias" [8], metadata
                                       classes (EmoSet order) and features (image_embeds)
  models/tiny-clip-text/               CLIPTextModelWithProjection + the reduced tokenizer

Everything is seeded (torch.manual_seed per component), so re-running gives the same
weights. Nothing is downloaded. See tools/reference/README.md.
"""
import argparse
import logging
import os
import shutil
import sys
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from clip_vocab import write_tokenizer_files  # noqa: E402

TINY_MERGES = 2000
TINY_VOCAB = 512 + TINY_MERGES + 2  # 2514
BOS_ID = TINY_VOCAB - 2  # 2512 <|startoftext|>
EOS_ID = TINY_VOCAB - 1  # 2513 <|endoftext|> (also pad)

SEED_TEXT_ENCODER = 1001
SEED_UNET = 1002
SEED_VAE = 1003
SEED_VISION = 1004
SEED_HEAD = 1005
SEED_CLIP_TEXT = 1006


CROSS_ATTENTION_GAIN = 3.0
HEAD_GAIN = 0.4


def quiet():
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    try:
        import transformers
        import diffusers

        transformers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()
    except Exception:
        pass


def tiny_text_config(with_projection=False):
    from transformers import CLIPTextConfig

    kw = dict(
        vocab_size=TINY_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
    )
    if with_projection:
        kw["projection_dim"] = 32
    return CLIPTextConfig(**kw)


def build_tokenizer(out_dir):
    """Reduced CLIP tokenizer: save_pretrained (tokenizer.json + tokenizer_config.json),
    then the plain vocab.json + merges.txt the Swift loader reads."""
    from transformers import CLIPTokenizer

    tmp = out_dir + ".tmp-vocab"
    vocab_path, merges_path = write_tokenizer_files(tmp, TINY_MERGES)
    tok = CLIPTokenizer(vocab_path, merges_path, model_max_length=77)
    assert len(tok) == TINY_VOCAB and tok.bos_token_id == BOS_ID and tok.eos_token_id == EOS_ID
    assert tok.pad_token_id == EOS_ID
    os.makedirs(out_dir, exist_ok=True)
    tok.save_pretrained(out_dir)
    shutil.copy(vocab_path, os.path.join(out_dir, "vocab.json"))
    shutil.copy(merges_path, os.path.join(out_dir, "merges.txt"))
    shutil.rmtree(tmp)
    # round trip
    tok2 = CLIPTokenizer.from_pretrained(out_dir)
    s = "a photo of a cat, 3.14 -- Hello!"
    assert tok2(s)["input_ids"] == tok(s)["input_ids"]
    return tok


def build_tiny_sd(out_dir, all_f32=False):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tok = build_tokenizer(os.path.join(out_dir, "tokenizer.tmp"))

    torch.manual_seed(SEED_TEXT_ENCODER)
    text_encoder = CLIPTextModel(tiny_text_config()).eval()

    torch.manual_seed(SEED_UNET)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        center_input_sample=False,
        flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        downsample_padding=1,
        mid_block_scale_factor=1,
        act_fn="silu",
        norm_num_groups=32,
        norm_eps=1e-5,
        cross_attention_dim=32,
        attention_head_dim=8,
    ).eval()
    # At random init the prompt barely moves this UNet's output (eps changes by 5% between
    # two unrelated contexts), so no text-side guidance could show. Scaling the
    # cross-attention value and output projections by 3 makes that 35%, as a trained model's
    # prompt dependence would be, without changing the architecture or the parity checks.
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if ".attn2.to_v." in name or ".attn2.to_out.0.weight" in name:
                param.mul_(CROSS_ATTENTION_GAIN)

    torch.manual_seed(SEED_VAE)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        act_fn="silu",
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=0.18215,
    ).eval()

    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )

    # Storage dtypes. The text encoder is stored in float16 so the loader's F16 path is
    # exercised. To keep models/ under ~8 MB (the brief's budget), the UNet is stored in
    # float16 and the VAE in bfloat16 too (all three safetensors dtypes get exercised);
    # --all-f32 stores UNet and VAE in float32 instead (then models/ is ~15 MB).
    # The fixtures are always computed from the models as reloaded from disk and upcast
    # to float32, so they are exact targets for a loader that converts F16/BF16 -> F32.
    text_encoder = text_encoder.to(torch.float16)
    if not all_f32:
        unet = unet.to(torch.float16)
        vae = vae.to(torch.bfloat16)

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    # Replace the tokenizer folder with ours (save_pretrained writes only tokenizer.json;
    # the Swift loader reads vocab.json + merges.txt).
    shutil.rmtree(os.path.join(out_dir, "tokenizer"))
    build_tokenizer(os.path.join(out_dir, "tokenizer"))
    add_text_model_prefix(os.path.join(out_dir, "text_encoder", "model.safetensors"))


def add_text_model_prefix(path):
    """transformers 5 saves CLIPTextModel's tensors without the "text_model." prefix
    ("embeddings.token_embedding.weight"), while real SD 1.x text encoders (saved by
    transformers 4) use "text_model.embeddings.token_embedding.weight". Rewrite the tiny
    SD text encoder in the real layout; transformers 5 still loads it (checked by
    make_fixtures.py, which asserts no missing/unexpected keys)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    sd = load_file(path)
    out = {}
    for k in sorted(sd):
        out[k if k.startswith("text_model.") else "text_model." + k] = sd[k].contiguous()
    save_file(out, path, metadata=metadata)


def build_clip_vision(out_dir):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(SEED_VISION)
    cfg = CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    model = CLIPVisionModelWithProjection(cfg).eval()
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    proc = CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    proc.save_pretrained(out_dir)


def calibration_embeddings(sd_dir, vision_dir):
    """Image embeddings of x̂0 previews the tiny SD itself produces (several prompts and seeds,
    early and final steps), preprocessed as the Swift classifier does."""
    import torch.nn.functional as F
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPVisionModelWithProjection

    pipe = StableDiffusionPipeline.from_pretrained(sd_dir, safety_checker=None, requires_safety_checker=False)
    pipe = pipe.to(torch.float32)
    tower = CLIPVisionModelWithProjection.from_pretrained(vision_dir).eval()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(10)
    prompts = ["", "a photo of a cat", "a quiet lake at dawn", "a crowded market", "an old man smiling",
               "a storm over the sea"]
    embeds = []
    with torch.no_grad():
        for seed in range(24):
            ids = pipe.tokenizer([prompts[seed % len(prompts)]], padding="max_length", max_length=77,
                                 return_tensors="pt").input_ids
            context = pipe.text_encoder(ids)[0]
            z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(SEED_HEAD + seed))
            for i, t in enumerate(scheduler.timesteps):
                out = scheduler.step(pipe.unet(z, t, encoder_hidden_states=context).sample, t, z)
                z = out.prev_sample
                if i in (1, 4, 9):
                    image = pipe.vae.decode(out.pred_original_sample / 0.18215).sample.clamp(-1, 1)
                    x = F.interpolate((image + 1) / 2, size=(32, 32), mode="bilinear", align_corners=False)
                    embeds.append(tower(pixel_values=(x - mean) / std).image_embeds)
    return torch.cat(embeds)


def build_emotion_head(path, sd_dir, vision_dir):
    """A random Linear(32→8) head, calibrated on the tiny SD's own images.

    The random tower's image embeddings are mostly a constant offset (across images each
    dimension varies by ~0.15 around a mean of ~0.9), so a plain random head gives nearly
    the same probabilities for every image and nothing could steer it. Standardising the
    embeddings inside the head (per-dimension mean and spread over calibration images)
    makes its output depend on the image, as a trained classifier's does; it stays an
    ordinary Linear layer (weight, bias), the shape of EmoGen's.
    """
    from safetensors.torch import save_file

    embeds = calibration_embeddings(sd_dir, vision_dir)
    center, spread = embeds.mean(0), embeds.std(0).clamp_min(1e-4)
    torch.manual_seed(SEED_HEAD)
    direction = torch.randn(8, 32) * HEAD_GAIN
    weight = direction / spread
    bias = -(weight @ center) + torch.randn(8) * 0.1
    # The rows' emotions and the features the head reads, as the engine requires
    # (label_heads.write keeps the header's bytes the same from run to run).
    from label_heads import EMOSET_CLASSES, write as write_head

    write_head(path, {"weight": weight.contiguous(), "bias": bias.contiguous()},
               {"format": "pt", "classes": EMOSET_CLASSES, "features": "image_embeds"})
    probs = torch.softmax(embeds @ weight.T + bias, -1)
    print("emotion head on calibration images: argmax counts", torch.bincount(probs.argmax(-1), minlength=8).tolist(),
          "mean max prob", round(probs.max(-1).values.mean().item(), 3))


def build_clip_text(out_dir, sd_dir):
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(SEED_CLIP_TEXT)
    model = CLIPTextModelWithProjection(tiny_text_config(with_projection=True)).eval()
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    src = os.path.join(sd_dir, "tokenizer")
    for name in os.listdir(src):
        shutil.copy(os.path.join(src, name), os.path.join(out_dir, name))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "models"), help="models directory")
    ap.add_argument("--all-f32", action="store_true", help="store UNet and VAE in float32 (models/ ~15 MB)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    quiet()
    os.makedirs(args.out, exist_ok=True)
    sd_dir = os.path.join(args.out, "tiny-sd")
    build_tiny_sd(sd_dir, all_f32=args.all_f32)
    tmp_tok = os.path.join(sd_dir, "tokenizer.tmp")
    if os.path.isdir(tmp_tok):
        shutil.rmtree(tmp_tok)
    build_clip_vision(os.path.join(args.out, "tiny-clip-vision"))
    build_emotion_head(os.path.join(args.out, "tiny-emotion-head.safetensors"), sd_dir,
                       os.path.join(args.out, "tiny-clip-vision"))
    build_clip_text(os.path.join(args.out, "tiny-clip-text"), sd_dir)
    for root, _, files in sorted(os.walk(args.out)):
        for f in sorted(files):
            p = os.path.join(root, f)
            print(f"{os.path.getsize(p):>10}  {os.path.relpath(p, REPO)}")


if __name__ == "__main__":
    main()
