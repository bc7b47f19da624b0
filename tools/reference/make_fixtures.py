#!/usr/bin/env python3
"""Write the parity fixtures in Tests/Fixtures/ from the tiny models in models/.

Every model is loaded back from disk and upcast to float32 (the text encoder is stored
as F16, the UNet as F16 and the VAE as BF16 unless build_tiny_models.py ran with
--all-f32), so the expected outputs are exactly what a loader that converts stored
weights to float32 must reproduce. All inputs come from seeded torch generators; re-running
gives byte-identical files. See tools/reference/README.md for the content of every file.

Usage:
  python tools/reference/make_fixtures.py [--models models] [--out Tests/Fixtures]
"""
import argparse
import json
import logging
import math
import os
import sys
import warnings

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

SCALING = 0.18215
GUIDANCE = 7.5
STEPS = 10

TEXT_PROMPTS = [
    "a photo of a cat",
    "a watercolor painting of a lighthouse on a cliff at sunset, dramatic sky",
]


def quiet():
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import diffusers
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
    except Exception:
        pass
    logging.getLogger("transformers").setLevel(logging.ERROR)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(shape, seed):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float32)


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def save(out_dir, name, tensors, meta=None):
    path = os.path.join(out_dir, name)
    clean = {}
    for k, v in tensors.items():
        v = v.detach().contiguous().clone()
        if v.dtype not in (torch.float32, torch.int64):
            raise TypeError(f"{name}:{k} has dtype {v.dtype}")
        clean[k] = v
    md = {"generator": "tools/reference/make_fixtures.py"}
    if meta:
        md.update(meta)
    # One metadata key only: safetensors writes the metadata map in hash order, so
    # several keys would make the file bytes differ from run to run.
    save_file(clean, path, metadata={"info": json.dumps(md, sort_keys=True, ensure_ascii=False)})
    print(f"{os.path.getsize(path):>9}  {os.path.relpath(path, REPO)}")
    for k in sorted(clean):
        print(f"           {k:28s} {str(clean[k].dtype).replace('torch.', ''):8s} {list(clean[k].shape)}")


# --------------------------------------------------------------------------- loading


