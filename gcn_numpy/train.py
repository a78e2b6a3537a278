"""``python -m gcn_numpy.train``: learn a generative ConvNet from images and sample from it.

With no arguments it learns the ``texture`` preset from a shipped texture in a few minutes
on a CPU. See ``--help`` for every option; presets are in :mod:`gcn_numpy.presets`.

Outputs (default folder ``runs/<preset>-<timestamp>/``): ``config.json``, ``metrics.csv``,
``synthesized/chain_XX.png``, ``grid.png``, ``curves.png``, ``chains.gif``,
``filters.png``, ``reconstructions.png`` (CD), ``checkpoint.npz``.
"""

import argparse
import csv
import json
import os
import signal
import sys
import time
import zipfile

import numpy as np

from . import data, plots
from .backends import BACKENDS
from .learning import METRICS, Learner, NonFiniteError
from .presets import PRESETS, TrainConfig, get_preset

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C, after a clean save
CSV_COLUMNS = ("iteration", "layers") + METRICS + ("seconds",)
RESUMABLE = {"iterations", "checkpoint_every", "backend"}


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser():
    d = PRESETS["texture"]
    p = _Parser(
        prog="python -m gcn_numpy.train",
        description="Learn a generative ConvNet (Xie et al., ICML 2016) from images with "
        "Algorithm 1 or contrastive divergence, and synthesize new images by Langevin "
        "dynamics. Options left out take the preset's value; the value shown in brackets is "
        "the default preset's ('texture').",
    )
    p.add_argument(
        "--preset",
        default="texture",
        choices=sorted(PRESETS),
        metavar="NAME",
        help="configuration: texture | object | cd (CPU scale) or texture-paper | "
        "object-paper | cd-paper (the release's numbers, 224 px, for a GPU) (default: texture)",
    )
    p.add_argument(
        "--image",
        action="append",
        metavar="PATH",
        help="training image: a file, a folder or a glob; repeatable "
        "(default: the preset's data, e.g. the shipped gravel texture)",
    )
    p.add_argument(
        "--size",
        type=_positive_int,
        help="training images are resized (shorter side) and centre-cropped to SIZE x SIZE; "
        f"shipped textures are cropped at the preset's scale (texture: {d.size})",
    )
    p.add_argument(
        "--iterations",
        type=_positive_int,
        help="learning iterations T, per layer "
        f"stage when layers are grown (texture: {d.iterations})",
    )
    p.add_argument(
        "--chains", type=_positive_int, help=f"parallel Langevin chains M~ (texture: {d.chains})"
    )
    p.add_argument(
        "--langevin-steps",
        type=_positive_int,
        help=f"Langevin steps L per learning iteration (texture: {d.langevin_steps})",
    )
    p.add_argument(
        "--step-size",
        type=_positive_float,
        help=f"Langevin step size epsilon of eq. (19) (texture: {d.step_size})",
    )
    p.add_argument(
        "--sigma",
        type=_positive_float,
        help=f"standard deviation of the Gaussian reference q (texture: {d.sigma})",
    )
    p.add_argument("--lr", type=_positive_float, help=f"learning rate eta (texture: {d.lr})")
    p.add_argument(
        "--optimizer",
        choices=("release", "adam"),
        help=f"release: the original update rule (rescaled gradient ascent); adam "
        f"(texture: {d.optimizer})",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        metavar="NAME",
        help=f"numpy (reference) | numba (CPU) | cupy (GPU) (texture: {d.backend})",
    )
    p.add_argument("--seed", type=int, help=f"seed of weights and noise (texture: {d.seed})")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: "
        "runs/<preset>-<timestamp>, or the checkpoint's folder with --resume)",
    )
    p.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a checkpoint.npz; the result equals an uninterrupted "
        "run (only --iterations, --checkpoint-every, --backend and --out may change)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        metavar="N",
        help=f"write checkpoint.npz every N iterations (texture: {d.checkpoint_every})",
    )
    p.add_argument(
        "--synth-size",
        type=_positive_int,
        metavar="SIZE",
        help="canvas of the chains, SIZE x SIZE, may exceed the training size "
        "(convolutional 'sum' top only; default: the training size)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


OPTION_FIELDS = (
    "size",
    "iterations",
    "chains",
    "langevin_steps",
    "step_size",
    "sigma",
    "lr",
    "optimizer",
    "backend",
    "seed",
    "checkpoint_every",
    "synth_size",
)


def config_from_args(args):
    config = get_preset(args.preset)
    for name in OPTION_FIELDS:
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.image:
        config.data, config.images = "files", list(args.image)
    return config


# ------------------------------------------------------------------ checkpoint


def save_checkpoint(path, learner, run):
    """Write ``checkpoint.npz`` atomically: a temporary file, then a rename."""
    state = learner.state_dict()
    state["config"] = np.array(json.dumps(learner.config.to_dict()))
    state["obs"] = learner.net.to_numpy(learner.obs)
    state["mean"] = run["mean"]
    state["metrics"] = np.array(run["metrics"], dtype=np.float64).reshape(-1, len(CSV_COLUMNS))
    state["frames"] = np.array(run["frames"], dtype=np.uint8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **state)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path):
    """The arrays of a checkpoint, or ``UsageError`` naming what is wrong with it."""
    if not os.path.isfile(path):
        raise UsageError(f"no such checkpoint: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        config = TrainConfig.from_dict(json.loads(str(state["config"])))
        for key in ("obs", "mean", "metrics", "frames", "iteration"):
            state[key]  # noqa: B018 -- presence check
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, TypeError) as e:
        raise UsageError(f"corrupt or incompatible checkpoint {path!r}: {e}") from None
    return config, state


