"""What the benchmarks share: the release's texture net, the learning iteration they time
through the gcn_numpy API, error measures and a description of the machine."""

import os
import platform

import numpy as np

from gcn_numpy.presets import TEXTURE_NET
from gcn_numpy.sampling import langevin_chains

LAYERS = TEXTURE_NET  # 100 15x15 /3 pad 2, 64 5x5 pad 2, 30 3x3 pad 2; f sums the top maps
EPS, SIGMA = 0.3, 1.0  # the release's Langevin step and reference standard deviation


def rel_err(a, b):
    """Largest absolute difference relative to the largest entry of the reference ``b``."""
    a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def flat_grads(grads):
    """``[(dW, db), ...]`` as one flat list ``[dW, db, ...]``."""
    return [g for pair in grads for g in pair]


def learning_iteration(net, obs, chains, rng, steps):
    """One learning iteration of Algorithm 1 through the gcn_numpy API, as the learner runs
    it: ``steps`` Langevin steps of eq. (19) on the chains, then the weight gradients on the
    observed images and on the chains. Returns ``(chains, grads_obs, grads_syn)``."""
    chains = langevin_chains(net, chains, steps, EPS, SIGMA, rng)
    g_obs = net.forward_backward(obs, need_B=False, need_f=False, need_grads=True)["grads"]
    g_syn = net.forward_backward(chains, need_B=False, need_f=False, need_grads=True)["grads"]
    return chains, g_obs, g_syn


def cpu_model():
    """The CPU's model name and its widest vector extension (AVX-512, AVX2 or neither)."""
    model, flags = platform.processor() or platform.machine(), set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return model, width


def blas_info():
    """The BLAS libraries loaded in this process, as threadpoolctl sees them: library,
    version, the kernel architecture chosen for this CPU, threads. Empty without
    threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
        for pool in threadpool_info()
        if pool.get("user_api") == "blas"
    ]
