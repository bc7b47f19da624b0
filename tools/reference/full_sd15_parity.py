#!/usr/bin/env python3
"""Full-size SD 1.5 UNet parity and speed reference (NOT run in CI).

Builds UNet2DConditionModel with Stable Diffusion 1.5's exact config and random weights
(seeded), saves it in the diffusers layout, reloads it (upcast to float32), runs one
forward at a 64x64 latent with batch 2 (uncond + cond, as classifier-free guidance does)
and writes inputs and outputs to OUT/parity.safetensors. Prints the forward time
(torch, 2 threads) for comparison with the Swift engine.

  OUT/config.json
  OUT/diffusion_pytorch_model.safetensors   ~3.4 GB (float32) or ~1.7 GB (--save-dtype float16)
  OUT/parity.safetensors
      sample                  f32 [2,4,64,64]   seeded randn (seed 7001)
      timestep                f32 [1]           501
      encoder_hidden_states   f32 [2,77,768]    seeded randn (seed 7002)
      out                     f32 [2,4,64,64]   unet(sample, 501, encoder_hidden_states).sample
    with --backward also:
      grad_seed               f32 [2,4,64,64]   R, seeded randn (seed 7003)
      grad_encoder_hidden_states f32 [2,77,768] d sum(out*R) / d encoder_hidden_states
      grad_sample             f32 [2,4,64,64]   d sum(out*R) / d sample

Usage:
  python tools/reference/full_sd15_parity.py [--out /tmp/sd15-random/unet] [--save-dtype float32|float16]
         [--backward] [--repeat N]

Cost here (2 threads): ~1-2 min to build and save, ~8-9 s per batch-2 forward.
"""
import argparse
import json
import os
import time
import warnings

import torch
from safetensors.torch import save_file

SEED_WEIGHTS = 7000

SD15_UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
    use_linear_projection=False,
    upcast_attention=False,
)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/sd15-random/unet")
    ap.add_argument("--save-dtype", choices=["float32", "float16"], default="float32")
    ap.add_argument("--backward", action="store_true", help="also time and store gradients of sum(out*R)")
    ap.add_argument("--repeat", type=int, default=2, help="timed forwards (the first one's output is stored)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)

    from diffusers import UNet2DConditionModel
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()

    t0 = time.time()
    torch.manual_seed(SEED_WEIGHTS)
    unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
    n = sum(p.numel() for p in unet.parameters())
    print(f"built SD 1.5 UNet, {n / 1e6:.1f} M parameters, in {time.time() - t0:.1f} s")
    if args.save_dtype == "float16":
        unet = unet.to(torch.float16)
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    unet.save_pretrained(args.out, safe_serialization=True)
    del unet
    print(f"saved to {args.out} ({args.save_dtype}) in {time.time() - t0:.1f} s")

    t0 = time.time()
    unet = UNet2DConditionModel.from_pretrained(args.out, torch_dtype=torch.float32).eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    print(f"reloaded (float32) in {time.time() - t0:.1f} s")

    sample = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(7001))
    ehs = torch.randn(2, 77, 768, generator=torch.Generator().manual_seed(7002))
    t = torch.tensor(501)
    outs, times = [], []
    with torch.no_grad():
        for _ in range(max(1, args.repeat)):
            t0 = time.time()
            outs.append(unet(sample, t, encoder_hidden_states=ehs).sample)
            times.append(time.time() - t0)
    print("forward batch 2, 64x64 latent, 2 threads: " + ", ".join(f"{x:.2f} s" for x in times))
    for o in outs[1:]:
        assert torch.equal(o, outs[0]), "forward not deterministic"
    tensors = {
        "sample": sample,
        "timestep": torch.tensor([501.0]),
        "encoder_hidden_states": ehs,
        "out": outs[0].contiguous(),
    }
    if args.backward:
        R = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(7003))
        s = sample.clone().requires_grad_(True)
        e = ehs.clone().requires_grad_(True)
        t0 = time.time()
        o = unet(s, t, encoder_hidden_states=e).sample
        (o * R).sum().backward()
        print(f"forward+backward batch 2: {time.time() - t0:.2f} s")
        tensors.update(
            grad_seed=R, grad_sample=s.grad.contiguous(), grad_encoder_hidden_states=e.grad.contiguous()
        )
    path = os.path.join(args.out, "parity.safetensors")
    info = {"generator": "tools/reference/full_sd15_parity.py", "forward_seconds": times, "save_dtype": args.save_dtype}
    save_file(tensors, path, metadata={"info": json.dumps(info, sort_keys=True)})
    print(f"wrote {path}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items()))
    print(f"out std {outs[0].std():.4f}, absmax {outs[0].abs().max():.4f}")


if __name__ == "__main__":
    main()