# ------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on stderr: iteration, f_obs - f_syn per top-map position
    and the time left."""

    def __init__(self, total, start, quiet=False):
        self.total, self.start, self.quiet = total, start, quiet
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def update(self, iteration, layers, gap):
        if self.quiet:
            return
        done = iteration - self.start
        elapsed = time.perf_counter() - self.t0
        left = elapsed / max(done, 1) * (self.total - iteration)
        width = 24
        fill = int(width * iteration / self.total)
        line = (
            f"[{'#' * fill}{'.' * (width - fill)}] {iteration}/{self.total} "
            f"layers {layers}  f_obs-f_syn {gap:+.3g}  {elapsed / max(done, 1):.2f} s/it  "
            f"left {int(left) // 60}:{int(left) % 60:02d}"
        )
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif time.perf_counter() - self.last_line > 10 or iteration == self.total:
            print(line, file=sys.stderr, flush=True)
            self.last_line = time.perf_counter()

    def close(self):
        if self.tty and not self.quiet:
            print(file=sys.stderr)


# ------------------------------------------------------------------------- run


class _Interrupt:
    """Ctrl-C ends the run after the current iteration; a second one stops at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


FRAME_PIXELS = 384


def _frame(learner, mean):
    """One frame of chains.gif: up to 16 chains, the sheet at most FRAME_PIXELS wide."""
    chains = learner.net.to_numpy(learner.chains)[:16]
    sheet = plots.tile(data.to_uint8(chains, mean), columns=min(4, len(chains)))
    return plots.fit(sheet, FRAME_PIXELS)


def write_outputs(out, learner, run):
    """Samples, pictures and curves from the current state."""
    mean = run["mean"]
    obs = learner.net.to_numpy(learner.obs)
    chains = learner.net.to_numpy(learner.chains)
    samples, training = data.to_uint8(chains, mean), data.to_uint8(obs, mean)
    plots.save_images(os.path.join(out, "synthesized"), samples)
    plots.save_grid(os.path.join(out, "grid.png"), training, samples)
    rows = np.array(run["metrics"], dtype=np.float64).reshape(-1, len(CSV_COLUMNS))
    if len(rows):
        metrics = {c: rows[:, i] for i, c in enumerate(CSV_COLUMNS)}
        starts = [
            int(it) for it, prev in zip(rows[1:, 0], np.diff(rows[:, 1]), strict=True) if prev > 0
        ]
        plots.save_curves(os.path.join(out, "curves.png"), metrics, starts)
    if run["frames"]:
        plots.save_gif(os.path.join(out, "chains.gif"), run["frames"])
    plots.save_filters(os.path.join(out, "filters.png"), learner.net.weights[0][0])
    if learner.config.mode == "cd":
        recon = data.to_uint8(learner.reconstruct(), mean)
        plots.save_reconstructions(os.path.join(out, "reconstructions.png"), training, recon)


