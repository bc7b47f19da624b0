#!/usr/bin/env python3
"""Held-out miniature-world scenes for tuning and evaluation (manifests/miniworld-heldout/).

Renders the first held-out images of make_data.py's split (defaults: 30000 images, seed 2024,
as the shipped models were trained) without generating the whole set: image i depends only on
(seed, i). Captions are the content captions (no look words). The first --tuning images are the
tuning set (settings are chosen on them), the next --eval the evaluation set (reported only).

    python tools/reference/miniworld/export_heldout.py --out manifests/miniworld-heldout
"""
import argparse
import json
import os

import numpy as np
from PIL import Image

import make_data as md


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--tuning", type=int, default=8)
    ap.add_argument("--eval", type=int, default=16)
    ap.add_argument("--out", default="manifests/miniworld-heldout")
    args = ap.parse_args()
    perm = np.random.default_rng(args.seed + 7).permutation(args.n)
    held = perm[int(args.n * 0.9):]
    for part, indices in (("tuning", held[: args.tuning]), ("eval", held[args.tuning: args.tuning + args.eval])):
        folder = os.path.join(args.out, part)
        os.makedirs(folder, exist_ok=True)
        rows = []
        for i in indices:
            rng = np.random.default_rng([args.seed, int(i)])
            e = int(rng.integers(8))
            sc = md.make_scene(rng, md.EMOTIONS[e])
            cap = md.caption(rng, sc)
            image = md.render(rng, sc)
            name = f"scene-{int(i):05d}.png"
            Image.fromarray(image).save(os.path.join(folder, name), optimize=True)
            rows.append({"file_name": name, "text": cap, "label": md.EMOTIONS[e]})
        with open(os.path.join(folder, "metadata.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(f"{part}: {len(rows)} images → {folder}")


if __name__ == "__main__":
    main()
