"""Seconds per learning iteration of the cupy backend against PyTorch + cuDNN, on one GPU.

    python benchmarks/bench_gpu.py [--tf32] [--json results.json]

The paper's texture net (REFERENCE.md section 1: 100 filters 15x15 stride 3 pad 2, 64 5x5
pad 2, 30 3x3 pad 2, f = sum of the top responses) on 224x224 color images, float32. One
learning iteration of Algorithm 1: 10 Langevin steps of eq. (19) on 16 persistent chains
(eps = 0.3, sigma = 1), then the weight gradients on the observed image and on the chains.
PyTorch runs the same computation with conv2d and autograd on cuDNN, TF32 off.

Before timing: the two agree on ``B`` and the gradients, and each float32 result is compared
with the cupy backend in float64. Then the implementations run interleaved, one iteration
each per round, the order rotating, after warm-up; the table gives median milliseconds and
the median over rounds of the ratio to PyTorch. Per-kernel times (CUDA events) follow, for
diagnosis. ``--tf32`` adds a cupy column whose cuBLAS products use TF32 tensor cores.
"""

import argparse
import json
import statistics
import time

import numpy as np
from torch_peer import TorchNet

from gcn_numpy import GenerativeConvNet, Layer
from gcn_numpy.sampling import langevin_chains

LAYERS = (Layer(100, 15, stride=3, padding=2), Layer(64, 5, padding=2), Layer(30, 3, padding=2))
EPS, SIGMA = 0.3, 1.0
DEVICE = "cuda"  # PyTorch's device


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=224, help="image height and width")
    p.add_argument("--chains", type=int, default=16, help="Langevin chains")
    p.add_argument("--steps", type=int, default=10, help="Langevin steps per iteration")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    p.add_argument("--tf32", action="store_true", help="also time cupy with TF32 GEMMs")
    p.add_argument("--no-kernels", action="store_true", help="skip the per-kernel table")
    p.add_argument("--json", help="write the results to this file")
    return p.parse_args(argv)


def rel_err(a, b):
    a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ------------------------------------------------------------------------------ cupy


def cupy_iteration(net, obs, chains, rng, steps):
    """One learning iteration on the device; returns the chains and both gradients."""
    chains = langevin_chains(net, chains, steps, EPS, SIGMA, rng)
    g_obs = net.forward_backward(obs, need_B=False, need_grads=True)["grads"]
    g_syn = net.forward_backward(chains, need_B=False, need_grads=True)["grads"]
    return chains, g_obs, g_syn


# --------------------------------------------------------------------------- helpers


def device_name(cp):
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    return props["name"].decode() if isinstance(props["name"], bytes) else props["name"]


def event_ms(cp, torch, fn, reps=10):
    """Median milliseconds of ``fn()`` between CUDA events (CuPy's or PyTorch's)."""
    fn()
    times = []
    for _ in range(reps):
        if torch is None:
            start, stop = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, stop))
        else:
            start, stop = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
    return statistics.median(times)


def flat_grads(grads):
    return [g for pair in grads for g in pair]


# ------------------------------------------------------------------------------ main


def accuracy(cp, torch, net, tnet, x):
    """Errors of the float32 paths on ``B`` and the gradients, against cupy float64."""
    be = net._be
    net64 = GenerativeConvNet(
        3, LAYERS, image_size=net.image_size, backend="cupy", dtype=np.float64
    )
    net64.set_weights(net.weights)
    out64 = net64.forward_backward(be.asarray(x, np.float64), need_B=True, need_grads=True)
    B64, g64 = cp.asnumpy(out64["B"]), [cp.asnumpy(g) for g in flat_grads(out64["grads"])]

    def errors(B, grads):
        return {
            "B": rel_err(B, B64),
            "grads": max(rel_err(g, w) for g, w in zip(grads, g64, strict=True)),
        }

    def cupy_errors():
        out = net.forward_backward(x, need_B=True, need_grads=True)
        return errors(cp.asnumpy(out["B"]), [cp.asnumpy(g) for g in flat_grads(out["grads"])])

    xt = torch.as_tensor(cp.asnumpy(x), device=DEVICE)
    result = {
        "cupy fp32": cupy_errors(),
        "torch fp32": errors(tnet.B(xt).cpu().numpy(), [g.cpu().numpy() for g in tnet.grads(xt)]),
    }
    be.allow_tf32(True)
    result["cupy tf32"] = cupy_errors()
    be.allow_tf32(False)
    return result


def layer_kernels(cp, torch, be, layer, x, W, b, G):
    """The seam kernels of one layer and their steps (cupy), and cuDNN's counterparts."""
    s, p, k = layer.stride, layer.padding, layer.kernel
    F, grad = torch.nn.functional, torch.nn.grad
    col, _ = be._im2col(x, (k, k), s, p)
    Gm, Wm = be._channel_major(G, G.dtype), W.reshape(W.shape[0], -1)
    delta = G != 0
    xt, Wt, bt, Gt = (torch.as_tensor(cp.asnumpy(a), device=DEVICE) for a in (x, W, b, G))
    cupy_fns = {
        "im2col": lambda: be._im2col(x, (k, k), s, p),
        "GEMM forward": lambda: be._gemm(Wm, col),
        "conv_relu": lambda: be.conv_relu(x, W, b, s, p),
        "gate": lambda: be.gate(G, delta),
        "GEMM top-down": lambda: be._gemm(Wm, Gm, trans_a=True),
        "conv_transpose": lambda: be.conv_transpose(G, W, s, p, x.shape[2:]),
        "GEMM weight grad": lambda: be._gemm(Gm, col, trans_b=True),
        "conv_weight_grad": lambda: be.conv_weight_grad(x, G, (k, k), s, p),
    }
    torch_fns = {
        "conv_relu": lambda: F.relu(F.conv2d(xt, Wt, bt, stride=s, padding=p)),
        "conv_transpose": lambda: grad.conv2d_input(xt.shape, Wt, Gt, stride=s, padding=p),
        "conv_weight_grad": lambda: grad.conv2d_weight(xt, Wt.shape, Gt, stride=s, padding=p),
    }
    return cupy_fns, torch_fns


