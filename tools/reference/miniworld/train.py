#!/usr/bin/env python3
"""Train the miniature world's models on make_data.py's images and write them in the real
layouts under models/miniworld/ (see tools/reference/README.md, "Miniature world").

Phases (each logged with losses and wall times to --log):
  clip      CLIPTextModelWithProjection + CLIPVisionModelWithProjection (image_size 64),
            trained contrastively on the full captions, jointly with the guide emotion head
            Linear(D→8) on the vision tower's unnormalised image_embeds (cross-entropy on the
            labels). The tower is therefore fine-tuned for emotion as well; the same tower is
            the guide classifier's tower and the s_t tower.
  vae       AutoencoderKL, 3 levels (downsample factor 4 → 4×16×16 latents), L1 + MSE + small
            KL; scaling_factor = 1 / std of the training latents (as SD's 0.18215 was chosen).
  unet      UNet2DConditionModel on the scaled VAE latents, conditioned on the (frozen) CLIP
            text tower's last hidden state; DDPM v-prediction objective (--unet-prediction; on SD 1.5's
            epsilon objective the UNet learned to ignore look words, see train_unet) with its schedule
            (scaled_linear 0.00085–0.012, 1000 steps); the data set's ~10 % empty captions are
            the caption dropout for classifier-free guidance; EMA weights are exported.
  eval      a second classifier (the evaluator): CLIPVisionModelWithProjection with another
            patch size / width / depth / seed, trained directly on the labels with its own head.
  export    everything under --out (float16 for the SD parts).

Usage:  python tools/reference/miniworld/train.py [--data /tmp/miniworld-data] [--out models/miniworld]
"""
import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.dirname(HERE))

from build_tiny_models import BOS_ID, EOS_ID, TINY_VOCAB, add_text_model_prefix  # noqa: E402

EMOTIONS = ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
TEXT_HIDDEN = 64
PROJ = 64
# SD 1.x latent → RGB factors (Sources/MUSE/PromptScorer.swift, LatentPreview.sd15Factors)
LATENT_RGB = torch.tensor([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
                           [-0.2120, -0.2616, -0.7177]])

LOG = None


def log(msg):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if LOG:
        with open(LOG, "a") as f:
            f.write(line + "\n")


def quiet():
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()


def progress(step, total, t0, cap_min):
    """Fraction of a phase done: by steps, or by wall time against the phase's time cap,
    whichever is further (the machine is shared, so the step rate is not predictable; the
    cosine schedule then still decays to its end when the cap stops the phase)."""
    return max(step / total, (time.time() - t0) / (cap_min * 60))


def lr_at(step, p, base, warmup=100):
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr


def clip_normalise(x01):
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x01 - mean) / std


def to01(images_u8):
    return torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 255.0


# ----------------------------------------------------------------------------- configs

def text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=TINY_VOCAB, hidden_size=TEXT_HIDDEN, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=EOS_ID, projection_dim=PROJ)


def vision_config(patch=8, hidden=64, layers=4, heads=4, inter=256, proj=PROJ):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=64, patch_size=patch, num_channels=3, hidden_size=hidden, intermediate_size=inter,
        num_hidden_layers=layers, num_attention_heads=heads, projection_dim=proj, hidden_act="quick_gelu",
        layer_norm_eps=1e-5)


def vae_model():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 64), layers_per_block=1,
        act_fn="silu", latent_channels=4, norm_num_groups=16, sample_size=64, scaling_factor=0.18215,
        mid_block_add_attention=False)


def unet_model(channels):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
        freq_shift=0, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn", up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                                                    "UpBlock2D"),
        block_out_channels=channels, layers_per_block=1, downsample_padding=1, mid_block_scale_factor=1,
        act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=TEXT_HIDDEN, attention_head_dim=4)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------- data

