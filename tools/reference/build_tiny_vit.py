#!/usr/bin/env python3
"""Build the tiny ViT emotion classifier and its parity fixture.

Writes:
  models/tiny-vit-emotion/             ViTForImageClassification (save_pretrained): image 32, patch 8,
                                       hidden 32, 2 layers, 4 heads, MLP 64, 8 labels whose id2label
                                       names the emotions in a shuffled order; preprocessor_config.json
                                       of ViTImageProcessor (size 32x32, bilinear, ImageNet mean/std)
  Tests/Fixtures/vit_classifier.safetensors
      images        [2,3,40,48]  uniform in [-1, 1] (seed 61): engine images, non-square to
                                 exercise the resize
      pixel_values  [2,3,32,32]  what the image processor gives for them (below)
      logits        [2,8]        the model's logits, in its id2label order
      grad_seed     [2,8]        R (randn seed 62)
      grad_images   [2,3,40,48]  d sum(logits * R) / d images, by torch autograd through the
                                 processor's resize and normalisation
      emoset_probabilities [2,8] softmax(logits) with columns in EmoSet order (via id2label)
      small_images  [1,3,20,28]  an image smaller than the model's (the resize upsamples)
      small_logits  [1,8]
      small_grad_seed [1,8], small_grad_images [1,3,20,28]

How MUSE feeds images, and what "the processor" is here: the engine's images are float tensors
in [-1, 1]; u = (x + 1) / 2 * 255 is the 8-bit image's values, as floats. transformers 5.24's
ViTImageProcessor is the torchvision backend (TorchvisionBackend._preprocess): for a float32
tensor, torchvision.transforms.v2.functional.resize calls
F.interpolate(mode="bilinear", align_corners=False, antialias=True) (resample 2; "bicubic" for 3)
with no rounding or clamping (uint8 input would be rounded after the resize), then the fused
rescale-and-normalise (u - mean / rescale_factor) / (std / rescale_factor). torchvision is not
installed here, so this script runs those same torch calls itself; it also checks them against
a NumPy port of PIL's antialiased triangle filter (the taps the Swift op uses), and reports how
far ViTImageProcessorPil (the PIL backend transformers falls back to without torchvision) is on
the uint8-rounded image: its uint8 rounding after each resize pass, about one level of 255.

Everything is seeded; re-running gives byte-identical files.

    /work/venv/bin/python tools/reference/build_tiny_vit.py
"""
import json
import logging
import os
import random
import warnings

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(REPO, "models", "tiny-vit-emotion")
FIXTURE = os.path.join(REPO, "Tests", "Fixtures", "vit_classifier.safetensors")

EMOSET = ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
SEED_MODEL, SEED_IMAGES, SEED_GRAD, SEED_LABELS = 1101, 61, 62, 5


def build():
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    labels = list(EMOSET)
    random.Random(SEED_LABELS).shuffle(labels)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, initializer_range=0.2, num_labels=8,
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    torch.manual_seed(SEED_MODEL)
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():  # a head with some spread, so the probabilities are not near uniform
        model.classifier.weight.normal_(0, 0.15)
        model.classifier.bias.normal_(0, 0.5)
    model.save_pretrained(MODEL)
    ViTImageProcessorPil(size={"height": 32, "width": 32}, resample=2, image_mean=IMAGENET_MEAN,
                         image_std=IMAGENET_STD).save_pretrained(MODEL)
    return labels


def processor_config():
    with open(os.path.join(MODEL, "preprocessor_config.json")) as f:
        return json.load(f)


def preprocess(x, p, dtype=torch.float32):
    """The torchvision backend's steps on the float image u = (x + 1) / 2 * 255."""
    u = (x.to(dtype) + 1) / 2 * 255
    size = (p["size"]["height"], p["size"]["width"])
    mode = {2: "bilinear", 3: "bicubic"}[p["resample"]]
    if tuple(u.shape[-2:]) != size:
        u = F.interpolate(u, size=size, mode=mode, align_corners=False, antialias=True)
    mean = torch.tensor(p["image_mean"], dtype=dtype) * (1.0 / p["rescale_factor"])
    std = torch.tensor(p["image_std"], dtype=dtype) * (1.0 / p["rescale_factor"])
    return (u - mean[:, None, None]) / std[:, None, None]


