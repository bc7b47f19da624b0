#!/usr/bin/env python3
"""Check the trained miniature world as a user would (after train.py).

  samples.png        StableDiffusionPipeline (DDIM, --steps, --guidance) on held-out captions:
                     row pairs = two seeds; the last rows: one caption under changed conditions.
  data-examples.png  six data-set images per emotion (rows in EmoSet order).
  log (appended to models/miniworld/TRAINING_LOG.txt): what the guide classifier and the
                     evaluator say about the samples, and s_t — the cosine between the
                     clip-vision embedding of the step's decoded x̂0 and the clip-text embedding
                     of the prompt — at each of 50 DDIM steps for a few prompts, with the
                     engine's settle rule (|Δs_t| < 0.005 on 2 consecutive steps) applied to it.
  look-words.png     whether the UNet renders a look from words (what an emotion token can steer):
                     rows = emotions, columns = held-out content captions with two of that
                     emotion's LOOK_WORDS appended, last row without; logged: the evaluator's
                     accuracy and mean p(emotion) on them.
                     --looks-only runs just this part.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train as T  # noqa: E402
from make_data import LOOK_WORDS, write_examples  # noqa: E402

EMO = T.EMOTIONS


def load(out):
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from safetensors.torch import load_file
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(out, "sd"), torch_dtype=torch.float32,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    text = CLIPTextModelWithProjection.from_pretrained(os.path.join(out, "clip-text"), torch_dtype=torch.float32).eval()
    heads = {}
    # The guide's tower is guide-vision once guide_head.py has tuned it (the shipped set), else
    # the CLIP pair's clip-vision (a fresh train.py export).
    guide_dir = "guide-vision" if os.path.isdir(os.path.join(out, "guide-vision")) else "clip-vision"
    for name, tower_dir, head_file in (("guide", guide_dir, "emotion-head.safetensors"),
                                       ("evaluator", "evaluator-vision", "evaluator-head.safetensors")):
        tower = CLIPVisionModelWithProjection.from_pretrained(os.path.join(out, tower_dir)).eval()
        h = load_file(os.path.join(out, head_file))
        heads[name] = (tower, h["weight"], h["bias"])
    return pipe, text, heads


@torch.no_grad()
def classify(heads, x01):
    """x01 [B,3,64,64] in [0,1] → {name: probs [B,8]}; the preprocessing is only normalisation."""
    out = {}
    for name, (tower, w, b) in heads.items():
        e = tower(pixel_values=T.clip_normalise(x01)).image_embeds
        out[name] = torch.softmax(e @ w.T + b, -1)
    return out


@torch.no_grad()
def text_embed(pipe, text, prompt):
    ids = pipe.tokenizer([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return F.normalize(text(input_ids=ids).text_embeds, dim=-1)


@torch.no_grad()
def st_trace(pipe, text, heads, prompt, seed, steps=50, guidance=7.5):
    """DDIM with CFG; per step: s_t from the VAE-decoded x̂0, s_t from the engine's latent-RGB
    preview, the cosine of x̂0's image embedding with the final image's, p(guide argmax)."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(steps)
    vae, unet = pipe.vae, pipe.unet
    sf = vae.config.scaling_factor
    ids = pipe.tokenizer([prompt, ""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    ctx = pipe.text_encoder(ids)[0]
    te = text_embed(pipe, text, prompt)
    tower = heads["guide"][0]
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed))
    s_dec, s_rgb, embs, imgs = [], [], [], []
    for t in sched.timesteps:
        eps = unet(torch.cat([z, z]), t, encoder_hidden_states=ctx).sample
        e_c, e_u = eps.chunk(2)
        out = sched.step(e_u + guidance * (e_c - e_u), t, z)
        z = out.prev_sample
        x0 = out.pred_original_sample
        img = ((vae.decode(x0 / sf).sample.clamp(-1, 1) + 1) / 2)
        e = F.normalize(tower(pixel_values=T.clip_normalise(img)).image_embeds, dim=-1)
        embs.append(e)
        imgs.append(img)
        s_dec.append((e @ te.T).item())
        prev = torch.einsum("bchw,cd->bdhw", x0, T.LATENT_RGB).clamp(-1, 1)
        prev = F.interpolate((prev + 1) / 2, size=(64, 64), mode="bilinear", align_corners=False)
        er = F.normalize(tower(pixel_values=T.clip_normalise(prev)).image_embeds, dim=-1)
        s_rgb.append((er @ te.T).item())
    final = embs[-1]
    to_final = [(e @ final.T).item() for e in embs]
    pix = [(im - imgs[-1]).abs().mean().item() for im in imgs]
    return np.array(s_dec), np.array(s_rgb), np.array(to_final), np.array(pix)


