"""The numba backend against PyTorch on the CPU, on the paper's texture net, float32.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_cpu.py \
        [--sizes 64 128 224] [--trained N] [--quick] [--threads T] [--json results.json]

The texture net (100 filters 15x15 stride 3 pad 2, 64 5x5 pad 2, 30 3x3 pad 2, f = sum of
the top responses), 16 chains; by default 64x64 color, 128x128 gray and 224x224 color (the
paper's size), ``--channels`` for others. For each, three computations through the
gcn_numpy API and the same in PyTorch (conv2d + autograd, the same weights, default
settings, as many threads):

- ``top_down``: ``net.forward_backward(chains, need_B=True, need_f=False)``, the work of one
  Langevin step; PyTorch: ``B = df/dI`` by autograd;
- ``weight_gradient``: ``net.forward_backward(chains, need_B=False, need_f=False,
  need_grads=True)``; PyTorch: autograd of the summed score in the weights;
- a learning iteration of Algorithm 1 (``benchmarks/common.py``): 10 Langevin steps of eq.
  (19) on the chains through ``gcn_numpy.sampling.langevin_chains`` (eps = 0.3, sigma = 1,
  noise included), then the weight gradients on the observed image and on the chains.

Weights are the release's initialisation, N(0, 0.01^2) with zero biases; the observed image
is uniform in [-128, 128] (0-255, centred); the chains start at 0 and are warmed up first.
``--trained N`` measures the same on nets trained N iterations on the shipped gravel texture
at 64 px (gray; the color net on the same texture in all three channels), whose activity is
no longer half and half, observed images and chains at each size.

The two sides run interleaved, one timed call each per round, the order alternating, each
right after an untimed call of the same side (see ``interleaved``); the table gives median
times and the median over rounds of the ratio numba / PyTorch. Other processes on the
machine distort the ratio (the load average is printed): a thread of PyTorch's that waits
for a core stalls every operation, while Numba's threads take images one at a time and
simply do fewer. GFLOP/s count every multiply-add of the direct convolutions (also those
with a zero coefficient, and the ones Winograd's tiles do not need), against the float32
matrix-product rate (torch.mm, same threads) measured in the same run.

Run it with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset in that command alone (some
machines set them for old OpenBLAS builds; a current OpenBLAS then runs AVX2 kernels on an
AVX-512 CPU, which is not what a user's machine runs): the BLAS kernels in use are printed
(threadpoolctl). To compare AVX2 code on an AVX-512 machine, force it on both sides:
``NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell`` for numba, and for PyTorch
``ATEN_CPU_CAPABILITY=avx2`` (its own kernels) with ``ONEDNN_MAX_CPU_ISA=AVX2`` (its
convolutions) and ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (its matrix products): with
``ATEN_CPU_CAPABILITY`` alone its convolutions still ran AVX-512 code (a 5x5 layer took 10.4
ms, 14.0 ms with oneDNN held to AVX2).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# The gcn_numpy of the tree this file is in, not an installed one: run as a script, Python
# puts benchmarks/ first on the path, not the current directory.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numba  # noqa: E402
import numpy as np  # noqa: E402
from common import (  # noqa: E402
    EPS,
    LAYERS,
    SIGMA,
    blas_info,
    cpu_model,
    flat_grads,
    learning_iteration,
    rel_err,
)
from torch_peer import TorchNet  # noqa: E402

import gcn_numpy  # noqa: E402
from gcn_numpy import GenerativeConvNet  # noqa: E402
from gcn_numpy.backends.numba import blas  # noqa: E402

# the sizes' channels when --channels is not given: the issue's three configurations
DEFAULT_CHANNELS = {64: [3], 128: [1], 224: [3]}
ENVIRONMENT = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "NUMBA_CPU_NAME",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224], help="image sizes")
    p.add_argument(
        "--channels",
        type=int,
        nargs="+",
        help="1 gray, 3 color, for every size (default: 64 color, 128 gray, 224 color, "
        "both for other sizes)",
    )
    p.add_argument("--chains", type=int, default=16, help="Langevin chains")
    p.add_argument("--steps", type=int, default=10, help="Langevin steps per iteration")
    p.add_argument("--rounds", type=int, default=9, help="timed rounds per computation")
    p.add_argument("--threads", type=int, help="threads of both sides (default: Numba's)")
    p.add_argument("--warmup", type=int, default=2, help="untimed learning iterations first")
    p.add_argument("--no-kernels", action="store_true", help="skip the per-layer kernel table")
    p.add_argument(
        "--trained",
        type=int,
        default=0,
        metavar="N",
        help="also measure texture nets after N learning iterations (at every size)",
    )
    p.add_argument("--no-compile", action="store_true", help="skip the JIT compile timing")
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the kernels by the process's CPU time instead of the wall clock (with "
        "--threads 1 on a loaded machine: what each side computes, not what it waited)",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 32x32 gray, 2 rounds")
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.channels, args.chains, args.steps = [32], [1], 4, 2
        args.rounds, args.warmup, args.no_kernels, args.no_compile = 2, 1, True, True
    return args


# --------------------------------------------------------------------------- helpers


def forward_flops(net, size):
    """Multiply-adds x 2 of the bottom-up pass on one image, per layer."""
    flops, c_in = [], net.in_channels
    for layer, (K, Ho, Wo) in zip(LAYERS, net.layer_shapes(size, size), strict=True):
        flops.append(2 * K * c_in * layer.kernel**2 * Ho * Wo)
        c_in = K
    return flops


def work(net, size, chains, steps):
    """Dense flops of each timed computation: B needs every layer's transposed product,
    the gradient all but the first one's, plus one weight correlation per layer."""
    layers = forward_flops(net, size)
    step, grad = 2 * sum(layers), 3 * sum(layers) - layers[0]
    return {
        "top_down": chains * step,
        "weight_gradient": chains * grad,
        "iteration": steps * chains * step + (1 + chains) * grad,
    }


