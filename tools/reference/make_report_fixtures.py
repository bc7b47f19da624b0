#!/usr/bin/env python3
"""Fixtures for the report's metrics (Tests/CoordinatorCoreTests/ReportMetricsTests.swift).

Small procedural 8-bit RGB images and the PSNR/SSIM scikit-image computes for pairs of them,
plus a few L2-normalised embeddings and their cosines, per-group mean pairwise distances and
Sem-D computed with numpy. Deterministic: running it again writes the same files.

    /work/venv/bin/pip install scikit-image   # numpy and Pillow come with it
    /work/venv/bin/python tools/reference/make_report_fixtures.py
"""
import json
import os

import numpy as np
import skimage
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures", "report")


def pattern(h, w, phase):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = (x * 4 + y * 2 + phase * 9) % 256
    g = 128 + 100 * np.sin(x / 5 + phase) * np.cos(y / 7)
    b = np.where(((x // 8) + (y // 8)) % 2 == 0, 60, 190) + 0.5 * y
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).round().astype(np.uint8)


def edited(img, seed):
    rng = np.random.RandomState(seed)
    out = img.astype(np.float64) + rng.normal(0, 12, img.shape)
    h, w, _ = img.shape
    out[h // 4 : h // 2, w // 3 : 2 * w // 3] *= 0.6  # a darkened patch
    out[..., 0] = 255 * (out[..., 0].clip(0, 255) / 255) ** 0.8  # a gamma change in red
    return np.clip(out, 0, 255).round().astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    images = {
        "a64.png": pattern(64, 64, 0),
        "b64.png": edited(pattern(64, 64, 0), 7),
        "c48x40.png": pattern(40, 48, 2),  # 48 wide, 40 high
        "d48x40.png": edited(pattern(40, 48, 2), 11),
        "flat120.png": np.full((16, 16, 3), 120, np.uint8),
        "flat121.png": np.full((16, 16, 3), 121, np.uint8),
    }
    for name, img in images.items():
        Image.fromarray(img, "RGB").save(os.path.join(OUT, name), optimize=True)
    # Read back what was written, so the numbers are those of the PNGs' pixels.
    loaded = {n: np.asarray(Image.open(os.path.join(OUT, n)).convert("RGB")) for n in images}
    pairs = []
    for a, b in [
        ("a64.png", "b64.png"),
        ("c48x40.png", "d48x40.png"),
        ("a64.png", "a64.png"),
        ("flat120.png", "flat121.png"),
    ]:
        x, y = loaded[a], loaded[b]
        identical = bool(np.array_equal(x, y))
        psnr = None if identical else float(peak_signal_noise_ratio(x, y, data_range=255))
        ssim = float(structural_similarity(x, y, channel_axis=2, data_range=255))
        channels = [float(structural_similarity(x[..., c], y[..., c], data_range=255)) for c in range(3)]
        pairs.append({"a": a, "b": b, "identical": identical, "psnr": psnr, "ssim": ssim, "ssim_channels": channels})

    rng = np.random.RandomState(3)

    def unit(n, d=16):
        v = rng.normal(size=(n, d))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    groups = {"awe": unit(3), "fear": unit(4), "sadness": unit(1)}
    mean_pairwise = {}
    cosines = []
    for name, vs in groups.items():
        if len(vs) < 2:
            continue
        ds = []
        for i in range(len(vs)):
            for j in range(i + 1, len(vs)):
                c = float(np.dot(vs[i], vs[j]) / (np.linalg.norm(vs[i]) * np.linalg.norm(vs[j])))
                cosines.append({"group": name, "i": i, "j": j, "cosine": c})
                ds.append(1 - c)
        mean_pairwise[name] = float(np.mean(ds))
    expected = {
        "generated_by": "tools/reference/make_report_fixtures.py",
        "versions": {"numpy": np.__version__, "scikit-image": skimage.__version__},
        "pairs": pairs,
        "embeddings": {
            "groups": {k: v.tolist() for k, v in groups.items()},
            "cosines": cosines,
            "mean_pairwise": mean_pairwise,
            # Sem-D of one method: the mean over emotions with >= 2 images (sadness has 1: left out).
            "sem_d": float(np.mean(list(mean_pairwise.values()))),
        },
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    for p in pairs:
        print(p["a"], p["b"], p["psnr"], p["ssim"])
    print("sem_d", expected["embeddings"]["sem_d"])


if __name__ == "__main__":
    main()
