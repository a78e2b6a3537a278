"""Milliseconds per learning iteration of the cupy backend against PyTorch + cuDNN, one GPU.

    python benchmarks/bench_gpu.py [--sizes 64 112 224] [--tf32] [--json results.json]

The release's texture net (``benchmarks/common.py``: 100 filters 15x15 stride 3 pad 2, 64
5x5 pad 2, 30 3x3 pad 2, f = sum of the top maps) on square color images, float32. One
learning iteration of Algorithm 1 as the learner runs it (``common.learning_iteration``):
10 Langevin steps of eq. (19) on 16 persistent chains, then the weight gradients on the
observed image and on the chains. PyTorch runs the same computation with conv2d and autograd
on cuDNN (``torch_peer.TorchNet``).

Like for like: the ``fp32`` rows run with TF32 off on both sides (cuBLAS's default math mode;
PyTorch's matmul and cuDNN convolutions at "ieee" precision), the ``tf32`` rows (``--tf32``)
with TF32 on on both sides. ``cupy fp32 reuse`` is the cupy iteration inside
``reusing_columns``, the weight gradient taking the forward pass's column matrices.

Correctness first, at each size, on the observed image and three chains: the cupy result is
compared with PyTorch pinned to cupy's activation pattern (the ReLUs replaced by cupy's
``delta``, so that a pre-activation within rounding of zero cannot flip on one side only)
and with the cupy float64 net pinned likewise; ``B`` and every gradient, as the largest
absolute difference over the largest reference entry. The script exits with status 1 after
its report if any error exceeds its bound (``--max-fp32``, ``--max-tf32``).

Timing: the implementations run interleaved, one iteration each per round, the order
rotating, after warm-up rounds; the table gives median milliseconds per iteration and the
median over rounds of the ratio to ``torch fp32``. Per-kernel times (CUDA events) at the
largest size follow, for diagnosis.
"""

import argparse
import contextlib
import json
import statistics
import sys
import time

import numpy as np
from common import EPS, LAYERS, SIGMA, flat_grads, learning_iteration, rel_err
from torch_peer import TorchNet

from gcn_numpy import GenerativeConvNet