def settle_step(s, delta=0.005, m=2, min_start=0.1, latest=0.5):
    n = len(s)
    count = 0
    for i in range(1, n):
        count = count + 1 if abs(s[i] - s[i - 1]) < delta else 0
        if count >= m and i >= round(min_start * n):
            return i, "settled"
        if i >= round(latest * n):
            return i, "latest start"
    return None, "never"


@torch.no_grad()
def look_words_check(pipe, heads, full, split, out, steps, guidance, rescale, data_luma, vae_luma, columns=8):
    """Content-only held-out captions (their look phrase, if any, removed), each with two look
    words of every emotion; one seed per column, shared by all rows."""
    looks = {w for ws in LOOK_WORDS.values() for w in ws}
    content = []
    for i in np.nonzero(split)[0]:
        parts = full[i].split(", ")
        while parts and parts[-1] in looks:
            parts.pop()
        if parts and len(", ".join(parts)) < 100:
            content.append(", ".join(parts))
        if len(content) == columns:
            break
    t0 = time.time()

    def sample(prompts):
        g = [torch.Generator().manual_seed(500 + j) for j in range(len(prompts))]
        return pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, height=64, width=64,
                     generator=g, output_type="np", guidance_rescale=rescale).images

    rows, hits, ptarget, luma = [], [], [], []
    plain = sample(content)
    for e, name in enumerate(EMO):
        imgs = sample([f"{c}, {LOOK_WORDS[name][0]}, {LOOK_WORDS[name][2]}" for c in content])
        rows.append(np.concatenate(list(imgs), 1))
        p = classify(heads, torch.from_numpy(imgs).permute(0, 3, 1, 2).float())["evaluator"]
        hits.append((p.argmax(-1) == e).float().mean().item())
        ptarget.append(p[:, e].mean().item())
        luma.append(float(imgs.mean()))
    rows.append(np.concatenate(list(plain), 1))
    grid = (np.concatenate(rows, 0) * 255 + 0.5).clip(0, 255).astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(
        os.path.join(out, "look-words.png"), optimize=True)
    T.log(f"look words: DDIM {steps} steps, guidance {guidance}, {columns} held-out content captions × 8 emotions "
          f"(two look words each; last row: no look words): evaluator accuracy {np.mean(hits):.2f} "
          f"(per emotion " + " ".join(f"{EMO[e][:4]} {h:.2f}" for e, h in enumerate(hits)) + "), mean p(emotion) "
          f"{np.mean(ptarget):.3f} (0.125 if the words changed nothing: the eight p(e) of one image sum to 1); "
          f"look-words.png ({time.time() - t0:.0f}s)")
    T.log("look words: mean pixel value (0–1) per emotion, generated / held-out data (64 each) / their VAE "
          "reconstruction: " + " ".join(f"{EMO[e][:4]} {luma[e]:.2f}/{data_luma[e]:.2f}/{vae_luma[e]:.2f}"
                                          for e in range(8))
          + (f"; guidance_rescale {rescale}" if rescale else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/miniworld-data")
    ap.add_argument("--out", default=os.path.join(T.REPO, "models", "miniworld"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=6.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--guidance-rescale", type=float, default=0.0, help="diffusers' guidance_rescale (look words)")
    ap.add_argument("--looks-only", action="store_true", help="only the look-words check")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    T.quiet()
    T.LOG = os.path.join(args.out, "TRAINING_LOG.txt")
    t0 = time.time()
    pipe, text, heads = load(args.out)
    full = json.load(open(os.path.join(args.data, "full_captions.json")))
    split = np.load(os.path.join(args.data, "split.npy"))
    labels = np.load(os.path.join(args.data, "labels.npy"))
    images = np.load(os.path.join(args.data, "images.npy"), mmap_mode="r")
    held = np.nonzero(split)[0][:2000]
    data_luma, vae_luma = [], []
    for e in range(8):
        x = torch.from_numpy(np.asarray(images[held[labels[held] == e][:64]])).permute(0, 3, 1, 2).float() / 255
        data_luma.append(x.mean().item())
        with torch.no_grad():  # what the VAE alone keeps of the brightness
            r = pipe.vae.decode(pipe.vae.encode(x * 2 - 1).latent_dist.mean).sample.clamp(-1, 1)
        vae_luma.append(((r + 1) / 2).mean().item())
    look_words_check(pipe, heads, full, split, args.out, args.steps, args.guidance, args.guidance_rescale,
                     data_luma, vae_luma)
    if args.looks_only:
        return
    write_examples(np.asarray(images[:2000]), labels[:2000], os.path.join(args.out, "data-examples.png"))
    T.log("check: wrote data-examples.png (rows: " + ", ".join(EMO) + ")")

    val = [i for i in np.nonzero(split)[0] if len(full[i]) < 110][:8]
    prompts = [full[i] for i in val]
    base = "a red house in the middle, two trees, by a lake, below hills, the sun on the left"
    variants = [base + ", at noon, clear sky, summer", base + ", at night, storm, autumn",
                base + ", at dusk, rain, winter", base + ", at sunset, clear sky, summer",
                base + ", in the morning, fog, autumn", base + ", at dawn, snow, winter",
                base + ", in the afternoon, cloudy, spring", ""]
    rows = []
    all_imgs = []
    T.log(f"check: StableDiffusionPipeline, DDIM {args.steps} steps, guidance {args.guidance}, 64×64; "
          f"held-out captions (rows 1–2: seeds 0, 1):")
    for j, p in enumerate(prompts):
        T.log(f"  col {j}: {p!r} (its data image's label: {EMO[labels[val[j]]]})")
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        out = pipe(prompts, num_inference_steps=args.steps, guidance_scale=args.guidance, height=64, width=64,
                   generator=g, output_type="np").images
        rows.append(np.concatenate(list(out), 1))
        all_imgs.append(out)
    T.log("  rows 3–4: one caption under changed conditions (seeds 0, 1): " + " | ".join(
        v.replace(base, "…") or "''" for v in variants))
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        out = pipe(variants, num_inference_steps=args.steps, guidance_scale=args.guidance, height=64, width=64,
                   generator=g, output_type="np").images
        rows.append(np.concatenate(list(out), 1))
        all_imgs.append(out)
    grid = (np.concatenate(rows, 0) * 255 + 0.5).clip(0, 255).astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(
        os.path.join(args.out, "samples.png"), optimize=True)
    x = torch.from_numpy(np.concatenate(all_imgs)).permute(0, 3, 1, 2).float()
    probs = classify(heads, x)
    for name, p in probs.items():
        am = p.argmax(-1)
        T.log(f"check: {name} classifier on the 32 samples: argmax per row "
              + " / ".join(" ".join(EMO[k][:4] for k in am[r * 8:(r + 1) * 8].tolist()) for r in range(4))
              + f"; mean max prob {p.max(-1).values.mean():.2f}")
    agree = (probs["guide"].argmax(-1) == probs["evaluator"].argmax(-1)).float().mean().item()
    T.log(f"check: guide and evaluator agree on {agree:.2f} of the samples")
    T.log(f"check: samples.png written ({time.time() - t0:.0f}s)")

    # s_t during sampling
    t1 = time.time()
    st_prompts = [prompts[0], prompts[1], variants[0], variants[1]]
    T.log("s_t check: DDIM 50 steps, guidance 7.5; s_t = cos(clip-vision(decoded x̂0), clip-text(prompt)); "
          "s_t(rgb) = the same on the engine's default latent-RGB preview; to_final = cos of x̂0's image "
          "embedding with the final image's; settle = the engine's rule |Δs_t|<0.005 on 2 steps, "
          "min start 10 %, latest 50 % (step indices from 0); pix_to_final = mean |decoded x̂0 − final image|")
    for k, p in enumerate(st_prompts):
        s_dec, s_rgb, to_final, pix = st_trace(pipe, text, heads, p, seed=100 + k)
        T.log(f"  prompt {p!r} seed {100 + k}")
        for label, arr in (("s_t(decoded)", s_dec), ("s_t(rgb)    ", s_rgb), ("to_final    ", to_final),
                           ("pix_to_final", pix)):
            T.log(f"    {label} " + " ".join(f"{v:.3f}" for v in arr))
        for label, arr in (("decoded", s_dec), ("rgb", s_rgb)):
            d = np.abs(np.diff(arr))
            st, why = settle_step(arr)
            T.log(f"    {label}: |Δs_t| mean over steps 1–10 {d[:10].mean():.4f}, 11–25 {d[10:25].mean():.4f}, "
                  f"26–49 {d[25:].mean():.4f}; rule → guidance starts at step {st} ({why}); "
                  f"to_final at step 5/10/25: {to_final[4]:.3f}/{to_final[9]:.3f}/{to_final[24]:.3f}; mean |x̂0 − final| "
                  f"(pixels in [0,1]) at step 1/5/10/25: {pix[0]:.3f}/{pix[4]:.3f}/{pix[9]:.3f}/{pix[24]:.3f}")
    T.log(f"s_t check done ({time.time() - t1:.0f}s)")


if __name__ == "__main__":
    main()
