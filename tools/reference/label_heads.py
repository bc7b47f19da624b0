#!/usr/bin/env python3
"""Write the `classes` and `features` metadata into linear emotion-head files, tensors unchanged.

The engine maps a head's rows to emotions by the safetensors metadata `classes` (comma-separated
emotion names, one per row of `weight`) and reads `features` to know what the head was trained
on: `image_embeds` (EmoGen's Linear over unnormalised CLIP image_embeds) or
`normalized_image_embeds` (a probe trained on L2-normalised embeddings). A head without
`classes` is refused. This re-saves files with both keys, keeping every other metadata key and
every tensor's bytes, and checks the bytes afterwards.

    /work/venv/bin/python tools/reference/label_heads.py                 # the bundled heads, EmoSet order
    /work/venv/bin/python tools/reference/label_heads.py head.safetensors \\
        --classes amusement,anger,awe,contentment,disgust,excitement,fear,sadness   # ImageFolder's order

The one-line equivalent for a single file (rows in EmoSet order):

    python -c "from safetensors.torch import load_file, save_file; p='head.safetensors'; \\
      save_file(load_file(p), p, metadata={'classes': 'amusement,awe,contentment,excitement,anger,disgust,fear,sadness', \\
      'features': 'image_embeds'})"
"""
import argparse
import json
import os
import struct
import sys

from safetensors import safe_open

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMOSET_CLASSES = "amusement,awe,contentment,excitement,anger,disgust,fear,sadness"
FEATURES = ("image_embeds", "normalized_image_embeds")
BUNDLED = ["models/tiny-emotion-head.safetensors", "models/miniworld/emotion-head.safetensors",
           "models/miniworld/evaluator-head.safetensors"]


def read(path):
    with safe_open(path, "pt") as f:
        return f.metadata() or {}, {name: f.get_tensor(name) for name in f.keys()}


def write(path, tensors, metadata):
    """A safetensors file with its header written here, keys sorted: safetensors' own writer
    orders `__metadata__` by a hash map, so its bytes (and the fingerprint) would change per run.
    Float32 tensors are laid out by name, as safetensors does."""
    header, offset, blobs = {"__metadata__": dict(sorted(metadata.items()))}, 0, []
    for name in sorted(tensors):
        data = tensors[name].contiguous().numpy().tobytes()
        assert str(tensors[name].dtype) == "torch.float32", f"{name}: {tensors[name].dtype}"
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def data_region(path):
    """The bytes after the header: the tensors as stored."""
    with open(path, "rb") as f:
        raw = f.read()
    return raw[8 + struct.unpack("<Q", raw[:8])[0]:]


def label(path, classes, features):
    metadata, tensors = read(path)
    stored = data_region(path)
    rows = tensors["weight"].shape[0]
    if len(classes.split(",")) != rows:
        raise SystemExit(f"{path}: {len(classes.split(','))} classes for {rows} rows")
    before = {name: t.numpy().tobytes() for name, t in tensors.items()}
    write(path, tensors, {**metadata, "classes": classes, "features": features})
    after_metadata, after = read(path)
    assert {name: t.numpy().tobytes() for name, t in after.items()} == before, f"{path}: tensors changed"
    assert data_region(path) == stored, f"{path}: the stored tensor bytes changed"
    assert after_metadata["classes"] == classes and after_metadata["features"] == features
    print(f"{os.path.relpath(path, REPO)}: classes {classes}, features {features}; tensors unchanged "
          f"({', '.join(f'{n} {list(t.shape)}' for n, t in sorted(after.items()))})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="head files (default: the bundled heads)")
    ap.add_argument("--classes", default=EMOSET_CLASSES, help="comma-separated emotion per row (default: EmoSet order)")
    ap.add_argument("--features", default="image_embeds", choices=FEATURES)
    args = ap.parse_args()
    for path in args.files or [os.path.join(REPO, p) for p in BUNDLED]:
        label(path, args.classes, args.features)


if __name__ == "__main__":
    sys.exit(main())
