"""``python -m gcn_numpy.train``: learn a generative ConvNet from images and sample from it.

With no arguments it learns the ``texture`` preset from a shipped texture in a few minutes
on a CPU. See ``--help`` for every option; presets are in :mod:`gcn_numpy.presets`.

Outputs (default folder ``runs/<preset>-<timestamp>/``): ``config.json``, ``metrics.csv``,
``checkpoint.npz``, refreshed at every checkpoint: ``synthesized/chain_XX.png``,
``grid.png``, ``curves.png``, ``filters.png``, ``reconstructions.png`` (CD); when layers
are grown, the samples at the end of each stage in ``stages/layers_<n>/``; at the end:
``chains.gif`` (from the frames in ``frames/``) and ``summary.json``.

What a run guarantees: a checkpoint is written whole or not at all, every
``--checkpoint-every`` iterations and when the run stops; Ctrl-C, SIGTERM and SIGHUP finish
the current iteration, write the checkpoint and exit (130, 143, 129); ``--resume`` then
gives the result of an uninterrupted run, bit for bit. A diverging iteration is rolled
back (see :meth:`gcn_numpy.learning.Learner.step`). Bad input (flat images too), runs too
large for the memory (:mod:`gcn_numpy.memory`), damaged checkpoints and unwritable outputs
exit 2 with one line; a second run on the same ``--out`` is refused while the first lives.
"""

import argparse
import contextlib
import csv
import glob
import io
import json
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from . import checkpoint, data, memory, plots
from ._io import OutputError, atomic_write
from ._validate import positive_float, positive_int
from .backends import BACKENDS
from .boundary import BOUNDARIES
from .learning import METRICS, DivergenceError, Learner
from .memory import TooLarge
from .presets import PRESETS, TrainConfig, get_preset
from .summary import run_summary, summary_line, write_summary

__all__ = ["main", "build_parser", "config_from_args", "Run", "Option", "OPTIONS", "UsageError"]

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None

EXIT_USAGE = 2
EXIT_DIVERGED = 1
STOP_SIGNALS = {  # what ends a run cleanly, and the exit status it then returns (128 + n)
    signal.SIGINT: 130,
    signal.SIGTERM: 143,
    **({signal.SIGHUP: 129} if hasattr(signal, "SIGHUP") else {}),
}
CSV_COLUMNS = ("iteration", "layers") + METRICS + ("lr", "rollback", "seconds")
FRAME_PIXELS = 384  # width of a frame of chains.gif at most
PROGRESS_EVERY_S = 10  # a progress line this often when stderr is not a terminal


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2.

    Examples
    --------
    >>> main(["--chains", "0"])
    2
    """


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


# ------------------------------------------------------------------------- options


def _argument(check, kind):
    """An argparse type: parse the text as ``kind``, then apply the package's ``check``."""

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        try:
            return check(value, "the value")
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


POSITIVE_INT = _argument(positive_int, int)
POSITIVE_FLOAT = _argument(positive_float, float)


@dataclass(frozen=True)
class Option:
    """A command-line option that sets a field of :class:`~gcn_numpy.presets.TrainConfig`
    (the one list the parser, the configuration and ``--resume``'s rules come from).

    Examples
    --------
    >>> [o.field for o in OPTIONS if o.resumable]  # what --resume may change
    ['iterations', 'backend', 'checkpoint_every']
    """

    flag: str
    help: str
    type: object = None
    choices: tuple = None
    metavar: str = None
    resumable: bool = False  # may change when a run is resumed

    @property
    def field(self):
        return self.flag[2:].replace("-", "_")


