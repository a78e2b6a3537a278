"""How far does a texture model learned on 64 px hold at larger canvases? Measured.

For each model (shipped names or files), samples at each size from zeros with the sampling
command's procedure (:meth:`gcn_numpy.zoo.LearnedModel.sample`), scored like a training
run's samples (:func:`gcn_numpy.summary.run_summary`: copying, sameness, the frame score
against real crops of that size from the training photograph) and by texture closeness to
the training image beside that of held-out real crops of the same size; with the wall
time of the sampling.

Usage::

    python benchmarks/sample_sizes.py [--models gravel grass brick] [--sizes 96 192 384 512]
        [--n 4] [--steps 200] [--init zeros|noise|both] [--temper-steps 100]
        [--temper-start 1e4] [--json FILE]

``--init`` as the sampling command's: ``zeros`` (the tempered start from the mean image,
the default), ``noise`` (white noise of the training images' spread, no tempered start) or
``both`` (each sample from the two, the one of lower energy kept); ``--temper-steps`` and
``--temper-start`` as the sampling command's (the tempered start from zeros).
"""

import argparse
import json
import time

import numpy as np

from gcn_numpy import data, metrics
from gcn_numpy.summary import run_summary
from gcn_numpy.zoo import TEMPER_START, TEMPER_STEPS, load_model


def photo_of(model):
    """The training photograph at the training scale (C, H, W), model units, or None."""
    cfg = model.config
    photo = data.training_photo(cfg)
    return None if photo is None else photo - model.mean[:, None, None]


def training_crop(model):
    images = data.load_training_images(model.config)
    return images - model.mean[None, :, None, None]


def held_out_closeness(photo, training, side, n=4, seed=0):
    """Closeness of ``n`` real crops of ``side`` px (away from the photo's centre, where
    the shipped textures' training crops lie) to the training image; crops of half the
    photograph's side where ``side`` is larger (a crop that large would hold the
    training crop)."""
    C, H, W = photo.shape
    side = min(side, min(H, W) // 2)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n):
        y = rng.choice([0, H - side])
        x = rng.integers(0, W - side + 1)
        scores.append(
            metrics.texture_closeness(photo[None, :, y : y + side, x : x + side], training)
        )
    return float(np.mean(scores))


def measure(name, size, n, steps, seed, init="zeros", temper=(TEMPER_STEPS, TEMPER_START)):
    model = load_model(name)
    training = training_crop(model)
    t0 = time.perf_counter()
    x = model.sample(
        n=n,
        size=size,
        steps=steps,
        seed=seed,
        init=init,
        temper_steps=temper[0],
        temper_start=temper[1],
    )
    seconds = time.perf_counter() - t0
    photo = photo_of(model)
    summary = run_summary(x, training, photo=data.training_photo(model.config))
    row = {
        "model": name,
        "size": size,
        "n": n,
        "steps": steps,
        "init": init,
        "temper_steps": temper[0],
        "temper_start": temper[1],
        "seconds": round(seconds, 1),
        "closeness": float(metrics.texture_closeness(x, training)),
        "closeness_held_out": np.nan
        if photo is None
        else held_out_closeness(photo, training, size),
        "mean": float(x.mean() + model.mean.mean()),
        "data_mean": float(training.mean() + model.mean.mean()),
        **{k: v for k, v in summary.items()},
    }
    return row


def _num(value):
    """A score to two decimals, or "-" where it is undefined (sameness of one sample)."""
    return "-" if value is None else f"{value:.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["gravel", "grass", "brick"])
    p.add_argument("--sizes", nargs="+", type=int, default=[96, 192, 384, 512])
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=("zeros", "noise", "both"), default="zeros")
    p.add_argument("--temper-steps", type=int, default=TEMPER_STEPS)
    p.add_argument("--temper-start", type=float, default=TEMPER_START)
    p.add_argument("--json")
    a = p.parse_args()
    rows = []
    header = (
        "model",
        "size",
        "s",
        "closeness (held-out crops)",
        "mean (data)",
        "copying",
        "sameness",
        "frame score (real crops)",
        "std ratio",
    )
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for name in a.models:
        for size in a.sizes:
            temper = (a.temper_steps, a.temper_start)
            r = measure(name, size, a.n, a.steps, a.seed, a.init, temper)
            rows.append(r)
            ref = r.get("frame_reference", (np.nan, np.nan))
            print(
                f"| {name} | {size} | {r['seconds']:.1f} "
                f"| {r['closeness']:.2f} ({r['closeness_held_out']:.2f}) "
                f"| {r['mean']:.1f} ({r['data_mean']:.1f}) | {r['copying']:.2f} "
                f"| {_num(r['sameness'])} "
                f"| {r['frame_score']:.2f} ({ref[0]:.2f}-{ref[1]:.2f}) | {r['std_ratio']:.2f} |",
                flush=True,
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1, default=float)


if __name__ == "__main__":
    main()
