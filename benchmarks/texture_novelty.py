"""Does the default texture run make new texture, or copies? Measured on every shipped texture.

For each texture, the ``texture`` preset (what ``python -m gcn_numpy.train`` runs) is
trained, then its samples are compared with the training image:

- ``ncc_train``: per sample, the largest normalised cross-correlation of its central patch
  (half its side) over every placement in the training image; 1 would be a copy. Target:
  the largest over all samples <= 0.5.
- ``ncc_chains``: the same against the other chains; near 1 would mean chains collapsed
  onto one image.
- ``std`` and ``spectrum_distance`` (total variation between normalised radial power
  spectra; 0 is identical): the statistics the samples should share with the texture.

Usage: ``python benchmarks/texture_novelty.py [--textures gravel grass brick]
[--preset texture] [--out benchmarks/novelty]``; prints a markdown table.
"""

import argparse
import os
import time

from gcn_numpy import data, metrics, plots
from gcn_numpy.learning import Learner
from gcn_numpy.presets import get_preset


def measure(preset, texture, out):
    config = get_preset(preset)
    config.data = f"texture:{texture}"
    images, mean = data.prepare(data.shipped_texture(texture, config.size, config.texture_scale))
    learner = Learner(config, images)
    t0 = time.perf_counter()
    while learner.iteration < learner.total_iterations:
        learner.step()
    seconds = time.perf_counter() - t0
    samples = learner.net.to_numpy(learner.chains)
    novelty = metrics.novelty(samples, images)
    stats = metrics.texture_stats(samples, images)
    if out:
        os.makedirs(out, exist_ok=True)
        plots.save_grid(
            os.path.join(out, f"{preset}-{texture}.png"),
            data.to_uint8(images, mean),
            data.to_uint8(samples, mean),
        )
    return {
        "texture": texture,
        "seconds": seconds,
        "ncc_train_max": novelty["to_training"].max(),
        "ncc_train_mean": novelty["to_training"].mean(),
        "ncc_chains_max": novelty["to_other_chains"].max(),
        "std": f"{stats['std_samples']:.1f} / {stats['std_training']:.1f}",
        "spectrum_distance": stats["spectrum_distance"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="texture")
    parser.add_argument("--textures", nargs="+", default=list(data.TEXTURES))
    parser.add_argument("--out", default="", help="folder for training-vs-samples sheets")
    args = parser.parse_args()
    rows = [measure(args.preset, t, args.out) for t in args.textures]
    print(f"preset {args.preset!r}; central patch = half the sample's side\n")
    print(
        "| texture | train s | max NCC to training | mean NCC to training | "
        "max NCC between chains | std samples / training | spectrum distance |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['texture']} | {r['seconds']:.0f} | {r['ncc_train_max']:.2f} | "
            f"{r['ncc_train_mean']:.2f} | {r['ncc_chains_max']:.2f} | {r['std']} | "
            f"{r['spectrum_distance']:.3f} |"
        )


if __name__ == "__main__":
    main()