def _write_csv(path, rows, mode="w"):
    """Write ``metrics.csv`` anew with its header (``mode="w"``) or append ``rows``."""
    with open(path, mode, newline="") as f:
        writer = csv.writer(f)
        if mode == "w":
            writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([int(row[0]), int(row[1])] + [f"{v:.6g}" for v in row[2:]])


def run_training(config, out, resume_state=None, quiet=False):
    """Train, writing outputs into ``out``; returns ``(learner, interrupted)``. Raises
    ``UsageError`` for bad input and ``NonFiniteError`` (after saving the last good state)."""
    if resume_state is not None:
        obs, mean = resume_state["obs"], resume_state["mean"]
    else:
        raw = data.load_training_images(config)
        obs, mean = data.prepare(raw)
    try:
        learner = Learner(config, obs)
        if resume_state is not None:
            learner.load_state_dict(resume_state)
    except (ValueError, RuntimeError) as e:  # bad sizes, checkpoint, unavailable backend
        raise UsageError(str(e)) from None
    run = {"mean": np.asarray(mean, dtype=np.float64), "metrics": [], "frames": []}
    if resume_state is not None:
        run["metrics"] = [list(r) for r in resume_state["metrics"]]
        run["frames"] = list(resume_state["frames"])
    os.makedirs(out, exist_ok=True)
    ckpt = os.path.join(out, "checkpoint.npz")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(
            config.to_dict() | {"mean": run["mean"].tolist(), "image_shape": list(obs.shape)},
            f,
            indent=2,
        )
    csv_path = os.path.join(out, "metrics.csv")
    _write_csv(csv_path, run["metrics"])
    if not run["frames"]:
        run["frames"].append(_frame(learner, run["mean"]))

    total = learner.total_iterations
    progress = Progress(total, learner.iteration, quiet)
    with _Interrupt() as interrupt:
        while learner.iteration < total and not interrupt.requested:
            t0 = time.perf_counter()
            try:
                m = learner.step()
            except NonFiniteError:
                progress.close()
                save_checkpoint(ckpt, learner, run)
                raise
            row = [learner.iteration, len(learner.net.layers)] + [m[k] for k in METRICS]
            row.append(time.perf_counter() - t0)
            run["metrics"].append(row)
            _write_csv(csv_path, [row], mode="a")
            if learner.iteration % config.snapshot_every == 0:
                run["frames"].append(_frame(learner, run["mean"]))
            if learner.iteration % config.checkpoint_every == 0:
                save_checkpoint(ckpt, learner, run)
            progress.update(learner.iteration, len(learner.net.layers), m["f_obs"] - m["f_syn"])
        progress.close()
        save_checkpoint(ckpt, learner, run)
        write_outputs(out, learner, run)
    return learner, interrupt.requested


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        resume_state = None
        if args.resume:
            config, resume_state = load_checkpoint(args.resume)
            changed = [
                n for n in OPTION_FIELDS if getattr(args, n) is not None and n not in RESUMABLE
            ]
            if changed or args.image or args.preset != "texture":
                raise UsageError(
                    "--resume continues the checkpoint's configuration; only "
                    "--iterations, --checkpoint-every, --backend and --out may change"
                )
            for name in RESUMABLE:
                if getattr(args, name) is not None:
                    setattr(config, name, getattr(args, name))
            out = args.out or os.path.dirname(os.path.abspath(args.resume))
        else:
            config = config_from_args(args)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = args.out or os.path.join("runs", f"{config.preset}-{stamp}")
        learner, interrupted = run_training(config, out, resume_state, quiet=args.quiet)
    except (UsageError, data.DataError) as e:
        print(f"gcn_numpy.train: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteError as e:
        print(
            f"gcn_numpy.train: {e}; the last good state is in "
            f"{os.path.join(out, 'checkpoint.npz')}",
            file=sys.stderr,
        )
        return 1
    if interrupted:
        print(
            f"interrupted after iteration {learner.iteration}; checkpoint saved; resume with: "
            f"python -m gcn_numpy.train --resume {os.path.join(out, 'checkpoint.npz')}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(f"{learner.iteration} iterations done; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