def matmul_rates(torch, n=1024, reps=10):
    """GFLOP/s of a float32 n x n matrix product, best of reps: torch.mm on the benchmark's
    threads, and NumPy's np.dot on however many threads its BLAS uses."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    ta = torch.from_numpy(a)
    rates = {}
    for name, fn in (("np.dot", lambda: a @ a), ("torch.mm", lambda: ta @ ta)):
        fn()
        best = min(_wall_seconds(fn) for _ in range(reps))
        rates[name] = 2 * n**3 / best / 1e9
    return rates


CLOCK = time.perf_counter  # time.process_time with --cpu-time


def _wall_seconds(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _seconds(fn):
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def interleaved(fns, rounds, warm=True):
    """Seconds of each function per round, the order alternating from round to round.

    With ``warm``, each timed call comes right after an untimed one of the same function.
    PyTorch's OpenMP threads spin for several milliseconds after their work (measured: a
    3.4 ms layer-3 kernel of numba's took 6.1 ms right after a PyTorch call), and threads
    woken from sleep start slowly (PyTorch's 2.3 ms layer took 13 ms after 50 ms idle): the
    untimed call absorbs both, as in a training loop, where each side runs back to back.
    Without it (the learning iterations, seconds long) that costs each side a few ms.
    """
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            if warm:
                fns[name]()
            times[name].append(_seconds(fns[name]))
    return times


def summary(times, flops):
    numba_t, torch_t = times["numba"], times["torch"]
    return {
        "numba_ms": 1e3 * statistics.median(numba_t),
        "torch_ms": 1e3 * statistics.median(torch_t),
        "ratio": statistics.median(a / b for a, b in zip(numba_t, torch_t, strict=True)),
        "numba_gflops": flops / statistics.median(numba_t) / 1e9,
        "torch_gflops": flops / statistics.median(torch_t) / 1e9,
    }


def layer_pairs(torch, be, layer, x, W, b, G):
    """One layer's seam kernels (numba) and PyTorch's counterparts, as pairs of calls."""
    F, grad = torch.nn.functional, torch.nn.grad
    s, p = layer.stride, layer.padding
    xt, Wt, bt, Gt = (torch.from_numpy(a) for a in (x, W, b, G))
    return {
        "conv_relu": (
            lambda: be.conv_relu(x, W, b, s, p),
            lambda: F.relu(F.conv2d(xt, Wt, bt, stride=s, padding=p)),
        ),
        "conv_transpose": (
            lambda: be.conv_transpose(G, W, s, p, x.shape[2:]),
            lambda: grad.conv2d_input(xt.shape, Wt, Gt, stride=s, padding=p),
        ),
        "conv_weight_grad": (
            lambda: be.conv_weight_grad(x, G, W.shape[2:], s, p),
            lambda: grad.conv2d_weight(xt, Wt.shape, Gt, stride=s, padding=p),
        ),
    }


def kernel_rows(torch, net, chains, reps=5):
    """Per-layer milliseconds of each seam kernel on the chains and of PyTorch's counterpart."""
    be = net.kernels
    maps, deltas = net.bottom_up(chains)
    rows = []
    for l, (layer, (W, b)) in enumerate(zip(LAYERS, net.params, strict=True), start=1):
        G = be.gate(np.ones_like(maps[l]), deltas[l - 1])
        pairs = layer_pairs(torch, be, layer, maps[l - 1], W, b, G)
        for kernel, (numba_fn, torch_fn) in pairs.items():
            times = interleaved({"numba": numba_fn, "torch": torch_fn}, reps)
            ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            rows.append({"layer": l, "kernel": kernel, **{f"{k}_ms": v for k, v in ms.items()}})
    return rows


COMPILE_SCRIPT = """
import sys, time
import numpy as np
sys.path[:0] = [{bench_dir!r}, {repo!r}]
from common import LAYERS, learning_iteration
from gcn_numpy import GenerativeConvNet

net = GenerativeConvNet(3, LAYERS, image_size=(64, 64), backend="numba", dtype=np.float32)
obs = net.check_images(np.random.default_rng(0).uniform(-128, 128, size=(1, 3, 64, 64)))
chains = net.check_images(np.zeros((4, 3, 64, 64)))
for _ in range(2):
    t0 = time.perf_counter()
    learning_iteration(net, obs, chains, np.random.default_rng(1), 1)
    print(time.perf_counter() - t0)
"""


def compile_times():
    """Seconds of the first learning iteration (64x64 color, 4 chains, 1 step) in a fresh
    process: with an empty Numba cache, then with the cache that run left; and of a second
    iteration in the same process (nothing left to compile)."""
    script = COMPILE_SCRIPT.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), repo=REPO)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
            )
            runs.append([float(line) for line in out.stdout.split()])
    return {"cold_cache_s": runs[0][0], "disk_cache_s": runs[1][0], "compiled_s": runs[1][1]}


