"""PyTorch side of ops/bench-muse: one MUSE image at full SD 1.5 size, written as a researcher
would with diffusers/transformers, on the random-weight stand-ins of build_sd15_random.py
(--root; the tiny decoder from build_taesd_random.py --out ROOT/taesd).

A guided step: the emotion token v (a [768] leaf, Adam) goes into the prompt's input
embeddings (a forward hook on CLIPTextModel's token embedding puts v in its slot:
[bos, prompt…, v, eos, pad…], as the engine's TokenPrompt) → UNet2DConditionModel with CFG
(the unconditional branch once per step, without grad) → x̂0 → AutoencoderKL.decode (or
AutoencoderTiny) → clamp → bilinear resize to 224 + CLIP normalisation →
CLIPVisionModelWithProjection → Linear(768 → 8) → log-softmax → L_emo = −log p(e*) −
λ_inh·log(1 − p(e_inh)) − λ_sim·Σ_S log(1 − p(e)) (Sources/MUSE/Loss.swift) → backward to v →
Adam; K times, then the step's UNet call with the new token and the scheduler update. Every
step (plain or guided) also scores s_t for WHEN: the latent-RGB preview of x̂0 through the
same CLIP tower against the prompt's CLIPTextModelWithProjection embedding. The plain step
batches CFG's two branches as StableDiffusionPipeline does.

Prints the lines `muse bench-muse` prints (a 64-character label, value, unit), so
ops/bench-muse can pair them; the estimate is computed the same way.
"""
import argparse
import os
import resource
import time

import torch
import torch.nn.functional as F

EMOTIONS = ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"]
POSITIVE = set(EMOTIONS[:4])
LATENT_RGB = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
              [-0.2120, -0.2616, -0.7177]]
LR, LAMBDA_INH, LAMBDA_SIM, GUIDANCE = 0.01, 0.5, 0.25, 7.5
LATEST_START, STOP = 0.5, 0.8  # MUSESettings latest_start_fraction, stop_fraction


def line(label, value, unit="s"):
    assert len(label) <= 64 and label.isascii(), label
    print(f"{label:<64} {value:10.3f} {unit}", flush=True)