OPTIONS = (
    Option(
        "--size",
        "training images are resized (shorter side) and centre-cropped to SIZE x SIZE; "
        "shipped textures are cropped at the preset's scale",
        POSITIVE_INT,
    ),
    Option(
        "--iterations",
        "learning iterations T, per layer stage when layers are grown",
        POSITIVE_INT,
        resumable=True,
    ),
    Option("--chains", "parallel Langevin chains M~", POSITIVE_INT),
    Option("--langevin-steps", "Langevin steps L per learning iteration", POSITIVE_INT),
    Option("--step-size", "Langevin step size epsilon of eq. (19)", POSITIVE_FLOAT),
    Option("--sigma", "standard deviation of the Gaussian reference q", POSITIVE_FLOAT),
    Option("--lr", "learning rate eta", POSITIVE_FLOAT),
    Option(
        "--optimizer",
        "release: the original update rule (rescaled gradient ascent); adam",
        choices=("release", "adam"),
    ),
    Option(
        "--boundary",
        "what the filters see beyond the image edge: zero (the release's zero padding), "
        "circular (the chains live on a torus and the training image's statistics come from "
        "the positions that never see its edge), reflect (a mirror image behind the edge) or "
        "symmetric (the mirror with the edge row repeated: every pixel read by as many windows "
        "as in the interior)",
        choices=BOUNDARIES,
    ),
    Option(
        "--backend",
        "numpy (reference) | numba (CPU) | cupy (GPU)",
        choices=BACKENDS,
        metavar="NAME",
        resumable=True,
    ),
    Option("--seed", "seed of weights and noise", int),
    Option(
        "--checkpoint-every",
        "write checkpoint.npz and refresh the pictures every N iterations",
        POSITIVE_INT,
        metavar="N",
        resumable=True,
    ),
    Option(
        "--synth-size",
        "canvas of the chains, SIZE x SIZE, may exceed the training size (convolutional "
        "'sum' top only; default: the preset's scale of the training size)",
        POSITIVE_INT,
        metavar="SIZE",
    ),
    Option(
        "--observed-window",
        "each iteration, the training images' statistics come from a window of this "
        "fraction of their side at a random place (1: the whole image), so that no fixed "
        "pixels sit at the border of what the model learns from (on the shipped textures it "
        "did not lower the frame score: docs/frame.md)",
        POSITIVE_FLOAT,
        metavar="FRACTION",
    ),
)
RESUMABLE = tuple(o.flag for o in OPTIONS if o.resumable) + ("--out",)


