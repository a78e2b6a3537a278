"""Make the learned weights that notebook 07 loads: ``python notebooks/make_weights.py``.

Learning these nets takes longer than a notebook's two-minute budget, so their weights are
committed in ``notebooks/data/`` and this script documents (and redoes) how they were made.
Every setting is written out here rather than taken from a preset, so that a change of the
presets does not silently change what the notebooks describe. Re-running it after a change of
the learner (its update rule, say) gives different weights; the notebooks then need
re-executing.

- ``texture_gravel.npz``: Algorithm 1 on a 64 px crop of the shipped gravel photograph at its
  own resolution, the net of the ``texture`` preset (32 7x7 /2, 32 5x5, 16 3x3; sum top),
  8 chains on a 96 px canvas, 10 Langevin steps of 0.3 per iteration, 300 iterations.
  About 4 minutes on 2 cores.

Each file holds the weights ``W0, b0, W1, b1, ...`` (float32), ``config`` (the TrainConfig as
JSON), ``mean`` (the training image's mean grey level), ``observed`` (the training image,
mean subtracted) and ``chains`` (the final synthesized images, mean subtracted).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gcn_numpy import data
from gcn_numpy.learning import Learner
from gcn_numpy.presets import TrainConfig

OUT = Path(__file__).resolve().parent / "data"

TEXTURE_NET = [
    {"channels": 32, "kernel": 7, "stride": 2, "padding": 2},
    {"channels": 32, "kernel": 5, "stride": 1, "padding": 2},
    {"channels": 16, "kernel": 3, "stride": 1, "padding": 1},
]

CONFIGS = {
    "texture_gravel": TrainConfig(
        preset="notebooks/make_weights.py texture_gravel",
        data="texture:gravel",
        texture_scale=1.0,
        size=64,
        synth_scale=1.5,
        layers=TEXTURE_NET,
        top="sum",
        mode="ml",
        chains=8,
        langevin_steps=10,
        step_size=0.3,
        sigma=1.0,
        iterations=300,
        grow=False,
        lr=0.0005,
        optimizer="release",
        backend="numba",
        dtype="float32",
        seed=0,
    ),
}


def make(name):
    cfg = CONFIGS[name]
    texture = cfg.data.split(":", 1)[1]
    observed, mean = data.prepare(data.shipped_texture(texture, cfg.size, cfg.texture_scale))
    learner = Learner(cfg, observed)
    start = time.perf_counter()
    for _ in range(learner.total_iterations):
        learner.step()
    arrays = {}
    for i, (W, b) in enumerate(learner.net.weights):
        arrays[f"W{i}"], arrays[f"b{i}"] = W.astype(np.float32), b.astype(np.float32)
    arrays["config"] = np.array(json.dumps(cfg.to_dict()))
    arrays["mean"] = np.asarray(mean, dtype=np.float32)
    arrays["observed"] = observed.astype(np.float32)
    arrays["chains"] = learner.net.to_numpy(learner.chains).astype(np.float32)
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.npz"
    np.savez_compressed(path, **arrays)
    seconds = time.perf_counter() - start
    print(f"{path}: {path.stat().st_size / 1e3:.0f} kB, {seconds:.0f} s of learning")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=sorted(CONFIGS), help="which files to make")
    for name in parser.parse_args().names:
        make(name)


if __name__ == "__main__":
    main()
