#!/usr/bin/env python3
"""Full-size TAESD (diffusers AutoencoderTiny with its default config, which is
madebyollin/taesd's) with seeded random weights, and a PyTorch timing of its decoder.

Writes --out (default /tmp/taesd-random; ~10 MB):
  config.json, diffusion_pytorch_model.safetensors   the model (F32)
  reference.safetensors   latent [1,4,S,S] (randn seed 7101), decoded = decode(latent).sample,
                          grad_seed R (randn seed 7102), grad_latent = ∂ Σ(decoded·R) / ∂ latent,
                          and decoded_f64 / grad_latent_f64: the same computed in float64

then prints the time of a decode forward (no grad) and of forward+backward to the latent,
best of --repeats, with 2 torch threads. The Swift side, on the same folder:
  MUSE_TAESD_FULL=/tmp/taesd-random swift test --filter AutoencoderTinyTests/testFullSizeDecodeTiming

At this size the float32 gradient is not a sharp target: a ReLU whose input rounds to the
other side of 0 switches its whole gradient path, so PyTorch's own float32 gradient differs
from the float64 one by ~4e-3 of its largest value (the forward by ~1e-6). Compare an
implementation's gradient with grad_latent_f64 and with PyTorch's float32 error to it.

--act-fn, --upsample-fn, --upsampling-scaling-factor, --channels and --blocks build variants
(e.g. to check this port's non-default paths against diffusers with the same Swift test).

Weights: N(0, 2/fan_in), biases N(0, 0.1²), blocks' last conv ×0.5 and the decoder's final
conv ×0.25 (as build_tiny_taesd.py), so activations keep a trained-like scale.
"""
import argparse
import os
import sys
import time

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from build_tiny_taesd import build, gen, f32, quiet  # noqa: E402


def report(name, seconds):
    print(f"{name:<60}{seconds:9.3f} s", flush=True)


def timed(fn, repeats):
    best, out = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - t0
        best = elapsed if best is None else min(best, elapsed)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/taesd-random")
    ap.add_argument("--latent-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--act-fn", default=None)
    ap.add_argument("--upsample-fn", default=None)
    ap.add_argument("--upsampling-scaling-factor", type=int, default=None)
    ap.add_argument("--channels", type=int, default=None, help="one value for every encoder/decoder stage")
    ap.add_argument("--blocks", type=int, nargs="+", default=None, help="num_decoder_blocks (encoder: reversed)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    quiet()
    from diffusers import AutoencoderTiny

    config = {}  # diffusers defaults = TAESD
    if args.act_fn:
        config["act_fn"] = args.act_fn
    if args.upsample_fn:
        config["upsample_fn"] = args.upsample_fn
    if args.upsampling_scaling_factor:
        config["upsampling_scaling_factor"] = args.upsampling_scaling_factor
    if args.blocks:
        config["num_decoder_blocks"] = args.blocks
        config["num_encoder_blocks"] = list(reversed(args.blocks))
    stages = len(config.get("num_decoder_blocks", (3, 3, 3, 1)))
    if args.channels or args.blocks:
        c = args.channels or 64
        config["encoder_block_out_channels"] = config["decoder_block_out_channels"] = [c] * stages
    build(args.out, config)
    vae = AutoencoderTiny.from_pretrained(args.out, torch_dtype=torch.float32).eval().requires_grad_(False)
    n = sum(p.numel() for p in vae.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; AutoencoderTiny {n / 1e6:.2f} M parameters → {args.out}")

    s = args.latent_size
    latent = torch.randn(1, vae.config.latent_channels, s, s, generator=gen(7101))
    with torch.no_grad():
        seconds, decoded = timed(lambda: vae.decode(latent).sample, args.repeats)
    out_size = decoded.shape[-1]
    report(f"TAESD decode, {s}×{s} latent → {out_size}×{out_size}", seconds)
    R = torch.randn(decoded.shape, generator=gen(7102))

    def backward():
        z = latent.clone().requires_grad_(True)
        (vae.decode(z).sample * R).sum().backward()
        return z.grad
    seconds, grad = timed(backward, args.repeats)
    report("TAESD decode forward+backward to the latent", seconds)
    print(f"decoded range [{float(decoded.min()):.3f}, {float(decoded.max()):.3f}], |grad| max {float(grad.abs().max()):.3g}")

    vae64 = vae.double()
    z = latent.double().requires_grad_(True)
    decoded64 = vae64.decode(z).sample
    (decoded64 * R.double()).sum().backward()
    grad64 = z.grad

    def rel(a, b):
        return float((a.double() - b).abs().max() / b.abs().max())
    print(f"float32 vs float64 (max |Δ| / max |f64|): decoded {rel(decoded, decoded64):.2g}, gradient {rel(grad, grad64):.2g}")
    save_file({"latent": latent, "decoded": f32(decoded), "grad_seed": R, "grad_latent": f32(grad),
               "decoded_f64": f32(decoded64), "grad_latent_f64": f32(grad64)},
              os.path.join(args.out, "reference.safetensors"),
              metadata={"info": "tools/reference/build_taesd_random.py"})


if __name__ == "__main__":
    main()
