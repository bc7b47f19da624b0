#!/usr/bin/env python3
"""Convert EmoGen's emotion classifier head (.pth) to the safetensors file MUSE loads.

EmoGen's classifier is a Linear(768 -> 8) over CLIP ViT-L/14 image_embeds (unnormalised),
classes in EmoSet order (amusement, awe, contentment, excitement, anger, disgust, fear,
sadness). Its checkpoint may be saved in several shapes; this finds the head in any of them:

  - a bare nn.Linear state_dict            {"weight": [8, D], "bias": [8]}
  - a model state_dict with a prefix       {"fc.weight", "fc.bias", "clip.*", ...}
  - wrapped                                {"state_dict" | "model" | "model_state_dict" | "net": {...}}
  - DataParallel prefixes                  "module.fc.weight"
  - a pickled nn.Module                    (needs --unsafe-pickle: it runs the pickle's code)

The head is the (prefix.)weight [8, D] / (prefix.)bias [8] pair; when a checkpoint holds more
than one, name it with --key PREFIX. Output: safetensors with float32 tensors "weight" [8, D]
and "bias" [8]; metadata records the source and the key, the rows' emotions (`classes`, EmoSet
order) and what the head reads (`features`: image_embeds). Use with
`muse generate --classifier-head OUT.safetensors --classifier-tower CLIP_VIT_L14_FOLDER`.

    /work/venv/bin/python tools/reference/convert_emogen_head.py emogen_classifier.pth head.safetensors
    /work/venv/bin/python tools/reference/convert_emogen_head.py --self-test
"""
import argparse
import os
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

NUM_EMOTIONS = 8
WRAPPERS = ("state_dict", "model", "model_state_dict", "net", "classifier")


def load_checkpoint(path, unsafe_pickle):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickled module or other objects
        if not unsafe_pickle:
            raise SystemExit(f"{path}: not a plain tensor checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}). "
                             "If you trust the file, rerun with --unsafe-pickle.")
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    # Unwrap {"state_dict": {...}} and the like, possibly nested.
    while isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        inner = [k for k in WRAPPERS if isinstance(obj.get(k), (dict, torch.nn.Module))]
        if not inner:
            raise SystemExit(f"{path}: no tensors found (top-level keys: {sorted(obj)[:20]})")
        obj = obj[inner[0]]
        if isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: unsupported checkpoint object {type(obj).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items() if torch.is_tensor(v)}


def find_head(tensors, key):
    """(prefix, weight, bias) of the [8, D] / [8] pair."""
    def pair(prefix):
        w = tensors.get(prefix + "weight")
        b = tensors.get(prefix + "bias")
        if w is None or b is None:
            return None
        if w.dim() == 2 and w.shape[0] == NUM_EMOTIONS and tuple(b.shape) == (NUM_EMOTIONS,):
            return (prefix, w, b)
        return None

    if key is not None:
        prefix = key if key == "" or key.endswith(".") else key + "."
        found = pair(prefix)
        if found is None:
            shapes = {k: tuple(v.shape) for k, v in tensors.items() if k.startswith(prefix)}
            raise SystemExit(f"--key {key!r}: no {prefix}weight [{NUM_EMOTIONS}, D] / {prefix}bias [{NUM_EMOTIONS}] "
                             f"pair (tensors under it: {shapes})")
        return found
    prefixes = {k[: -len("weight")] for k in tensors if k.endswith("weight")}
    candidates = [p for p in (pair(p) for p in sorted(prefixes)) if p is not None]
    if not candidates:
        shapes = {k: tuple(v.shape) for k, v in list(tensors.items())[:30]}
        raise SystemExit(f"no Linear(D -> {NUM_EMOTIONS}) head found; tensors: {shapes}")
    if len(candidates) > 1:
        names = [c[0] or "(top level)" for c in candidates]
        raise SystemExit(f"several {NUM_EMOTIONS}-way heads found: {names}; choose one with --key")
    return candidates[0]


