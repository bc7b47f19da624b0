#!/usr/bin/env python3
"""Single-file (original LDM layout) checkpoints of models/tiny-sd, and what diffusers makes of them.

A user's `v1-5-pruned-emaonly.safetensors` holds the whole pipeline in one file under the
original CompVis names: `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE, its
mid-block attention as 1×1 convolutions named q/k/v/proj_out), `cond_stage_model.transformer.
text_model.*` (CLIP text encoder); "full" checkpoints add the UNet's EMA copy under
`model_ema.<name without its dots>`. diffusers 0.42.1 ships the forward conversion only
(`loaders/single_file_utils.py`), so the diffusers → LDM direction is written out here, from
the tiny model's config.

Committed files stay small: the checkpoints themselves (~7 MB each) are not committed. This
script writes a *recipe* instead, `Tests/Fixtures/single_file_recipe.json`: every tensor of the
LDM file in order, with the tiny-sd tensor it copies and its shape, plus each variant's dtype
and the FNV-1a 64 hash of the file bytes. The Swift tests rebuild each variant from
models/tiny-sd with that recipe, check the hash (so they load the very bytes diffusers loaded
here) and compare against `Tests/Fixtures/single_file.safetensors`: diffusers'
`StableDiffusionPipeline.from_single_file(file, config=models/tiny-sd, local_files_only=True)`
outputs for the inputs of unet.safetensors, vae.safetensors and text_encoder.safetensors.

Variants (float tensors in one dtype, as real checkpoints are):
  f16, bf16, f32   the plain checkpoint (+ `...embeddings.position_ids`, I64, as SD 1.5 has)
  ema              f16; `model.diffusion_model.*` negated (so the two copies differ) and the
                   original UNet as `model_ema.*` (+ `model_ema.decay`, `model_ema.num_updates`).
                   diffusers' default (extract_ema=False) takes the negated weights; with
                   extract_ema=True the EMA ones.

Also checks: the f32 variant loads to exactly the folder's weights (the inverse mapping is
right), and the `.ckpt` conversion command that MUSE's refusal message prints works.

Usage: python tools/reference/build_single_file.py [--keep DIR]   (HF_HUB_OFFLINE=1 is set)
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from make_fixtures import quiet  # noqa: E402

TINY = os.path.join(REPO, "models", "tiny-sd")
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
UNET, VAE, CLIP = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."
DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}

torch.set_num_threads(2)


# --------------------------------------------------------------------------- diffusers → LDM names


def unet_names(config):
    """diffusers UNet name prefix → LDM name prefix (the inverse of convert_ldm_unet_checkpoint)."""
    levels, lpb = len(config["block_out_channels"]), config["layers_per_block"]
    resnet = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
              ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
    prefixes = {
        "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
        "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
        "mid_block.attentions.0.": "middle_block.1.",
    }
    resnets = {"mid_block.resnets.0.": "middle_block.0.", "mid_block.resnets.1.": "middle_block.2."}
    for i in range(levels):
        for j in range(lpb):
            k = 1 + i * (lpb + 1) + j
            resnets[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{k}.0."
            prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{k}.1."
        if i < levels - 1:
            prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{1 + i * (lpb + 1) + lpb}.0.op."
        attention = config["up_block_types"][i].startswith("CrossAttn")
        for j in range(lpb + 1):
            k = i * (lpb + 1) + j
            resnets[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{k}.0."
            prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{k}.1."
        if i < levels - 1:
            k = i * (lpb + 1) + lpb
            prefixes[f"up_blocks.{i}.upsamplers.0.conv."] = f"output_blocks.{k}.{2 if attention else 1}.conv."

    def convert(name):
        for hf, sd in resnets.items():
            if name.startswith(hf):
                rest = name[len(hf):]
                for a, b in resnet:
                    if rest.startswith(a + "."):
                        return sd + b + rest[len(a):]
                raise KeyError(name)
        for hf, sd in prefixes.items():
            if name.startswith(hf):
                return sd + name[len(hf):]
        raise KeyError(name)

    return convert


def vae_names(config):
    """diffusers VAE name → LDM name (the inverse of convert_ldm_vae_checkpoint)."""
    levels = len(config["block_out_channels"])
    prefixes = {"quant_conv.": "quant_conv.", "post_quant_conv.": "post_quant_conv."}
    for part in ("encoder", "decoder"):
        prefixes[f"{part}.conv_in."] = f"{part}.conv_in."
        prefixes[f"{part}.conv_out."] = f"{part}.conv_out."
        prefixes[f"{part}.conv_norm_out."] = f"{part}.norm_out."
        prefixes[f"{part}.mid_block.resnets.0."] = f"{part}.mid.block_1."
        prefixes[f"{part}.mid_block.resnets.1."] = f"{part}.mid.block_2."
        for hf, sd in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            prefixes[f"{part}.mid_block.attentions.0.{hf}."] = f"{part}.mid.attn_1.{sd}."
    for i in range(levels):
        prefixes[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = f"encoder.down.{i}.downsample.conv."
        prefixes[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{levels - 1 - i}.block."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = f"decoder.up.{levels - 1 - i}.upsample.conv."

    def convert(name):
        for hf, sd in sorted(prefixes.items(), key=lambda p: -len(p[0])):
            if name.startswith(hf):
                return (sd + name[len(hf):]).replace("conv_shortcut", "nin_shortcut")
        raise KeyError(name)

    return convert


def ema_name(ldm):
    """diffusers' rule: "model_ema." + the key without its first part, dots removed."""
    return "model_ema." + "".join(ldm.split(".")[1:])