DEVICE = "cuda"  # PyTorch's device


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 112, 224], help="image sizes")
    p.add_argument("--chains", type=int, default=16, help="Langevin chains")
    p.add_argument("--steps", type=int, default=10, help="Langevin steps per iteration")
    p.add_argument("--rounds", type=int, default=10, help="timed rounds per size")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--tf32", action="store_true", help="also time both sides with TF32")
    p.add_argument("--no-kernels", action="store_true", help="skip the per-kernel table")
    p.add_argument("--max-fp32", type=float, default=1e-4, help="error bound, float32")
    p.add_argument("--max-tf32", type=float, default=3e-2, help="error bound, TF32")
    p.add_argument("--json", help="write the results to this file")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def torch_tf32(torch, enabled):
    """PyTorch's matmul and cuDNN convolutions with TF32 on or off, restored after."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(cudnn, "conv"):  # PyTorch 2.9 and later; its old flags would be mixed in
        targets, values = (matmul, cudnn.conv), ("tf32" if enabled else "ieee",) * 2
        names = ("fp32_precision", "fp32_precision")
    else:
        targets, values = (matmul, cudnn), (bool(enabled),) * 2
        names = ("allow_tf32", "allow_tf32")
    saved = [getattr(t, n) for t, n in zip(targets, names, strict=True)]
    for t, n, v in zip(targets, names, values, strict=True):
        setattr(t, n, v)
    try:
        yield
    finally:
        for t, n, v in zip(targets, names, saved, strict=True):
            setattr(t, n, v)


def device_name(cp):
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    return props["name"].decode() if isinstance(props["name"], bytes) else props["name"]


def event_ms(cp, torch, fn, reps=10):
    """Median milliseconds of ``fn()`` between CUDA events (CuPy's, or PyTorch's)."""
    fn()
    times = []
    for _ in range(reps):
        if torch is None:
            start, stop = cp.cuda.Event(), cp.cuda.Event()
        else:
            start, stop = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(
            cp.cuda.get_elapsed_time(start, stop) if torch is None else start.elapsed_time(stop)
        )
    return statistics.median(times)


def torch_pinned(torch, weights, x, masks):
    """``B`` and the batch-summed weight gradients of the net whose ReLUs are replaced by the
    given activation pattern, by PyTorch autograd: the linear ``f`` of eq. (17) for it."""
    F = torch.nn.functional
    x = x.detach().requires_grad_(True)
    leaves = [a.detach().requires_grad_(True) for pair in weights for a in pair]
    h = x
    for layer, W, b, m in zip(LAYERS, leaves[::2], leaves[1::2], masks, strict=True):
        h = F.conv2d(h, W, b, stride=layer.stride, padding=layer.padding) * m
    B, *grads = torch.autograd.grad(h.sum(), [x] + leaves)
    return B, grads


# ------------------------------------------------------------------------- accuracy


def accuracy(cp, torch, net, x, tf32):
    """Errors of cupy float32 (TF32 or not) on ``x`` against PyTorch and cupy float64, both
    pinned to the cupy float32 net's activation pattern."""
    kernels = net.kernels
    with kernels.tf32(tf32):
        out = net.forward_backward(x, need_B=True, need_grads=True)
    B, grads = cp.asnumpy(out["B"]), [cp.asnumpy(g) for g in flat_grads(out["grads"])]

    net64 = GenerativeConvNet(3, LAYERS, image_size=net.image_size, backend="cupy")
    net64.set_weights(net.weights)
    out64 = net64.forward_backward(
        net64.asarray(x), need_B=True, need_grads=True, deltas=out["deltas"]
    )
    B64, g64 = cp.asnumpy(out64["B"]), [cp.asnumpy(g) for g in flat_grads(out64["grads"])]

    def as_torch(a, dtype=torch.float32):
        return torch.as_tensor(cp.asnumpy(a), device=DEVICE).to(dtype)

    weights = [(as_torch(W), as_torch(b)) for W, b in net.params]
    masks = [as_torch(d) for d in out["deltas"]]
    with torch_tf32(torch, tf32):
        Bt, gt = torch_pinned(torch, weights, as_torch(x), masks)
    Bt, gt = Bt.cpu().numpy(), [g.cpu().numpy() for g in gt]

    def worst(got, want):
        return max(rel_err(a, b) for a, b in zip(got, want, strict=True))

    return {
        "vs_float64": {"B": rel_err(B, B64), "grads": worst(grads, g64)},
        "vs_torch": {"B": rel_err(B, Bt), "grads": worst(grads, gt)},
    }


# -------------------------------------------------------------------------- kernels


def layer_kernels(cp, torch, kernels, layer, x, W, b, G):
    """The seam kernels of one layer and their steps (cupy), and cuDNN's counterparts."""
    s, p, k = layer.stride, layer.padding, layer.kernel
    F, grad = torch.nn.functional, torch.nn.grad
    col, _ = kernels.im2col(x, (k, k), s, p)
    Gm, Wm = kernels.channel_major(G, G.dtype), W.reshape(W.shape[0], -1)
    delta = G != 0
    xt, Wt, bt, Gt = (torch.as_tensor(cp.asnumpy(a), device=DEVICE) for a in (x, W, b, G))
    cupy_fns = {
        "im2col": lambda: kernels.im2col(x, (k, k), s, p),
        "GEMM forward": lambda: kernels.gemm(Wm, col),
        "conv_relu": lambda: kernels.conv_relu(x, W, b, s, p),
        "gate": lambda: kernels.gate(G, delta),
        "GEMM top-down": lambda: kernels.gemm(Wm, Gm, trans_a=True),
        "conv_transpose": lambda: kernels.conv_transpose(G, W, s, p, x.shape[2:]),
        "GEMM weight grad": lambda: kernels.gemm(Gm, col, trans_b=True),
        "conv_weight_grad": lambda: kernels.conv_weight_grad(x, G, (k, k), s, p),
    }
    torch_fns = {
        "conv_relu": lambda: F.relu(F.conv2d(xt, Wt, bt, stride=s, padding=p)),
        "conv_transpose": lambda: grad.conv2d_input(xt.shape, Wt, Gt, stride=s, padding=p),
        "conv_weight_grad": lambda: grad.conv2d_weight(xt, Wt.shape, Gt, stride=s, padding=p),
    }
    return cupy_fns, torch_fns


