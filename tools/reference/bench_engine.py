"""PyTorch side of ops/bench-engine: full SD 1.5-size UNet and VAE with random weights.

Builds them under --root if missing (UNet via full_sd15_parity.py's config, VAE with SD 1.5's
AutoencoderKL config), times the four operations MUSE's inner loop is made of, and stores
their inputs and outputs in ROOT/engine_parity.safetensors so `muse bench-engine` can
check its results on the same weights. Lines share the format of `muse bench-engine`.
"""
import argparse
import os
import sys
import time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from full_sd15_parity import SD15_UNET_CONFIG  # noqa: E402

SD15_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
    layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)


def report(name, seconds):
    print(f"{name:<60}{seconds:9.2f} s", flush=True)


def timed(fn, repeats):
    best, out = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - t0
        best = elapsed if best is None else min(best, elapsed)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default="/tmp/sd15-random")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--unet-only", action="store_true", help="time the UNet forward only (as muse bench-engine --unet-only)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.utils import logging as dlog
    dlog.set_verbosity_error()

    unet_dir, vae_dir = os.path.join(args.root, "unet"), os.path.join(args.root, "vae")
    if not os.path.exists(os.path.join(unet_dir, "config.json")):
        torch.manual_seed(1234)
        UNet2DConditionModel(**SD15_UNET_CONFIG).save_pretrained(unet_dir, safe_serialization=True)
    if not os.path.exists(os.path.join(vae_dir, "config.json")):
        torch.manual_seed(1235)
        AutoencoderKL(**SD15_VAE_CONFIG).save_pretrained(vae_dir, safe_serialization=True)
    unet = UNet2DConditionModel.from_pretrained(unet_dir).eval().requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(vae_dir).eval().requires_grad_(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    g = torch.Generator().manual_seed(42)
    sample, context = torch.randn(1, 4, 64, 64, generator=g), torch.randn(1, 77, 768, generator=g)
    latent = torch.randn(1, 4, 64, 64, generator=g)
    t = torch.tensor(501)
    with torch.no_grad():
        s, eps = timed(lambda: unet(sample, t, encoder_hidden_states=context).sample, args.repeats)
    report("UNet forward, 64×64 latent, batch 1", s)
    if args.unet_only:
        save_file({"sample": sample, "encoder_hidden_states": context, "timestep": torch.tensor([501.0]), "eps": eps},
                  os.path.join(args.root, "engine_parity.safetensors"))
        return

    def unet_backward():
        c = context.clone().requires_grad_(True)
        unet(sample, t, encoder_hidden_states=c).sample.sum().backward()
        return c.grad
    s, grad_context = timed(unet_backward, args.repeats)
    report("UNet forward+backward to the conditioning", s)

    with torch.no_grad():
        s, image = timed(lambda: vae.decode(latent).sample, args.repeats)
    report("VAE decode, 64×64 latent → 512×512", s)

    def vae_backward():
        z = latent.clone().requires_grad_(True)
        vae.decode(z).sample.sum().backward()
        return z.grad
    s, grad_latent = timed(vae_backward, args.repeats)
    report("VAE decode forward+backward to the latent", s)

    save_file({"sample": sample, "encoder_hidden_states": context, "timestep": torch.tensor([501.0]),
               "eps": eps, "grad_context": grad_context, "latent": latent, "image": image,
               "grad_latent": grad_latent}, os.path.join(args.root, "engine_parity.safetensors"))


if __name__ == "__main__":
    main()
