"""The paper's three experiments (section 7), run through ``python -m gcn_numpy.train`` and
laid out like its Figures 1-3, with a table of what each run measured.

    python benchmarks/reproduce_paper.py --scale cpu|paper [--texture gravel ...]
        [--experiments texture object cd] [--out docs/paper] [--backend numba]
        [--figures-only]

- Experiment 1, textures (Figure 1): one net per texture, learned from a single image;
  the training image beside two samples, and a sample after each grown stage (section 7).
- Experiment 2, aligned objects (Figure 2): a net with one top filter over the whole top
  map, learned from 10 aligned faces (scikit-image's LFW subset, 25x25 px photographs,
  ``pip install -e ".[data]"``); four training images above four samples.
- Experiment 3, contrastive divergence (Figure 3): CD-1 on 10 texture crops; four training
  images above their reconstructions B(delta(I)) (Theorem 1's auto-encoding).

``--scale cpu`` runs the CPU presets (minutes each); ``--scale paper`` the release's nets
(``*-paper`` presets), each at the release's scale where two cores finish it in about an
hour, otherwise at the largest that does (the table states the size). Which boundary each
experiment uses is in its preset and in the table: the texture presets mirror each map
at its edge (``texture``: ``symmetric``, ``texture-paper``: ``reflect``; no frame along
the samples' border of zero padding's kind, see docs/frame.md); objects and CD
keep the release's zero padding (their images are not stationary textures, and CD's
reconstructions are of the training images themselves).

Every run lives in ``<runs>/<name>`` (default ``<out>/runs``, not committed) and is resumed
from its checkpoint when the script is started again; ``--figures-only`` redraws figures and
table from the runs there.
Writes ``<out>/<experiment>-<scale>.png``, ``<out>/results-<scale>.md`` and ``.json``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys

import numpy as np

from gcn_numpy import checkpoint, data, plots
from gcn_numpy.learning import Learner
from gcn_numpy.train import CSV_COLUMNS

# Per experiment and scale: the preset and the options given to the training command.
SETTINGS = {
    ("texture", "cpu"): ("texture", []),
    ("texture", "paper"): ("texture-paper", []),
    ("object", "cpu"): ("object", []),
    # the release's net, 3 stages x 600 iterations, 16 chains x 30 Langevin steps; at 32 px
    # (the faces are 25 px photographs; 224 px would take 2 cores most of a day)
    ("object", "paper"): ("object-paper", ["--size", "32"]),
    ("cd", "cpu"): ("cd", []),
    ("cd", "paper"): ("cd-paper", []),
}
CAPTIONS = {
    "texture": "Experiment 1: generating texture patterns (Figure 1)",
    "object": "Experiment 2: generating object patterns (Figure 2)",
    "cd": "Experiment 3: contrastive divergence learns to auto-encode (Figure 3)",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=("cpu", "paper"), default="cpu")
    p.add_argument("--texture", nargs="+", default=None, help="shipped texture(s) for exp. 1")
    p.add_argument("--experiments", nargs="+", choices=("texture", "object", "cd"), default=None)
    p.add_argument("--out", default="docs/paper", help="figures and tables")
    p.add_argument("--runs", help="the runs' folders (default: OUT/runs, not committed)")
    p.add_argument("--backend", default="numba")
    p.add_argument("--figures-only", action="store_true", help="no training: redraw only")
    args = p.parse_args(argv)
    args.experiments = args.experiments or ["texture", "object", "cd"]
    args.texture = args.texture or (list(data.TEXTURES) if args.scale == "cpu" else ["gravel"])
    args.runs = args.runs or os.path.join(args.out, "runs")
    return args


def runs_of(args):
    """``(experiment, run name, training options)`` for every run asked for."""
    runs = []
    for experiment in args.experiments:
        preset, options = SETTINGS[(experiment, args.scale)]
        options = ["--preset", preset] + options
        if experiment == "texture":
            for texture in args.texture:
                # the shipped photo at the preset's own scale (not --image, which resizes)
                texture_options = options + ["--texture", texture]
                runs.append((experiment, f"{preset}-{texture}", texture_options))
        else:
            runs.append((experiment, preset, options))
    return runs


def command(run_dir, options, backend):
    """The training command of a run, or of its resumption when a checkpoint exists."""
    ckpt = os.path.join(run_dir, "checkpoint.npz")
    base = [sys.executable, "-m", "gcn_numpy.train"]
    if os.path.exists(ckpt):
        return base + ["--resume", ckpt, "--backend", backend]
    return base + options + ["--backend", backend, "--out", run_dir]


def train(run_dir, options, backend):
    summary = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary):
        return
    cmd = command(run_dir, options, backend)
    print("$", " ".join(cmd), flush=True)
    status = subprocess.call(cmd)
    if status != 0:  # the other runs go on; this one is left out of figures and table
        print(f"{run_dir}: the training command ended with status {status}", flush=True)


def load_learner(run_dir):
    config, state = checkpoint.load(os.path.join(run_dir, "checkpoint.npz"), len(CSV_COLUMNS))
    learner = Learner(config, state["obs"])
    learner.load_state_dict(state)
    return learner, state


def wall_seconds(state):
    """Seconds spent in learning iterations, summed over every resumption."""
    return float(np.sum(state["metrics"][:, CSV_COLUMNS.index("seconds")]))


def figure(experiment, runs, out, scale):
    """The experiment's figure, laid out like the paper's, at one pixel scale."""
    rows = []
    for name, run_dir in runs:
        learner, state = load_learner(run_dir)
        mean = state["mean"]
        obs = data.to_uint8(state["obs"], mean)
        chains = data.to_uint8(learner.net.to_numpy(learner.chains), mean)
        if experiment == "texture":
            rows.append((f"{name}: training image, then 2 samples", [obs[0], *chains[:2]]))
            stages = sorted(glob_stages(run_dir))
            if stages:
                firsts = [plots.read_png(os.path.join(d, "chain_00.png")) for d in stages]
                label = ", ".join(f"{os.path.basename(d)[7:]} layer(s)" for d in stages)
                rows.append((f"chain 0 after each grown stage: {label}", firsts))
        elif experiment == "object":
            rows.append(("4 of the training images", list(obs[:4])))
            rows.append(("4 of the synthesized images", list(chains[:4])))
        else:
            recon = data.to_uint8(learner.reconstruct(), mean)
            rows.append(("4 of the training images", list(obs[:4])))
            rows.append(("their reconstructions B(delta(I)) after CD-1 learning", list(recon[:4])))
    path = os.path.join(out, f"{experiment}-{scale}.png")
    plots.save_rows(path, rows, max_width=760)
    return path


def glob_stages(run_dir):
    folder = os.path.join(run_dir, "stages")
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, d) for d in os.listdir(folder)]


def untrained_recon_error(learner):
    """The reconstruction error of the same net at its initial weights: the baseline that
    CD learning has to beat."""
    fresh = Learner(learner.config, learner.net.to_numpy(learner.obs))
    recon = fresh.reconstruct()
    return float(np.mean(np.abs(recon - fresh.net.to_numpy(fresh.obs))))


def row(experiment, name, run_dir, scale):
    learner, state = load_learner(run_dir)
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    config = learner.config
    result = {
        "experiment": experiment,
        "run": name,
        "scale": scale,
        "size": int(state["obs"].shape[-1]),
        "canvas": summary.get("canvas"),
        "images": int(state["obs"].shape[0]),
        "iterations": int(learner.iteration),
        "boundary": config.boundary,
        "seconds": wall_seconds(state),
        **{k: summary.get(k) for k in ("copying", "sameness", "frame_score", "frame_reference")},
        **{k: summary.get(k) for k in ("spectrum_distance", "std_ratio", "rollbacks")},
    }
    if experiment == "cd":
        recon = learner.reconstruct()
        result["recon_error"] = float(np.mean(np.abs(recon - learner.net.to_numpy(learner.obs))))
        result["recon_error_untrained"] = untrained_recon_error(learner)
    return result


def machine():
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores"


def fmt(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return "-".join(fmt(v, digits) for v in value)
    return f"{value:.{digits}f}"


def table(results, backend):
    lines = [
        f"Machine: {machine()}; backend {backend}. Wall time: seconds of learning "
        "iterations (all resumptions).",
        "",
        "| run | images | size / canvas | boundary | iterations | wall time | copying | "
        "sameness | frame score (real crops) | spectrum distance | std ratio | "
        "reconstruction error (untrained) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        canvas = "x".join(str(n) for n in r["canvas"]) if r["canvas"] else "-"
        frame = fmt(r["frame_score"])
        if r["frame_reference"]:
            frame += f" ({fmt(r['frame_reference'])})"
        recon = "-"
        if "recon_error" in r:
            recon = f"{r['recon_error']:.1f} ({r['recon_error_untrained']:.1f})"
        minutes = r["seconds"] / 60
        lines.append(
            f"| {r['run']} | {r['images']} | {r['size']} px / {canvas} | {r['boundary']} | "
            f"{r['iterations']} | {minutes:.0f} min | {fmt(r['copying'])} | "
            f"{fmt(r['sameness'])} | {frame} | {fmt(r['spectrum_distance'], 3)} | "
            f"{fmt(r['std_ratio'])} | {recon} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.runs, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    runs = runs_of(args)
    if not args.figures_only:
        for _, name, options in runs:
            train(os.path.join(args.runs, name), options, args.backend)
    results, figures = [], []
    for experiment in args.experiments:
        mine = [(n, os.path.join(args.runs, n)) for e, n, _ in runs if e == experiment]
        mine = [(n, d) for n, d in mine if os.path.exists(os.path.join(d, "summary.json"))]
        if not mine:
            continue
        figures.append((experiment, figure(experiment, mine, args.out, args.scale)))
        results += [row(experiment, n, d, args.scale) for n, d in mine]
    text = table(results, args.backend)
    with open(os.path.join(args.out, f"results-{args.scale}.md"), "w") as f:
        f.write(f"# The paper's experiments at {args.scale} scale\n\n")
        for experiment, path in figures:
            f.write(f"{CAPTIONS[experiment]}:\n\n![{experiment}]({os.path.basename(path)})\n\n")
        f.write(text)
    with open(os.path.join(args.out, f"results-{args.scale}.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
