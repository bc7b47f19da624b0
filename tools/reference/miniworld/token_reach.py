"""How far one emotion token moves the guide on one x̂0 (the diagnosis behind guide_head.py).

Runs DDIM (50 steps, CFG 7.5) on one demo prompt without the token up to step START, then
optimises the token (the emotion word's input embedding, inserted after the prompt as the
engine does) with Adam against −log p_guide(target) of the decoded x̂0 at that step alone,
printing p(target), the top class, the image's mean pixel value and the token's drift; and,
for comparison, p(target) and mean pixel value of the same x̂0 with two look words instead.

    /work/venv/bin/python tools/reference/miniworld/token_reach.py models/miniworld fear 5 0.01 120

(TRAINING_LOG.txt run 5 used run 4's exported models, i.e. the clean-trained head.)
"""
import sys, json, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
import check as C, train as T
torch.set_num_threads(2); torch.manual_seed(0)
pipe, text, heads = C.load(sys.argv[1])
tower, W, b = heads['guide']
tok, te, unet, vae, sch = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae, pipe.scheduler
for m in (te, unet, vae, tower): m.requires_grad_(False)
prompt = "a brown house in the middle, with two trees, by the sea, among mountains, cloudy, in the morning, spring"
target = T.EMOTIONS.index(sys.argv[2]); word = sys.argv[2]
ids = tok(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
n = int((ids[0] != tok.eos_token_id).sum())  # bos + prompt tokens
wid = tok(word, add_special_tokens=False).input_ids
print('emotion word ids', wid)
ids2 = torch.cat([ids[:, :n], torch.tensor([[wid[0]]]), ids[:, n:76]], 1)
emb = te.get_input_embeddings()
v = emb.weight[wid[0]].clone().requires_grad_(True)
print('embedding table rms', emb.weight.pow(2).mean().sqrt().item(), 'token norm', v.norm().item())
def encode(vec):
    def hook(mod, inp, out):
        out = out.clone(); out[:, n] = vec; return out
    h = emb.register_forward_hook(hook)
    try: return te(ids2)[0]
    finally: h.remove()
unc = te(tok("", padding="max_length", max_length=77, return_tensors="pt").input_ids)[0]
sch.set_timesteps(50)
g = torch.Generator().manual_seed(3)
z = torch.randn(1, 4, 16, 16, generator=g)
start = int(sys.argv[3]); lr = float(sys.argv[4]); iters = int(sys.argv[5])
with torch.no_grad():
    c0 = encode(v.detach())
    for i, t in enumerate(sch.timesteps[:start]):
        o = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([unc, c0])).sample
        ou, oc = o.chunk(2); z = sch.step(ou + 7.5 * (oc - ou), t, z).prev_sample
t = sch.timesteps[start]; a = sch.alphas_cumprod[t]
from make_data import LOOK_WORDS
def guide_p(cond):
    with torch.no_grad():
        ou = unet(z, t, encoder_hidden_states=unc).sample; oc = unet(z, t, encoder_hidden_states=cond).sample
        x0 = a.sqrt() * z - (1 - a).sqrt() * (ou + 7.5 * (oc - ou))
        img = (vae.decode(x0 / vae.config.scaling_factor).sample.clamp(-1, 1) + 1) / 2
        return F.softmax(tower(pixel_values=T.clip_normalise(img)).image_embeds @ W.T + b, -1)[0][target].item(), img.mean().item()
lw = LOOK_WORDS[sys.argv[2]]
look = te(tok(f"{prompt}, {lw[0]}, {lw[2]}", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids)[0]
print('look words', lw[0], lw[2], 'x0 p(target) %.3f luma %.2f' % guide_p(look))
opt = torch.optim.Adam([v], lr=lr)
for it in range(iters + 1):
    c = encode(v)
    ou = unet(z, t, encoder_hidden_states=unc).sample.detach()
    oc = unet(z, t, encoder_hidden_states=c).sample
    out = ou + 7.5 * (oc - ou)
    x0 = a.sqrt() * z - (1 - a).sqrt() * out
    img = (vae.decode(x0 / vae.config.scaling_factor).sample.clamp(-1, 1) + 1) / 2
    e = tower(pixel_values=T.clip_normalise(img)).image_embeds
    p = F.softmax(e @ W.T + b, -1)[0]
    loss = -torch.log(p[target])
    if it % (iters // 8) == 0:
        print(f'it {it} t {int(t)} p(target) {p[target].item():.3f} top {T.EMOTIONS[p.argmax()]} luma {img.mean().item():.2f} drift {(v - emb.weight[wid[0]]).norm().item():.2f}')
    opt.zero_grad(); loss.backward(); opt.step()