def build_parser():
    """The command line's parser: the options of :data:`OPTIONS` and the others.

    Examples
    --------
    >>> args = build_parser().parse_args(["--preset", "cd", "--lr", "0.001"])
    >>> args.preset, args.lr, args.chains  # options left out are None: the preset decides
    ('cd', 0.001, None)
    """
    default = PRESETS["texture"]
    p = _Parser(
        prog="python -m gcn_numpy.train",
        description="Learn a generative ConvNet (Xie et al., ICML 2016) from images with "
        "Algorithm 1 or contrastive divergence, and synthesize new images by Langevin "
        "dynamics. Options left out take the preset's value; the value shown in brackets is "
        "the default preset's ('texture').",
        epilog=memory.HELP,
    )
    p.add_argument(
        "--preset",
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
        "--texture",
        choices=data.TEXTURES,
        metavar="NAME",
        help=f"a shipped texture ({' | '.join(data.TEXTURES)}), at the preset's scale "
        "(default: gravel)",
    )
    for o in OPTIONS:
        value = getattr(default, o.field)
        shown = {"synth_size": "the training size x 1.5", "observed_window": "off"}.get(
            o.field, value
        )
        p.add_argument(
            o.flag,
            type=o.type,
            choices=o.choices,
            metavar=o.metavar or (o.field.upper() if o.choices is None else None),
            help=f"{o.help} (texture: {shown})",
        )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: runs/<preset>-<timestamp>, or the checkpoint's folder "
        "with --resume)",
    )
    p.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a checkpoint.npz; the result equals an uninterrupted run (only "
        f"{', '.join(RESUMABLE)} may change)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args):
    """The preset named by ``args`` with the options given on the command line applied.

    Examples
    --------
    >>> config = config_from_args(build_parser().parse_args(["--boundary", "zero"]))
    >>> config.preset, config.boundary, config.observed_positions
    ('texture', 'zero', 'all')
    """
    config = get_preset(args.preset or "texture")
    for o in OPTIONS:
        value = getattr(args, o.field)
        if value is not None:
            setattr(config, o.field, value)
    if args.boundary is not None:  # the torus needs the training image's clean positions
        clean = "clean" if args.boundary == "circular" else "all"
        config.observed_positions = config.synthesized_positions = "all"
        if config.top == "sum":
            config.observed_positions = clean
    if args.image and args.texture:
        raise UsageError("give --image or --texture, not both")
    if args.image:
        config.data, config.images = "files", list(args.image)
    if args.texture:
        if config.data == "lfw" or config.top != "sum":
            raise UsageError(f"--texture needs a texture preset, not {config.preset!r}")
        config.data = f"texture:{args.texture}"
    return config


def resumed_config(args):
    """``(config, state, out)`` for ``--resume``: the checkpoint's configuration with the
    resumable options applied."""
    config, state = checkpoint.load(args.resume, len(CSV_COLUMNS))
    changed = [o.flag for o in OPTIONS if getattr(args, o.field) is not None and not o.resumable]
    if changed or args.image or args.preset or args.texture:
        given = changed + [
            flag for flag in ("--image", "--preset", "--texture") if getattr(args, flag[2:])
        ]
        raise UsageError(
            f"--resume continues the checkpoint's configuration; {', '.join(given)} cannot "
            f"change (only {', '.join(RESUMABLE)} may)"
        )
    for o in OPTIONS:
        if o.resumable and getattr(args, o.field) is not None:
            setattr(config, o.field, getattr(args, o.field))
    out = args.out or os.path.dirname(os.path.abspath(args.resume))
    return config, state, out


# ------------------------------------------------------------------------- the run


@dataclass
class Run:
    """What a training run keeps besides its learner: where it writes, the training
    images' mean, the metrics rows so far and the photograph the samples are judged
    against.

    Examples
    --------
    >>> import numpy as np
    >>> run = Run(get_preset("texture"), "runs/example", np.zeros(1))
    >>> run.checkpoint
    'runs/example/checkpoint.npz'
    """

    config: TrainConfig
    out: str
    mean: np.ndarray
    metrics: list = field(default_factory=list)  # rows of CSV_COLUMNS
    photo: np.ndarray = None  # data.training_photo, for the frame score's reference

    def path(self, *names):
        return os.path.join(self.out, *names)

    @property
    def checkpoint(self):
        return self.path("checkpoint.npz")

    def kept_rows(self):
        """The metrics of the iterations kept (not rolled back), as an array."""
        rows = np.array(self.metrics, dtype=np.float64).reshape(-1, len(CSV_COLUMNS))
        return rows[rows[:, CSV_COLUMNS.index("rollback")] == 0]


def _makedirs(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder {path}: {e.strerror or e}") from None


def _csv_text(rows, header=False):
    """``rows`` of CSV_COLUMNS as CSV text (iteration, layers and rollback as integers)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = [f"{v:.6g}" for v in row[2:-2]]
        writer.writerow([int(row[0]), int(row[1])] + values + [int(row[-2]), f"{row[-1]:.6g}"])
    return buffer.getvalue()


def _write_csv(run, rows, mode="w"):
    """Write ``metrics.csv`` anew with its header (``mode="w"``, atomically) or append
    ``rows``."""
    path = run.path("metrics.csv")
    if mode == "w":
        atomic_write(path, lambda f: f.write(_csv_text(rows, header=True).encode()))
        return
    try:
        with open(path, "a") as f:
            f.write(_csv_text(rows))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


def _frame(learner, mean):
    """One frame of chains.gif: up to 16 chains, the sheet at most FRAME_PIXELS wide."""
    chains = learner.net.to_numpy(learner.chains)[:16]
    sheet = plots.tile(data.to_uint8(chains, mean), columns=min(4, len(chains)))
    return plots.fit(sheet, FRAME_PIXELS)


def _frame_paths(run):
    return sorted(glob.glob(run.path("frames", "frame_*.png")))


def save_frame(run, learner):
    plots.save_images(
        run.path("frames"), [_frame(learner, run.mean)], prefix=f"frame_{learner.iteration:06d}"
    )


def save_stage(run, learner):
    """The samples at the end of a layer-growing stage (section 7), kept beside the final
    ones: ``stages/layers_<n>/chain_XX.png``."""
    chains = data.to_uint8(learner.net.to_numpy(learner.chains), run.mean)
    plots.save_images(run.path("stages", f"layers_{len(learner.net.layers)}"), chains)


def write_outputs(run, learner, final=False):
    """Samples, pictures and curves from the current state (each file written
    atomically); ``final`` adds ``chains.gif``."""
    obs = learner.net.to_numpy(learner.obs)
    chains = learner.net.to_numpy(learner.chains)
    samples, training = data.to_uint8(chains, run.mean), data.to_uint8(obs, run.mean)
    plots.save_images(run.path("synthesized"), samples)
    plots.save_grid(run.path("grid.png"), training, samples)
    rows = np.array(run.metrics, dtype=np.float64).reshape(-1, len(CSV_COLUMNS))
    kept = run.kept_rows()
    if len(kept):
        metrics = {c: kept[:, i] for i, c in enumerate(CSV_COLUMNS)}
        layers = kept[:, 1]
        starts = [int(kept[i, 0]) for i in range(1, len(kept)) if layers[i] > layers[i - 1]]
        undone = rows[rows[:, CSV_COLUMNS.index("rollback")] > 0, 0]
        plots.save_curves(run.path("curves.png"), metrics, starts, undone)
    plots.save_filters(run.path("filters.png"), learner.net.weights[0][0])
    if learner.config.mode == "cd":
        recon = data.to_uint8(learner.reconstruct(), run.mean)
        plots.save_reconstructions(run.path("reconstructions.png"), training, recon)
    frames = _frame_paths(run)
    if final and frames:
        plots.save_gif(run.path("chains.gif"), [plots.read_png(p) for p in frames])


def finish_summary(run, learner, seconds):
    """``summary.json`` and its one line: copying, sameness, the frame score (against
    real crops), texture statistics, rollbacks, wall time."""
    samples = learner.net.to_numpy(learner.chains)
    obs = learner.net.to_numpy(learner.obs)
    summary = run_summary(samples, obs, photo=run.photo)
    kept = run.kept_rows()
    if learner.config.mode == "cd" and len(kept):
        summary["recon_error"] = float(kept[-1, CSV_COLUMNS.index("recon_error")])
    summary.update(
        iterations=learner.iteration,
        rollbacks=learner.rollbacks,
        seconds=round(seconds, 1),
        canvas=list(samples.shape[2:]),
        preset=run.config.preset,
    )
    write_summary(run.path("summary.json"), summary)
    line = summary_line(summary)
    if learner.rollbacks:
        line += f", {learner.rollbacks} rollback(s)"
    return line


# ------------------------------------------------------------------- the console


class Progress:
    """Progress on stderr: a tqdm bar on a terminal, otherwise a line every
    ``PROGRESS_EVERY_S`` seconds (and at the end); nothing with ``quiet``."""

    def __init__(self, total, start, quiet=False):
        self.total, self.start, self.quiet = total, start, quiet
        self.t0 = self.last_line = time.perf_counter()
        self.bar = None
        if not quiet and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=start, file=sys.stderr, unit="it", leave=True)

    def update(self, iteration, layers, gap):
        postfix = f"layers {layers}, f_obs-f_syn {gap:+.3g}"
        if self.bar is not None:
            self.bar.n = iteration
            self.bar.set_postfix_str(postfix, refresh=True)
            return
        now = time.perf_counter()
        if self.quiet or (now - self.last_line < PROGRESS_EVERY_S and iteration < self.total):
            return
        line = tqdm.format_meter(
            iteration, self.total, now - self.t0, initial=self.start, postfix=postfix, ncols=100
        )
        print(line, file=sys.stderr, flush=True)
        self.last_line = now

    def write(self, line):
        """A line that is not progress (a rollback), shown above the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP end the run after the current iteration; a second one
    acts as the signal normally does (Ctrl-C: at once)."""

    def __enter__(self):
        self.received = None
        self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.received = signum
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _locked(out):
    """Hold ``out/.lock`` for the life of the run: a second live run on the same folder is
    refused; the operating system drops the lock when a process dies, so a killed run's
    folder can be resumed."""
    if fcntl is None:
        yield
        return
    path = os.path.join(out, ".lock")
    try:
        f = open(path, "a+")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "?"
            raise UsageError(
                f"another run (process {owner}) is writing to {out}; wait for it or choose "
                "another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _warn(message):
    print(f"gcn_numpy.train: warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------- training


def start(config, out, state=None, source=None):
    """The learner and run record for a new run (``state=None``) or one resumed from the
    checkpoint ``source``, with ``out`` prepared: config.json, metrics.csv and the frames
    agree with the state."""
    if state is not None:
        obs, mean = state["obs"], state["mean"]
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", data.UpsamplingWarning)
            obs, mean = data.prepare(data.check_contrast(data.load_training_images(config)))
        for w in caught:
            _warn(w.message)
    try:
        learner = Learner(config, obs)
    except (ValueError, RuntimeError) as e:  # bad sizes, an unavailable backend
        raise UsageError(str(e)) from None
    if state is not None:
        try:
            learner.load_state_dict(state)
        except ValueError as e:
            raise checkpoint.CheckpointError(
                f"checkpoint {source} does not fit its configuration: {e}"
            ) from None
    run = Run(config, out, np.asarray(mean, dtype=np.float64))
    if state is not None:
        run.metrics = [list(r) for r in state["metrics"]]
    with contextlib.suppress(data.DataError, OSError):
        run.photo = data.training_photo(config)
    atomic_write(
        run.path("config.json"),
        lambda f: f.write(
            json.dumps(
                config.to_dict() | {"mean": run.mean.tolist(), "image_shape": list(obs.shape)},
                indent=2,
            ).encode()
        ),
    )
    _write_csv(run, run.metrics)
    for path in _frame_paths(run):  # frames of a longer run in this folder, or after a kill
        if int(os.path.basename(path)[6:12]) > learner.iteration or state is None:
            os.remove(path)
    if not _frame_paths(run):
        save_frame(run, learner)
    return learner, run


def train(learner, run, stop, quiet=False):
    """Iterate until done or a stop signal; checkpoint and pictures every
    ``checkpoint_every`` iterations. Rolled-back iterations are logged (metrics.csv, the
    console) and learning goes on; :class:`DivergenceError` propagates."""
    config = run.config
    total = learner.total_iterations
    progress = Progress(total, learner.iteration, quiet)
    try:
        while learner.iteration < total and stop.received is None:
            t0 = time.perf_counter()
            m = learner.step()
            undone = bool(m["rollback"])
            row = [learner.iteration + undone, len(learner.net.layers)]
            row += [m[k] for k in METRICS] + [m["lr"], float(undone), time.perf_counter() - t0]
            run.metrics.append(row)
            _write_csv(run, [row], mode="a")
            if undone:
                progress.write(
                    f"iteration {row[0]} rolled back: {m['rollback']}; learning rate halved "
                    f"to {learner.lr:.3g} for the rest of the stage"
                )
                continue
            if learner.iteration % config.snapshot_every == 0:
                save_frame(run, learner)
            if config.grow and learner.iteration % config.iterations == 0:
                save_stage(run, learner)
            if learner.iteration % config.checkpoint_every == 0:
                checkpoint.save(run.checkpoint, learner, run.mean, run.metrics)
                write_outputs(run, learner)
            progress.update(learner.iteration, len(learner.net.layers), m["f_obs"] - m["f_syn"])
    finally:
        progress.close()


def main(argv=None):
    """The command line: train, write the outputs, return the exit status.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> main(["--backend", "numpy", "--size", "32", "--chains", "2", "--iterations", "2",
    ...       "--quiet", "--out", out])  # doctest: +ELLIPSIS
    copying ..., sameness ..., frame score ...
    2 iterations done; outputs in ...
    0
    >>> sorted(os.listdir(out))  # doctest: +NORMALIZE_WHITESPACE
    ['.lock', 'chains.gif', 'checkpoint.npz', 'config.json', 'curves.png', 'filters.png',
     'frames', 'grid.png', 'metrics.csv', 'summary.json', 'synthesized']
    """
    parser = build_parser()
    out = None
    learner = None
    try:
        args = parser.parse_args(argv)
        if args.resume:
            config, state, out = resumed_config(args)
        else:
            config, state = config_from_args(args), None
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = args.out or os.path.join("runs", f"{config.preset}-{stamp}")
        memory.check_training(config, state["obs"].shape if state else data.training_shape(config))
        _makedirs(out)
        with _locked(out), _StopSignals() as stop:
            t0 = time.perf_counter()
            learner, run = start(config, out, state, args.resume)
            try:
                train(learner, run, stop, quiet=args.quiet)
            except DivergenceError as e:
                checkpoint.save(run.checkpoint, learner, run.mean, run.metrics)
                write_outputs(run, learner, final=True)
                print(
                    f"gcn_numpy.train: stopped: {e}; the last good state is in {run.checkpoint}",
                    file=sys.stderr,
                )
                return EXIT_DIVERGED
            checkpoint.save(run.checkpoint, learner, run.mean, run.metrics)
            write_outputs(run, learner, final=True)
            if stop.received is not None:
                name = signal.Signals(stop.received).name
                print(
                    f"stopped by {name} after iteration {learner.iteration}; checkpoint saved; "
                    f"resume with: python -m gcn_numpy.train --resume {run.checkpoint}",
                    file=sys.stderr,
                )
                return STOP_SIGNALS[stop.received]
            line = finish_summary(run, learner, time.perf_counter() - t0)
    except (UsageError, data.DataError, checkpoint.CheckpointError, OutputError, TooLarge) as e:
        print(f"gcn_numpy.train: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C: no new checkpoint
        where = f"; the last checkpoint is in {os.path.join(out, 'checkpoint.npz')}" if out else ""
        print(f"gcn_numpy.train: stopped at once{where}", file=sys.stderr)
        return STOP_SIGNALS[signal.SIGINT]
    print(line)
    print(f"{learner.iteration} iterations done; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