def triangle_taps(n_in, n_out):
    """PIL's precompute_coeffs for the bilinear (triangle, support 1) filter, in float64."""
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = filter_scale
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        center = (o + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        w = np.array([max(0.0, 1 - abs((k - center + 0.5) / filter_scale)) for k in range(lo, hi)])
        m[o, lo:hi] = w / w.sum()
    return m


def check_resize_taps():
    """torch's antialiased bilinear = PIL's triangle taps, both ways (shrink and enlarge)."""
    g = torch.Generator().manual_seed(63)
    worst = 0.0
    for h, w, oh, ow in [(40, 48, 32, 32), (20, 28, 32, 32), (37, 29, 11, 45)]:
        x = torch.rand(1, 2, h, w, generator=g, dtype=torch.float64)
        torch_out = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)
        ours = np.einsum("oh,chw,pw->cop", triangle_taps(h, oh), x[0].numpy(), triangle_taps(w, ow))
        worst = max(worst, float(np.abs(torch_out[0].numpy() - ours).max()))
    assert worst < 1e-12, worst
    print(f"torch antialiased bilinear vs PIL's triangle taps (float64): max |diff| {worst:.1e}")


def pil_backend_gap(images, p):
    """max |ViTImageProcessorPil on the uint8 image - the float path| in normalised units."""
    from transformers import ViTImageProcessorPil

    pil = ViTImageProcessorPil.from_pretrained(MODEL)
    u8 = ((images + 1) / 2 * 255).round().clamp(0, 255).to(torch.uint8)
    theirs = pil(images=[im.permute(1, 2, 0).numpy() for im in u8], return_tensors="pt")["pixel_values"]
    ours = preprocess(u8.float() / 255 * 2 - 1, p)
    return float((theirs - ours).abs().max())


def forward_and_grad(model, x, p, seed):
    x = x.clone().requires_grad_(True)
    pixels = preprocess(x, p)
    logits = model(pixel_values=pixels).logits
    (grad,) = torch.autograd.grad((logits * seed).sum(), x)
    return pixels.detach(), logits.detach(), grad


def main():
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(2)
    from safetensors.torch import save_file
    from transformers import ViTForImageClassification

    labels = build()
    check_resize_taps()
    p = processor_config()
    assert p["image_processor_type"] == "ViTImageProcessor" and p["resample"] == 2, p
    model = ViTForImageClassification.from_pretrained(MODEL).eval()
    assert [model.config.id2label[i] for i in range(8)] == labels

    g = torch.Generator().manual_seed(SEED_IMAGES)
    images = torch.rand(2, 3, 40, 48, generator=g) * 2 - 1
    small = torch.rand(1, 3, 20, 28, generator=g) * 2 - 1
    g = torch.Generator().manual_seed(SEED_GRAD)
    seed, small_seed = torch.randn(2, 8, generator=g), torch.randn(1, 8, generator=g)
    pixels, logits, grad = forward_and_grad(model, images, p, seed)
    _, small_logits, small_grad = forward_and_grad(model, small, p, small_seed)
    emoset = torch.softmax(logits, -1)[:, [labels.index(e) for e in EMOSET]]

    # The float32 reference against a float64 rerun: how exact the fixture itself is.
    model64 = ViTForImageClassification.from_pretrained(MODEL).double().eval()
    x64 = images.double().requires_grad_(True)
    logits64 = model64(pixel_values=preprocess(x64, p, torch.float64)).logits
    (grad64,) = torch.autograd.grad((logits64 * seed.double()).sum(), x64)
    rel_logits = float((logits.double() - logits64).abs().max() / logits64.abs().max())
    rel_grad = float((grad.double() - grad64).abs().max() / grad64.abs().max())
    gap = pil_backend_gap(images, p)
    print(f"id2label: {labels}")
    print(f"logits {logits.numpy().round(3).tolist()}")
    print(f"EmoSet-order probabilities {emoset.numpy().round(3).tolist()}")
    print(f"float32 vs float64: logits {rel_logits:.1e}, input gradient {rel_grad:.1e} (relative to max)")
    print(f"ViTImageProcessorPil on the uint8 image vs the float path: max |diff| {gap:.4f} (normalised units)")

    info = {"generator": "tools/reference/build_tiny_vit.py", "model": "models/tiny-vit-emotion",
            "id2label": labels, "float32_vs_float64_logits": f"{rel_logits:.1e}",
            "float32_vs_float64_grad": f"{rel_grad:.1e}", "pil_backend_gap": f"{gap:.4f}"}
    tensors = {"images": images, "pixel_values": pixels, "logits": logits, "grad_seed": seed,
               "grad_images": grad, "emoset_probabilities": emoset, "small_images": small,
               "small_logits": small_logits, "small_grad_seed": small_seed, "small_grad_images": small_grad}
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, FIXTURE,
              metadata={"info": json.dumps(info, sort_keys=True)})
    for root in (MODEL,):
        for name in sorted(os.listdir(root)):
            print(f"{os.path.getsize(os.path.join(root, name)):>10}  {os.path.relpath(os.path.join(root, name), REPO)}")
    print(f"{os.path.getsize(FIXTURE):>10}  {os.path.relpath(FIXTURE, REPO)}")


if __name__ == "__main__":
    main()