class Data:
    def __init__(self, root, tok):
        self.images = np.load(os.path.join(root, "images.npy"))
        self.labels = torch.from_numpy(np.load(os.path.join(root, "labels.npy")))
        self.split = np.load(os.path.join(root, "split.npy"))
        self.captions = json.load(open(os.path.join(root, "captions.json")))
        self.full = json.load(open(os.path.join(root, "full_captions.json")))
        self.train_idx = np.nonzero(~self.split)[0]
        self.val_idx = np.nonzero(self.split)[0]
        uniq = sorted(set(self.captions) | set(self.full))
        self.uniq = uniq
        self.cap_index = {c: i for i, c in enumerate(uniq)}
        ids = tok(uniq, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        lens = (ids != EOS_ID).sum(1) + 1
        self.ids = ids
        self.used_ci = torch.tensor([self.cap_index[c] for c in self.captions])
        self.full_ci = torch.tensor([self.cap_index[c] for c in self.full])
        log(f"data: {len(self.images)} images ({len(self.train_idx)} train, {len(self.val_idx)} held-out), "
            f"{len(uniq)} unique captions, tokens per caption max {lens.max().item()} mean {lens.float().mean():.1f}, "
            f"empty captions {sum(1 for c in self.captions if not c)}, "
            f"labels per emotion {torch.bincount(self.labels, minlength=8).tolist()}")

    def batch_images(self, idx, flip_rng=None):
        x = to01(self.images[idx])
        if flip_rng is not None:
            flip = torch.from_numpy(flip_rng.random(len(idx)) < 0.5)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return x


# ----------------------------------------------------------------------------- phases

def accuracy_report(name, logits, labels):
    pred = logits.argmax(-1)
    acc = (pred == labels).float().mean().item()
    conf = torch.zeros(8, 8, dtype=torch.long)
    for t, p in zip(labels.tolist(), pred.tolist()):
        conf[t, p] += 1
    log(f"{name}: held-out top-1 accuracy {acc:.4f} ({(pred == labels).sum().item()}/{len(labels)})")
    log(f"{name}: confusion (rows = true, cols = predicted; order {', '.join(e[:4] for e in EMOTIONS)})")
    for e in range(8):
        row = conf[e]
        log(f"  {EMOTIONS[e]:>11}: " + " ".join(f"{v:4d}" for v in row.tolist())
            + f"   recall {row[e].item() / max(1, row.sum().item()):.2f}")
    return acc


def train_clip(data, args, rng):
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    t0 = time.time()
    torch.manual_seed(args.seed + 1)
    text = CLIPTextModelWithProjection(text_config())
    vision = CLIPVisionModelWithProjection(vision_config())
    head = torch.nn.Linear(PROJ, 8)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = list(text.parameters()) + list(vision.parameters()) + list(head.parameters()) + [logit_scale]
    opt = torch.optim.AdamW(params, lr=args.clip_lr, weight_decay=0.05)
    log(f"clip: text {nparams(text)} params, vision {nparams(vision)} params, head {nparams(head)}; "
        f"{args.clip_steps} steps of batch {args.clip_batch}, lr {args.clip_lr}, emotion CE weight {args.clip_ce}")
    text.train()
    vision.train()
    tr = data.train_idx
    step = -1
    while True:
        step += 1
        p = progress(step, args.clip_steps, t0, args.clip_max_min)
        if p >= 1:
            break
        set_lr(opt, lr_at(step, p, args.clip_lr))
        idx = np.sort(rng.choice(tr, args.clip_batch, replace=False))
        ci = data.full_ci[idx]
        ids = data.ids[ci]
        ids = ids[:, : int((ids != EOS_ID).sum(1).max()) + 1]  # causal mask: pooled output unchanged
        x = clip_normalise(data.batch_images(idx))
        t_emb = text(input_ids=ids).text_embeds
        v_emb = vision(pixel_values=x).image_embeds
        logits_cls = head(v_emb)
        tn, vn = F.normalize(t_emb, dim=-1), F.normalize(v_emb, dim=-1)
        logits = logit_scale.exp().clamp(max=100) * vn @ tn.T
        # identical captions in a batch are all positives
        same = (ci[:, None] == ci[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        l_clip = 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.T.log_softmax(1)).sum(1).mean())
        l_ce = F.cross_entropy(logits_cls, data.labels[idx])
        loss = l_clip + args.clip_ce * l_ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == args.clip_steps - 1:
            acc = (logits_cls.argmax(-1) == data.labels[idx]).float().mean().item()
            r1 = (logits.argmax(1) == torch.arange(len(idx))).float().mean().item()
            log(f"clip step {step:5d}  loss {loss.item():.4f}  contrastive {l_clip.item():.4f}  ce {l_ce.item():.4f}  "
                f"batch acc {acc:.3f}  i->t top1 {r1:.3f}  scale {logit_scale.exp().item():.1f}  "
                f"{time.time() - t0:.0f}s")
    text.eval()
    vision.eval()
    log(f"clip: trained {step} steps in {time.time() - t0:.0f}s")
    return text, vision, head


@torch.no_grad()
def eval_clip(data, text, vision, head):
    vi = data.val_idx
    embs, logits = [], []
    for s in range(0, len(vi), 500):
        e = vision(pixel_values=clip_normalise(data.batch_images(vi[s:s + 500]))).image_embeds
        embs.append(e)
        logits.append(head(e))
    v = torch.cat(embs)
    acc = accuracy_report("guide classifier (clip-vision + emotion-head)", torch.cat(logits), data.labels[vi])
    # retrieval among 1000 held-out pairs (full captions)
    sub = vi[:1000]
    ci = data.full_ci[sub]
    t = torch.cat([text(input_ids=data.ids[ci[s:s + 250], :64]).text_embeds for s in range(0, len(sub), 250)])
    sim = F.normalize(v[:1000], dim=-1) @ F.normalize(t, dim=-1).T
    same = ci[:, None] == ci[None, :]
    hit = same[torch.arange(len(sub)), sim.argmax(1)].float().mean().item()
    top5 = same.gather(1, sim.topk(5, dim=1).indices).any(1).float().mean().item()
    pos = sim.diag().mean().item()
    neg = sim[~same].mean().item()
    log(f"clip: held-out image→text retrieval among 1000: top-1 {hit:.3f}, top-5 {top5:.3f}; "
        f"mean cosine matched {pos:.3f} vs unmatched {neg:.3f}")
    return acc


def train_vae(data, args, rng):
    t0 = time.time()
    torch.manual_seed(args.seed + 2)
    vae = vae_model()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    log(f"vae: {nparams(vae)} params, factor 4 (4×16×16 latents); {args.vae_steps} steps of batch {args.vae_batch} "
        f"random {args.vae_crop}×{args.vae_crop} crops, "
        f"lr {args.vae_lr}, loss L1 + MSE + {args.vae_kl:g}·KL(sum over latent) + {args.vae_preview:g}·MSE(latent-RGB "
        f"preview of the standardised latent, 4×4-pooled image)")
    vae.train()
    gen = torch.Generator().manual_seed(args.seed + 3)
    step = -1
    while True:
        step += 1
        p = progress(step, args.vae_steps, t0, args.vae_max_min)
        if p >= 1:
            break
        set_lr(opt, lr_at(step, p, args.vae_lr))
        idx = rng.choice(data.train_idx, args.vae_batch, replace=False)
        x = data.batch_images(idx, flip_rng=rng) * 2 - 1
        c = args.vae_crop  # fully convolutional (no mid attention): train on random crops
        if c < 64:
            offs = rng.integers(0, (64 - c) // 4 + 1, size=(len(idx), 2)) * 4
            x = torch.stack([x[i, :, oy:oy + c, ox:ox + c] for i, (oy, ox) in enumerate(offs.tolist())])
        post = vae.encode(x).latent_dist
        z = post.sample(generator=gen)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        kl = post.kl().mean()
        # The engine's default s_t preview maps the *scaled* latent to RGB with SD 1.5's fixed
        # latent-RGB factors; tie this latent space to them (on the latent standardised as the
        # scaling factor will) so that preview shows the image here too.
        mu = post.mean
        prev = torch.einsum("bchw,cd->bdhw", mu / mu.std().detach(), LATENT_RGB)
        l_prev = ((prev - F.avg_pool2d(x, 4)) ** 2).mean()
        loss = l1 + mse + args.vae_kl * kl + args.vae_preview * l_prev
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.vae_steps - 1:
            log(f"vae step {step:5d}  loss {loss.item():.4f}  l1 {l1.item():.4f}  mse {mse.item():.5f}  "
                f"preview mse {l_prev.item():.4f}  "
                f"kl {kl.item():.1f}  {time.time() - t0:.0f}s")
    vae.eval()
    log(f"vae: trained {step} steps in {time.time() - t0:.0f}s")
    return vae


def finetune_decoder(data, vae, lat, args, rng):
    """As SD's ft-MSE decoder: encoder frozen (so the UNet's latents stay valid), decoder
    trained further on the stored posterior-mean latents, 8×8 latent crops ↔ 32×32 pixel crops."""
    t0 = time.time()
    dec = [vae.post_quant_conv, vae.decoder]
    params = [p for m in dec for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.dec_lr, weight_decay=0.0)
    log(f"decoder: fine-tuning {sum(p.numel() for p in params)} decoder params on the frozen encoder's latents, "
        f"batch {args.vae_batch}, {4 * args.dec_crop}×{4 * args.dec_crop} pixel crops, lr {args.dec_lr}, L1 + MSE, "
        f"until {args.dec_max_min} min")
    for m in dec:
        m.train()
    step = -1
    while True:
        step += 1
        p = progress(step, 10 ** 9, t0, args.dec_max_min)
        if p >= 1:
            break
        set_lr(opt, lr_at(step, p, args.dec_lr, warmup=50))
        idx = rng.choice(data.train_idx, args.vae_batch, replace=False)
        x = data.batch_images(idx) * 2 - 1
        c = args.dec_crop  # latent crop side (16 = whole images: GroupNorm then sees full-image statistics)
        offs = rng.integers(0, 16 - c + 1, size=(len(idx), 2))
        xs = torch.stack([x[i, :, 4 * oy:4 * oy + 4 * c, 4 * ox:4 * ox + 4 * c] for i, (oy, ox) in enumerate(offs.tolist())])
        zs = torch.stack([lat[idx[i], :, oy:oy + c, ox:ox + c] for i, (oy, ox) in enumerate(offs.tolist())])
        rec = vae.decode(zs).sample
        l1 = (rec - xs).abs().mean()
        mse = ((rec - xs) ** 2).mean()
        loss = l1 + mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0:
            log(f"decoder step {step:5d}  loss {loss.item():.4f}  l1 {l1.item():.4f}  mse {mse.item():.5f}  "
                f"{time.time() - t0:.0f}s")
    vae.eval()
    log(f"decoder: trained {step} steps in {time.time() - t0:.0f}s")
    return vae


@torch.no_grad()
def reconstruction_report(data, vae, lat, what):
    vi = data.val_idx[:1000]
    rec = torch.cat([vae.decode(lat[vi[s:s + 250]]).sample for s in range(0, len(vi), 250)]).clamp(-1, 1)
    x = to01(data.images[vi]) * 2 - 1
    mse = ((rec - x) ** 2).mean().item()
    log(f"{what}: held-out reconstruction MSE {mse:.5f} ([-1,1] range), PSNR {10 * math.log10(4 / mse):.2f} dB")


@torch.no_grad()
def encode_latents(data, vae):
    t0 = time.time()
    out = []
    for s in range(0, len(data.images), 500):
        x = to01(data.images[s:s + 500]) * 2 - 1
        out.append(vae.encode(x).latent_dist.mean)
    lat = torch.cat(out)
    std = lat[torch.from_numpy(data.train_idx)].std().item()
    vi = data.val_idx[:1000]
    rec = torch.cat([vae.decode(lat[vi[s:s + 250]]).sample for s in range(0, len(vi), 250)]).clamp(-1, 1)
    x = to01(data.images[vi]) * 2 - 1
    mse = ((rec - x) ** 2).mean().item()
    psnr = 10 * math.log10(4 / mse)
    prev = torch.einsum("bchw,cd->bdhw", lat[vi] / std, LATENT_RGB).clamp(-1, 1)
    prev_mse = ((prev - F.avg_pool2d(x, 4)) ** 2).mean().item()
    log(f"vae: latent-RGB preview (SD 1.5 factors on the scaled latent) vs the 4×4-pooled image: MSE {prev_mse:.4f}")
    log(f"vae: latents of all images encoded (posterior mean) in {time.time() - t0:.0f}s; latent mean "
        f"{lat.mean().item():.3f} std {std:.4f} → scaling_factor {1 / std:.5f}; held-out reconstruction "
        f"MSE {mse:.5f} ([-1,1] range), PSNR {psnr:.2f} dB")
    return lat, 1 / std


@torch.no_grad()
def text_states(data, text_f16_roundtrip):
    t0 = time.time()
    hs = []
    for s in range(0, len(data.uniq), 500):
        hs.append(text_f16_roundtrip(input_ids=data.ids[s:s + 500]).last_hidden_state.half())
    hs = torch.cat(hs)
    log(f"unet: text hidden states for {len(data.uniq)} unique captions in {time.time() - t0:.0f}s")
    return hs


def train_unet(data, lat, scale, hs, args, rng, init=None, lr=None, cap=None, warmup=200):
    """init: a state dict to continue from (the 'unet2' phase: more minutes at a lower lr)."""
    from diffusers import DDPMScheduler

    t0 = time.time()
    torch.manual_seed(args.seed + 4 + (0 if init is None else 1))
    unet = unet_model(tuple(args.unet_channels))
    if init is not None:
        unet.load_state_dict(init)
    lr = lr or args.unet_lr
    cap = cap or args.unet_max_min
    ema = unet_model(tuple(args.unet_channels))
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    # zero terminal SNR (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
    # flawed"): SD's schedule keeps √ᾱ_999 = 0.068 of the image at the last step, which on 16×16
    # latents is as large as the noise's own spatial mean (1/16), so the UNet learns to read an
    # image's brightness and grade from z_T — and at sampling, where z_T is pure noise, to draw
    # them from the noise, not the caption. Run 5 tested it as the reason fear and sadness come
    # out mid-grey: it was not (TRAINING_LOG.txt), so the shipped UNet keeps SD's schedule.
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          prediction_type=args.unet_prediction, rescale_betas_zero_snr=args.unet_zero_snr)
    v_pred = args.unet_prediction == "v_prediction"
    assert v_pred or not args.unet_zero_snr, "zero terminal SNR needs v_prediction (ε cannot give x̂0 at ᾱ = 0)"
    acp = sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    log(f"unet: {nparams(unet)} params, channels {args.unet_channels}; {args.unet_steps} steps of batch "
        f"{args.unet_batch}, lr {lr}, EMA {args.ema}, until {cap} min{'' if init is None else ', continuing'}; "
        f"{args.unet_prediction} objective, min-SNR {args.unet_min_snr}, scaled_linear 0.00085–0.012"
        f"{', zero terminal SNR' if args.unet_zero_snr else ''}, noise offset {args.unet_noise_offset}")
    unet.train()
    z_all = lat * scale
    gen = torch.Generator().manual_seed(args.seed + 5)
    run = None
    step = -1
    while True:
        step += 1
        p = progress(step, args.unet_steps, t0, cap)
        if p >= 1:
            break
        set_lr(opt, lr_at(step, p, lr, warmup=warmup))
        idx = torch.from_numpy(rng.choice(data.train_idx, args.unet_batch, replace=False))
        z0 = z_all[idx]
        # no horizontal flips here: captions say "on the left", and a flipped latent under the same
        # caption teaches the UNet to ignore positions (the first run did that)
        ctx = hs[data.used_ci[idx]].float()
        noise = torch.randn(z0.shape, generator=gen)
        if args.unet_noise_offset > 0:  # "offset noise": a per-channel constant, so z_T's mean is noise too
            noise = noise + args.unet_noise_offset * torch.randn(z0.shape[:2] + (1, 1), generator=gen)
        t = torch.randint(0, 1000, (len(idx),), generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        pred = unet(zt, t, encoder_hidden_states=ctx).sample
        # v = √ᾱ·ε − √(1−ᾱ)·z0 (Salimans & Ho 2022). In x̂0 terms the epsilon loss weighs a
        # sample by SNR and the v loss by SNR + 1: at t ≥ 600 (SNR < 0.2), where z_t no longer
        # shows the global look and only the caption can say it, v weighs x̂0 6× (t = 600) to
        # 70× (t = 900) more. The epsilon runs (1 December) learned to ignore the look words.
        target = a.sqrt() * noise - (1 - a).sqrt() * z0 if v_pred else noise
        if args.unet_min_snr > 0:
            # min-SNR-γ weighting (Hang et al. 2023): x̂0 weight min(SNR, γ) per sample
            snr = (a / (1 - a)).view(-1)
            w = torch.clamp(snr, max=args.unet_min_snr) / (snr + 1 if v_pred else snr)
            loss = (w * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
        else:
            loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step)) if init is None else args.ema
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if step % 200 == 0 or step == args.unet_steps - 1:
            log(f"unet step {step:6d}  loss {loss.item():.4f}  running {run:.4f}  lr {opt.param_groups[0]['lr']:.2e}  "
                f"{time.time() - t0:.0f}s")
    for be, b in zip(ema.buffers(), unet.buffers()):
        be.copy_(b)
    ema.eval()
    # held-out denoising loss at a few timesteps (EMA weights)
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        vi = torch.from_numpy(data.val_idx[:512])
        parts = []
        for tt in (50, 250, 500, 750, 950, 999):
            z0 = z_all[vi]
            noise = torch.randn(z0.shape, generator=g)
            a = acp[tt]
            zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
            t = torch.full((len(vi),), tt)
            ctx = hs[data.used_ci[vi]].float()
            pc = ema(zt, t, encoder_hidden_states=ctx).sample
            pu = ema(zt, t, encoder_hidden_states=hs[data.cap_index[""]].float().expand(len(vi), -1, -1)).sample
            # x̂0 error, comparable across prediction types (what the caption adds is cond vs uncond)
            def x0(o, a=a, zt=zt):
                return a.sqrt() * zt - (1 - a).sqrt() * o if v_pred else (zt - (1 - a).sqrt() * o) / a.sqrt()
            parts.append(f"t={tt}: cond {F.mse_loss(x0(pc), z0).item():.4f} uncond {F.mse_loss(x0(pu), z0).item():.4f}")
        log("unet (EMA): held-out x̂0 MSE (scaled latents, variance ≈ 1)  " + "; ".join(parts))
    log(f"unet: trained {step} steps in {time.time() - t0:.0f}s")
    return ema


def train_evaluator(data, args, rng):
    from transformers import CLIPVisionModelWithProjection

    t0 = time.time()
    torch.manual_seed(args.seed + 100)  # evaluator: its own seeds
    # projection 64 like clip-text's, so the engine accepts it with --clip-text like the guide tower
    cfg = vision_config(patch=16, hidden=96, layers=3, heads=3, inter=192, proj=PROJ)
    tower = CLIPVisionModelWithProjection(cfg)
    head = torch.nn.Linear(PROJ, 8)
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.eval_lr, weight_decay=0.05)
    log(f"evaluator: CLIPVisionModelWithProjection patch 16, hidden 96, 3 layers, projection {PROJ} ({nparams(tower)} "
        f"params) + Linear({PROJ}→8); {args.eval_steps} steps of batch {args.eval_batch}, lr {args.eval_lr}, seed "
        f"{args.seed + 100}, random horizontal flips")
    tower.train()
    erng = np.random.default_rng(args.seed + 101)
    step = -1
    while True:
        step += 1
        p = progress(step, args.eval_steps, t0, args.eval_max_min)
        if p >= 1:
            break
        set_lr(opt, lr_at(step, p, args.eval_lr))
        idx = erng.choice(data.train_idx, args.eval_batch, replace=False)
        x = clip_normalise(data.batch_images(idx, flip_rng=erng))
        logits = head(tower(pixel_values=x).image_embeds)
        loss = F.cross_entropy(logits, data.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == args.eval_steps - 1:
            acc = (logits.argmax(-1) == data.labels[idx]).float().mean().item()
            log(f"evaluator step {step:5d}  ce {loss.item():.4f}  batch acc {acc:.3f}  {time.time() - t0:.0f}s")
    tower.eval()
    with torch.no_grad():
        vi = data.val_idx
        logits = torch.cat([head(tower(pixel_values=clip_normalise(data.batch_images(vi[s:s + 500])))
                                 .image_embeds) for s in range(0, len(vi), 500)])
    acc = accuracy_report("evaluator (evaluator-vision + evaluator-head)", logits, data.labels[vi])
    log(f"evaluator: trained {step} steps in {time.time() - t0:.0f}s")
    return tower, head, acc


# ----------------------------------------------------------------------------- export

def save_processor(folder):
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, image_mean=CLIP_MEAN,
                       image_std=CLIP_STD).save_pretrained(folder)


