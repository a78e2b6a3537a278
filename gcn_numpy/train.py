"""``python -m gcn_numpy.train``: learn a generative ConvNet from images and sample from it.

With no arguments it learns the ``texture-one-chain`` preset from the shipped gravel texture
in a few minutes on a CPU. See ``--help`` for every option; presets are in
:mod:`gcn_numpy.presets`.

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
import json
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from . import checkpoint, data, memory
from ._io import OutputError, atomic_write
from ._validate import positive_float, positive_int, temperature
from .learning import DivergenceError, Learner
from .memory import TooLarge
from .outputs import (
    CSV_COLUMNS,
    MetricsRow,
    Run,
    finish_summary,
    frame_iteration,
    frame_paths,
    makedirs,
    run_drift,
    save_frame,
    save_stage,
    write_csv,
    write_outputs,
)
from .presets import CHOICES, DEFAULT_PRESET, PRESETS, format_layers, get_preset, parse_layers

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
COUNT = _argument(lambda v, what: positive_int(v, what, minimum=0), int)  # an integer >= 0


def _fraction(value, what):
    if not 0 <= value <= 1:
        raise ValueError(f"{what} must be a fraction in [0, 1], got {value!r}")
    return value


def _margin(text):
    """``--synth-margin``: ``rf`` or an integer >= 0."""
    if text == "rf":
        return text
    return COUNT(text)


POSITIVE_FLOAT = _argument(positive_float, float)
FRACTION = _argument(_fraction, float)
TEMPERATURE = _argument(temperature, float)


@dataclass(frozen=True)
class Option:
    """A command-line option that sets a field of :class:`~gcn_numpy.presets.TrainConfig`
    (the one list the parser, the configuration and ``--resume``'s rules come from).

    Examples
    --------
    >>> [o.field for o in OPTIONS if o.resumable]  # what --resume may change
    ['iterations', 'backend', 'checkpoint_every', 'drift_steps']
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
    Option(
        "--layers",
        "the conv layers, comma-separated CxK[/S][pP]: C filters of KxK, stride S, padding P "
        "(e.g. the paper's text's object net: 100x7/2p2,64x5p2,20x3p2)",
        _argument(lambda v, what: parse_layers(v), str),
        metavar="SPEC",
    ),
    Option("--chains", "parallel Langevin chains M~", POSITIVE_INT),
    Option("--langevin-steps", "Langevin steps L per learning iteration", POSITIVE_INT),
    Option("--step-size", "Langevin step size epsilon of eq. (19)", POSITIVE_FLOAT),
    Option("--sigma", "standard deviation of the Gaussian reference q", POSITIVE_FLOAT),
    Option("--lr", "learning rate eta", POSITIVE_FLOAT),
    Option(
        "--anneal",
        "the last fraction of the final stage over which the learning rate falls linearly to "
        "zero, so that the final weights settle and the chains come to equilibrium under "
        "them (0: a constant rate, the release)",
        FRACTION,
        metavar="FRACTION",
    ),
    Option(
        "--rejuvenate",
        "every R iterations one chain (in turn) starts again at zero, the mean image, except "
        "over the last tenth of the run, so that the model keeps the way from zero (0: never)",
        COUNT,
        metavar="R",
    ),
    Option(
        "--rejuvenate-from",
        "where a rejuvenated chain starts: zeros (the mean image), noise (white noise of the "
        "training images' spread), tempered (the sampling command's tempered start from "
        "zero; measured: one run in eleven stopped by the divergence guard when a chain so "
        "restarted early in the run ran away) or alternate (tempered and zeros in turn)",
        choices=CHOICES["rejuvenate_from"],
    ),
    Option(
        "--rejuvenate-tempered-stage",
        "with --rejuvenate-from tempered or alternate: from this stage on (a grown net's "
        "stage k has k layers; one stage without --grow); rejuvenated chains start at zero "
        "before it",
        POSITIVE_INT,
        metavar="STAGE",
    ),
    Option(
        "--rejuvenate-keep",
        "with --rejuvenate: the first K chains are never started again (persistent through a "
        "stage); the restarts go to the others in turn",
        COUNT,
        metavar="K",
    ),
    Option(
        "--tempered-restart",
        "when this last fraction of the final stage is left, every chain starts again by the "
        "sampling command's tempered start from zero (0: never; docs/convergence.md)",
        FRACTION,
        metavar="FRACTION",
    ),
    Option(
        "--temper-steps",
        "steps of the learning's tempered start from zero (--rejuvenate-from tempered or "
        "alternate, --tempered-restart); the presets take the sampling command's",
        POSITIVE_INT,
        metavar="N",
    ),
    Option(
        "--temper-start",
        "the first temperature of the learning's tempered start, falling geometrically to 1 "
        "(the presets take the sampling command's; 200 steps from 1000 in the learning: "
        "docs/convergence.md, eighteenth round)",
        TEMPERATURE,
        metavar="T",
    ),
    Option(
        "--optimizer",
        "release: the original update rule (rescaled gradient ascent); adam",
        choices=CHOICES["optimizer"],
    ),
    Option(
        "--boundary",
        "what the filters see beyond the image edge: zero (the release's zero padding), "
        "circular (the chains live on a torus and the training image's statistics come from "
        "the positions that never see its edge), reflect (a mirror image behind the edge) or "
        "symmetric (the mirror with the edge row repeated: every pixel read by as many windows "
        "as in the interior)",
        choices=CHOICES["boundary"],
    ),
    Option(
        "--backend",
        "numpy (reference) | numba (CPU) | cupy (GPU)",
        choices=CHOICES["backend"],
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
        "--drift-steps",
        "at the end, run a copy of the chains N Langevin steps at the learned weights and "
        "report whether the model's own dynamics keep its samples (drift.png, summary.json; "
        "0: skip)",
        COUNT,
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
        "--synth-margin",
        "pixels the chains' canvas adds on each side and the samples leave out, or rf (a top "
        "unit's receptive field): every returned pixel is then read only by units that see "
        "no boundary, and the samples are the model's marginal on the inner window",
        _margin,
        metavar="PIXELS",
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
    default = PRESETS[DEFAULT_PRESET]
    p = _Parser(
        prog="python -m gcn_numpy.train",
        description="Learn a generative ConvNet (Xie et al., ICML 2016) from images with "
        "Algorithm 1 or contrastive divergence, and synthesize new images by Langevin "
        "dynamics. Options left out take the preset's value; the value shown in brackets is "
        f"the default preset's ('{DEFAULT_PRESET}').",
        epilog=memory.HELP,
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        metavar="NAME",
        help="configuration: texture-one-chain (the default: the release's net at 112 px, one "
        "168 px chain; its models kept their samples under their own dynamics, without a "
        "frame, on 20 of 21 measured runs; 2-4 minutes on 2 cores), texture-convergent (the "
        "same with four 128 px chains: about 1.6x the time, samples from zero closer to the "
        "texture on more of the measured runs), texture | object | cd (smaller nets, CPU "
        "scale) or texture-paper | object-paper | cd-paper (the release's numbers, 224 px, for "
        f"a GPU) (default: {DEFAULT_PRESET})",
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
        shown = {
            "synth_size": "the training size x 1.5",
            "observed_window": "off",
            "layers": format_layers(default.layers),
        }.get(o.field, value)
        p.add_argument(
            o.flag,
            type=o.type,
            choices=o.choices,
            metavar=o.metavar or (o.field.upper() if o.choices is None else None),
            help=f"{o.help} ({DEFAULT_PRESET}: {shown})",
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
    ('texture-one-chain', 'zero', 'all')
    """
    config = get_preset(args.preset or DEFAULT_PRESET)
    for o in OPTIONS:
        value = getattr(args, o.field)
        if value is not None:
            setattr(config, o.field, value)
    if args.lr is not None:  # a rate given is the rate used, at any size
        config.lr_size = None
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


# ------------------------------------------------------------------- the console


class Progress:
    """Progress on stderr: a tqdm bar on a terminal, otherwise a line every
    ``PROGRESS_EVERY_S`` seconds (and at the end); nothing with ``quiet``."""

    def __init__(self, total, start, quiet=False, unit="it", desc=None):
        self.total, self.start, self.quiet, self.desc = total, start, quiet, desc
        self.t0 = self.last_line = time.perf_counter()
        self.bar = None
        if not quiet and sys.stderr.isatty():
            self.bar = tqdm(
                total=total, initial=start, file=sys.stderr, unit=unit, leave=True, desc=desc
            )

    def update(self, iteration, postfix=""):
        if self.bar is not None:
            self.bar.n = iteration
            self.bar.set_postfix_str(postfix, refresh=True)
            return
        now = time.perf_counter()
        if self.quiet or (now - self.last_line < PROGRESS_EVERY_S and iteration < self.total):
            return
        line = tqdm.format_meter(
            iteration,
            self.total,
            now - self.t0,
            initial=self.start,
            postfix=postfix,
            prefix=self.desc or "",
            ncols=100,
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
        run.metrics = [MetricsRow(*r) for r in state["metrics"]]
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
    write_csv(run, run.metrics)
    for path in frame_paths(run):  # frames of a longer run in this folder, or after a kill
        if frame_iteration(path) > learner.iteration or state is None:
            os.remove(path)
    if not frame_paths(run):
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
            row = MetricsRow.of(learner, m, time.perf_counter() - t0)
            run.metrics.append(row)
            write_csv(run, [row], mode="a")
            if row.rollback:
                progress.write(
                    f"iteration {row.iteration} rolled back: {m['rollback']}; learning rate halved "
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
            gap = m["f_obs"] - m["f_syn"]
            progress.update(
                learner.iteration, f"layers {len(learner.net.layers)}, f_obs-f_syn {gap:+.3g}"
            )
    finally:
        progress.close()


class _DriftStopped(Exception):
    pass


def drift_test_of(run, learner, stop, quiet):
    """:func:`gcn_numpy.outputs.run_drift` with progress shown, ended early (``None``) by a
    stop signal: the checkpoint is already written, and ``--resume`` runs the test again."""
    steps = learner.config.drift_steps
    progress = Progress(steps, 0, quiet or not steps, unit="step", desc="drift test")

    def step(done):
        if stop.received is not None:
            raise _DriftStopped
        progress.update(done)

    t0 = time.perf_counter()
    try:
        drift = run_drift(run, learner, progress=step)
    except _DriftStopped:
        return None
    finally:
        progress.close()
    if drift is not None:
        drift["seconds"] = round(time.perf_counter() - t0, 1)
    return drift


def stopped(stop, run, learner, where=None):
    """The message and exit status of a run ended by a stop signal (checkpoint saved)."""
    name = signal.Signals(stop.received).name
    when = where or f"after iteration {learner.iteration}"
    print(
        f"stopped by {name} {when}; checkpoint saved; "
        f"resume with: python -m gcn_numpy.train --resume {run.checkpoint}",
        file=sys.stderr,
    )
    return STOP_SIGNALS[stop.received]


def main(argv=None):
    """The command line: train, write the outputs, return the exit status.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> main(["--preset", "texture", "--backend", "numpy", "--size", "32", "--chains", "2",
    ...       "--iterations", "2", "--drift-steps", "20", "--quiet", "--out", out])
    ... # doctest: +ELLIPSIS
    copying ..., sameness ..., frame score ...
    own dynamics, 20 steps at fixed weights: mean ...
    2 iterations done; outputs in ...
    0
    >>> sorted(os.listdir(out))  # doctest: +NORMALIZE_WHITESPACE
    ['.lock', 'chains.gif', 'checkpoint.npz', 'config.json', 'curves.png', 'drift.png',
     'filters.png', 'frames', 'grid.png', 'metrics.csv', 'summary.json', 'synthesized']
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
        makedirs(out)
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
                return stopped(stop, run, learner)
            seconds = time.perf_counter() - t0
            drift = drift_test_of(run, learner, stop, args.quiet)
            if stop.received is not None:
                return stopped(stop, run, learner, "in the drift test")
            line = finish_summary(run, learner, seconds, drift)
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
