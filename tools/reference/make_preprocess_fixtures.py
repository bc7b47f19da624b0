#!/usr/bin/env python3
"""Write Tests/Fixtures/clip_preprocess.safetensors: CLIPImageProcessor parity for the vision tower.

transformers 5.24's CLIPImageProcessor needs torchvision; without it (as here) it falls back to
CLIPImageProcessorPil: uint8 image -> PIL resize (bicubic, antialiased, uint8 rounding and
clamping after each pass) so the shortest edge is size["shortest_edge"] (long side
int(size * long / short)) -> centre crop -> * rescale_factor -> (x - mean) / std. A float
image in [0, 1] would be multiplied by 255 and *truncated* to uint8 before PIL (and then
rescaled twice unless do_rescale=False), so uint8 is the meaningful input.

The Swift op computes the same resampling in float without rounding. Its exact float
counterpart is torch's F.interpolate(mode="bicubic", antialias=True), which implements PIL's
filter (a = -0.5, support 2 * max(in/out, 1), per-row normalised weights, PIL's centre
alignment); this script checks that, and that a NumPy port of PIL's fixed-point arithmetic
reproduces PIL's uint8 output bit for bit, so the coefficients are PIL's.

Stored, for every (config, image) case, images given as H x W:
  {cfg}_{H}x{W}_processor  U8  [3, S, S]  CLIPImageProcessor's resized, cropped uint8 pixels
                                          (pixel_values = (u / 255 - mean) / std, checked)
  {cfg}_{H}x{W}_float      F32 [3, S, S]  float reference: the same steps in float64 without
                                          rounding (each pass clamped to [0, 1] as PIL clamps),
                                          normalised (of the ViT-L cases only 512x768, for size)
plus, for the tiny config's 64x64 and 20x24 images, {cfg}_{H}x{W}_seed R [3, S, S] and
{cfg}_{H}x{W}_grad [3, H, W] = d sum(R * float reference) / d image in [-1, 1] (torch autograd,
clamps included), and an op-level gradient case (resize_*): a random float input, the output of the
antialiased bicubic resize, a seed R and d sum(out * R) / d input from torch autograd.

The test images are not stored: image(H, W) below is integer arithmetic that
Tests/DiffusionTests/CLIPPreprocessTests.swift repeats.

cfg "tiny": models/tiny-clip-vision/preprocessor_config.json (shortest_edge 32, crop 32).
cfg "vitl": Tests/Fixtures/clip_vit_l14_preprocessor_config.json (openai/clip-vit-large-patch14's
file: size 224, crop_size 224 as plain integers).

Usage: python tools/reference/make_preprocess_fixtures.py [--out Tests/Fixtures]
"""
import argparse
import json
import math
import os
import tempfile
import warnings

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
torch.set_num_threads(2)

IMAGES = [(512, 512), (512, 768), (768, 512), (64, 64), (20, 24)]  # H x W
FLOAT_REFERENCES = {"tiny": set(IMAGES), "vitl": {(512, 768)}}
GRADIENTS = {(64, 64), (20, 24)}  # tiny config only