def convert(src, dst, key=None, expect_dim=None, unsafe_pickle=False):
    tensors = load_checkpoint(src, unsafe_pickle)
    prefix, weight, bias = find_head(tensors, key)
    if expect_dim is not None and weight.shape[1] != expect_dim:
        raise SystemExit(f"head takes {weight.shape[1]}-d features, expected {expect_dim} "
                         "(CLIP ViT-L/14 image_embeds are 768-d)")
    out = {"weight": weight.detach().to(torch.float32).contiguous(),
           "bias": bias.detach().to(torch.float32).contiguous()}
    # classes: the emotion of each row, which the engine matches to EmoSet's order by name;
    # features: what the Linear reads (EmoGen's: the unnormalised CLIP image_embeds).
    save_file(out, dst, metadata={"source": os.path.basename(src), "key": prefix or "(top level)",
                                  "classes": "amusement,awe,contentment,excitement,anger,disgust,fear,sadness",
                                  "features": "image_embeds"})
    return prefix, tuple(weight.shape)


class _Classifier(torch.nn.Module):
    """Self-test stand-in for EmoGen's module: a feature tower and a head named fc."""
    def __init__(self, head):
        super().__init__()
        self.backbone = torch.nn.Linear(16, 768)
        self.fc = head


class _TwoHeads(torch.nn.Module):
    def __init__(self, head):
        super().__init__()
        self.fc = head
        self.aux = torch.nn.Linear(768, NUM_EMOTIONS)


def self_test():
    """Round trips through the checkpoint shapes listed above."""
    torch.manual_seed(0)
    head = torch.nn.Linear(768, NUM_EMOTIONS)

    cases = {
        "bare.pth": (head.state_dict(), {}),
        "prefixed.pth": (_Classifier(head).state_dict(), {}),
        "wrapped.pth": ({"epoch": 3, "state_dict": {"module." + k: v for k, v in _Classifier(head).state_dict().items()}}, {}),
        "half.pth": ({k: v.half() for k, v in head.state_dict().items()}, {}),
        "module.pth": (_Classifier(head), {"unsafe_pickle": True}),
        "two_heads.pth": (_TwoHeads(head).state_dict(), {"key": "fc"}),
    }
    with tempfile.TemporaryDirectory() as d:
        for name, (obj, kw) in cases.items():
            src, dst = os.path.join(d, name), os.path.join(d, name + ".safetensors")
            torch.save(obj, src)
            prefix, shape = convert(src, dst, expect_dim=768, **kw)
            got = load_file(dst)
            assert set(got) == {"weight", "bias"} and got["weight"].dtype == torch.float32
            with safe_open(dst, "pt") as f:
                meta = f.metadata()
            assert meta["classes"].split(",")[0] == "amusement" and meta["features"] == "image_embeds", meta
            tol = 1e-3 if name == "half.pth" else 0
            assert torch.allclose(got["weight"], head.weight.detach(), atol=tol), name
            assert torch.allclose(got["bias"], head.bias.detach(), atol=tol), name
            print(f"ok  {name:14s} key {prefix or '(top level)':6s} weight {shape}")
        # Failures that must be clear errors.
        torch.save(_TwoHeads(head).state_dict(), os.path.join(d, "ambiguous.pth"))
        torch.save({"w": torch.zeros(3, 3)}, os.path.join(d, "nohead.pth"))
        torch.save(_Classifier(head), os.path.join(d, "pickled.pth"))
        for name, kw, expected in [("ambiguous.pth", {}, "several"), ("nohead.pth", {}, "no Linear"),
                                   ("pickled.pth", {}, "--unsafe-pickle"),
                                   ("bare.pth", {"expect_dim": 512}, "expected 512")]:
            try:
                convert(os.path.join(d, name), os.path.join(d, "x.safetensors"), **kw)
            except SystemExit as e:
                assert expected in str(e), (name, str(e))
                print(f"ok  {name:14s} refused: {e}")
            else:
                raise AssertionError(f"{name} should have failed")
    print("self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", nargs="?", help="EmoGen classifier checkpoint (.pth)")
    ap.add_argument("dst", nargs="?", help="output .safetensors")
    ap.add_argument("--key", help="prefix of the head's tensors, e.g. 'fc' (when several heads are present)")
    ap.add_argument("--expect-dim", type=int, default=None, help="check the feature width (768 for ViT-L/14)")
    ap.add_argument("--unsafe-pickle", action="store_true", help="allow checkpoints that pickle whole modules")
    ap.add_argument("--self-test", action="store_true", help="convert checkpoints built here and check them")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return
    if not args.src or not args.dst:
        ap.error("give SRC.pth and DST.safetensors (or --self-test)")
    prefix, shape = convert(args.src, args.dst, args.key, args.expect_dim, args.unsafe_pickle)
    print(f"{args.src}: head '{prefix or '(top level)'}' weight {list(shape)} -> {args.dst}")


if __name__ == "__main__":
    sys.exit(main())
