#!/usr/bin/env python3
"""Write Tests/Fixtures/dpmpp_2m.safetensors: DPM-Solver++(2M) parity data from diffusers 0.42.1.

DPMSolverMultistepScheduler (algorithm_type "dpmsolver++", solver_order 2, solver_type
"midpoint", lower_order_final True, final_sigmas_type "zero": the class defaults) and a few
variants that exercise the other code paths the Swift port supports. Contents:

  timesteps/<schedule>/<n>, sigmas/<schedule>/<n>
      set_timesteps(n) for every schedule and n in STEPS_LIST (int64 / float32).
  checksum/<schedule>
      [T, 3] int64 for n = 1...T: len(timesteps), sum(t), sum((i + 1) * t); catches any
      off-by-one of the numpy arange/linspace emulation without storing 500k timesteps.
  step/<case>/sample0, step/<case>/{eps,x0,prev}
      [1, 4, 4, 4] and [n, 1, 4, 4, 4]: a full n-step chain from a seeded sample with seeded
      model outputs; the input of step i is sample0 for i = 0, else prev[i - 1]; x0[i] is the
      converted model output (DPM-Solver++'s data prediction), prev[i] the step's output.
  txt2img/*
      10-step guided txt2img on models/tiny-sd with DPMSolverMultistepScheduler.from_config(
      pipe.scheduler.config), same prompt, guidance and initial latent (seed 51) as
      make_fixtures.py's ddim_txt2img.safetensors; cross-checked against the pipeline itself.

The metadata's "info" JSON holds every schedule's config dict (what a scheduler_config.json
would contain; the Swift test writes each to a file and loads it), the step cases, and a
config as DPMSolverMultistepScheduler.save_config writes it (with -Infinity).

Seeded torch generators, one thread: re-running gives byte-identical files.

Usage:
  python tools/reference/make_dpm_fixtures.py [--models models] [--out Tests/Fixtures]
"""
import argparse
import json
import logging
import os
import sys
import tempfile
import warnings

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SCALING = 0.18215
GUIDANCE = 7.5
STEPS = 10
PROMPT = "a photo of a cat"
STEPS_LIST = [1, 2, 5, 7, 10, 20, 25, 50, 61, 100]

SD15 = {  # stable-diffusion-v1-5/scheduler/scheduler_config.json, verbatim
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SD15_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def schedules(models):
    with open(os.path.join(models, "tiny-sd", "scheduler", "scheduler_config.json")) as f:
        tiny = json.load(f)
    dpm = "DPMSolverMultistepScheduler"
    return {
        # the tiny model's DDIMScheduler config (= SD 1.5's settings): leading, steps_offset 1
        "tiny": tiny,
        # the real SD 1.5 file (PNDMScheduler without timestep_spacing). from_config skips keys the
        # source scheduler filled with its own defaults, so DPM's default "linspace" applies, not
        # PNDM's "leading": 10 steps are 999, 899, ..., 100.
        "sd15_file": SD15,
        "sd15_trailing": {"_class_name": "DDIMScheduler", **SD15_BETAS, "steps_offset": 1, "timestep_spacing": "trailing"},
        # a DPM-class file without timestep_spacing: DPMSolverMultistepScheduler's default "linspace"
        "sd15_linspace_sigmamin": {"_class_name": dpm, **SD15_BETAS, "steps_offset": 1, "final_sigmas_type": "sigma_min"},
        "sd15_v_heun": {"_class_name": dpm, **SD15_BETAS, "steps_offset": 1, "timestep_spacing": "leading",
                        "prediction_type": "v_prediction", "solver_type": "heun"},
        "order1_sample_trailing": {"_class_name": dpm, **SD15_BETAS, "timestep_spacing": "trailing",
                                   "solver_order": 1, "prediction_type": "sample"},
        "euler_at_final": {"_class_name": dpm, **SD15_BETAS, "steps_offset": 1, "timestep_spacing": "leading",
                           "final_sigmas_type": "sigma_min", "euler_at_final": True},
        # diffusers' defaults: linear betas 1e-4...0.02, linspace
        "dpm_defaults": {"_class_name": dpm},
        "cosine_clipped_leading": {"_class_name": dpm, "beta_schedule": "squaredcos_cap_v2",
                                   "lambda_min_clipped": -5.1, "timestep_spacing": "leading"},
        "cosine_clipped_trailing": {"_class_name": dpm, "beta_schedule": "squaredcos_cap_v2",
                                    "lambda_min_clipped": -5.1, "timestep_spacing": "trailing"},
    }


CHECKSUMMED = ["tiny", "sd15_file", "sd15_trailing", "sd15_linspace_sigmamin", "cosine_clipped_leading", "cosine_clipped_trailing"]

STEP_CASES = [  # (name, schedule, steps, seed)
    ("tiny10", "tiny", 10, 101),  # the 2M path: 1st order, 2nd order ×8, 1st order to sigma 0
    ("tiny25", "tiny", 25, 102),
    ("sd15_trailing7", "sd15_trailing", 7, 103),
    ("sigmamin10", "sd15_linspace_sigmamin", 10, 104),  # lower_order_final (< 15 steps)
    ("sigmamin20", "sd15_linspace_sigmamin", 20, 105),  # >= 15 steps: the last step is 2nd order
    ("v_heun10", "sd15_v_heun", 10, 106),
    ("order1_sample10", "order1_sample_trailing", 10, 107),
    ("euler_at_final20", "euler_at_final", 20, 108),
    ("cosine_clipped12", "cosine_clipped_leading", 12, 109),
]


def quiet():
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(shape, seed):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float32)


