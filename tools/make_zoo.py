"""Make the models that ship in ``gcn_numpy/models/``: ``python tools/make_zoo.py``.

Each model is learned by the package's own training command with the arguments below, into
``runs/zoo/<name>/`` (a run already finished there is reused, an interrupted one resumed),
and packed into ``gcn_numpy/models/<name>.npz`` by :func:`gcn_numpy.zoo.model_from_run`:
the weights in float32, the configuration, the mean, a thumbnail of the training image and
the run's summary (its metrics and its drift test). ``--only NAME`` makes one model;
``--pack`` packs finished runs without training; ``--runs DIR`` puts the runs elsewhere.

The paper-scale gravel model takes over an hour on 2 cores; the others a few minutes each.
The faces model needs scikit-image (the ``data`` extra) for its training faces.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from gcn_numpy.zoo import model_from_run, save_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "gcn_numpy" / "models"

# name: (what it learned, the training command's arguments)
ZOO = {
    # gravel: seed 2 of the three seeds measured (docs/convergence.md). From zeros, seed 0's
    # samples reach 0.63x a held-out crop's texture closeness at 512 px, seeds 1 and 2 0.81x
    # and 0.9x at 192 px; seed 2's 0.89x at 512 px.
    "gravel": (
        "the shipped gravel photograph, 64 px, CPU scale (preset texture, seed 2)",
        ["--preset", "texture", "--texture", "gravel", "--seed", "2"],
    ),
    "grass": (
        "the shipped grass photograph, 64 px, CPU scale (preset texture, seed 0)",
        ["--preset", "texture", "--texture", "grass", "--seed", "0"],
    ),
    "brick": (
        "the shipped brick photograph, 64 px, CPU scale (preset texture, seed 0)",
        ["--preset", "texture", "--texture", "brick", "--seed", "0"],
    ),
    # The texture-convergent models (docs/convergence.md, eighth round): their final
    # chains kept over 1000 steps at fixed weights, and from zeros at 512 px (100 tempered
    # + 200 plain steps) gravel seed 0's sample reaches 0.86x a held-out 200 px crop's
    # texture closeness, grass seed 0's 0.96x (measured on the packed float32 files).
    "gravel-convergent": (
        "the shipped gravel photograph, 112 px, the release's net grown over 3 stages, "
        "chains restarted tempered and at zero in turn (preset texture-convergent, seed 0)",
        ["--preset", "texture-convergent", "--texture", "gravel", "--seed", "0"],
    ),
    "grass-convergent": (
        "the shipped grass photograph, 112 px, the release's net grown over 3 stages, "
        "chains restarted tempered and at zero in turn (preset texture-convergent, seed 0)",
        ["--preset", "texture-convergent", "--texture", "grass", "--seed", "0"],
    ),
    "gravel-paper": (
        "the shipped gravel photograph, 224 px, the release's net grown over 3 stages "
        "(Experiment 1; preset texture-paper with 4 chains, seed 0)",
        ["--preset", "texture-paper", "--texture", "gravel", "--chains", "4", "--seed", "0"],
    ),
    "cd-textures": (
        "ten 48 px crops of the shipped textures by one-step contrastive divergence "
        "(Experiment 3; preset cd, seed 0)",
        ["--preset", "cd", "--seed", "0"],
    ),
    "faces": (
        "ten aligned faces, 32 px, CPU scale (Experiment 2; preset object, seed 0): the "
        "first ten of scikit-image's lfw_subset(), 25 px crops from Labeled Faces in the "
        "Wild (http://vis-www.cs.umass.edu/lfw/), for which scikit-image states no license",
        ["--preset", "object", "--seed", "0"],
    ),
}


def train(name, runs):
    """Run (or resume, or reuse) the training command of model ``name`` in ``runs/name``."""
    out = os.path.join(runs, name)
    if os.path.exists(os.path.join(out, "summary.json")):
        return out
    args = ZOO[name][1]
    if os.path.exists(os.path.join(out, "checkpoint.npz")):
        args = ["--resume", os.path.join(out, "checkpoint.npz")]
    else:
        args = [*args, "--out", out]
    subprocess.run([sys.executable, "-m", "gcn_numpy.train", *args], check=True)
    return out


def pack(name, run_dir):
    learned, args = ZOO[name]
    command = "python -m gcn_numpy.train " + " ".join(args)
    net, config, mean, info, thumbnail = model_from_run(run_dir, name, learned, command)
    MODELS.mkdir(exist_ok=True)
    path = MODELS / f"{name}.npz"
    save_model(path, net, config, mean, info, thumbnail)
    print(f"{path}: {path.stat().st_size / 2**20:.2f} MiB")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=sorted(ZOO), action="append")
    p.add_argument("--pack", action="store_true", help="pack finished runs, train nothing")
    p.add_argument("--runs", default=os.path.join("runs", "zoo"))
    a = p.parse_args(argv)
    for name in a.only or ZOO:
        run_dir = os.path.join(a.runs, name) if a.pack else train(name, a.runs)
        pack(name, run_dir)


if __name__ == "__main__":
    main()