def load_all(models):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection
    from safetensors.torch import load_file

    sd = os.path.join(models, "tiny-sd")
    m = {"models_dir": models}
    m["tokenizer"] = CLIPTokenizer.from_pretrained(os.path.join(sd, "tokenizer"))
    te, info = CLIPTextModel.from_pretrained(
        os.path.join(sd, "text_encoder"), dtype=torch.float32, output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    m["text_encoder"] = te.eval()
    m["unet"] = UNet2DConditionModel.from_pretrained(sd, subfolder="unet", torch_dtype=torch.float32).eval()
    m["vae"] = AutoencoderKL.from_pretrained(sd, subfolder="vae", torch_dtype=torch.float32).eval()
    m["scheduler_config"] = DDIMScheduler.load_config(sd, subfolder="scheduler")
    vis, info = CLIPVisionModelWithProjection.from_pretrained(
        os.path.join(models, "tiny-clip-vision"), dtype=torch.float32, output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    m["vision"] = vis.eval()
    ct, info = CLIPTextModelWithProjection.from_pretrained(
        os.path.join(models, "tiny-clip-text"), dtype=torch.float32, output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    m["clip_text"] = ct.eval()
    m["clip_text_tokenizer"] = CLIPTokenizer.from_pretrained(os.path.join(models, "tiny-clip-text"))
    m["head"] = load_file(os.path.join(models, "tiny-emotion-head.safetensors"))
    for name in ("text_encoder", "unet", "vae", "vision", "clip_text"):
        for p in m[name].parameters():
            assert p.dtype == torch.float32
            p.requires_grad_(False)
    return m


def tokenize(tok, prompts):
    """Exactly what StableDiffusionPipeline does."""
    return tok(
        prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(torch.int64)


def ddim(cfg):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(cfg)


def ddim_inverse(cfg):
    from diffusers import DDIMInverseScheduler

    return DDIMInverseScheduler.from_config(cfg)


# --------------------------------------------------------------------------- fixtures


def fx_text_encoder(m, out):
    te, tok = m["text_encoder"], m["tokenizer"]
    ids = tokenize(tok, TEXT_PROMPTS)
    assert ids.shape == (2, 77)
    with torch.no_grad():
        o = te(input_ids=ids)
    # gradient w.r.t. the token-embedding output (before position embeddings are added)
    emb = te.embeddings.token_embedding(ids).detach().clone().requires_grad_(True)
    hook = te.embeddings.token_embedding.register_forward_hook(lambda mod, inp, outp: emb)
    try:
        o2 = te(input_ids=ids)
    finally:
        hook.remove()
    assert torch.equal(o2.last_hidden_state, o.last_hidden_state)
    R = randn((2, 77, 32), 11)
    (o2.last_hidden_state * R).sum().backward()
    save(
        out,
        "text_encoder.safetensors",
        {
            "input_ids": ids,
            "last_hidden_state": f32(o.last_hidden_state),
            "pooler_output": f32(o.pooler_output),
            "inputs_embeds": f32(emb),
            "grad_seed": R,
            "grad_inputs_embeds": f32(emb.grad),
        },
        {"prompts": TEXT_PROMPTS, "model": "models/tiny-sd/text_encoder"},
    )


def fx_clip_vision(m, out):
    vis, head = m["vision"], m["head"]
    px = randn((2, 3, 32, 32), 21).requires_grad_(True)
    o = vis(pixel_values=px)
    R = randn((2, 32), 22)
    (o.image_embeds * R).sum().backward()
    with torch.no_grad():
        logits = o.image_embeds @ head["weight"].T + head["bias"]
        probs = logits.softmax(-1)
    print("           emotion head probs:", [round(x, 3) for x in probs[0].tolist()])
    save(
        out,
        "clip_vision.safetensors",
        {
            "pixel_values": f32(px),
            "image_embeds": f32(o.image_embeds),
            "last_hidden_state": f32(o.last_hidden_state),
            "grad_seed": R,
            "grad_pixel_values": f32(px.grad),
            "emotion_logits": f32(logits),
            "emotion_probs": f32(probs),
        },
        {"model": "models/tiny-clip-vision", "head": "models/tiny-emotion-head.safetensors"},
    )


def fx_clip_text_projection(m, out):
    ct, tok = m["clip_text"], m["clip_text_tokenizer"]
    prompts = ["a photo that evokes amusement", "a photo that evokes sadness"]
    ids = tokenize(tok, prompts)
    with torch.no_grad():
        o = ct(input_ids=ids)
    save(
        out,
        "clip_text_projection.safetensors",
        {"input_ids": ids, "text_embeds": f32(o.text_embeds), "last_hidden_state": f32(o.last_hidden_state)},
        {"prompts": prompts, "model": "models/tiny-clip-text"},
    )


def fx_unet(m, out):
    unet = m["unet"]
    sample = randn((2, 4, 8, 8), 31)
    ehs = randn((2, 77, 32), 32)
    R = randn((2, 4, 8, 8), 33)
    s = sample.clone().requires_grad_(True)
    e = ehs.clone().requires_grad_(True)
    o = unet(s, torch.tensor(501), encoder_hidden_states=e).sample
    (o * R).sum().backward()
    save(
        out,
        "unet.safetensors",
        {
            "sample": sample,
            "timestep": torch.tensor([501.0]),
            "encoder_hidden_states": ehs,
            "out": f32(o),
            "grad_seed": R,
            "grad_sample": f32(s.grad),
            "grad_encoder_hidden_states": f32(e.grad),
        },
    )
    tens = {"sample": sample, "encoder_hidden_states": ehs}
    with torch.no_grad():
        for t in (1, 261, 981):
            tens[f"out_t{t}"] = f32(unet(sample, torch.tensor(t), encoder_hidden_states=ehs).sample)
    tens["timesteps"] = torch.tensor([1.0, 261.0, 981.0])
    save(out, "unet_timesteps.safetensors", tens)


def fx_vae(m, out):
    vae = m["vae"]
    image = torch.rand(1, 3, 64, 64, generator=gen(41)) * 2 - 1
    with torch.no_grad():
        post = vae.encode(image).latent_dist
    mean, std = f32(post.mean), f32(post.std)
    lat = mean.clone().requires_grad_(True)
    dec = vae.decode(lat).sample
    R = randn((1, 3, 64, 64), 42)
    (dec * R).sum().backward()
    save(
        out,
        "vae.safetensors",
        {
            "image": image,
            "latent_mean": mean,
            "latent_std": std,
            "decoded": f32(dec),
            "grad_seed": R,
            "grad_latent": f32(lat.grad),
        },
        {"scaling_factor": SCALING},
    )


def encode_prompts(m, prompts):
    ids = tokenize(m["tokenizer"], prompts)
    with torch.no_grad():
        return ids, m["text_encoder"](input_ids=ids).last_hidden_state


def fx_ddim_txt2img(m, out):
    unet, vae = m["unet"], m["vae"]
    sched = ddim(m["scheduler_config"])
    sched.set_timesteps(STEPS)
    uncond_ids, uncond = encode_prompts(m, [""])
    cond_ids, cond = encode_prompts(m, ["a photo of a cat"])
    ehs = torch.cat([uncond, cond])  # diffusers order: [negative/uncond, cond]
    latents = randn((1, 4, 8, 8), 51) * sched.init_noise_sigma
    init = latents.clone()
    steps, epss = [], []
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.scale_model_input(torch.cat([latents] * 2), t)
            noise = unet(x, t, encoder_hidden_states=ehs).sample
            eps_u, eps_c = noise.chunk(2)
            eps = eps_u + GUIDANCE * (eps_c - eps_u)
            latents = sched.step(eps, t, latents, eta=0.0, return_dict=False)[0]
            steps.append(latents.clone())
            epss.append(eps.clone())
        image = vae.decode(latents / SCALING).sample
    # cross-check the explicit loop against diffusers' own pipeline on the saved folder
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        os.path.join(m["models_dir"], "tiny-sd"), torch_dtype=torch.float32, safety_checker=None
    )
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        ref = pipe(
            "a photo of a cat", num_inference_steps=STEPS, guidance_scale=GUIDANCE, eta=0.0,
            latents=init.clone(), output_type="latent", height=64, width=64,
        ).images
    assert torch.equal(ref, latents), (ref - latents).abs().max()
    save(
        out,
        "ddim_txt2img.safetensors",
        {
            "cond_ids": cond_ids,
            "uncond_ids": uncond_ids,
            "encoder_hidden_states": f32(ehs),
            "initial_latent": init,
            "num_inference_steps": torch.tensor([float(STEPS)]),
            "guidance_scale": torch.tensor([GUIDANCE]),
            "timesteps": sched.timesteps.to(torch.float32),
            "alphas_cumprod": f32(sched.alphas_cumprod),
            "eps_steps": torch.stack(epss),
            "latents_steps": torch.stack(steps),
            "final_latent": f32(latents),
            "image": f32(image),
        },
        {"prompt": "a photo of a cat", "negative_prompt": "", "eta": 0.0},
    )


def smooth_image():
    lin = torch.linspace(-1.0, 1.0, 64)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    r = 0.8 * xx
    g = 0.8 * yy
    b = 0.6 * torch.sin(math.pi * xx) * torch.cos(math.pi * yy)
    return torch.stack([r, g, b])[None].contiguous()


def fx_ddim_inversion(m, out):
    unet, vae = m["unet"], m["vae"]
    cfg = m["scheduler_config"]
    inv = ddim_inverse(cfg)
    inv.set_timesteps(STEPS)
    fwd = ddim(cfg)
    fwd.set_timesteps(STEPS)
    ac = fwd.alphas_cumprod
    assert torch.equal(inv.alphas_cumprod, ac)
    assert float(inv.initial_alpha_cumprod) == float(ac[0])  # set_alpha_to_one False
    assert inv.timesteps.tolist() == sorted(fwd.timesteps.tolist())
    empty_ids, empty = encode_prompts(m, [""])
    image = smooth_image()
    with torch.no_grad():
        z0 = vae.encode(image).latent_dist.mean * SCALING
        z = z0.clone()
        traj = []
        ratio = cfg["num_train_timesteps"] // STEPS
        for t in inv.timesteps:  # ascending: 1, 101, ..., 901
            eps = unet(z, t, encoder_hidden_states=empty).sample  # guidance 1: conditional branch only
            # explicit formula (the convention the Swift side implements) ...
            t_cur = int(t) - ratio
            a_cur = ac[t_cur] if t_cur >= 0 else ac[0]
            a_next = ac[int(t)]
            x0 = (z - (1 - a_cur).sqrt() * eps) / a_cur.sqrt()
            z_explicit = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
            # ... checked against diffusers' DDIMInverseScheduler, whose result is stored
            z = inv.step(eps, t, z, return_dict=False)[0]
            assert torch.allclose(z, z_explicit, rtol=1e-5, atol=1e-5), (z - z_explicit).abs().max()
            traj.append(z.clone())
        zT = z.clone()
        rec = []
        for t in fwd.timesteps:  # descending: 901, ..., 1
            eps = unet(z, t, encoder_hidden_states=empty).sample
            z = fwd.step(eps, t, z, eta=0.0, return_dict=False)[0]
            rec.append(z.clone())
        z0_rec = z.clone()
        decoded_rec = vae.decode(z0_rec / SCALING).sample
    print(f"           inversion: |z0_rec - z0|max = {(z0_rec - z0).abs().max():.4g}, |z0| max = {z0.abs().max():.4g}")
    save(
        out,
        "ddim_inversion.safetensors",
        {
            "image": image,
            "uncond_ids": empty_ids,
            "z0": f32(z0),
            "timesteps_inversion": inv.timesteps.to(torch.float32),
            "timesteps_denoise": fwd.timesteps.to(torch.float32),
            "inversion_latents": torch.stack(traj),
            "zT": f32(zT),
            "denoise_latents": torch.stack(rec),
            "z0_rec": f32(z0_rec),
            "decoded_rec": f32(decoded_rec),
        },
        {"prompt": "", "guidance_scale": 1.0, "convention": "diffusers DDIMInverseScheduler (see README)"},
    )


# --------------------------------------------------------------------------- tokenizer


def tokenizer_prompts():
    p = []
    # ordinary captions
    p += [
        "a photo of a cat",
        "a photo of a dog",
        "A photograph of an astronaut riding a horse",
        "a painting of a fox sitting in a field at sunrise",
        "portrait of an old man with a white beard, oil on canvas",
        "a bowl of fruit on a wooden table",
        "a red car parked in front of a brick building",
        "two children playing in the snow",
        "a mountain lake reflecting the sky",
        "a busy street in tokyo at night with neon signs",
        "a cozy living room with a fireplace",
        "a close-up of a sunflower",
        "an empty beach under a cloudy sky",
        "a lighthouse on a rocky coast during a storm",
        "a bride and groom dancing at their wedding",
        "a crowd cheering at a football match",
        "a lonely tree in a foggy field",
        "a plate of spaghetti with tomato sauce",
        "a man shouting angrily at his computer",
        "a spider crawling on a rotten apple",
        "a dark abandoned hospital corridor",
        "a girl crying alone in the rain",
        "fireworks over a city skyline",
        "a kitten sleeping in a basket",
        "a herd of elephants crossing a river",
        "the northern lights over a snowy forest",
        "a medieval castle on a hill",
        "a bicycle leaning against a fence",
        "an old library full of books",
        "a chef cooking in a busy kitchen",
        "a surfer riding a huge wave",
        "a hot air balloon over the desert",
        "a black and white photo of a train station",
        "a group of friends laughing around a campfire",
        "a storm over the ocean",
        "a child blowing out birthday candles",
        "a broken doll on the floor",
        "a snake coiled around a branch",
        "a sunset over wheat fields",
        "an owl perched on a branch at night",
        "a waterfall in a tropical jungle",
        "a dog catching a frisbee in the park",
        "a cup of coffee and a croissant",
        "a city street after the rain",
        "a vase of tulips by the window",
        "a soldier standing in the ruins",
        "people dancing at a street festival",
        "a quiet village in the mountains",
        "a wolf howling at the moon",
        "a young woman reading a book in a cafe",
        "a rollercoaster at an amusement park",
        "a garbage dump with flies",
        "a thunderstorm with lightning",
        "an aerial view of a winding river",
        "a cathedral interior with stained glass windows",
        "a pair of running shoes",
        "a macro photo of a dew drop on a leaf",
        "a pixel art landscape",
        "a still life with skulls and candles",
        "a golden retriever puppy",
    ]
    # emotions (MUSE)
    for emo in ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"]:
        p.append(f"a photo of a house, {emo}")
        p.append(f"an image that evokes {emo}")
    p += ["", " ", "   ", "\n", "\t \n "]
    # punctuation
    p += [
        "hello, world!",
        "what?! no way...",
        "a cat; a dog: a bird.",
        "(masterpiece), [best quality], {ultra detailed}",
        "((a cat)) [[a dog]]",
        "a photo of a cat -- trending on artstation",
        "a/b/c d\\e",
        "100% real!!!",
        "email@example.com",
        "https://example.com/path?query=1&x=2",
        "#hashtag @mention $dollar ^caret *star",
        "a_b_c snake_case camelCase",
        "quote \"inside\" quotes",
        "'single quotes' and `backticks`",
        "dash-separated-words and under_scores",
        "ellipsis… and em—dash – en-dash",
        "«guillemets» „low quotes“ ‘curly’ “double”",
        "~tilde~ |pipe| +plus+ =equals=",
        "a!b?c.d,e",
        ":) :( ;-) <3",
        "dog!'s it''s",
        "...",
        "!!!",
    ]
    # numbers
    p += [
        "3.14",
        "pi is 3.14159265",
        "1,000 people",
        "1,000,000 dollars",
        "the year 1999",
        "2024-01-15",
        "12:30 pm",
        "a 4k photo",
        "8k uhd, 35mm, f/1.8",
        "version 2.0.1",
        "-5 degrees",
        "1/2 cup of sugar",
        "007",
        "room 101",
        "0.5x zoom",
        "10x10 grid",
        "a3 paper",
        "covid19",
        "١٢٣ arabic digits",
        "½ ¼ ² ³ ⅓",
        "Ⅻ roman numeral",
        "1st 2nd 3rd 4th",
    ]
    # contractions
    p += [
        "it's a cat",
        "don't stop",
        "they're here",
        "we've been there",
        "i'm happy",
        "you'll see",
        "she'd like that",
        "IT'S LOUD",
        "DON'T PANIC",
        "THEY'RE WE'VE I'M YOU'LL HE'D",
        "the cat's toy",
        "rock 'n' roll",
        "o'clock",
        "'s 't 're 've 'm 'll 'd",
        "it’s curly apostrophe",
        "can't won't shouldn't",
        "'tis the season",
    ]
    # unicode, accents, emoji, CJK, other scripts
    p += [
        "café au lait",
        "cafe\u0301 decomposed",
        "naïve résumé",
        "Crème Brûlée",
        "São Paulo",
        "Zürich",
        "smørrebrød",
        "İstanbul",
        "ΟΔΟΣ and οδός",
        "Ελληνικά γράμματα",
        "Москва зимой",
        "一只猫",
        "東京の夜景",
        "猫と犬 cat and dog",
        "한국어 텍스트",
        "مرحبا بالعالم",
        "שלום עולם",
        "नमस्ते दुनिया",
        "สวัสดีครับ",
        "😀",
        "a cat 🐱 and a dog 🐶",
        "👨‍👩‍👧 family emoji",
        "🇫🇷 flag",
        "❤️ heart",
        "★☆✓✗",
        "ﬁne ligature",
        "ＡＢＣ fullwidth",
        "zero\u200bwidth space",
        "soft\u00adhyphen",
        "non\u00a0breaking space",
        "em\u2003space",
        "ẞ capital sharp s",
        "Straße",
        "ÆØÅ æøå",
        "ǅ titlecase",
        "control\x07char",
        "null\x00byte",
    ]
    # mixed case
    p += [
        "A PHOTO OF A CAT",
        "A Photo Of A Cat",
        "aPhOtO oF a CaT",
        "NASA rocket launch",
        "iPhone on a MacBook",
        "McDonald's restaurant",
        "HDR, UHD, 8K",
        "The Starry Night by Vincent van Gogh",
        "Greg Rutkowski and Alphonse Mucha",
        "Mona Lisa",
    ]
    # whitespace
    p += [
        "  leading spaces",
        "trailing spaces   ",
        "multiple    spaces   between",
        "a\ttab",
        "a\nnewline",
        "line one\nline two\nline three",
        "\t\ttabs\t\teverywhere\t",
        "carriage\r\nreturn",
        "mixed \t\n whitespace",
        "  a photo of a cat  ",
        "a\u3000ideographic space",
        "a\u2028line separator",
    ]
    # html-ish
    p += [
        "<b>bold</b> text",
        "<div class=\"x\">a cat</div>",
        "&amp; &lt; &gt; &quot;",
        "a &amp; b",
        "tom &amp;amp; jerry",
        "<br/>line<br />break",
        "<!-- comment -->",
        "<img src=\"cat.png\" alt=\"a cat\">",
        "&#39;quoted&#39;",
        "&nbsp;space",
        "<p>paragraph</p>\n<p>another</p>",
        "x < y > z",
        "a<|endoftext|>b",
        "<|startoftext|>a photo of a cat<|endoftext|>",
    ]
    # long prompts (> 77 tokens -> truncation)
    long_base = (
        "a highly detailed digital painting of a majestic dragon flying over a medieval city at sunset, "
        "volumetric lighting, dramatic clouds, intricate details, sharp focus, concept art, trending on "
        "artstation, by greg rutkowski and alphonse mucha, 8k, ultra realistic, cinematic composition"
    )
    p += [
        long_base,
        long_base + ", " + long_base,
        " ".join(["cat"] * 100),
        " ".join(str(i) for i in range(100)),
        "a " * 80,
        ", ".join(["masterpiece", "best quality", "ultra detailed", "photorealistic"] * 12),
        "😀" * 40,
        "猫" * 120,
        "word " * 74 + "end",
        "word " * 75 + "end",
        "word " * 76 + "end",
        "supercalifragilisticexpialidocious " * 20,
        "The quick brown fox jumps over the lazy dog. " * 8,
    ]
    # combinatorial captions to reach a broad sample
    subjects = ["cat", "dog", "horse", "robot", "tree", "ship", "castle", "flower", "child", "bird", "city", "forest"]
    styles = [
        "in the style of van gogh",
        "as a pencil sketch",
        "at golden hour",
        "under heavy rain",
        "in a futuristic world",
        "made of glass",
    ]
    for i, s in enumerate(subjects):
        for j, st in enumerate(styles):
            if (i + j) % 2 == 0:
                p.append(f"a {s} {st}")
    return p


def fx_tokenizer(models, out):
    from transformers import CLIPTokenizer

    full = CLIPTokenizer(
        os.path.join(models, "clip-bpe", "vocab.json"), os.path.join(models, "clip-bpe", "merges.txt"), model_max_length=77
    )
    tiny = CLIPTokenizer.from_pretrained(os.path.join(models, "tiny-sd", "tokenizer"))
    prompts = tokenizer_prompts()
    assert len(prompts) >= 250, len(prompts)
    assert len(set(prompts)) == len(prompts), "duplicate prompts"

    def dump(tok, ps, name):
        cases = []
        for s in ps:
            ids = tok(s, padding="max_length", max_length=77, truncation=True)["input_ids"]
            assert len(ids) == 77
            cases.append({"prompt": s, "ids": ids})
        path = os.path.join(out, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("[\n")
            f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
            f.write("\n]\n")
        print(f"{os.path.getsize(path):>9}  {os.path.relpath(path, REPO)}  ({len(cases)} prompts)")

    dump(full, prompts, "tokenizer_cases.json")
    tiny_prompts = prompts[::5][:50]
    assert len(tiny_prompts) == 50
    dump(tiny, tiny_prompts, "tokenizer_cases_tiny.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "Fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    quiet()
    try:
        import ftfy  # noqa: F401

        sys.exit("ftfy is installed; uninstall it (the fixtures assume transformers' plain CLIP normalisation)")
    except ImportError:
        pass
    os.makedirs(args.out, exist_ok=True)
    m = load_all(args.models)
    fx_text_encoder(m, args.out)
    fx_clip_vision(m, args.out)
    fx_clip_text_projection(m, args.out)
    fx_unet(m, args.out)
    fx_vae(m, args.out)
    fx_ddim_txt2img(m, args.out)
    fx_ddim_inversion(m, args.out)
    fx_tokenizer(args.models, args.out)


if __name__ == "__main__":
    main()