def dpm_from(cfg):
    """What a pipeline gets: the file's own class, then DPMSolverMultistepScheduler.from_config
    of that scheduler's (default-filled) config. For a DPM-class file that is the file itself."""
    import diffusers

    cls = getattr(diffusers, cfg["_class_name"])
    src = cls.from_config(cfg)
    dpm = diffusers.DPMSolverMultistepScheduler.from_config(src.config)
    return dpm


def fx_schedules(scheds, tensors):
    for name, cfg in scheds.items():
        s = dpm_from(cfg)
        assert s.config.algorithm_type == "dpmsolver++" and not s.config.use_karras_sigmas
        for n in STEPS_LIST:
            s.set_timesteps(n)
            tensors[f"timesteps/{name}/{n}"] = s.timesteps.to(torch.int64).clone()
            tensors[f"sigmas/{name}/{n}"] = s.sigmas.to(torch.float32).clone()
        if name == "sd15_file":
            s.set_timesteps(10)
            assert s.config.timestep_spacing == "linspace", s.config.timestep_spacing
            assert s.timesteps.tolist() == [999, 899, 799, 699, 599, 500, 400, 300, 200, 100], s.timesteps
        if name in CHECKSUMMED:
            T = s.config.num_train_timesteps
            rows = []
            for n in range(1, T + 1):
                s.set_timesteps(n)
                t = s.timesteps.to(torch.int64)
                w = torch.arange(1, len(t) + 1, dtype=torch.int64)
                rows.append([len(t), int(t.sum()), int((w * t).sum())])
            tensors[f"checksum/{name}"] = torch.tensor(rows, dtype=torch.int64)
    print(f"           {len(scheds)} schedules × {len(STEPS_LIST)} step counts; checksums for {CHECKSUMMED}")


def fx_steps(scheds, tensors):
    for name, sched_name, n, seed in STEP_CASES:
        s = dpm_from(scheds[sched_name])
        s.set_timesteps(n)
        assert len(s.timesteps) == n
        g = gen(seed)
        sample = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float32)
        tensors[f"step/{name}/sample0"] = sample.clone()
        epss, x0s, prevs = [], [], []
        for t in s.timesteps:
            eps = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float32)
            prev = s.step(eps, t, sample, return_dict=False)[0]
            x0s.append(s.model_outputs[-1].clone())
            epss.append(eps)
            prevs.append(prev.clone())
            sample = prev
        tensors[f"step/{name}/eps"] = torch.stack(epss)
        tensors[f"step/{name}/x0"] = torch.stack(x0s)
        tensors[f"step/{name}/prev"] = torch.stack(prevs)
        print(f"           step case {name}: {n} steps, final |x| max {float(sample.abs().max()):.4g}")


