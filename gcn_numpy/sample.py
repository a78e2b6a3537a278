"""``python -m gcn_numpy.sample MODEL``: samples, reconstructions and modes of a learned model.

``MODEL`` is a shipped model (``--list`` shows them), a model file or any training run's
``checkpoint.npz``. A texture model is convolutional: it samples at any canvas size
(``--size``); an object model samples at its training size.

What a sample is: every chain starts at zero (the mean image), runs a tempered start of
100 Langevin steps whose noise is scaled by sqrt(T), T falling geometrically from 1e4 to 1
at twice the model's step size (``--temper-steps``, ``--temper-start``), then ``--steps``
steps of plain Langevin dynamics, eq. (19), at the model's step size and sigma; the chains
run on a canvas wider than the returned image by the model's margin on each side, and the
inner window is returned. The images are 0-255 PNGs with the training images' mean added
back. Same seed, same bytes.

``--reconstruct IMAGE`` writes Theorem 1's auto-encoding of your image beside it (the mean
of its Gaussian piece, sigma^2 B(delta(I))); ``--mode IMAGE`` the local mode that the
deterministic part of the dynamics reaches from it (Proposition 2).
"""

import argparse
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from . import data, plots
from ._validate import positive_int, temperature
from .backends import BACKENDS
from .drift import verdict_words
from .zoo import TEMPER_START, TEMPER_STEPS, ModelError, list_models, load_model

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ModelError(message)


def _count(minimum):
    def convert(text):
        try:
            return positive_int(int(text), "the value", minimum=minimum)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}"
            ) from None

    return convert


def _temperature(text):
    try:
        return temperature(float(text), "the value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a temperature >= 1, got {text!r}") from None


def build_parser():
    """The command line's parser.

    Examples
    --------
    >>> args = build_parser().parse_args(["gravel", "--size", "512"])
    >>> args.model, args.size, args.n, args.steps, args.seed
    ('gravel', 512, 1, 200, 0)
    """
    p = _Parser(
        prog="python -m gcn_numpy.sample",
        description="Sample a learned generative ConvNet, reconstruct an image with it or "
        "descend to one of its modes. Sampling: zeros, a tempered start (100 steps), then "
        "--steps Langevin steps (eq. 19) at the model's step size; see the module's help.",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="a shipped model (--list), a model file or a training run's checkpoint.npz",
    )
    p.add_argument("--list", action="store_true", help="list the shipped models and exit")
    p.add_argument(
        "--size",
        type=_count(1),
        help="side of the samples in pixels (texture models: any size; default: the training size)",
    )
    p.add_argument("--n", type=_count(1), default=1, help="number of samples (default 1)")
    p.add_argument(
        "--steps",
        type=_count(0),
        default=200,
        help="plain Langevin steps after the tempered start (default 200)",
    )
    p.add_argument(
        "--temper-steps",
        type=_count(0),
        default=TEMPER_STEPS,
        help=f"steps of the tempered start from zeros (0: none; default {TEMPER_STEPS})",
    )
    p.add_argument(
        "--temper-start",
        type=_temperature,
        default=TEMPER_START,
        metavar="T",
        help="the tempered start's first temperature, falling geometrically to 1 "
        f"(default {TEMPER_START:g}); which start finds a model's texture depends on the "
        "model (docs/convergence.md, eighteenth round)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument(
        "--init",
        default="zeros",
        metavar="zeros|noise|both|IMAGE",
        help="where the chains start: zeros (the mean image, with the tempered "
        "start), noise, both (each sample from zeros and from noise, the one of lower "
        "energy kept: both starts' time), or an image file (no tempered start) (default zeros)",
    )
    p.add_argument(
        "--reconstruct",
        metavar="IMAGE",
        help="write the auto-encoding sigma^2 B(delta(I)) of IMAGE beside it (Theorem 1)",
    )
    p.add_argument(
        "--mode",
        metavar="IMAGE",
        help="write the local mode reached from IMAGE beside it (Proposition 2)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="output folder (default: samples/<model>-<timestamp>)"
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="numba",
        metavar="NAME",
        help="numpy | numba (default) | cupy",
    )
    p.add_argument("--quiet", action="store_true", help="no progress")
    return p


def _listing():
    """Two lines a model: its name, size and own-dynamics verdict; what it learned and the
    command that made it."""
    lines, models = [], list_models()
    w = max((len(name) for name, _ in models), default=0) + 2  # the names' column
    for name, info in models:
        verdict = verdict_words(_drift(info)) or "no drift test"
        lines.append(f"{name:<{w}}{info.get('size', ''):<9}{verdict}")
        lines.append(f"{'':<{w}}{info.get('learned', '')}")
        if info.get("made"):
            lines.append(f"{'':<{w}}made by: {info['made']}")
    return "\n".join(lines)


def _drift(info):
    """The drift test a model's ``info`` carries (its run's summary), or ``{}``."""
    return (info.get("summary") or {}).get("drift") or {}


