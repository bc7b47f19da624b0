"""Make the guide classifier read x̂0 the way the image looks: the step that produced the shipped
guide (models/miniworld/guide-vision + emotion-head.safetensors) from train.py's export.

MUSE's guide classifies the decoded x̂0 of every guided step, and x̂0 at t = 300…900 is a blurred
guess. The clean-trained head on the CLIP tower read those guesses at 33 % held-out accuracy, and
the emotion token found directions that raised its p(target) without changing the look (p(anger)
on one x̂0 at t = 881: 0.007 → 0.55 while the mean pixel value moved 0.42 → 0.48; token_reach.py).
Here a copy of the CLIP vision tower and the head are fine-tuned on clean training images and on
decoded x̂0 predictions (classifier-free guidance 7.5, the engine's default) at timesteps drawn
from --t-min…--t-max, labelled with their source image's emotion — the time-aware classifier of
classifier guidance, without the time input — and, with --adversarial EPS, on L2 PGD perturbations
of radius EPS of them (Madry et al. 2018): an adversarially robust classifier's input gradient
follows what the image looks like (Santurkar et al. 2019), so the token is steered toward the look
instead of toward features only the classifier sees. Then the linear head is refit on the tuned
tower's embeddings. The tuned tower is written to OUT/--tower-dir; it leaves clip-text's space, so
the spec names clip-vision as `classifier.prompt_tower` for s_t and CLIP score.

The shipped guide (TRAINING_LOG.txt, 2 December, 15 min on 1 thread):

    python tools/reference/miniworld/guide_head.py --out EXPORT --threads 1 --tune-tower 600 --adversarial 2 --tower-lr 2e-4

EXPORT is train.py's export (train.py --out), whose emotion-head.safetensors is still the
clean-trained head: the script starts from OUT/clip-vision and OUT/emotion-head.safetensors and
overwrites the head. Without --tune-tower only the head is refit, on clip-vision (tried on
2 December and not shipped).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPVisionModelWithProjection

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check as C  # noqa: E402
import train as T  # noqa: E402


def attack(tower, head, x, y, eps, steps, generator):
    """L2 PGD (Madry et al. 2018) from a random start: the perturbation of norm ≤ eps that most
    raises the loss, images kept in [0, 1]."""
    def norms(d):
        return d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)

    delta = torch.randn(x.shape, generator=generator)
    delta = delta / norms(delta) * eps * torch.rand(len(x), 1, 1, 1, generator=generator)
    for _ in range(steps):
        delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
        loss = F.cross_entropy(head(tower(pixel_values=T.clip_normalise(x + delta)).image_embeds), y)
        grad, = torch.autograd.grad(loss, delta)
        delta = delta.detach() + 2.5 * eps / steps * grad / norms(grad)
        delta = delta * (eps / norms(delta)).clamp(max=1)
    return (x + delta).clamp(0, 1).detach()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/miniworld-data")
    ap.add_argument("--out", required=True, help="a models/miniworld copy; its emotion-head is replaced")
    ap.add_argument("--images", type=int, default=4000, help="training images (each clean and as one x̂0)")
    ap.add_argument("--t-min", type=int, default=100)
    ap.add_argument("--t-max", type=int, default=950)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--steps", type=int, default=3000, help="full-batch AdamW steps on the head")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tune-tower", type=int, default=0, metavar="STEPS",
                    help="also fine-tune a copy of the clip-vision tower (batch 128, --tower-lr) for STEPS steps on "
                         "the same images, written to OUT/--tower-dir")
    ap.add_argument("--adversarial", type=float, default=0, metavar="EPS",
                    help="with --tune-tower: train on L2 PGD perturbations of radius EPS (pixels in [0,1]) so the "
                         "guide's gradient follows what the image looks like (robust models' gradients are "
                         "perceptually aligned)")
    ap.add_argument("--pgd-steps", type=int, default=3)
    ap.add_argument("--tower-lr", type=float, default=1e-4)
    ap.add_argument("--tower-dir", default="guide-vision",
                    help="folder under OUT the tuned tower is written to (clip-vision stays the CLIP pair's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    T.quiet()
    T.LOG = os.path.join(args.out, "TRAINING_LOG.txt")
    pipe, _, heads = C.load(args.out)
    _, w0, b0 = heads["guide"]
    tower = CLIPVisionModelWithProjection.from_pretrained(os.path.join(args.out, "clip-vision")).eval()
    tok, te, unet, vae = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae
    acp, sf = pipe.scheduler.alphas_cumprod, vae.config.scaling_factor
    v_pred = pipe.scheduler.config.prediction_type == "v_prediction"
    caps = json.load(open(os.path.join(args.data, "captions.json")))
    split = np.load(os.path.join(args.data, "split.npy"))
    labels = torch.from_numpy(np.load(os.path.join(args.data, "labels.npy")))
    images = np.load(os.path.join(args.data, "images.npy"), mmap_mode="r")
    rng = np.random.default_rng(5)
    train = np.sort(rng.choice(np.nonzero(~split)[0], args.images, replace=False))
    held = np.nonzero(split)[0][:1000]
    g = torch.Generator().manual_seed(9)
    t0 = time.time()

    def ids(texts):
        return tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids

    uncond = te(ids([""]))[0]

    @torch.no_grad()
    def pixels(idx, noisy):
        x = torch.from_numpy(np.asarray(images[idx])).permute(0, 3, 1, 2).float() / 255
        if noisy:
            z0 = vae.encode(x * 2 - 1).latent_dist.mean * sf
            t = torch.randint(args.t_min, args.t_max, (len(idx),), generator=g)
            a = acp[t].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * torch.randn(z0.shape, generator=g)
            ou = unet(zt, t, encoder_hidden_states=uncond.expand(len(idx), -1, -1)).sample
            oc = unet(zt, t, encoder_hidden_states=te(ids([caps[i] for i in idx]))[0]).sample
            o = ou + args.guidance * (oc - ou)
            x0 = a.sqrt() * zt - (1 - a).sqrt() * o if v_pred else (zt - (1 - a).sqrt() * o) / a.sqrt()
            x = (vae.decode(x0 / sf).sample.clamp(-1, 1) + 1) / 2
        return x

    px, lab = [], []
    for s in range(0, len(train), 250):
        for noisy in (False, True):
            px.append(pixels(train[s:s + 250], noisy))
            lab.append(labels[train[s:s + 250]])
    px, lab = torch.cat(px), torch.cat(lab)
    held_px = pixels(held, False), pixels(held, True)
    head = torch.nn.Linear(tower.config.projection_dim, 8)
    head.weight.data.copy_(w0)
    head.bias.data.copy_(b0)

    def embed(x):
        with torch.no_grad():
            return torch.cat([tower(pixel_values=T.clip_normalise(x[s:s + 500])).image_embeds
                              for s in range(0, len(x), 500)])

    def accuracy():
        with torch.no_grad():
            return tuple((head(embed(x)).argmax(-1) == labels[held]).float().mean().item() for x in held_px)

    before = accuracy()
    if args.tune_tower:
        tower.train()
        params = list(tower.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=args.tower_lr, weight_decay=0.01)
        g2 = torch.Generator().manual_seed(11)
        for step in range(args.tune_tower):
            i = torch.randint(0, len(px), (128,), generator=g2)
            x = px[i]
            if args.adversarial:
                x = attack(tower, head, x, lab[i], args.adversarial, args.pgd_steps, g2)
            loss = F.cross_entropy(head(tower(pixel_values=T.clip_normalise(x)).image_embeds), lab[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 100 == 0:
                print(f"tower step {step} loss {loss.item():.3f} ({time.time() - t0:.0f}s)", flush=True)
        tower.eval()
        tower.save_pretrained(os.path.join(args.out, args.tower_dir), safe_serialization=True)
    emb = embed(px)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(args.steps):
        loss = F.cross_entropy(head(emb), lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    T.save_head(head, os.path.join(args.out, "emotion-head.safetensors"))
    T.log(f"guide head refit (guide_head.py): {args.images} training images clean + as decoded x̂0 (CFG "
          f"{args.guidance}, t {args.t_min}–{args.t_max}), tower steps {args.tune_tower}, {args.steps} AdamW steps on "
          f"the head (tower: adversarial ε {args.adversarial}, lr {args.tower_lr}), train loss {loss.item():.3f}; "
          f"held-out accuracy clean / x̂0: before {before[0]:.3f} / {before[1]:.3f}, after {after[0]:.3f} / "
          f"{after[1]:.3f} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
