#!/usr/bin/env python3
"""Build the tiny random-weight TAESD (diffusers AutoencoderTiny) and its parity fixture.

Writes (relative to the repository root):
  models/tiny-taesd/                   config.json + diffusion_pytorch_model.safetensors (F32)
  Tests/Fixtures/taesd.safetensors     inputs, outputs and gradients from diffusers

The model stands in for models/tiny-sd/vae: same latent_channels, and as many TAESD stages
as give the tiny SD VAE's downsample factor (TAESD: one stride-2 conv per encoder stage
after the first, one ×upsampling_scaling_factor upsample per decoder stage before the
last, so 4 stages ↔ factor 8 = 2^(len(block_out_channels) − 1) of the SD VAE).

Weights: seeded, re-drawn from N(0, 2/fan_in) (biases N(0, 0.1²)) because PyTorch's default
init makes the activations of this ReLU net shrink ~2× per stage (decoded images would all
be ≈ −1); each block's last conv is scaled by 0.5 and the decoder's final conv by 0.25 so
the decoded images span roughly [−3, 3] and the latents roughly [−3, 3] like TAESD's.

Fixture tensors (float32, computed by diffusers from the model as reloaded from disk):
  image [2,3,64,48]          uniform in [−1, 1) (seed 61); non-square to catch H/W mix-ups
  encoded [2,4,8,6]          AutoencoderTiny.encode(image).latents
  latent [2,4,8,6]           randn (seed 63) × 1.5
  decoded [2,3,64,48]        AutoencoderTiny.decode(latent).sample (in [−1, 1] convention)
  grad_image_input [2,3,24,16]  uniform in [−1, 1), the first seed from 66000 whose ReLU inputs
                             all keep a margin of 1e-5 × their call's max from 0 (see below)
  encode_grad_seed [2,4,3,2] R (randn seed 62)
  grad_image [2,3,24,16]     ∂ Σ(encode(grad_image_input)·R) / ∂ grad_image_input
  grad_latent_input [2,4,3,2]   randn × 1.5, the first seed from 67000 with that margin
  decode_grad_seed [2,3,24,16]  R (randn seed 64)
  grad_latent [2,4,3,2]      ∂ Σ(decode(grad_latent_input)·R) / ∂ grad_latent_input
  scaled_latents [2,4,8,6]   scale_latents(latent) = clamp(latent / (2·latent_magnitude) + latent_shift, 0, 1)
  unscaled_latents [2,4,8,6] unscale_latents(scaled_latents)
  pipeline_latent [1,4,8,8]  StableDiffusionPipeline(models/tiny-sd, vae=tiny TAESD), 2 DDIM steps,
                             output_type="latent" (the UNet's latent, in SD's scaled space)
  pipeline_image [1,3,64,64] the same call with output_type="pt": the pipeline's
                             vae.decode(latents / vae.config.scaling_factor), mapped to [0, 1]

Usage:
  python tools/reference/build_tiny_taesd.py [--models models] [--fixtures Tests/Fixtures]
"""
import argparse
import json
import math
import os
import sys
import warnings

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SEED_TAESD = 1007
CHANNELS = 16
NUM_ENCODER_BLOCKS = [1, 2, 1, 1]  # TAESD itself: (1, 3, 3, 3)
NUM_DECODER_BLOCKS = [1, 1, 2, 1]  # TAESD itself: (3, 3, 3, 1)
MARGIN = 1e-5  # least |ReLU input| / max |ReLU input| of the gradient fixtures' inputs


def quiet():
    warnings.filterwarnings("ignore")
    try:
        import diffusers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
    except Exception:
        pass