def _image(model, path, size=None):
    """An image file in model units with the model's channels, (1, C, H, W); resized to
    ``size`` (shorter side, centre crop) when given."""
    try:
        image = data.load_image(path, model.net.in_channels, size, strict=True)
    except data.DataError as e:
        raise ModelError(str(e)) from None
    return model.from_pixels(image[None])


class _Progress:
    def __init__(self, quiet, desc):
        self.bar, self.quiet, self.desc = None, quiet, desc
        self.last = time.perf_counter()

    def __call__(self, done, total):
        if self.quiet:
            return
        if sys.stderr.isatty():
            if self.bar is None:
                self.bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr)
            self.bar.n = done
            self.bar.refresh()
        elif time.perf_counter() - self.last > 10 or done == total:
            print(f"{self.desc}: {done}/{total} steps", file=sys.stderr, flush=True)
            self.last = time.perf_counter()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _save(out, name, image):
    plots.save_images(out, image[None], prefix=name)
    os.replace(os.path.join(out, f"{name}_00.png"), os.path.join(out, f"{name}.png"))


def run(args):
    """The command's work; returns the lines it prints."""
    model = load_model(args.model, backend=args.backend)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = os.path.splitext(os.path.basename(args.model))[0]
    out = args.out or os.path.join("samples", f"{label}-{stamp}")
    os.makedirs(out, exist_ok=True)
    lines = []
    t0 = time.perf_counter()
    if args.reconstruct:
        I = _image(model, args.reconstruct, model.size[0] if model.size else None)
        B = model.reconstruct(I)
        plots.save_rows(
            os.path.join(out, "reconstruction.png"),
            [
                ("image", list(model.to_pixels(I))),
                ("sigma^2 B(delta(I)), Theorem 1", list(model.to_pixels(B))),
            ],
        )
        err = float(np.abs(B - I).mean())
        lines.append(
            f"reconstruction: mean |sigma^2 B - I| = {err:.2f} grey levels; "
            f"{os.path.join(out, 'reconstruction.png')}"
        )
    if args.mode:
        I = _image(model, args.mode, model.size[0] if model.size else None)
        mode, exact = model.mode(I)
        plots.save_rows(
            os.path.join(out, "mode.png"),
            [
                ("image", list(model.to_pixels(I))),
                ("local mode (Proposition 2)", list(model.to_pixels(mode))),
            ],
        )
        what = "an exact auto-encoding" if exact[0] else "not exact within the step limit"
        lines.append(f"mode: {what}; {os.path.join(out, 'mode.png')}")
    if args.reconstruct or args.mode:
        return lines
    init = args.init
    if init not in ("zeros", "noise", "both"):
        side = model.canvas(args.size)
        I = _image(model, init, side)
        init = np.repeat(I, args.n, axis=0)
    progress = _Progress(args.quiet, "sampling")
    try:
        x = model.sample(
            n=args.n,
            size=args.size,
            steps=args.steps,
            seed=args.seed,
            init=init,
            progress=progress,
            temper_steps=args.temper_steps,
            temper_start=args.temper_start,
        )
    finally:
        progress.close()
    pixels = model.to_pixels(x)
    plots.save_images(out, pixels, prefix="sample")
    thumb = model.thumbnail if model.thumbnail is not None else pixels[:0]
    plots.save_grid(os.path.join(out, "grid.png"), thumb, pixels)
    seconds = time.perf_counter() - t0
    tempered = "after the tempered start"
    if args.temper_steps == 0:
        tempered = "from zeros with no tempered start"
    elif (args.temper_steps, args.temper_start) != (TEMPER_STEPS, TEMPER_START):
        tempered = (
            f"after a tempered start of {args.temper_steps} steps from T = {args.temper_start:g}"
        )
    start = {
        "zeros": f" {tempered}",
        "both": f" {tempered}, and from noise, the lower energy kept"
        if args.temper_steps == 0
        else f" {tempered} from zeros and from noise, the lower energy kept",
    }.get(args.init, f" from {args.init}")
    lines.append(
        f"{args.n} sample{'s' if args.n > 1 else ''} of {x.shape[3]}x{x.shape[2]} px "
        f"from {args.model} "
        f"({args.steps} Langevin steps{start}; {seconds:.1f} s); "
        f"outputs in {out}"
    )
    drift = _drift(model.info)
    if drift.get("kept") is False:  # say so where the samples may not be the texture
        lines.append(
            "note: in its drift test this model's own dynamics did not keep its samples "
            f"({drift['steps']} steps at fixed weights: {'; '.join(drift['reasons'])}), so "
            "these need not look like what it learned; --list shows each shipped model's "
            "verdict"
        )
    return lines


def main(argv=None):
    """The command line; returns the exit status.

    Examples
    --------
    >>> main(["no-such-model"])
    2
    """
    try:
        args = build_parser().parse_args(argv)
        if args.list:
            print(_listing())
            return 0
        if not args.model:
            raise ModelError("name a model (python -m gcn_numpy.sample --list shows them)")
        lines = run(args)
    except (ModelError, ValueError, OSError) as e:
        print(f"gcn_numpy.sample: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