def image(h, w):
    """uint8 [H, W, 3]: diagonal ramps, a finer ripple, inverted blocks (hard edges) and a
    band of 3-pixel stripes (aliases under a resize without antialiasing). Integers only."""
    y, x = np.meshgrid(np.arange(h, dtype=np.int64), np.arange(w, dtype=np.int64), indexing="ij")

    def tri(t, p):  # 0..p..0 with period 2p, t >= 0
        return np.abs(t % (2 * p) - p)

    channels = []
    for c in range(3):
        smooth = tri(2 * x + y + 31 * c, 150) * 255 // 150
        ripple = tri(7 * x + 5 * (h - y) + 13 * c, 40) * 255 // 40
        v = (2 * smooth + ripple) // 3
        v = np.where((x // 41 + y // 53 + c) % 4 == 0, 255 - v, v)
        stripes = np.where((x + c) % 3 == 0, 230, 25)
        v = np.where((y // 16) % 5 == 2, stripes, v)
        channels.append(v)
    return np.stack(channels, -1).astype(np.uint8)


# A port of Pillow's Resample.c (precompute_coeffs, bicubic_filter, normalize_coeffs_8bpc,
# ImagingResampleHorizontal/Vertical_8bpc), used only to confirm that PIL does what the float
# reference and the Swift op assume.
def bicubic_filter(x, a=-0.5):
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def pil_weights(n_in, n_out):
    """Dense [n_out, n_in] matrix of PIL's normalised double weights."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    k = np.zeros((n_out, n_in))
    for o in range(n_out):
        center = (o + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in) - xmin
        w = np.array([bicubic_filter((i + xmin - center + 0.5) / filterscale) for i in range(xmax)])
        if w.sum() != 0.0:
            w = w / w.sum()
        k[o, xmin : xmin + xmax] = w
    return k


def pil_resize_port(img, oh, ow):
    """uint8 [H, W, 3] -> uint8 [oh, ow, 3] with PIL's 22-bit fixed point, rounding and clamping."""
    bits = 22

    def fixed(k):
        return np.where(k < 0, np.trunc(-0.5 + k * (1 << bits)), np.trunc(0.5 + k * (1 << bits))).astype(np.int64)

    out = []
    for c in range(3):
        x = img[..., c].astype(np.int64)
        if ow != x.shape[1]:
            x = np.clip((x @ fixed(pil_weights(x.shape[1], ow)).T + (1 << (bits - 1))) >> bits, 0, 255)
        if oh != x.shape[0]:
            x = np.clip((fixed(pil_weights(x.shape[0], oh)) @ x + (1 << (bits - 1))) >> bits, 0, 255)
        out.append(x)
    return np.stack(out, -1).astype(np.uint8)


def resize_output_size(h, w, shortest):
    """transformers' get_resize_output_image_size(default_to_square=False): (H, W)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = shortest, int(shortest * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def float_pipeline(x, shortest, crop, mean, std, clamp=True):
    """The processor's steps in float64 without rounding on x [1, 3, H, W] in [0, 1]. Like PIL
    (and the Swift preprocessing) each resize pass is clamped to the pixel range [0, 1]."""
    h, w = x.shape[2:]
    oh, ow = resize_output_size(h, w, shortest)
    for size in ((h, ow), (oh, ow)):  # horizontal pass, then vertical
        if size != tuple(x.shape[2:]):
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
            x = x.clamp(0, 1) if clamp else x
    top, left = (oh - crop) // 2, (ow - crop) // 2
    x = x[0, :, top : top + crop, left : left + crop]
    m = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    s = torch.tensor(std, dtype=torch.float64)[:, None, None]
    return (x - m) / s


def float_reference(img, shortest, crop, mean, std, clamp=True):
    """float_pipeline of a uint8 image [H, W, 3]: [3, crop, crop] float32."""
    x = torch.from_numpy(img.astype(np.float64) / 255).permute(2, 0, 1)[None]
    return float_pipeline(x, shortest, crop, mean, std, clamp).to(torch.float32)


def old_path(img, size, mean, std):
    """The Swift engine's previous preprocessing: square centre crop, bilinear without antialiasing."""
    h, w = img.shape[:2]
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    if h > w:
        x = x[:, :, (h - w) // 2 : (h - w) // 2 + w]
    if w > h:
        x = x[:, :, :, (w - h) // 2 : (w - h) // 2 + h]
    if x.shape[2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    m = torch.tensor(mean)[:, None, None]
    s = torch.tensor(std)[:, None, None]
    return (x[0] - m) / s


def check_pil_port():
    rng = np.random.default_rng(0)
    for h, w, oh, ow in [(512, 512, 224, 224), (512, 768, 224, 336), (64, 64, 224, 224), (20, 24, 32, 38)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pil = np.array(PIL.Image.fromarray(img).resize((ow, oh), resample=PIL.Image.BICUBIC))
        assert np.array_equal(pil, pil_resize_port(img, oh, ow)), (h, w, oh, ow)
        t = F.interpolate(
            torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None], size=(oh, ow),
            mode="bicubic", antialias=True, align_corners=False)[0]
        dense = np.stack([pil_weights(h, oh) @ img[..., c] @ pil_weights(w, ow).T for c in range(3)])
        assert np.abs(t.numpy() - dense).max() < 1e-9, (h, w, oh, ow)
    print("PIL port: bit-exact on random uint8 images; torch antialiased bicubic = PIL's float weights")


def processors():
    from transformers import CLIPImageProcessor

    tiny_dir = os.path.join(REPO, "models", "tiny-clip-vision")
    vitl_json = os.path.join(REPO, "Tests", "Fixtures", "clip_vit_l14_preprocessor_config.json")
    out = {}
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        with open(vitl_json) as f:
            vitl = json.load(f)
        with open(os.path.join(tmp, "preprocessor_config.json"), "w") as f:
            json.dump(vitl, f)
        for name, folder in (("tiny", tiny_dir), ("vitl", tmp)):
            p = CLIPImageProcessor.from_pretrained(folder)
            assert type(p).__name__ == "CLIPImageProcessorPil", type(p)
            out[name] = p
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "Fixtures"))
    args = ap.parse_args()
    import transformers

    transformers.utils.logging.set_verbosity_error()  # the torchvision -> PIL fallback notice
    check_pil_port()

    tensors = {}
    report = {}
    for cfg, p in processors().items():
        shortest, crop = p.size["shortest_edge"], p.crop_size["height"]
        assert p.crop_size["width"] == crop and p.resample == PIL.Image.BICUBIC
        assert abs(p.rescale_factor - 1 / 255) < 1e-12
        mean, std = list(p.image_mean), list(p.image_std)
        for h, w in IMAGES:
            img = image(h, w)
            pv = p(images=img, return_tensors="np")["pixel_values"][0]
            raw = p(images=img, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][0]
            assert pv.shape == (3, crop, crop) and pv.dtype == np.float32, pv.shape
            u8 = raw.astype(np.uint8)
            assert np.array_equal(u8.astype(raw.dtype), raw), "processor pixels are not integers"
            renorm = ((u8.astype(np.float32) / np.float32(255)).T - np.float32(mean)) / np.float32(std)
            assert np.abs(renorm.T - pv).max() < 1e-6
            ref = float_reference(img, shortest, crop, mean, std)
            gap = float(np.abs(ref.numpy() - pv).max())
            unclamped = float(np.abs(float_reference(img, shortest, crop, mean, std, False).numpy() - pv).max())
            old = float(np.abs(old_path(img, crop, mean, std).numpy() - pv).max())
            key = f"{cfg}_{h}x{w}"
            report[key] = {"float_vs_processor": gap, "unclamped_vs_processor": unclamped, "old_vs_processor": old}
            print(f"{key:14} size {resize_output_size(h, w, shortest)} crop {crop}: max |processor - float| "
                  f"{gap:.4f} (normalised units; {unclamped:.4f} without the clamps), old path {old:.4f}")
            tensors[key + "_processor"] = torch.from_numpy(u8.copy())
            if (h, w) in FLOAT_REFERENCES[cfg]:
                tensors[key + "_float"] = ref.contiguous()
            if cfg == "tiny" and (h, w) in GRADIENTS:
                # d sum(R * pixel_values) / d image, the image in the engine's [-1, 1] (u / 127.5 - 1).
                x = torch.from_numpy(img.astype(np.float64) / 127.5 - 1).permute(2, 0, 1)[None].requires_grad_(True)
                r = torch.randn(3, crop, crop, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
                (float_pipeline(x * 0.5 + 0.5, shortest, crop, mean, std) * r).sum().backward()
                tensors[key + "_seed"] = r.to(torch.float32)
                tensors[key + "_grad"] = x.grad[0].to(torch.float32).contiguous()

    # The op alone: down in one axis, up in the other, and strongly down in both.
    g = torch.Generator().manual_seed(5)
    for name, shape, size in (("resize_a", (1, 2, 37, 29), (11, 45)), ("resize_b", (2, 1, 60, 50), (7, 9))):
        x = torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)
        y = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        r = torch.randn(*y.shape, generator=g, dtype=torch.float64)
        (y * r).sum().backward()
        for k, v in (("input", x), ("output", y), ("seed", r), ("grad", x.grad)):
            tensors[f"{name}_{k}"] = v.detach().to(torch.float32).contiguous()

    path = os.path.join(args.out, "clip_preprocess.safetensors")
    meta = {"generator": "tools/reference/make_preprocess_fixtures.py", "images": IMAGES, "measured": report}
    save_file(tensors, path, metadata={"info": json.dumps(meta, sort_keys=True)})
    print(f"{os.path.getsize(path):>9}  {os.path.relpath(path, REPO)}")


if __name__ == "__main__":
    main()