def machine(torch):
    model, width = cpu_model()
    info = {
        "cpu": f"{model} ({width})",
        "cores": os.cpu_count(),
        "threads": numba.get_num_threads(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
        "gcn_numpy": os.path.dirname(gcn_numpy.__file__),
        "blas (numba)": blas.describe(),
    }
    for pool in blas_info():
        info[f"blas {pool['internal_api']} {pool['version']}"] = (
            f"{pool['architecture']} kernels, {pool['num_threads']} threads"
        )
    for name in ENVIRONMENT:
        info[name] = os.environ.get(name, "unset")
    return info


# ------------------------------------------------------------------------------ main


def trained(args, C, S=64):
    """Weights after ``args.trained`` learning iterations of the texture net on the shipped
    gravel texture (``S x S``, in ``C`` channels: gray, or the same gray in all three; the
    release's update rule, learning rate 0.001, all layers at once), by
    :class:`gcn_numpy.learning.Learner`."""
    from gcn_numpy import data
    from gcn_numpy.learning import Learner
    from gcn_numpy.presets import get_preset

    config = get_preset("texture-paper")
    config.size, config.grow, config.lr = S, False, 0.001
    config.chains, config.langevin_steps, config.dtype = args.chains, args.steps, "float32"
    image = np.repeat(data.prepare(data.shipped_texture("gravel", S))[0], C, axis=1)
    learner = Learner(config, image)
    for _ in range(args.trained):
        learner.step()
    return learner.net.weights


def observed(C, S, weights):
    """The observed image: uniform in [-128, 128] at initialisation; the gravel texture
    (centred, in ``C`` channels) for a trained net."""
    if weights is None:
        return np.random.default_rng(0).uniform(-128.0, 128.0, size=(1, C, S, S))
    from gcn_numpy import data

    return np.repeat(data.prepare(data.shipped_texture("gravel", S))[0], C, axis=1)


def bench_config(torch, args, C, S, weights=None):
    """Every measurement of one image size and channel count, on the initial weights or
    on ``weights``."""
    M = args.chains
    net = GenerativeConvNet(C, LAYERS, image_size=(S, S), backend="numba", dtype=np.float32)
    if weights is not None:
        net.set_weights(weights)
    tnet = TorchNet(torch, net.weights, LAYERS, EPS, SIGMA)
    obs = net.check_images(observed(C, S, weights))
    obs_t = torch.from_numpy(obs)
    numba_state = [net.check_images(np.zeros((M, C, S, S))), np.random.default_rng(1)]
    gen = torch.Generator()
    gen.manual_seed(1)
    torch_state = [torch.from_numpy(numba_state[0].copy()), gen]

    def numba_run():
        numba_state[0] = learning_iteration(net, obs, *numba_state, args.steps)[0]

    def torch_run():
        torch_state[0] = tnet.iteration(obs_t, *torch_state, args.steps)[0]

    for _ in range(args.warmup):
        numba_run()
        torch_run()

    # correctness first: the same input through both
    x = np.concatenate([obs, numba_state[0][:3]])
    out = net.forward_backward(x, need_B=True, need_grads=True)
    xt = torch.from_numpy(x)
    agree = {
        "B": rel_err(out["B"], tnet.B(xt).numpy()),
        "grads": max(
            rel_err(g, t.numpy())
            for g, t in zip(flat_grads(out["grads"]), tnet.grads(xt), strict=True)
        ),
    }

    chains, chains_t = numba_state[0], torch_state[0]
    flops = work(net, S, M, args.steps)
    fns = {
        "top_down": {
            "numba": lambda: net.forward_backward(chains, need_B=True, need_f=False),
            "torch": lambda: tnet.B(chains_t),
        },
        "weight_gradient": {
            "numba": lambda: net.forward_backward(
                chains, need_B=False, need_f=False, need_grads=True
            ),
            "torch": lambda: tnet.grads(chains_t),
        },
        "iteration": {"numba": numba_run, "torch": torch_run},
    }
    label = f"{S}x{S}x{C}" + ("" if weights is None else f" trained {args.trained} it.")
    result = {"image": label, "agreement": agree}
    for what, pair in fns.items():
        times = interleaved(pair, args.rounds, warm=what != "iteration")
        result[what] = summary(times, flops[what])
    result["active"] = [float(d.mean()) for d in net.activation_pattern(numba_state[0])]
    result["active_obs"] = [float(d.mean()) for d in net.activation_pattern(obs)]
    if not args.no_kernels:
        result["kernels"] = kernel_rows(torch, net, numba_state[0])
    return result


def print_report(info, rates, results, compiled, args):
    print(
        f"texture net, {args.chains} chains, {args.steps} Langevin steps + gradients per "
        f"iteration, float32; {args.rounds} interleaved rounds after {args.warmup} warm-up; "
        + ("process CPU time" if args.cpu_time else "wall-clock time")
    )
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(
        f"  float32 matrix product (1024^2): torch.mm {rates['torch.mm']:.0f} GFLOP/s on "
        f"{info['torch threads']} thread(s) (the % below); np.dot {rates['np.dot']:.0f} GFLOP/s "
        "on NumPy's own BLAS threads"
    )
    peak = rates["torch.mm"]
    print(
        "\n| image | top_down ms numba / torch | ratio | weight_gradient ms | ratio "
        "| iteration s numba / torch | ratio | numba GFLOP/s (% of matmul) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        td, wg, it = r["top_down"], r["weight_gradient"], r["iteration"]
        print(
            f"| {r['image']} | {td['numba_ms']:.1f} / {td['torch_ms']:.1f} | {td['ratio']:.2f} "
            f"| {wg['numba_ms']:.1f} / {wg['torch_ms']:.1f} | {wg['ratio']:.2f} "
            f"| {it['numba_ms'] / 1e3:.3f} / {it['torch_ms'] / 1e3:.3f} | {it['ratio']:.2f} "
            f"| {it['numba_gflops']:.0f} ({100 * it['numba_gflops'] / peak:.0f}%) |"
        )
    print("(ratio: median over rounds of numba time / PyTorch time; below 1 numba is faster)")
    print("\nGFLOP/s (dense work / median time), numba / torch:")
    for r in results:
        line = ", ".join(
            f"{w} {r[w]['numba_gflops']:.0f} / {r[w]['torch_gflops']:.0f}"
            for w in ("top_down", "weight_gradient", "iteration")
        )
        print(f"  {r['image']}: {line}")
    print("\nactive units (delta = 1) per layer, chains after warm-up | observed image:")
    for r in results:
        chains = ", ".join(f"{a:.2f}" for a in r["active"])
        observed = ", ".join(f"{a:.2f}" for a in r["active_obs"])
        print(f"  {r['image']}: {chains} | {observed}")
    print("\nagreement with PyTorch on the same input (relative, float32 both):")
    for r in results:
        print(f"  {r['image']}: B {r['agreement']['B']:.1e}, grads {r['agreement']['grads']:.1e}")
    for r in results:
        if "kernels" in r:
            print(f"\n{r['image']}: per-layer kernels on the chains, ms numba / torch")
            for row in r["kernels"]:
                print(
                    f"  layer {row['layer']} {row['kernel']:17} "
                    f"{row['numba_ms']:8.2f} / {row['torch_ms']:8.2f}"
                )
    if compiled:
        print(
            "\nJIT, first learning iteration in a fresh process (64x64x3, 4 chains, 1 step): "
            f"{compiled['cold_cache_s']:.1f} s with an empty cache, "
            f"{compiled['disk_cache_s']:.2f} s from the disk cache, "
            f"{compiled['compiled_s']:.3f} s once compiled"
        )


def configurations(args):
    """``[(C, S), ...]``: each size with its channels."""
    return [(C, S) for S in args.sizes for C in (args.channels or DEFAULT_CHANNELS.get(S, [1, 3]))]


def main(argv=None):
    args = parse_args(argv)
    import torch

    for name in ENVIRONMENT[:2]:
        if name in os.environ:
            print(
                f"warning: {name}={os.environ[name]} is set: OpenBLAS may run other kernels "
                "than this CPU's (run with env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)",
                file=sys.stderr,
            )
    if args.threads:
        numba.set_num_threads(args.threads)
    torch.set_num_threads(numba.get_num_threads())
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    info = machine(torch)
    info["torch threads"] = torch.get_num_threads()
    load_before = os.getloadavg()
    rates = matmul_rates(torch)
    configs = configurations(args)
    results = [bench_config(torch, args, C, S) for C, S in configs]
    if args.trained:
        weights = {C: trained(args, C) for C in sorted({C for C, _ in configs})}
        results += [bench_config(torch, args, C, S, weights[C]) for C, S in configs]
    rates_after = matmul_rates(torch)
    rates = {k: max(v, rates_after[k]) for k, v in rates.items()}
    load_after = os.getloadavg()
    info["load average (1 min) before / after"] = f"{load_before[0]:.2f} / {load_after[0]:.2f}"
    compiled = None if args.no_compile else compile_times()
    print_report(info, rates, results, compiled, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"machine": info, "matmul_gflops": rates, "results": results, "jit": compiled},
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
