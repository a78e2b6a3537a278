"""Is the memory estimate an honest upper bound? :func:`gcn_numpy.memory.training_bytes`
beside the peak resident memory of real training runs.

Each configuration runs ``python -m gcn_numpy.train`` in a fresh process (this script
with ``--one``): the resident memory just before ``train.main`` (after the imports), the
estimate for the run, and the process's peak resident memory (``ru_maxrss``) after it;
the run's own memory is the peak less the memory before. The estimate should lie above
it, within about 2x on runs whose arrays dominate (small runs are dominated by the
backend's fixed part).

Usage::

    python benchmarks/memory_estimate.py [--quick] [--cold]

``--quick`` runs three configurations; ``--cold`` adds the default run with an empty Numba
cache (the kernels compiled in the run). The rows ``sample BACKEND N SIDE`` are Langevin
dynamics alone, against :func:`gcn_numpy.memory.langevin_bytes` (what ``python -m
gcn_numpy.sample`` needs). Prints a markdown table.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

FOLDER = os.path.dirname(os.path.abspath(__file__))
SHORT = ["--iterations", "2", "--langevin-steps", "2"]
ONE = ["--iterations", "1", "--langevin-steps", "1"]
CONFIGS = [
    ["--backend", "numba", *SHORT],
    ["--backend", "numba", *SHORT, "--synth-size", "256"],
    ["--backend", "numba", *SHORT, "--synth-size", "512"],
    ["--backend", "numba", *SHORT, "--synth-size", "512", "--boundary", "zero"],
    ["--backend", "numba", *SHORT, "--chains", "64"],
    ["--backend", "numba", *SHORT, "--synth-size", "256", "--image", "RGB"],
    ["--backend", "numba", "--preset", "cd", "--iterations", "2"],
    ["--backend", "numba", "--preset", "object", *SHORT],
    ["--backend", "numba", "--preset", "texture-paper", *ONE],
    ["--backend", "numpy", *ONE],
    ["--backend", "numpy", *ONE, "--size", "32", "--synth-size", "128", "--chains", "4"],
    ["--backend", "numpy", *ONE, "--size", "32", "--synth-size", "256", "--chains", "4"],
    ["--backend", "numpy", *ONE, "--chains", "32"],
    ["--backend", "numpy", "--preset", "cd", "--iterations", "1"],
]
QUICK = [CONFIGS[0], CONFIGS[1], CONFIGS[9]]
SAMPLING = [["sample", "numba", "4", "512"], ["sample", "numpy", "4", "256"]]


def _rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure_sampling(backend, n, side):
    """Langevin dynamics (3 steps) of ``n`` chains of ``side`` px with the texture preset's
    net (weights drawn so that about half the units are active) in this process."""
    import numpy as np

    from gcn_numpy import GenerativeConvNet, memory
    from gcn_numpy.presets import get_preset
    from gcn_numpy.sampling import langevin

    layers = get_preset("texture").layer_objects()
    net = GenerativeConvNet(1, layers, backend=backend, dtype=np.float32, boundary="symmetric")
    rng = np.random.default_rng(0)
    net.set_weights(
        (rng.normal(0, 1 / np.sqrt(W[0].size), W.shape), rng.uniform(-0.1, 0.1, b.shape))
        for W, b in net.weights
    )
    shape = (n, 1, side, side)
    estimate = memory.langevin_bytes(net, shape) + memory.backend_bytes(backend)
    before = _rss()
    langevin(net, np.zeros(shape, np.float32), 3, 0.3, rng=0)
    return estimate, before


def measure_one(args):
    """Run the training command (or ``sample BACKEND N SIDE``: Langevin dynamics) in this
    process; print the estimate and the peak."""
    from gcn_numpy import data, memory, train

    if args[0] == "sample":
        estimate, before = measure_sampling(args[1], int(args[2]), int(args[3]))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"status": 0, "estimate": estimate, "measured": peak - before}))
        return
    parsed = train.build_parser().parse_args(args)
    config = train.config_from_args(parsed)
    estimate = memory.training_bytes(config, data.training_shape(config))
    out = os.path.join(tempfile.mkdtemp(), "run")
    before = _rss()
    status = train.main([*args, "--quiet", "--out", out])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"status": status, "estimate": estimate, "measured": peak - before}))


def _rgb_image(folder):
    import numpy as np
    from PIL import Image

    path = os.path.join(folder, "rgb.png")
    pixels = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="three configurations only")
    parser.add_argument("--cold", action="store_true", help="also with an empty Numba cache")
    options = parser.parse_args()
    if options.one is not None:
        measure_one(options.one)
        return
    folder = tempfile.mkdtemp()
    rgb = _rgb_image(folder)
    runs = [(c, None) for c in (QUICK if options.quick else CONFIGS + SAMPLING)]
    if options.cold:
        runs.append((CONFIGS[0], os.path.join(folder, "empty-numba-cache")))
    print("| run | estimate (MiB) | measured peak (MiB) | estimate / measured |")
    print("|---|---|---|---|")
    for args, cache in runs:
        args = [rgb if a == "RGB" else a for a in args]
        env = dict(os.environ, **({"NUMBA_CACHE_DIR": cache} if cache else {}))
        r = subprocess.run(
            [sys.executable, __file__, "--one", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
        )
        if r.returncode != 0:
            print(f"| {' '.join(args)} | failed: {r.stderr.strip().splitlines()[-1]} | | |")
            continue
        result = json.loads(r.stdout.strip().splitlines()[-1])
        shown = " ".join("rgb.png" if a == rgb else a for a in args)
        shown += " (empty Numba cache)" if cache else ""
        est, got = result["estimate"] / 2**20, result["measured"] / 2**20
        print(f"| `{shown}` | {est:.0f} | {got:.0f} | {est / got:.2f} |", flush=True)


if __name__ == "__main__":
    main()
