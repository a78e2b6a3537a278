"""Make the learned weights that notebook 10 loads: ``python notebooks/make_weights.py``.

The models that ship with the package, which notebooks 07 and 08 load
(``gcn_numpy.load_model("gravel")``, ``load_model("cd-textures")``), are made by
``python tools/make_zoo.py`` from the training command. This script makes the one net that is
not a shipped model: notebook 10 shows, on purpose, what an earlier recipe learned (its chains
leave the texture at fixed weights), so that net is kept as it was made, in
``notebooks/data/``, and this script documents (and redoes) how. Every setting is written out,
field by field, in ``notebooks/data/configs.json`` rather than taken from a preset, so that a
change of the presets does not silently change what the notebook describes. Re-running it after
a change of the learner (its update rule, say) gives different weights; the notebook then needs
re-executing.

- ``texture_gravel.npz``: Algorithm 1 on a 64 px crop of the shipped gravel photograph at its
  own resolution, the CPU texture net (32 7x7 /2, 32 5x5, 16 3x3; sum top) with the release's
  zero padding, 8 chains on a 96 px canvas, 10 Langevin steps of 0.3 per
  iteration, 300 iterations at a constant learning rate. About 4 minutes on 2 cores.

The file holds the weights ``W0, b0, W1, b1, ...`` (float32), the initial weights the learning
started from (``init_W0, init_b0, ...``), ``config`` (the TrainConfig as JSON), ``mean`` (the
training image's mean grey level), ``observed`` (the training image, mean subtracted) and
``chains`` (the final synthesized images, mean subtracted).
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

# Every field of the configuration, written out in a data file so that a change of the
# presets or of TrainConfig's defaults does not silently change what the notebooks describe.
CONFIGS = {
    name: TrainConfig.from_dict(fields)
    for name, fields in json.loads((OUT / "configs.json").read_text()).items()
}


def training_images(cfg):
    """The observed images of a configuration here, mean subtracted, and their mean."""
    texture = cfg.data.split(":", 1)[1]
    return data.prepare(data.shipped_texture(texture, cfg.size, cfg.texture_scale))


def make(name):
    cfg = CONFIGS[name]
    observed, mean = training_images(cfg)
    learner = Learner(cfg, observed)
    initial = learner.net.weights
    start = time.perf_counter()
    for _ in range(learner.total_iterations):
        learner.step()
    arrays = {}
    for i, (W, b) in enumerate(learner.net.weights):
        arrays[f"W{i}"], arrays[f"b{i}"] = W.astype(np.float32), b.astype(np.float32)
    for i, (W, b) in enumerate(initial):
        arrays[f"init_W{i}"], arrays[f"init_b{i}"] = W.astype(np.float32), b.astype(np.float32)
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
