#!/usr/bin/env python3
"""Universal guidance's gradient on the tiny models, for the Swift test that checks it.

Bansal et al. (2023) take the classifier loss's gradient with respect to z_t through the
denoiser: eps(z_t) = eps_u + w·(eps_c − eps_u) with both classifier-free-guidance branches
depending on z_t, x̂0 = (z_t − √(1−ᾱ_t)·eps)/√ᾱ_t, image = clamp(VAE.decode(x̂0 / scale)).
This writes Tests/Fixtures/universal_guidance.safetensors: z_t, t, the seed tensor R of the
scalar loss Σ image·R, eps, the image, and ∂loss/∂z_t from torch autograd. (The classifier's
own gradient is covered by the CLIP vision fixture; a linear loss on the image isolates the
part universal guidance adds.)

  /work/venv/bin/python tools/reference/make_ug_fixture.py
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from make_fixtures import REPO, SCALING, ddim, encode_prompts, f32, load_all, quiet, randn, save  # noqa: E402

PROMPT = "a quiet lake at dawn"
GUIDANCE = 7.5
TIMESTEP = 601


def main():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    quiet()
    m = load_all(os.path.join(REPO, "models"))
    unet, vae = m["unet"], m["vae"]
    alpha = ddim(m["scheduler_config"]).alphas_cumprod[TIMESTEP].to(torch.float32)
    _, uncond = encode_prompts(m, [""])
    _, cond = encode_prompts(m, [PROMPT])
    z = randn((1, 4, 8, 8), 61)
    R = randn((1, 3, 64, 64), 62)
    zv = z.clone().requires_grad_(True)
    t = torch.tensor(TIMESTEP)
    eps_u = unet(zv, t, encoder_hidden_states=uncond).sample
    eps_c = unet(zv, t, encoder_hidden_states=cond).sample
    eps = eps_u + GUIDANCE * (eps_c - eps_u)
    x0 = (zv - (1 - alpha).sqrt() * eps) / alpha.sqrt()
    image = vae.decode(x0 / SCALING).sample.clamp(-1, 1)
    (image * R).sum().backward()
    save(
        os.path.join(REPO, "Tests", "Fixtures"),
        "universal_guidance.safetensors",
        {
            "z": z,
            "timestep": torch.tensor([float(TIMESTEP)]),
            "grad_seed": R,
            "eps": f32(eps),
            "image": f32(image),
            "grad_z": f32(zv.grad),
        },
        {"prompt": PROMPT, "guidance": GUIDANCE, "generator": "tools/reference/make_ug_fixture.py"},
    )


if __name__ == "__main__":
    main()