# --------------------------------------------------------------------------- recipe and files


def read_json(path):
    with open(path) as f:
        return json.load(f)


def sources():
    return {
        "unet": load_file(os.path.join(TINY, "unet", "diffusion_pytorch_model.safetensors")),
        "vae": load_file(os.path.join(TINY, "vae", "diffusion_pytorch_model.safetensors")),
        "text_encoder": load_file(os.path.join(TINY, "text_encoder", "model.safetensors")),
    }


def recipe(src):
    """Every LDM tensor as [ldm name, tiny-sd component, diffusers name, shape], in file order."""
    unet = unet_names(read_json(os.path.join(TINY, "unet", "config.json")))
    vae = vae_names(read_json(os.path.join(TINY, "vae", "config.json")))
    tensors = []
    for name in sorted(src["unet"]):
        tensors.append([UNET + unet(name), "unet", name, list(src["unet"][name].shape)])
    for name in sorted(src["vae"]):
        shape = list(src["vae"][name].shape)
        if ".mid_block.attentions.0.to_" in name and name.endswith(".weight"):
            shape += [1, 1]  # LDM's AttnBlock: 1×1 convolutions
        tensors.append([VAE + vae(name), "vae", name, shape])
    for name in sorted(src["text_encoder"]):
        tensors.append([CLIP + name, "text_encoder", name, list(src["text_encoder"][name].shape)])
    ldm = [t[0] for t in tensors]
    assert len(set(ldm)) == len(ldm), "two diffusers names map to one LDM name"
    ema = [[ema_name(t[0]), t[1], t[2], t[3]] for t in tensors if t[1] == "unet"]
    return {
        "tensors": tensors,
        # [name, dtype, shape, values]: as SD 1.5's file has the text model's position_ids buffer
        "constants": [[CLIP + "text_model.embeddings.position_ids", "I64", [1, 77], list(range(77))]],
        "ema_tensors": ema,
        "ema_constants": [["model_ema.decay", "F32", [], [0.9999]], ["model_ema.num_updates", "I32", [], [4242]]],
    }


VARIANTS = {
    "f16": {"dtype": "F16", "lists": ["tensors", "constants"]},
    "bf16": {"dtype": "BF16", "lists": ["tensors", "constants"]},
    "f32": {"dtype": "F32", "lists": ["tensors", "constants"]},
    "ema": {"dtype": "F16", "lists": ["tensors", "constants", "ema_tensors", "ema_constants"],
            "negate_prefix": UNET},
}


