#!/usr/bin/env python3
"""Extract the real CLIP BPE vocabulary from the open_clip_torch wheel and write the
standard Hugging Face tokenizer files (vocab.json + merges.txt), byte-for-byte the same
construction as openai/clip-vit-large-patch14's tokenizer:

  merges.txt = "#version: 0.2" line, then merges 1..48894 of bpe_simple_vocab_16e6.txt
               (lines [1 : 49152-256-2+1] of the file)
  vocab      = the 256 bytes_to_unicode() symbols, the same 256 symbols + "</w>",
               the 48894 merges joined, "<|startoftext|>", "<|endoftext|>"  (49408 ids)

The wheel is a zip; nothing from open_clip is imported.

Usage:
  python tools/reference/clip_vocab.py [--wheel PATH] [--out models/clip-bpe]

The same construction with the first N merges only (the reduced tokenizer of the tiny
models) is available as write_tokenizer_files(out_dir, n_merges=N).
"""
import argparse
import gzip
import json
import os
import zipfile

DEFAULT_WHEEL = "/work/wheels/open_clip_torch-3.3.0-py3-none-any.whl"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
FULL_MERGES = 49152 - 256 - 2  # 48894
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def bytes_to_unicode():
    """GPT-2 / CLIP byte -> printable unicode character table (same as openai's clip)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def read_bpe_lines(wheel=DEFAULT_WHEEL):
    with zipfile.ZipFile(wheel) as z:
        data = gzip.decompress(z.read(BPE_MEMBER)).decode("utf-8")
    return data.split("\n")


def build_vocab_and_merges(n_merges=FULL_MERGES, wheel=DEFAULT_WHEEL):
    """Returns (vocab: dict token->id, merges: list of 'a b' strings)."""
    lines = read_bpe_lines(wheel)
    merges = lines[1 : n_merges + 1]
    assert len(merges) == n_merges, (len(merges), n_merges)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {}
    for i, t in enumerate(tokens):
        assert t not in vocab, f"duplicate token {t!r}"
        vocab[t] = i
    assert len(vocab) == 512 + n_merges + 2
    return vocab, merges


def write_tokenizer_files(out_dir, n_merges=FULL_MERGES, wheel=DEFAULT_WHEEL):
    os.makedirs(out_dir, exist_ok=True)
    vocab, merges = build_vocab_and_merges(n_merges, wheel)
    vocab_path = os.path.join(out_dir, "vocab.json")
    merges_path = os.path.join(out_dir, "merges.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)  # insertion order == id order
    with open(merges_path, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in merges:
            f.write(m + "\n")
    return vocab_path, merges_path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", default=DEFAULT_WHEEL)
    ap.add_argument("--out", default=os.path.join(REPO, "models", "clip-bpe"))
    args = ap.parse_args()
    vocab_path, merges_path = write_tokenizer_files(args.out, FULL_MERGES, args.wheel)
    print(f"wrote {vocab_path} ({os.path.getsize(vocab_path)} B), {merges_path} ({os.path.getsize(merges_path)} B)")

    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(vocab_path, merges_path)
    assert len(tok) == 49408, len(tok)
    ids = tok("a photo of a cat")["input_ids"]
    expected = [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ids == expected, ids
    print("CLIPTokenizer check OK:", ids)


if __name__ == "__main__":
    main()
