"""Does the default texture run make new, clean texture? Measured on every shipped texture.

For each texture, the ``texture`` preset (what ``python -m gcn_numpy.train`` runs) is
trained, then its samples are compared with the training image (:mod:`gcn_numpy.summary`):

- ``copying``: per sample, the largest normalised cross-correlation of its central patch
  (half its side) over every placement in the training image, worst sample; 1 would be a
  copy. Target <= 0.5.
- ``sameness``: the same against the other chains; near 1 would mean chains collapsed onto
  one image. Target <= 0.5.
- ``frame``: :func:`gcn_numpy.metrics.frame_score` on the whole canvases, beside its range
  on 16 real crops of the canvas size from the photograph at the training scale. Target:
  at most the crops' largest + 0.05.
- ``std`` and ``spectrum distance`` (total variation between normalised radial power
  spectra; 0 is identical): the statistics the samples should share with the texture.

Usage::

    python benchmarks/texture_novelty.py [--textures gravel grass brick] [--preset texture]
        [--set boundary=zero --set observed_positions=all ...] [--out FOLDER] [--json FILE]

``--set NAME=VALUE`` overrides a field of the preset (the candidates for the border, for
instance); prints a markdown table, and with ``--json`` writes the rows.
"""

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from gcn_numpy import data, plots
from gcn_numpy.learning import Learner
from gcn_numpy.presets import TrainConfig, get_preset
from gcn_numpy.summary import run_summary


def _number(text):
    """A value for a field whose preset value is None: a number where it reads as one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text == "None" else text


def configure(preset, texture, overrides):
    config = get_preset(preset)
    config.data = f"texture:{texture}"
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for name, value in overrides.items():
        if name not in types:
            raise SystemExit(f"unknown configuration field {name!r}")
        current = getattr(config, name)
        setattr(config, name, type(current)(value) if current is not None else _number(value))
    return config


def measure(config, texture, out):
    raw = data.load_training_images(config)
    images, mean = data.prepare(raw)
    learner = Learner(config, images)
    t0 = time.perf_counter()
    while learner.iteration < learner.total_iterations:
        learner.step()
    seconds = time.perf_counter() - t0
    samples = learner.net.to_numpy(learner.chains)
    summary = run_summary(samples, images, photo=data.training_photo(config))
    if out:
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, f"{config.preset}-{texture}-samples.npy"), samples)
        plots.save_grid(
            os.path.join(out, f"{config.preset}-{texture}.png"),
            data.to_uint8(images, mean),
            data.to_uint8(samples, mean),
        )
    return {"texture": texture, "seconds": seconds, **summary}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="texture")
    parser.add_argument("--textures", nargs="+", default=list(data.TEXTURES))
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="override a field"
    )
    parser.add_argument("--out", default="", help="folder for training-vs-samples sheets")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    rows = []
    for texture in args.textures:
        rows.append(measure(configure(args.preset, texture, overrides), texture, args.out))
        print(f"{texture}: done in {rows[-1]['seconds']:.0f} s", flush=True)
    setting = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "as the preset"
    print(f"\npreset {args.preset!r} ({setting}); central patch = half the sample's side\n")
    print(
        "| texture | train s | copying | sameness | frame score | real crops | "
        "std ratio | spectrum distance |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["frame_reference"]
        print(
            f"| {r['texture']} | {r['seconds']:.0f} | {r['copying']:.2f} | "
            f"{r['sameness']:.2f} | {r['frame_score']:.2f} | {lo:.2f}-{hi:.2f} | "
            f"{r['std_ratio']:.2f} | {r['spectrum_distance']:.3f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "overrides": overrides, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