def kernel_table(cp, torch, net, chains):
    """Per-layer milliseconds of each seam kernel and of its cuDNN counterpart, fp32."""
    kernels = net.kernels
    maps, deltas = net.bottom_up(chains)
    rows = []
    with kernels.tf32(False), torch_tf32(torch, False):
        for l, (layer, (W, b)) in enumerate(zip(LAYERS, net.params, strict=True), start=1):
            G = kernels.gate(cp.ones_like(maps[l]), deltas[l - 1])
            cupy_fns, torch_fns = layer_kernels(cp, torch, kernels, layer, maps[l - 1], W, b, G)
            for kernel, fn in cupy_fns.items():
                row = {"layer": l, "kernel": kernel, "cupy_ms": event_ms(cp, None, fn)}
                if kernel in torch_fns:
                    row["torch_ms"] = event_ms(cp, torch, torch_fns[kernel])
                rows.append(row)
    return rows


# --------------------------------------------------------------------------- timing


def bench_size(cp, torch, args, S):
    """Accuracy, then interleaved timing, of one image size."""
    M = args.chains
    net = GenerativeConvNet(3, LAYERS, image_size=(S, S), backend="cupy", dtype=np.float32)
    kernels = net.kernels
    obs = net.check_images(np.random.default_rng(0).uniform(-128.0, 128.0, size=(1, 3, S, S)))
    obs_t = torch.as_tensor(cp.asnumpy(obs), device=DEVICE)
    tnet = TorchNet(torch, net.weights, LAYERS, EPS, SIGMA, torch.float32, DEVICE)

    def cupy_run(tf32, reuse=False):
        def run(chains, rng):
            reusing = kernels.reusing_columns(len(LAYERS)) if reuse else contextlib.nullcontext()
            with kernels.tf32(tf32), reusing:
                return learning_iteration(net, obs, chains, rng, args.steps)[0]

        return run

    def torch_run(tf32):
        def run(chains, gen):
            with torch_tf32(torch, tf32):
                return tnet.iteration(obs_t, chains, gen, args.steps)[0]

        return run

    def torch_gen(seed):
        gen = torch.Generator(DEVICE)
        gen.manual_seed(seed)
        return gen

    variants = {
        "cupy fp32": (cupy_run(False), np.random.default_rng(1)),
        "cupy fp32 reuse": (cupy_run(False, reuse=True), np.random.default_rng(2)),
        "torch fp32": (torch_run(False), torch_gen(1)),
    }
    if args.tf32:
        variants["cupy tf32"] = (cupy_run(True), np.random.default_rng(3))
        variants["torch tf32"] = (torch_run(True), torch_gen(3))
    chains = {
        w: net.asarray(np.zeros((M, 3, S, S)))
        if w.startswith("cupy")
        else torch.zeros((M, 3, S, S), device=DEVICE)
        for w in variants
    }

    def run(which):
        fn, gen = variants[which]
        chains[which] = fn(chains[which], gen)

    def timed(which):
        cp.cuda.Device().synchronize()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run(which)
        cp.cuda.Device().synchronize()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    names = list(variants)
    for _ in range(args.warmup):
        for which in names:
            run(which)

    x = cp.concatenate([obs, chains["cupy fp32"][:3]])
    errors = {"fp32": accuracy(cp, torch, net, x, tf32=False)}
    if args.tf32:
        errors["tf32"] = accuracy(cp, torch, net, x, tf32=True)

    times = {which: [] for which in names}
    for r in range(args.rounds):
        for which in names[r % len(names) :] + names[: r % len(names)]:
            times[which].append(timed(which))
    base = times["torch fp32"]
    result = {
        "median_ms": {w: 1e3 * statistics.median(t) for w, t in times.items()},
        "min_ms": {w: 1e3 * min(t) for w, t in times.items()},
        "median_ratio_to_torch_fp32": {
            w: statistics.median(a / b for a, b in zip(t, base, strict=True))
            for w, t in times.items()
        },
        "errors": errors,
        "times_s": times,
    }
    return result, net, chains["cupy fp32"]