def now():
    return time.perf_counter()


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for text in f:
            if text.startswith("model name"):
                return text.split(":", 1)[1].strip()
    return "unknown"


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Muse:
    def __init__(self, root, tiny_folder, prompt, emotion):
        from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
        from safetensors.torch import load_file
        from transformers import (CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer,
                                  CLIPVisionModelWithProjection)
        sd = os.path.join(root, "sd15")
        frozen = lambda m: m.eval().requires_grad_(False)  # noqa: E731
        self.tokenizer = CLIPTokenizer.from_pretrained(os.path.join(sd, "tokenizer"))
        self.text = frozen(CLIPTextModel.from_pretrained(os.path.join(sd, "text_encoder")))
        self.unet = frozen(UNet2DConditionModel.from_pretrained(os.path.join(sd, "unet")))
        self.vae = frozen(AutoencoderKL.from_pretrained(os.path.join(sd, "vae")))
        self.tiny = frozen(AutoencoderTiny.from_pretrained(tiny_folder)) if tiny_folder else None
        self.scheduler_config = DDIMScheduler.load_config(os.path.join(sd, "scheduler"))
        self.vision = frozen(CLIPVisionModelWithProjection.from_pretrained(os.path.join(root, "clip-vit-l14")))
        head = load_file(os.path.join(root, "emotion-head.safetensors"))
        self.head = frozen(torch.nn.Linear(768, 8))
        self.head.weight.copy_(head["weight"])
        self.head.bias.copy_(head["bias"])
        timing_text = frozen(CLIPTextModelWithProjection.from_pretrained(os.path.join(root, "clip-text-l14")))
        timing_tok = CLIPTokenizer.from_pretrained(os.path.join(root, "clip-text-l14"))
        self.mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        self.rgb = torch.tensor(LATENT_RGB).t().reshape(3, 4, 1, 1)
        self.prompt, self.target = prompt, EMOTIONS.index(emotion)

        tok = self.tokenizer
        words = tok(prompt, add_special_tokens=False).input_ids[:74]
        ids = [tok.bos_token_id] + words + [tok.pad_token_id, tok.eos_token_id]
        self.slot = len(words) + 1
        self.ids = torch.tensor([ids + [tok.pad_token_id] * (77 - len(ids))])
        with torch.no_grad():
            uncond_ids = tok("", padding="max_length", max_length=77, return_tensors="pt").input_ids
            self.uncond = self.text(uncond_ids).last_hidden_state
            t_ids = timing_tok(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            self.prompt_embed = F.normalize(timing_text(t_ids.input_ids).text_embeds, dim=-1)
        del timing_text
        self.token_value = None
        self.text.get_input_embeddings().register_forward_hook(self._insert_token)

    def initial_token(self, word):
        ids = self.tokenizer(word, add_special_tokens=False).input_ids
        return self.text.get_input_embeddings().weight[ids].mean(0).clone()

    def _insert_token(self, module, inputs, output):
        if self.token_value is None or inputs[0].shape[1] != 77 or not torch.equal(inputs[0], self.ids):
            return output
        out = output.clone()
        out[:, self.slot] = self.token_value
        return out

    def conditioning(self, v):
        self.token_value = v
        try:
            return self.text(self.ids).last_hidden_state
        finally:
            self.token_value = None

    def preprocess(self, image):
        x = F.interpolate(image * 0.5 + 0.5, size=(224, 224), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def logits(self, image):
        return self.head(self.vision(pixel_values=self.preprocess(image)).image_embeds)

    def decode(self, x0, tiny):
        if tiny:
            return self.tiny.decode(x0 / self.tiny.config.scaling_factor).sample.clamp(-1, 1)
        return self.vae.decode(x0 / self.vae.config.scaling_factor).sample.clamp(-1, 1)

    def prompt_score(self, x0):
        preview = F.conv2d(x0, self.rgb).clamp(-1, 1)
        e = F.normalize(self.vision(pixel_values=self.preprocess(preview)).image_embeds, dim=-1)
        return float((e * self.prompt_embed).sum())


class Job:
    """One synthesis: latent, token, Adam, scheduler, and WHICH once guidance starts."""

    def __init__(self, muse, scheduler, steps, k, tiny=False, seed=0):
        self.m, self.k, self.tiny = muse, k, tiny
        self.scheduler = scheduler
        scheduler.set_timesteps(steps)
        self.z = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(seed))
        self.v = muse.initial_token(EMOTIONS[muse.target]).requires_grad_(True)
        self.opt = torch.optim.Adam([self.v], lr=LR)
        self.index, self.inherent, self.similar = 0, None, []

    def x0(self, eps, t):
        a = self.scheduler.alphas_cumprod[t]
        return (self.z - (1 - a).sqrt() * eps) / a.sqrt()

    def loss(self, logits):
        logp = logits.log_softmax(-1)[0]
        p = logp.exp()
        loss = -logp[self.m.target] - LAMBDA_INH * torch.log1p(-p[self.inherent])
        for e in self.similar:
            loss = loss - LAMBDA_SIM * torch.log1p(-p[e])
        return loss

    def step(self, guided):
        m, t = self.m, self.scheduler.timesteps[self.index]
        with torch.no_grad():
            cond = m.conditioning(self.v)
            if guided:
                eps_u = m.unet(self.z, t, encoder_hidden_states=m.uncond).sample
                eps_c = m.unet(self.z, t, encoder_hidden_states=cond).sample
            else:
                both = m.unet(torch.cat([self.z] * 2), t, encoder_hidden_states=torch.cat([m.uncond, cond])).sample
                eps_u, eps_c = both.chunk(2)
            eps = eps_u + GUIDANCE * (eps_c - eps_u)
            m.prompt_score(self.x0(eps, t))  # s_t (WHEN)
            if guided and self.inherent is None:  # WHICH, at the start step
                p = m.logits(m.decode(self.x0(eps, t), self.tiny)).softmax(-1)[0].clone()
                p[m.target] = -1
                self.inherent = int(p.argmax())
                target_positive = EMOTIONS[m.target] in POSITIVE
                self.similar = [i for i, e in enumerate(EMOTIONS) if i not in (m.target, self.inherent)
                                and (e in POSITIVE) == target_positive]
        if guided:
            for _ in range(self.k):
                self.opt.zero_grad()
                eps_c = m.unet(self.z, t, encoder_hidden_states=m.conditioning(self.v)).sample
                x0 = self.x0(eps_u + GUIDANCE * (eps_c - eps_u), t)
                self.loss(m.logits(m.decode(x0, self.tiny))).backward()
                self.opt.step()
            with torch.no_grad():
                eps_c = m.unet(self.z, t, encoder_hidden_states=m.conditioning(self.v)).sample
                eps = eps_u + GUIDANCE * (eps_c - eps_u)
        with torch.no_grad():
            self.z = self.scheduler.step(eps, t, self.z).prev_sample
        self.index += 1

    def finish(self):
        with torch.no_grad():
            image = self.m.decode(self.z, False)
            rgb = ((image + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1
            return self.m.logits(rgb).softmax(-1)


def window(steps):
    start, stop = round(steps * LATEST_START), round(steps * STOP)
    return steps - (stop - start), stop - start


def estimate(steps, plain, first, guided, finish):
    n_plain, n_guided = window(steps)
    return n_plain * plain + (first + (n_guided - 1) * guided if n_guided else 0) + finish


def best(fn, repeats):
    result = None
    for _ in range(max(1, repeats)):
        t0 = now()
        fn()
        result = now() - t0 if result is None else min(result, now() - t0)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="/tmp/sd15-random-full")
    ap.add_argument("--tiny-decoder", default=None, help="default ROOT/taesd")
    ap.add_argument("--no-tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--dpm-steps", type=int, default=20)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="a quiet lake at dawn")
    ap.add_argument("--phases-only", action="store_true", help="only the phases of one inner iteration")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"load before: {load_average()}", flush=True)
    tiny_folder = None if args.no_tiny else (args.tiny_decoder or os.path.join(args.root, "taesd"))
    t0 = now()
    m = Muse(args.root, tiny_folder, args.prompt, "awe")
    print(f"models loaded in {now() - t0:.1f} s from {args.root}", flush=True)
    ddim = lambda: DDIMScheduler.from_config(m.scheduler_config)  # noqa: E731
    K = args.k

    def run_phases():
        # Phases of one inner iteration, on the guided job's state.
        job = Job(m, ddim(), args.steps, K)
        ts = job.scheduler.timesteps[1]
        v = job.v.detach()
        with torch.no_grad():
            cond = m.conditioning(v)

        def text_backward():
            w = v.clone().requires_grad_(True)
            m.conditioning(w).sum().backward()
        # The kernel target beside the model phases: the UNet's commonest 3x3 convolution.
        cx = torch.randn(1, 320, 64, 64, generator=torch.Generator().manual_seed(3))
        cw = torch.randn(320, 320, 3, 3, generator=torch.Generator().manual_seed(4)) * 0.02
        with torch.no_grad():
            F.conv2d(cx, cw, padding=1)
            line("phase: conv 3x3 320->320 at 64x64 forward", best(lambda: F.conv2d(cx, cw, padding=1), args.repeats))
        line("phase: text encoder forward (token in its slot)",
             best(lambda: m.conditioning(v.clone().requires_grad_(True)), args.repeats))
        line("phase: text encoder forward+backward to the token", best(text_backward, args.repeats))
        with torch.no_grad():
            line("phase: UNet forward, 64x64 latent, batch 1",
                 best(lambda: m.unet(job.z, ts, encoder_hidden_states=cond), args.repeats))
            eps = m.unet(job.z, ts, encoder_hidden_states=cond).sample
            line("phase: UNet forward, 64x64 latent, batch 2 (both CFG branches)",
                 best(lambda: m.unet(torch.cat([job.z] * 2), ts, encoder_hidden_states=torch.cat([m.uncond, cond])),
                      args.repeats))

        def unet_backward():
            c = cond.clone().requires_grad_(True)
            m.unet(job.z, ts, encoder_hidden_states=c).sample.sum().backward()
        line("phase: UNet forward+backward to the conditioning", best(unet_backward, args.repeats))
        x0 = job.x0(eps, ts)
        for name, tiny in [("VAE", False)] + ([("tiny", True)] if tiny_folder else []):
            with torch.no_grad():
                line(f"phase: {name} decoder forward, x0 -> 512x512", best(lambda: m.decode(x0, tiny), args.repeats))

            def decoder_backward():
                x = x0.clone().requires_grad_(True)
                m.decode(x, tiny).sum().backward()
            line(f"phase: {name} decoder forward+backward to x0", best(decoder_backward, args.repeats))
        with torch.no_grad():
            image = m.decode(x0, False)
            line("phase: CLIP vision tower + head forward (224x224)", best(lambda: m.logits(image), args.repeats))

        def clip_backward():
            x = image.clone().requires_grad_(True)
            (-m.logits(x).log_softmax(-1)[0, m.target]).backward()
        line("phase: CLIP vision tower + head forward+backward to pixels", best(clip_backward, args.repeats))

    if args.phases_only:
        run_phases()
        line("peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, "GB")
        return

    def two_steps(job, guided):
        times = []
        for _ in range(2):
            t = now()
            job.step(guided)
            times.append(now() - t)
        return times

    plain_job = Job(m, ddim(), args.steps, K)
    plain = min(two_steps(plain_job, False))
    line("plain DDIM step (CFG: 2 UNet calls, s_t preview)", plain)
    first, guided = two_steps(Job(m, ddim(), args.steps, K), True)
    line(f"first guided step (WHICH + K={K}), full VAE decoder", first)
    line(f"guided step, K={K}, full VAE decoder", guided)
    if tiny_folder:
        tiny_first, tiny_guided = two_steps(Job(m, ddim(), args.steps, K, tiny=True), True)
        line(f"first guided step (WHICH + K={K}), tiny decoder", tiny_first)
        line(f"guided step, K={K}, tiny decoder", tiny_guided)
    dpm_job = Job(m, DPMSolverMultistepScheduler.from_config(m.scheduler_config), args.dpm_steps, K)
    dpm_plain = two_steps(dpm_job, False)[1]
    line("plain DPM-Solver++(2M) step (second, 2M update)", dpm_plain)
    t = now()
    plain_job.finish()
    finish = now() - t
    line("finish (VAE decode to 512x512, 8-bit, classify)", finish)

    run_phases()

    n_plain, n_guided = window(args.steps)
    d_plain, d_guided = window(args.dpm_steps)
    print("estimate = plain steps x plain step + first guided step + (guided steps - 1) x guided step + finish; "
          f"guidance assumed to start at the latest start ({LATEST_START}: the shortest window, fewest guided steps) "
          f"and stop at {STOP}")
    print("DPM-Solver++ estimate uses the guided steps measured with DDIM (the inner loop is the same)")
    print(f"DDIM {args.steps}: {n_plain} plain + {n_guided} guided; DPM {args.dpm_steps}: {d_plain} + {d_guided}")
    line(f"image 512x512, DDIM {args.steps}, K={K}, full VAE decoder",
         estimate(args.steps, plain, first, guided, finish) / 60, "min")
    if tiny_folder:
        line(f"image 512x512, DDIM {args.steps}, K={K}, tiny decoder",
             estimate(args.steps, plain, tiny_first, tiny_guided, finish) / 60, "min")
    line(f"image 512x512, DPM-Solver++(2M) {args.dpm_steps}, K={K}, full VAE",
         estimate(args.dpm_steps, dpm_plain, first, guided, finish) / 60, "min")
    if tiny_folder:
        line(f"image 512x512, DPM-Solver++(2M) {args.dpm_steps}, K={K}, tiny decoder",
             estimate(args.dpm_steps, dpm_plain, tiny_first, tiny_guided, finish) / 60, "min")
    line("peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, "GB")
    print(f"load after: {load_average()}", flush=True)


if __name__ == "__main__":
    main()
