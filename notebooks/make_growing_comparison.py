"""Growing the layers against learning all layers at once, on an equal budget, over several
seeds: the results notebook 09 loads. ``python notebooks/make_growing_comparison.py``.

Six learning runs take longer than a notebook's two-minute budget, so their results are
committed in ``notebooks/data/growing_comparison.npz`` and this script documents (and redoes)
how they were made. The settings are notebook 09's, written out below: a 48 px crop of the
brick photograph seen at 96 px, 32 filters 7x7 with sub-sampling 2, 32 of 5x5, 16 of 3x3,
8 chains, 10 Langevin steps of 0.3 per iteration, the release's update rule.

- ``grown``: section 7's schedule, 100 iterations per layer (300 in all), the learning rate
  0.001 halved at each new layer;
- ``all``: the three layers learned together from the start at notebook 04's learning rate
  0.001, for 300 iterations, the same number. A grown run's first stages are cheaper, so the
  ``all`` run is also measured at the iteration where its cost equals the grown run's (an
  equal-time budget): cost counted in multiply-adds of the convolutions, which every Langevin
  step and gradient pass repeats, rather than in seconds, which a busy machine distorts (the
  seconds are stored too).

For each seed and schedule the file holds the scores ``f_obs`` and ``f_syn`` per iteration, the
seconds of each iteration, the number of rolled-back iterations, :func:`measures` of all 8
chains at the iterations in ``*_measured_at``, and four chains (0-255, ``uint8``) at the end of
the grown run and at the equal-time and last iterations of the ``all`` run.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from gcn_numpy import data, metrics
from gcn_numpy.learning import Learner
from gcn_numpy.presets import TrainConfig

OUT = Path(__file__).resolve().parent / "data" / "growing_comparison.npz"
SEEDS = (0, 1, 2)
LAYERS = [
    {"channels": 32, "kernel": 7, "stride": 2, "padding": 2},
    {"channels": 32, "kernel": 5, "stride": 1, "padding": 2},
    {"channels": 16, "kernel": 3, "stride": 1, "padding": 1},
]
PER_STAGE = 100
TOTAL = len(LAYERS) * PER_STAGE  # iterations of either schedule
MEASURED_AT = {
    "grown": tuple(PER_STAGE * n for n in range(1, len(LAYERS) + 1)),
    "all": tuple(range(10, TOTAL + 1, 10)),
}
MEASURES = ("std_ratio", "spectrum_distance", "anisotropy_gap", "copying")
SHOWN = 4  # chains kept as pictures


def anisotropy(images):
    """(E_x - E_y) / (E_x + E_y) per image, E_x and E_y the energies of its horizontal and
    vertical differences: +1 for vertical stripes only, -1 for horizontal ones (a brick wall
    has both kinds of joint)."""
    x = np.asarray(images, dtype=np.float64)
    ex = (np.diff(x, axis=3) ** 2).sum(axis=(1, 2, 3))
    ey = (np.diff(x, axis=2) ** 2).sum(axis=(1, 2, 3))
    return (ex - ey) / (ex + ey)


def measures(chains, observed):
    """How the chains compare with the training image: the ratio of their pixel standard
    deviations, the total-variation distance of their radial spectra, the gap between their
    anisotropies, and copying (the mean over chains of the best normalised cross-correlation
    of a chain's centre in the training image, ``metrics.novelty``)."""
    stats = metrics.texture_stats(chains, observed)
    return {
        "std_ratio": stats["std_samples"] / stats["std_training"],
        "spectrum_distance": stats["spectrum_distance"],
        "anisotropy_gap": float(anisotropy(chains).mean() - anisotropy(observed).mean()),
        "copying": float(metrics.novelty(chains, observed)["to_training"].mean()),
    }


def observed_image():
    """Notebook 09's training image, mean subtracted, and its mean."""
    photo = data.load_images([data.texture_path("brick")], 96)
    return data.prepare(photo[:, :, 24:72, 24:72])


def config(schedule, seed):
    grown = schedule == "grown"
    return TrainConfig(
        preset=f"notebooks/make_growing_comparison.py {schedule}",
        size=48,
        layers=LAYERS,
        chains=8,
        langevin_steps=10,
        step_size=0.3,
        iterations=PER_STAGE if grown else TOTAL,
        grow=grown,
        lr=0.001,
        lr_decay_per_layer=0.5,
        backend="numba",
        dtype="float32",
        seed=seed,
    )


def run(schedule, seed, observed):
    """One learning run: its scores, seconds per iteration, measures, and the chains (model
    units, float64) at the iterations of ``MEASURED_AT``. An iteration that the learner rolls
    back (a diverging step, see ``Learner.step``) is not counted: it is repeated, and its
    seconds go to the iteration that follows; the number of rollbacks is stored."""
    learner = Learner(config(schedule, seed), observed)
    f_obs, f_syn, seconds, chains = [], [], [], {}
    start = time.perf_counter()
    while learner.iteration < learner.total_iterations:
        step = learner.step()
        if step["rollback"]:
            continue
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        f_obs.append(step["f_obs"])
        f_syn.append(step["f_syn"])
        if learner.iteration in MEASURED_AT[schedule]:
            chains[learner.iteration] = learner.net.to_numpy(learner.chains).astype(np.float64)
    table = np.array([[measures(c, observed)[m] for m in MEASURES] for c in chains.values()])
    prefix = f"{schedule}_seed{seed}_"
    arrays = {
        prefix + "f_obs": np.array(f_obs),
        prefix + "f_syn": np.array(f_syn),
        prefix + "seconds": np.array(seconds),
        prefix + "measures": table,
        prefix + "rollbacks": np.array(learner.rollbacks),
    }
    return arrays, chains


def multiply_adds(n_layers, size=48):
    """Multiply-adds of one pass of the first ``n_layers`` convolutions over a size x size
    image: each Langevin step and each gradient pass costs a fixed multiple of this."""
    channels, total = 1, 0
    for spec in LAYERS[:n_layers]:
        size = (size + 2 * spec["padding"] - spec["kernel"]) // spec["stride"] + 1
        total += spec["channels"] * channels * spec["kernel"] ** 2 * size * size
        channels = spec["channels"]
    return total


def equal_time_iteration():
    """The iteration of the all-layers run that costs as much as the whole grown run, to the
    nearest multiple of 10."""
    grown = PER_STAGE * sum(multiply_adds(n) for n in range(1, len(LAYERS) + 1))
    return int(10 * round(grown / multiply_adds(len(LAYERS)) / 10))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    args = parser.parse_args()
    observed, mean = observed_image()
    arrays = {
        "observed": data.to_uint8(observed, mean),
        "seeds": np.array(args.seeds),
        "measures": np.array(MEASURES),
        "grown_measured_at": np.array(MEASURED_AT["grown"]),
        "all_measured_at": np.array(MEASURED_AT["all"]),
    }
    n_eq = equal_time_iteration()
    arrays["all_equal_time"] = np.array(n_eq)
    start = time.perf_counter()
    for seed in args.seeds:
        grown, grown_chains = run("grown", seed, observed)
        every, every_chains = run("all", seed, observed)
        arrays.update(grown | every)
        pictures = (grown_chains[TOTAL], every_chains[n_eq], every_chains[TOTAL])
        arrays[f"seed{seed}_pictures"] = np.stack(
            [data.to_uint8(c[:SHOWN], mean) for c in pictures]
        )
        print(
            f"seed {seed}: {time.perf_counter() - start:.0f} s so far (equal cost at iteration"
            f" {n_eq} of the all-layers run)",
            flush=True,
        )
    np.savez_compressed(OUT, **arrays)
    print(f"{OUT}: {OUT.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
