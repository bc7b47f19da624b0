"""PyTorch side of ops/bench: the same kernels as `muse bench`, same sizes, 2 threads.

Prints one line per measurement in the same format, so ops/bench can put the two side by side.
"""
import argparse
import time

import torch
import torch.nn.functional as F


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def report(name, flops, seconds):
    print(f"{name:<78}{seconds:9.4f} s  {flops / seconds / 1e9:7.1f} GFLOP/s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, "
          f"oneDNN {torch.backends.mkldnn.is_available()}")

    n = 512 if args.quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    report(f"sgemm {n}³", 2 * n ** 3, best(lambda: a @ b, args.repeats))

    side, ch = (32 if args.quick else 64), 320
    x = torch.randn(1, ch, side, side)
    w = torch.randn(ch, ch, 3, 3) * 0.02
    flops = 2 * ch * ch * 9 * side * side
    with torch.no_grad():
        report(f"conv2d 3×3 {ch}→{ch} at {side}×{side} forward", flops,
               best(lambda: F.conv2d(x, w, padding=1), args.repeats))

    def conv_fb():
        xv, wv = x.clone().requires_grad_(), w.clone().requires_grad_()
        F.conv2d(xv, wv, padding=1).sum().backward()
    report(f"conv2d 3×3 {ch}→{ch} at {side}×{side} forward+backward (input and weight)", 3 * flops,
           best(conv_fb, args.repeats))

    def input_grad():
        xv = x.clone().requires_grad_()
        F.conv2d(xv, w, padding=1).sum().backward()
    report(f"conv2d 3×3 {ch}→{ch} at {side}×{side} forward+backward (input)", 2 * flops,
           best(input_grad, args.repeats))
    if not args.quick:
        # The UNet's other levels and the VAE decoder's largest layers (as muse bench).
        for ch, side in [(640, 32), (1280, 16), (1280, 8), (128, 256), (128, 512)]:
            x = torch.randn(1, ch, side, side)
            w = torch.randn(ch, ch, 3, 3) * 0.02
            with torch.no_grad():
                F.conv2d(x, w, padding=1)
                report(f"conv2d 3×3 {ch}→{ch} at {side}×{side} forward", 2 * ch * ch * 9 * side * side,
                       best(lambda: F.conv2d(x, w, padding=1), args.repeats))

    tokens, heads, dim = (1024 if args.quick else 4096), 8, 40
    q = torch.randn(1, heads, tokens, dim)
    flops = 4 * heads * tokens * tokens * dim
    with torch.no_grad():
        report(f"attention {tokens}×{tokens}×{dim}×{heads} heads forward", flops,
               best(lambda: F.scaled_dot_product_attention(q, q, q), args.repeats))

    def attn_fb():
        qv = q.clone().requires_grad_()
        F.scaled_dot_product_attention(qv, qv, qv).sum().backward()
    report(f"attention {tokens}×{tokens}×{dim}×{heads} heads forward+backward", flops * 3.5,
           best(attn_fb, args.repeats))


if __name__ == "__main__":
    main()