def variant_tensors(r, src, variant):
    """(name, tensor) in file order, as the Swift tests rebuild them."""
    v = VARIANTS[variant]
    out = []
    for lst in v["lists"]:
        for entry in r[lst]:
            if lst.endswith("constants"):
                name, dtype, shape, values = entry
                t = torch.tensor(values, dtype={"I64": torch.int64, "I32": torch.int32, "F32": torch.float32}[dtype])
                out.append((name, t.reshape(shape)))
                continue
            name, component, source, shape = entry
            t = src[component][source].to(torch.float32).reshape(shape)
            if v.get("negate_prefix") and name.startswith(v["negate_prefix"]):
                t = -t
            out.append((name, t.to(DTYPES[v["dtype"]])))
    return out


SAFETENSORS_DTYPE = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
                     torch.int64: "I64", torch.int32: "I32"}


def write(path, tensors):
    """A safetensors file written byte for byte as the Swift tests write it: header entries in the
    given order, compact JSON, padded with spaces to 8 bytes, data back to back."""
    header, offset, blobs = [], 0, []
    for name, t in tensors:
        t = t.contiguous()
        raw = (t.view(torch.int16) if t.dtype in (torch.float16, torch.bfloat16) else t).numpy().tobytes()
        shape = ",".join(str(d) for d in t.shape)
        header.append(f'"{name}":{{"dtype":"{SAFETENSORS_DTYPE[t.dtype]}","shape":[{shape}],'
                      f'"data_offsets":[{offset},{offset + len(raw)}]}}')
        offset += len(raw)
        blobs.append(raw)
    text = ("{" + ",".join(header) + "}").encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def fnv1a64(path):
    h = 0xCBF29CE484222325
    with open(path, "rb") as f:
        data = f.read()
    # numpy-free but fast enough for a few MB: process in Python ints
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def sd15_name_pairs():
    """[LDM name, diffusers name] for every UNet and VAE tensor of SD 1.5 (models/sd15-config),
    checked by running diffusers' own forward conversion on stand-in tensors that carry their
    index: the Swift map must give the same names on 4 levels as on the tiny model's 3."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    config = os.path.join(REPO, "models", "sd15-config")
    out = {}
    for part, cls, names, convert, prefix in (
        ("unet", UNet2DConditionModel, unet_names, convert_ldm_unet_checkpoint, UNET),
        ("vae", AutoencoderKL, vae_names, convert_ldm_vae_checkpoint, VAE),
    ):
        cfg = read_json(os.path.join(config, part, "config.json"))
        with torch.device("meta"):
            state = cls.from_config(cfg).state_dict()
        to_ldm = names(cfg)
        ldm = {}
        for i, (name, t) in enumerate(sorted(state.items())):
            rank = t.dim() + (2 if ".mid_block.attentions.0.to_" in name and name.endswith(".weight") else 0)
            ldm[prefix + to_ldm(name)] = torch.full([1] * rank, float(i))
        back = convert(ldm, cfg)
        assert set(back) == set(state), part
        pairs = []
        for i, name in enumerate(sorted(state)):
            assert back[name].flatten()[0].item() == i, name
            pairs.append([prefix + to_ldm(name), name])
        out[part] = pairs
    return out


# --------------------------------------------------------------------------- diffusers side


def load_pipeline(path, **kwargs):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_single_file(
        path, config=TINY, local_files_only=True, torch_dtype=torch.float32, **kwargs)


def outputs(pipe):
    unet_in = load_file(os.path.join(FIXTURES, "unet.safetensors"))
    vae_in = load_file(os.path.join(FIXTURES, "vae.safetensors"))
    text_in = load_file(os.path.join(FIXTURES, "text_encoder.safetensors"))
    with torch.no_grad():
        return {
            "unet_out": pipe.unet(unet_in["sample"], torch.tensor(int(unet_in["timestep"][0])),
                                  encoder_hidden_states=unet_in["encoder_hidden_states"]).sample,
            "vae_decoded": pipe.vae.decode(vae_in["latent_mean"]).sample,
            "text_last_hidden_state": pipe.text_encoder(input_ids=text_in["input_ids"]).last_hidden_state,
        }


def same_weights(pipe, src, components=("unet", "vae", "text_encoder")):
    """The pipeline's weights are exactly models/tiny-sd's (upcast)."""
    for component in components:
        module = getattr(pipe, component)
        state = module.state_dict()
        for name, t in src[component].items():
            key = name if name in state else name.removeprefix("text_model.")
            if not torch.equal(state[key], t.to(torch.float32)):
                return False
    return True


def ckpt_conversion_works(r, src, work):
    """The refusal message's command, on a .ckpt of the f16 variant (config= only to stay offline)."""
    ckpt = os.path.join(work, "tiny.ckpt")
    torch.save({"state_dict": dict(variant_tensors(r, src, "f16"))}, ckpt)
    out = os.path.join(work, "tiny-diffusers")
    program = ("from diffusers import StableDiffusionPipeline; "
               f"StableDiffusionPipeline.from_single_file({ckpt!r}, config={TINY!r}, local_files_only=True)"
               f".save_pretrained({out!r})")
    subprocess.run([sys.executable, "-c", program], check=True, capture_output=True)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(out, subfolder="unet")
    return all(torch.equal(unet.state_dict()[k].float(), v.float()) for k, v in src["unet"].items())