def save_head(head, path):
    from safetensors.torch import save_file

    # classes: the rows' emotions (EmoSet order); features: the head reads unnormalised image_embeds.
    save_file({"weight": head.weight.detach().float().contiguous(), "bias": head.bias.detach().float().contiguous()},
              path, metadata={"format": "pt", "classes": "amusement,awe,contentment,excitement,anger,disgust,fear,sadness",
                              "features": "image_embeds"})


def sd_text_encoder(text):
    from transformers import CLIPTextModel

    cfg = text_config()
    te = CLIPTextModel(cfg)
    sd = {k.removeprefix("text_model."): v for k, v in text.state_dict().items() if not k.startswith("text_projection")}
    missing, unexpected = te.load_state_dict(sd, strict=False)
    assert not unexpected and not [m for m in missing if "position_ids" not in m], (missing, unexpected)
    return te.eval()


def export(out, tok_dir, text, vision, head, vae, scale, unet, ev_tower, ev_head, prediction, zero_snr):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    os.makedirs(out, exist_ok=True)
    sd_dir = os.path.join(out, "sd")
    vae.register_to_config(scaling_factor=float(round(scale, 5)))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction, rescale_betas_zero_snr=zero_snr,
                              # trailing: inference starts at t = 999, the step zero SNR trained for
                              timestep_spacing="trailing" if zero_snr else "leading")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tok_dir)
    pipe = StableDiffusionPipeline(vae=vae.to(torch.float16), text_encoder=sd_text_encoder(text).to(torch.float16),
                                   tokenizer=tok, unet=unet.to(torch.float16), scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if os.path.isdir(sd_dir):
        shutil.rmtree(sd_dir)
    pipe.save_pretrained(sd_dir, safe_serialization=True)
    shutil.rmtree(os.path.join(sd_dir, "tokenizer"))
    shutil.copytree(tok_dir, os.path.join(sd_dir, "tokenizer"))
    add_text_model_prefix(os.path.join(sd_dir, "text_encoder", "model.safetensors"))

    ct = os.path.join(out, "clip-text")
    if os.path.isdir(ct):
        shutil.rmtree(ct)
    text.to(torch.float16).save_pretrained(ct, safe_serialization=True)
    for name in os.listdir(tok_dir):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(ct, name))
    for folder, tower in ((os.path.join(out, "clip-vision"), vision), (os.path.join(out, "evaluator-vision"), ev_tower)):
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        tower.save_pretrained(folder, safe_serialization=True)  # float32 (small)
        save_processor(folder)
    save_head(head, os.path.join(out, "emotion-head.safetensors"))
    save_head(ev_head, os.path.join(out, "evaluator-head.safetensors"))
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for f in sorted(files):
            if f.endswith((".png", ".txt")) and root == out:
                continue
            p = os.path.join(root, f)
            total += os.path.getsize(p)
            log(f"  {os.path.getsize(p):>10}  {os.path.relpath(p, REPO)}")
    log(f"export: model files total {total} bytes ({total / 2 ** 20:.2f} MiB)")