def fx_txt2img(models, tensors):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        os.path.join(models, "tiny-sd"), torch_dtype=torch.float32, safety_checker=None
    )
    pipe.set_progress_bar_config(disable=True)
    sched = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    c = sched.config
    assert (c.algorithm_type, c.solver_order, c.solver_type, c.lower_order_final, c.final_sigmas_type,
            c.use_karras_sigmas, c.timestep_spacing, c.steps_offset) == (
        "dpmsolver++", 2, "midpoint", True, "zero", False, "leading", 1), c
    tok, te, unet, vae = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae
    for mod in (te, unet, vae):
        for p in mod.parameters():
            assert p.dtype == torch.float32
            p.requires_grad_(False)

    def encode(prompt):
        ids = tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(torch.int64)
        with torch.no_grad():
            return ids, te(input_ids=ids).last_hidden_state

    uncond_ids, uncond = encode("")
    cond_ids, cond = encode(PROMPT)
    ehs = torch.cat([uncond, cond])
    sched.set_timesteps(STEPS)
    latents = randn((1, 4, 8, 8), 51) * sched.init_noise_sigma  # = make_fixtures.py's initial latent
    init = latents.clone()
    steps, epss = [], []
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.scale_model_input(torch.cat([latents] * 2), t)
            noise = unet(x, t, encoder_hidden_states=ehs).sample
            eps_u, eps_c = noise.chunk(2)
            eps = eps_u + GUIDANCE * (eps_c - eps_u)
            latents = sched.step(eps, t, latents, return_dict=False)[0]
            steps.append(latents.clone())
            epss.append(eps.clone())
        image = vae.decode(latents / SCALING).sample
    # the explicit loop is what the pipeline does with this scheduler
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        ref = pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=init.clone(),
                   output_type="latent", height=64, width=64).images
    assert torch.equal(ref, latents), (ref - latents).abs().max()
    tensors.update({
        "txt2img/cond_ids": cond_ids,
        "txt2img/uncond_ids": uncond_ids,
        "txt2img/initial_latent": init,
        "txt2img/num_inference_steps": torch.tensor([float(STEPS)]),
        "txt2img/guidance_scale": torch.tensor([GUIDANCE]),
        "txt2img/timesteps": sched.timesteps.to(torch.int64).clone(),
        "txt2img/sigmas": sched.sigmas.to(torch.float32).clone(),
        "txt2img/eps_steps": torch.stack(epss),
        "txt2img/latents_steps": torch.stack(steps),
        "txt2img/final_latent": latents.clone(),
        "txt2img/image": image.detach().clone(),
    })
    print(f"           txt2img: timesteps {sched.timesteps.tolist()}, |final| max {float(latents.abs().max()):.4g}")


def saved_dpm_config(scheds):
    """A DPM config as diffusers writes it (lambda_min_clipped: -Infinity, non-standard JSON)."""
    s = dpm_from(scheds["tiny"])
    with tempfile.TemporaryDirectory() as d:
        s.save_config(d)
        with open(os.path.join(d, "scheduler_config.json")) as f:
            text = f.read()
    assert "-Infinity" in text
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "Fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    quiet()
    import diffusers

    assert diffusers.__version__ == "0.42.1", diffusers.__version__
    scheds = schedules(args.models)
    tensors = {}
    fx_schedules(scheds, tensors)
    fx_steps(scheds, tensors)
    fx_txt2img(args.models, tensors)
    info = {
        "generator": "tools/reference/make_dpm_fixtures.py",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__.split("+")[0],
        "schedules": scheds,
        "steps_list": STEPS_LIST,
        "checksummed": CHECKSUMMED,
        "step_cases": [{"name": a, "schedule": b, "steps": n, "seed": s} for a, b, n, s in STEP_CASES],
        "saved_dpm_config": saved_dpm_config(scheds),
        "txt2img": {"prompt": PROMPT, "negative_prompt": "", "initial_latent_seed": 51, "model": "models/tiny-sd"},
    }
    clean = {}
    for k, v in tensors.items():
        v = v.detach().contiguous().clone()
        if v.dtype not in (torch.float32, torch.int64):
            raise TypeError(f"{k} has dtype {v.dtype}")
        clean[k] = v
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "dpmpp_2m.safetensors")
    # One metadata key only (several would be written in hash order: not reproducible bytes).
    save_file(clean, path, metadata={"info": json.dumps(info, sort_keys=True, ensure_ascii=False)})
    print(f"{os.path.getsize(path):>9}  {os.path.relpath(path, REPO)}  ({len(clean)} tensors)")


if __name__ == "__main__":
    sys.exit(main())