def kernel_table(cp, torch, net, chains):
    """Per-layer milliseconds of each seam kernel and of its cuDNN counterpart."""
    be = net._be
    maps, deltas = net.bottom_up(chains)
    rows = []
    for l, (layer, (W, b)) in enumerate(zip(LAYERS, net.params, strict=True), start=1):
        G = be.gate(cp.ones_like(maps[l]), deltas[l - 1])
        cupy_fns, torch_fns = layer_kernels(cp, torch, be, layer, maps[l - 1], W, b, G)
        for kernel, fn in cupy_fns.items():
            row = {"layer": l, "kernel": kernel, "cupy_ms": event_ms(cp, None, fn)}
            if kernel in torch_fns:
                row["torch_ms"] = event_ms(cp, torch, torch_fns[kernel])
            rows.append(row)
    return rows


def main(argv=None):
    args = parse_args(argv)
    import cupy as cp
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    S, M = args.size, args.chains
    net = GenerativeConvNet(3, LAYERS, image_size=(S, S), backend="cupy", dtype=np.float32)
    be = net._be
    host = np.random.default_rng(0)
    obs = net.check_images(host.uniform(-128.0, 128.0, size=(1, 3, S, S)))  # 0-255, centred
    tnet = TorchNet(torch, net.weights, LAYERS, EPS, SIGMA, torch.float32, DEVICE)
    state = {
        "cupy fp32": [be.asarray(np.zeros((M, 3, S, S)), np.float32), np.random.default_rng(1)],
        "torch fp32": [torch.zeros((M, 3, S, S), device=DEVICE), torch.Generator(DEVICE)],
    }
    state["torch fp32"][1].manual_seed(1)
    if args.tf32:
        zeros = be.asarray(np.zeros((M, 3, S, S)), np.float32)
        state["cupy tf32"] = [zeros, np.random.default_rng(2)]
    obs_t = torch.as_tensor(cp.asnumpy(obs), device=DEVICE)

    def run(which):
        chains, gen = state[which]
        if which == "torch fp32":
            out = tnet.iteration(obs_t, chains, gen, args.steps)
        else:
            be.allow_tf32(which == "cupy tf32")
            out = cupy_iteration(net, obs, chains, gen, args.steps)
            be.allow_tf32(False)
        state[which][0] = out[0]
        return out

    def timed(which):
        cp.cuda.Device().synchronize()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run(which)
        cp.cuda.Device().synchronize()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    names = list(state)
    for _ in range(args.warmup):
        for which in names:
            run(which)

    # correctness before timing: the same input through both, then both against float64
    x = cp.concatenate([obs, state["cupy fp32"][0][:3]])
    xt = torch.as_tensor(cp.asnumpy(x), device=DEVICE)
    out = net.forward_backward(x, need_B=True, need_grads=True)
    agree = {
        "B": rel_err(cp.asnumpy(out["B"]), tnet.B(xt).cpu().numpy()),
        "grads": max(
            rel_err(cp.asnumpy(g), t.cpu().numpy())
            for g, t in zip(flat_grads(out["grads"]), tnet.grads(xt), strict=True)
        ),
    }
    errors = accuracy(cp, torch, net, tnet, x)

    times = {which: [] for which in names}
    for r in range(args.rounds):
        for which in names[r % len(names) :] + names[: r % len(names)]:
            times[which].append(timed(which))
    median_ms = {w: 1e3 * statistics.median(t) for w, t in times.items()}
    ratios = {
        w: statistics.median(a / b for a, b in zip(t, times["torch fp32"], strict=True))
        for w, t in times.items()
    }

    gpu = device_name(cp)
    print(
        f"texture net {S}x{S}x3, {M} chains, {args.steps} Langevin steps + gradients, float32; "
        f"{gpu}; {args.rounds} interleaved rounds after {args.warmup} warm-up"
    )
    print(f"cupy vs torch on the same input: B {agree['B']:.1e}, gradients {agree['grads']:.1e}")
    print(f"\n{'':12} {'ms/iter':>9} {'min ms':>9} {'ratio':>7}  error vs float64: B, grads")
    for w in names:
        e = errors[w]
        print(
            f"{w:12} {median_ms[w]:9.2f} {1e3 * min(times[w]):9.2f} {ratios[w]:7.3f}  "
            f"{e['B']:.1e}, {e['grads']:.1e}"
        )
    print("(ratio: median over rounds of time / torch fp32 time; errors include sign flips of")
    print(" pre-activations within rounding of zero, which change delta)")

    kernels = []
    if not args.no_kernels:
        kernels = kernel_table(cp, torch, net, state["cupy fp32"][0])
        print(f"\n{'layer':>5} {'kernel':18} {'cupy ms':>9} {'cuDNN ms':>9}")
        for row in kernels:
            t = f"{row['torch_ms']:9.3f}" if "torch_ms" in row else ""
            print(f"{row['layer']:5} {row['kernel']:18} {row['cupy_ms']:9.3f} {t}")

    if args.json:
        result = {
            "device": gpu,
            "config": vars(args),
            "cupy": cp.__version__,
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(),
            "agreement_cupy_vs_torch": agree,
            "error_vs_float64": errors,
            "median_ms": median_ms,
            "min_ms": {w: 1e3 * min(t) for w, t in times.items()},
            "median_ratio_to_torch": ratios,
            "times_s": times,
            "kernels": kernels,
        }
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