def full_size(out):
    """Not for CI (~2 GB): an SD 1.5-shaped checkpoint with random weights (seed 8000) in the LDM
    layout, F16, and what diffusers makes of it with models/sd15-config → OUT/sd15-ldm.safetensors,
    OUT/parity.safetensors. SingleFileTests' full-size test loads it with the bundled configs."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    config = os.path.join(REPO, "models", "sd15-config")
    torch.manual_seed(8000)
    unet_cfg, vae_cfg = (read_json(os.path.join(config, c, "config.json")) for c in ("unet", "vae"))
    src = {"unet": UNet2DConditionModel.from_config(unet_cfg).state_dict(),
           "vae": AutoencoderKL.from_config(vae_cfg).state_dict()}
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(config, "text_encoder")))
    src["text_encoder"] = {("text_model." + k if not k.startswith("text_model.") else k): v
                           for k, v in text.state_dict().items() if not k.endswith("position_ids")}
    unet, vae = unet_names(unet_cfg), vae_names(vae_cfg)
    tensors = [(UNET + unet(k), v) for k, v in sorted(src["unet"].items())]
    tensors += [(VAE + vae(k), v[:, :, None, None] if ".mid_block.attentions.0.to_" in k and k.endswith(".weight")
                 else v) for k, v in sorted(src["vae"].items())]
    tensors += [(CLIP + k, v) for k, v in sorted(src["text_encoder"].items())]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "sd15-ldm.safetensors")
    write(path, [(k, v.detach().to(torch.float16)) for k, v in tensors])
    del src, tensors, text
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(path, config=config, local_files_only=True,
                                                    torch_dtype=torch.float32)
    ids = CLIPTokenizer.from_pretrained(os.path.join(config, "tokenizer"))(
        ["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(8001)
    sample, context = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, 768, generator=g)
    latent = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        fixture = {"sample": sample, "timestep": torch.tensor([501.0]), "encoder_hidden_states": context,
                   "unet_out": pipe.unet(sample, torch.tensor(501), encoder_hidden_states=context).sample,
                   "latent": latent, "vae_decoded": pipe.vae.decode(latent).sample,
                   "input_ids": ids.to(torch.int64),
                   "text_last_hidden_state": pipe.text_encoder(input_ids=ids).last_hidden_state}
    save_file({k: v.contiguous() for k, v in fixture.items()}, os.path.join(out, "parity.safetensors"))
    print(f"{os.path.getsize(path):>11}  {path}\n            {os.path.join(out, 'parity.safetensors')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="write the variant files here (default: a temporary folder)")
    ap.add_argument("--sd15", metavar="OUT", help="only write a full-size SD 1.5 checkpoint and its parity file to OUT")
    args = ap.parse_args()
    quiet()
    if args.sd15:
        full_size(args.sd15)
        return
    src = sources()
    r = recipe(src)
    work = args.keep or tempfile.mkdtemp(prefix="single-file-")
    os.makedirs(work, exist_ok=True)
    fixture, variants = {}, {}
    for name, v in VARIANTS.items():
        path = os.path.join(work, f"tiny-sd-{name}.safetensors")
        write(path, variant_tensors(r, src, name))
        variants[name] = dict(v, fnv1a64=fnv1a64(path), bytes=os.path.getsize(path))
        pipe = load_pipeline(path)
        for k, t in outputs(pipe).items():
            fixture[f"{name}.{k}"] = t.float().contiguous()
        if name == "f32":
            assert same_weights(pipe, src), "the f32 file does not load to models/tiny-sd's weights"
            folder = {k: load_file(os.path.join(FIXTURES, f)) for k, f in
                      (("unet", "unet.safetensors"), ("vae", "vae.safetensors"), ("text", "text_encoder.safetensors"))}
            # Same weights as the folder: its fixtures agree (not bit for bit: those were computed
            # with autograd on, which picks other kernels).
            for key, reference in (("unet_out", folder["unet"]["out"]), ("vae_decoded", folder["vae"]["decoded"]),
                                   ("text_last_hidden_state", folder["text"]["last_hidden_state"])):
                error = ((fixture[f"f32.{key}"] - reference).abs().max() / reference.abs().max()).item()
                print(f"          f32 {key} vs the folder's fixture: {error:.1e} relative")
                assert error < 1e-5, key
        if name == "ema":
            assert not same_weights(pipe, src, ["unet"]), "extract_ema=False took the EMA weights"
            pipe = load_pipeline(path, extract_ema=True)
            assert same_weights(pipe, src, ["unet"]), "extract_ema=True did not take the EMA weights"
            fixture["ema_extracted.unet_out"] = outputs(pipe)["unet_out"].float().contiguous()
        print(f"{variants[name]['bytes']:>9}  {path}  fnv1a64 {variants[name]['fnv1a64']}")
    assert ckpt_conversion_works(r, src, work), "the .ckpt conversion command gave other weights"
    print("          the .ckpt conversion command works")

    names = sd15_name_pairs()
    path = os.path.join(FIXTURES, "single_file_sd15_names.json")
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(
            f'  "{part}": [\n' + ",\n".join("    " + json.dumps(p) for p in pairs) + "\n  ]"
            for part, pairs in names.items()) + "\n}\n")
    print(f"{os.path.getsize(path):>9}  {os.path.relpath(path, REPO)}  (SD 1.5: {len(names['unet'])} UNet, "
          f"{len(names['vae'])} VAE names)")

    r = {"generator": "tools/reference/build_single_file.py", "source": "models/tiny-sd",
         "variants": variants, **r}
    path = os.path.join(FIXTURES, "single_file_recipe.json")
    with open(path, "w") as f:
        # one tensor per line: small diffs when the tiny model changes
        f.write("{\n")
        items = list(r.items())
        for i, (k, v) in enumerate(items):
            end = ",\n" if i < len(items) - 1 else "\n"
            if isinstance(v, list):
                f.write(f"  {json.dumps(k)}: [\n")
                f.write(",\n".join("    " + json.dumps(e, separators=(",", ":")) for e in v))
                f.write("\n  ]" + end)
            else:
                f.write(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" + end)
        f.write("}\n")
    print(f"{os.path.getsize(path):>9}  {os.path.relpath(path, REPO)}")
    out = os.path.join(FIXTURES, "single_file.safetensors")
    save_file(dict(sorted(fixture.items())), out,
              metadata={"info": json.dumps({"generator": "tools/reference/build_single_file.py"})})
    print(f"{os.path.getsize(out):>9}  {os.path.relpath(out, REPO)}")
    for k, t in sorted(fixture.items()):
        print(f"           {k:34s} {list(t.shape)}")


if __name__ == "__main__":
    main()