def check_errors(results, args):
    """``(size, precision, against, what, error, bound)`` for every error over its bound."""
    bounds = {"fp32": args.max_fp32, "tf32": args.max_tf32}
    failures = []
    for S, result in results.items():
        for precision, against in result["errors"].items():
            for ref, errs in against.items():
                for what, err in errs.items():
                    if not err <= bounds[precision]:  # NaN fails too
                        failures.append((S, precision, ref, what, err, bounds[precision]))
    return failures


def main(argv=None):
    args = parse_args(argv)
    import cupy as cp
    import torch

    torch.backends.cudnn.benchmark = True
    results, net, chains = {}, None, None
    for S in args.sizes:
        results[S], net, chains = bench_size(cp, torch, args, S)

    gpu = device_name(cp)
    print(
        f"texture net, {args.chains} chains, {args.steps} Langevin steps + gradients, float32; "
        f"{gpu}; CuPy {cp.__version__}, PyTorch {torch.__version__}, cuDNN "
        f"{torch.backends.cudnn.version()}; {args.rounds} interleaved rounds after "
        f"{args.warmup} warm-up"
    )
    names = list(results[args.sizes[0]]["median_ms"])
    print(f"\n{'size':>5} {'':16} {'ms/iter':>9} {'min ms':>9} {'ratio':>7}")
    for S, result in results.items():
        for w in names:
            print(
                f"{S:5} {w:16} {result['median_ms'][w]:9.2f} {result['min_ms'][w]:9.2f} "
                f"{result['median_ratio_to_torch_fp32'][w]:7.3f}"
            )
    print("(ratio: median over rounds of time / torch fp32 time)")

    print(f"\n{'size':>5} {'precision':9} {'against':22} {'B':>9} {'grads':>9}  bound")
    bounds = {"fp32": args.max_fp32, "tf32": args.max_tf32}
    for S, result in results.items():
        for precision, against in result["errors"].items():
            for ref, e in against.items():
                label = {"vs_float64": "cupy float64 (pinned)", "vs_torch": "PyTorch (pinned)"}
                print(
                    f"{S:5} {precision:9} {label[ref]:22} {e['B']:9.1e} {e['grads']:9.1e}  "
                    f"{bounds[precision]:.0e}"
                )

    kernels = []
    if not args.no_kernels and net is not None:
        kernels = kernel_table(cp, torch, net, chains)
        print(f"\nper kernel at {args.sizes[-1]} px, fp32 (median of 10, CUDA events)")
        print(f"{'layer':>5} {'kernel':18} {'cupy ms':>9} {'cuDNN ms':>9}")
        for row in kernels:
            t = f"{row['torch_ms']:9.3f}" if "torch_ms" in row else ""
            print(f"{row['layer']:5} {row['kernel']:18} {row['cupy_ms']:9.3f} {t}")

    failures = check_errors(results, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "device": gpu,
                    "config": vars(args),
                    "cupy": cp.__version__,
                    "torch": torch.__version__,
                    "cudnn": torch.backends.cudnn.version(),
                    "sizes": {str(S): r for S, r in results.items()},
                    "kernels": kernels,
                    "failures": failures,
                },
                fh,
                indent=1,
            )
    for S, precision, ref, what, err, bound in failures:
        print(f"FAIL {S} px {precision} {what} {ref}: error {err:.2e} > {bound:.0e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