def wait_for(path, what):
    t = time.time()
    while not os.path.exists(path):
        time.sleep(10)
    if time.time() - t > 5:
        log(f"waited {time.time() - t:.0f}s for {what}")
    time.sleep(2)


def main():
    global LOG
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/miniworld-data")
    ap.add_argument("--out", default=os.path.join(REPO, "models", "miniworld"))
    ap.add_argument("--work", default="/tmp/miniworld-work", help="checkpoints between phases")
    ap.add_argument("--log", default=None, help="default: OUT/TRAINING_LOG.txt")
    ap.add_argument("--phases", default="clip,eval,vae,unet,export",
                    help="comma list; two processes can share the work: 'clip,eval' and 'vae,unet,export' "
                         "(unet waits for clip's checkpoint, export for eval's)")
    ap.add_argument("--wait-decoder", action="store_true", help="export waits for the decoder phase")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--clip-steps", type=int, default=1500)
    ap.add_argument("--clip-batch", type=int, default=128)
    ap.add_argument("--clip-lr", type=float, default=1e-3)
    ap.add_argument("--clip-ce", type=float, default=1.0)
    ap.add_argument("--clip-max-min", type=float, default=9)
    ap.add_argument("--vae-steps", type=int, default=3000)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--vae-crop", type=int, default=32)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-kl", type=float, default=2e-6)
    ap.add_argument("--vae-max-min", type=float, default=10)
    ap.add_argument("--vae-preview", type=float, default=0.5)
    ap.add_argument("--dec-lr", type=float, default=3e-4)
    ap.add_argument("--dec-max-min", type=float, default=30)
    ap.add_argument("--dec-crop", type=int, default=8, help="latent crop side for the decoder fine-tune (16: whole)")
    ap.add_argument("--dec-init", default="vae.pt", help="checkpoint the decoder phase starts from")
    ap.add_argument("--unet-steps", type=int, default=6000)
    ap.add_argument("--unet-batch", type=int, default=48)
    ap.add_argument("--unet-lr", type=float, default=1e-3)
    ap.add_argument("--unet-channels", type=int, nargs=3, default=[32, 64, 64])
    ap.add_argument("--unet-max-min", type=float, default=32)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--unet2-lr", type=float, default=2e-4)
    ap.add_argument("--unet-min-snr", type=float, default=0, help="min-SNR-γ loss weighting (0: plain MSE)")
    ap.add_argument("--unet-prediction", choices=["epsilon", "v_prediction"], default="v_prediction")
    ap.add_argument("--unet-zero-snr", action=argparse.BooleanOptionalAction, default=False,
                    help="rescale the schedule to zero terminal SNR (needs v_prediction)")
    ap.add_argument("--unet-noise-offset", type=float, default=0.0, help="offset noise (per-channel constant)")
    ap.add_argument("--unet2-max-min", type=float, default=14)
    ap.add_argument("--eval-steps", type=int, default=1500)
    ap.add_argument("--eval-batch", type=int, default=128)
    ap.add_argument("--eval-lr", type=float, default=1e-3)
    ap.add_argument("--eval-max-min", type=float, default=5)
    args = ap.parse_args()
    phases = args.phases.split(",")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    LOG = args.log or os.path.join(args.out, "TRAINING_LOG.txt")
    torch.set_num_threads(args.threads)
    quiet()
    T0 = time.time()
    log(f"miniworld training [{args.phases}]; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"args {vars(args)}")
    # the reduced CLIP BPE of the tiny models (clip_vocab.py's construction, first 2000 merges)
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

    tok_dir = os.path.join(REPO, "models", "tiny-sd", "tokenizer")
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    assert len(tok) == TINY_VOCAB and tok.bos_token_id == BOS_ID and tok.eos_token_id == EOS_ID
    data = Data(args.data, tok)
    W = lambda name: os.path.join(args.work, name)  # noqa: E731
    times = {}

    if "clip" in phases:
        rng = np.random.default_rng(args.seed)
        t = time.time()
        text, vision, head = train_clip(data, args, rng)
        eval_clip(data, text, vision, head)
        torch.save({"text": text.state_dict(), "vision": vision.state_dict(), "head": head.state_dict()}, W("clip.tmp"))
        os.replace(W("clip.tmp"), W("clip.pt"))
        times["clip"] = time.time() - t
    if "eval" in phases:
        t = time.time()
        ev_tower, ev_head, ev_acc = train_evaluator(data, args, None)
        torch.save({"tower": ev_tower.state_dict(), "head": ev_head.state_dict(), "config": ev_tower.config.to_dict()},
                   W("eval.tmp"))
        os.replace(W("eval.tmp"), W("eval.pt"))
        times["evaluator"] = time.time() - t
    if "vae" in phases:
        rng = np.random.default_rng(args.seed + 50)
        t = time.time()
        vae = train_vae(data, args, rng)
        vae = vae.to(torch.float16).float()  # the weights as stored (f16); latents come from these
        lat, scale = encode_latents(data, vae)
        torch.save({"vae": vae.state_dict(), "lat": lat, "scale": scale}, W("vae.tmp"))
        os.replace(W("vae.tmp"), W("vae.pt"))
        times["vae"] = time.time() - t
    if "unet" in phases:
        rng = np.random.default_rng(args.seed + 60)
        wait_for(W("clip.pt"), "the clip phase")
        t = time.time()
        ck = torch.load(W("clip.pt"))
        text = CLIPTextModelWithProjection(text_config())
        text.load_state_dict(ck["text"])
        te = sd_text_encoder(text).to(torch.float16).float()  # exactly the weights SD will load
        hs = text_states(data, te)
        vk = torch.load(W("vae.pt"))
        unet = train_unet(data, vk["lat"], vk["scale"], hs, args, rng)
        torch.save(unet.state_dict(), W("unet.tmp"))
        os.replace(W("unet.tmp"), W("unet.pt"))
        times["unet"] = time.time() - t
    if "unet2" in phases:  # continue the unet phase (its EMA weights) for --unet2-max-min at --unet2-lr
        rng = np.random.default_rng(args.seed + 61)
        t = time.time()
        ck = torch.load(W("clip.pt"))
        text = CLIPTextModelWithProjection(text_config())
        text.load_state_dict(ck["text"])
        hs = text_states(data, sd_text_encoder(text).to(torch.float16).float())
        vk = torch.load(W("vae.pt"))
        init = torch.load(W("unet.pt"))
        shutil.copy(W("unet.pt"), W("unet_phase1.pt"))
        unet = train_unet(data, vk["lat"], vk["scale"], hs, args, rng, init=init, lr=args.unet2_lr,
                          cap=args.unet2_max_min, warmup=20)
        torch.save(unet.state_dict(), W("unet.tmp"))
        os.replace(W("unet.tmp"), W("unet.pt"))
        times["unet2"] = time.time() - t
    if "decoder" in phases:  # can run beside unet (it only needs vae.pt)
        wait_for(W("vae.pt"), "the vae phase")
        t = time.time()
        vk = torch.load(W(args.dec_init))
        log(f"decoder: starting from {args.dec_init}")
        vae = vae_model()
        vae.load_state_dict(vk["vae"])
        reconstruction_report(data, vae, vk["lat"], "decoder (before)")
        vae = finetune_decoder(data, vae, vk["lat"], args, np.random.default_rng(args.seed + 70))
        vae = vae.to(torch.float16).float()
        reconstruction_report(data, vae, vk["lat"], "decoder (fine-tuned, f16)")
        torch.save({"vae": vae.state_dict(), "lat": vk["lat"], "scale": vk["scale"]}, W("vae_dec.tmp"))
        os.replace(W("vae_dec.tmp"), W("vae_dec.pt"))
        times["decoder"] = time.time() - t
    if "export" in phases:
        wait_for(W("eval.pt"), "the evaluator phase")
        if args.wait_decoder:
            wait_for(W("vae_dec.pt"), "the decoder phase")
        t = time.time()
        from transformers import CLIPVisionConfig

        ck = torch.load(W("clip.pt"))
        text = CLIPTextModelWithProjection(text_config()).eval()
        text.load_state_dict(ck["text"])
        vision = CLIPVisionModelWithProjection(vision_config()).eval()
        vision.load_state_dict(ck["vision"])
        head = torch.nn.Linear(PROJ, 8)
        head.load_state_dict(ck["head"])
        vk = torch.load(W("vae_dec.pt") if os.path.exists(W("vae_dec.pt")) else W("vae.pt"))
        vae = vae_model().eval()
        vae.load_state_dict(vk["vae"])
        reconstruction_report(data, vae, vk["lat"], "export: vae")
        unet = unet_model(tuple(args.unet_channels)).eval()
        unet.load_state_dict(torch.load(W("unet.pt")))
        ek = torch.load(W("eval.pt"))
        ev_tower = CLIPVisionModelWithProjection(CLIPVisionConfig(**ek["config"])).eval()
        ev_tower.load_state_dict(ek["tower"])
        ev_head = torch.nn.Linear(ev_tower.config.projection_dim, 8)
        ev_head.load_state_dict(ek["head"])
        export(args.out, tok_dir, text, vision, head, vae, vk["scale"], unet, ev_tower, ev_head, args.unet_prediction,
               args.unet_zero_snr)
        times["export"] = time.time() - t
    log(f"[{args.phases}] phase times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items())
        + f"; process total {(time.time() - T0) / 60:.1f} min")


if __name__ == "__main__":
    main()