def gen(seed):
    return torch.Generator().manual_seed(seed)


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def save(path, tensors, meta):
    clean = {}
    for k, v in tensors.items():
        v = v.detach().contiguous().clone()
        if v.dtype != torch.float32:
            raise TypeError(f"{path}:{k} has dtype {v.dtype}")
        clean[k] = v
    md = {"generator": "tools/reference/build_tiny_taesd.py"}
    md.update(meta)
    # One metadata key only (safetensors writes the map in hash order).
    save_file(clean, path, metadata={"info": json.dumps(md, sort_keys=True, ensure_ascii=False)})
    print(f"{os.path.getsize(path):>9}  {os.path.relpath(path, REPO)}")
    for k in sorted(clean):
        print(f"           {k:28s} {list(clean[k].shape)}")


def relu_margin(part, run):
    """Smallest |ReLU input| / max |ReLU input| over every ReLU call in `part` during run()."""
    worst = [float("inf")]

    def hook(module, inputs, output):
        x = inputs[0].detach().abs()
        worst[0] = min(worst[0], float(x.min() / x.max()))
    handles = [m.register_forward_hook(hook) for m in part.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return worst[0]


def first_with_margin(part, draw, fn, first_seed, tries=1000):
    for seed in range(first_seed * 1000, first_seed * 1000 + tries):
        x = draw(seed)
        if relu_margin(part, lambda: fn(x)) >= MARGIN:
            return seed, x
    raise RuntimeError(f"no seed in {tries} gives a ReLU margin of {MARGIN}")


def tiny_config(sd_vae_config):
    sd_channels = sd_vae_config["block_out_channels"]
    factor = 2 ** (len(sd_channels) - 1)
    stages = len(sd_channels)  # TAESD: 2^(stages − 1) with upsampling_scaling_factor 2
    assert 2 ** (stages - 1) == factor
    return dict(
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=[CHANNELS] * stages,
        decoder_block_out_channels=[CHANNELS] * stages,
        act_fn="relu",
        upsample_fn="nearest",
        latent_channels=sd_vae_config["latent_channels"],
        upsampling_scaling_factor=2,
        num_encoder_blocks=NUM_ENCODER_BLOCKS[:stages],
        num_decoder_blocks=NUM_DECODER_BLOCKS[:stages],
        latent_magnitude=3,
        latent_shift=0.5,
        scaling_factor=1.0,
    ), factor


def build(out, config):
    from diffusers import AutoencoderTiny

    torch.manual_seed(SEED_TAESD)
    model = AutoencoderTiny(**config).eval()
    g = gen(SEED_TAESD)
    last_decoder_conv = f"decoder.layers.{len(model.decoder.layers) - 1}.weight"
    with torch.no_grad():
        for name, p in model.named_parameters():  # named_parameters order is fixed
            if p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                gain = 0.5 if name.endswith("conv.4.weight") else 0.25 if name == last_decoder_conv else 1.0
                p.copy_(torch.randn(p.shape, generator=g) * (gain * math.sqrt(2.0 / fan_in)))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        os.chmod(os.path.join(out, name), 0o644)  # safetensors writes 0600
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    ap.add_argument("--fixtures", default=os.path.join(REPO, "Tests", "Fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    quiet()
    from diffusers import AutoencoderTiny, StableDiffusionPipeline

    with open(os.path.join(args.models, "tiny-sd", "vae", "config.json")) as f:
        sd_vae_config = json.load(f)
    config, factor = tiny_config(sd_vae_config)
    out = os.path.join(args.models, "tiny-taesd")
    build(out, config)
    weights = os.path.join(out, "diffusion_pytorch_model.safetensors")
    print(f"{os.path.getsize(weights):>9}  {os.path.relpath(weights, REPO)}  (downsample factor {factor})")

    vae = AutoencoderTiny.from_pretrained(out, torch_dtype=torch.float32).eval()
    for p in vae.parameters():
        assert p.dtype == torch.float32
        p.requires_grad_(False)

    t = {}
    # Forward parity on batch 2, non-square (H/W mix-ups show), 64×48 ↔ 8×6.
    image = torch.rand(2, 3, 64, 48, generator=gen(61)) * 2 - 1
    latent = torch.randn(2, config["latent_channels"], 8, 6, generator=gen(63)) * 1.5
    with torch.no_grad():
        enc = vae.encode(image).latents
        dec = vae.decode(latent).sample
    assert enc.shape == (2, config["latent_channels"], 64 // factor, 48 // factor), enc.shape
    t.update(image=image, encoded=f32(enc), latent=latent, decoded=f32(dec))

    # Gradients on smaller inputs (24×16 ↔ 3×2) whose ReLU inputs all keep a margin from 0:
    # a ReLU whose input an implementation rounds to the other side of 0 switches its whole
    # gradient path (errors ~1e-3 however exact everything else is), and at 64×48 hundreds of
    # the ~470k ReLU inputs lie within 1e-5 of their layer's largest value. So draw seeds until
    # every ReLU input is at least MARGIN × (that call's max |input|) away from 0.
    seed, x = first_with_margin(vae.encoder, lambda s: torch.rand(2, 3, 24, 16, generator=gen(s)) * 2 - 1,
                                vae.encode, 66)
    margins = {"grad_image_seed": seed}
    x = x.clone().requires_grad_(True)
    enc_small = vae.encode(x).latents
    R = torch.randn(enc_small.shape, generator=gen(62))
    (enc_small * R).sum().backward()
    t.update(grad_image_input=f32(x.detach()), encode_grad_seed=R, grad_image=f32(x.grad))

    seed, z = first_with_margin(vae.decoder, lambda s: torch.randn(2, config["latent_channels"], 3, 2, generator=gen(s)) * 1.5,
                                vae.decode, 67)
    margins["grad_latent_seed"] = seed
    z = z.clone().requires_grad_(True)
    dec_small = vae.decode(z).sample
    R = torch.randn(dec_small.shape, generator=gen(64))
    (dec_small * R).sum().backward()
    t.update(grad_latent_input=f32(z.detach()), decode_grad_seed=R, grad_latent=f32(z.grad))
    with torch.no_grad():
        scaled = vae.scale_latents(latent)
        t.update(scaled_latents=f32(scaled), unscaled_latents=f32(vae.unscale_latents(scaled)))

    # What StableDiffusionPipeline does with TAESD as its vae: decode(latents / vae.config.scaling_factor),
    # scaling_factor being TAESD's own (1.0), then (x / 2 + 0.5).clamp(0, 1) for output_type="pt".
    pipe = StableDiffusionPipeline.from_pretrained(
        os.path.join(args.models, "tiny-sd"), vae=vae, torch_dtype=torch.float32, safety_checker=None
    )
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == factor, pipe.vae_scale_factor
    init = torch.randn(1, config["latent_channels"], 8, 8, generator=gen(65))
    kw = dict(num_inference_steps=2, guidance_scale=7.5, eta=0.0, height=64, width=64)
    with torch.no_grad():
        lat = pipe("a photo of a cat", latents=init.clone(), output_type="latent", **kw).images
        img = pipe("a photo of a cat", latents=init.clone(), output_type="pt", **kw).images
        expect = (vae.decode(lat / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    assert vae.config.scaling_factor == 1.0
    assert torch.equal(img, expect), (img - expect).abs().max()
    t.update(pipeline_latent=f32(lat), pipeline_image=f32(img))

    os.makedirs(args.fixtures, exist_ok=True)
    save(os.path.join(args.fixtures, "taesd.safetensors"), t,
         {"model": "models/tiny-taesd", "pipeline": "tiny-sd, 2 DDIM steps, guidance 7.5, 'a photo of a cat'",
          "relu_margin": MARGIN, **margins})
    print("decoded range", float(dec.min()), float(dec.max()), "encoded range", float(enc.min()), float(enc.max()),
          "gradient input seeds", margins)


if __name__ == "__main__":
    main()
