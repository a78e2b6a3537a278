"""The numbers a run ends with: are the samples new (copying, sameness), clean at the
border (frame score against real crops), and close to the texture's statistics.

Definitions (see :mod:`gcn_numpy.metrics`):

- ``copying``: the largest normalised cross-correlation of a sample's central patch (half
  its side, at most the training images' side) over every placement in the training
  images, worst sample; 1 is a copy;
- ``sameness``: the same against the other chains; 1 means two chains hold the same image;
- ``frame_score``: :func:`gcn_numpy.metrics.frame_score` on the whole canvases, with
  ``frame_reference``, the range of the same score on 16 real crops of the canvas size
  from the training photograph at the training scale;
- ``spectrum_distance`` and ``std_ratio``: the samples' radial power spectrum and standard
  deviation against the training images'.

A number that is not meaningful for the run's input is ``None`` (``null`` in
``summary.json``, ``n/a`` on the console) and ``not_meaningful`` says why: flat training
images (every channel's standard deviation below
:data:`gcn_numpy.data.FLAT_GREY_LEVELS`) give no unit to measure in; the frame score of
nearly flat samples (a sample's standard deviation below :data:`FLAT_SAMPLES` times the
training images', as after a few iterations) compares a border and an interior that both
hold only the noise of the first Langevin steps; one chain has no other to compare with; a
canvas within ``2 * FRAME_MARGIN`` pixels has no interior.
"""

import json
import math

import numpy as np

from . import metrics
from ._io import atomic_write
from .data import FLAT_GREY_LEVELS

__all__ = ["run_summary", "summary_line", "write_summary", "not_meaningful", "FLAT_SAMPLES"]

NUMBERS = ("copying", "sameness", "frame_score", "spectrum_distance", "std_ratio")
FLAT_SAMPLES = 0.1  # a sample whose standard deviation is below this fraction of the
# training images' is nearly flat (the default run's samples: 0.03 after 10 iterations,
# 0.85 at the end)


def run_summary(samples, training, photo=None):
    """The summary of a run's samples ``(N, C, h, w)`` against its training images
    ``(M, C, H, W)`` (model units or 0-255 alike); ``photo``: the training photograph at the
    training scale, grey ``(H', W')``, for the frame score's reference range (left out
    when ``None``). Returns a dict of floats (and the reference range as a pair); a
    number with no meaning for this input is ``None``, and ``not_meaningful`` then maps
    its name to the reason (see :func:`not_meaningful`).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> texture = 40 * rng.normal(size=(1, 1, 32, 32))  # 40 grey levels of spread
    >>> s = run_summary(40 * rng.normal(size=(3, 1, 40, 40)), texture)
    >>> sorted(s)
    ['copying', 'frame_score', 'sameness', 'spectrum_distance', 'std_ratio']
    >>> s = run_summary(rng.normal(size=(1, 1, 40, 40)), texture)  # one chain, still flat
    >>> s["sameness"], s["frame_score"], s["not_meaningful"]["frame_score"]
    (None, None, 'samples nearly flat')
    """
    samples = np.asarray(samples, dtype=np.float64)
    training = np.asarray(training, dtype=np.float64)
    why = not_meaningful(samples, training)
    summary = dict.fromkeys(NUMBERS)
    if "copying" not in why or "sameness" not in why:
        # the central patch, at most as large as the training images (a larger canvas)
        fraction = min(0.5, min(training.shape[2:]) / max(samples.shape[2:]))
        novelty = metrics.novelty(samples, training, fraction)
        if "copying" not in why:
            summary["copying"] = float(novelty["to_training"].max())
        if "sameness" not in why:
            summary["sameness"] = float(np.max(novelty["to_other_chains"]))
    if "std_ratio" not in why:
        with np.errstate(invalid="ignore"):  # constant samples: a spectrum of 0 / 0, unused
            stats = metrics.texture_stats(samples, training)
        summary["std_ratio"] = stats["std_samples"] / stats["std_training"]
        if "spectrum_distance" not in why:
            summary["spectrum_distance"] = stats["spectrum_distance"]
    if "frame_score" not in why:
        summary["frame_score"] = metrics.frame_score(samples, training)
        if photo is not None and min(np.shape(photo)[-2:]) > 2 * metrics.FRAME_MARGIN:
            training_std = float(training.mean(axis=1).std())
            crops = metrics.frame_reference(photo, samples.shape[-1], training_std)
            summary["frame_reference"] = (float(crops.min()), float(crops.max()))
    if why:
        summary["not_meaningful"] = why
    return summary


def not_meaningful(samples, training):
    """Which numbers of :func:`run_summary` have no meaning for these samples ``(N, C, h,
    w)`` and training images ``(M, C, H, W)`` (0-255 or model units), and why: a dict
    ``{name: reason}``, empty for a run's usual input.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> texture = 40 * rng.normal(size=(1, 1, 32, 32))
    >>> not_meaningful(40 * rng.normal(size=(2, 1, 40, 40)), texture)
    {}
    >>> not_meaningful(rng.normal(size=(2, 1, 40, 40)), texture)  # the first iterations'
    {'frame_score': 'samples nearly flat'}
    >>> not_meaningful(rng.normal(size=(1, 1, 16, 16)), np.full((1, 1, 32, 32), 7.0))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'copying': 'training images flat', 'sameness': 'one chain',
     'frame_score': 'training images flat', 'spectrum_distance': 'training images flat',
     'std_ratio': 'training images flat'}
    """
    samples = np.asarray(samples, dtype=np.float64)
    training = np.asarray(training, dtype=np.float64)
    why = {}
    if len(samples) < 2:
        why["sameness"] = "one chain"
    spread = samples.std(axis=(2, 3)).max(axis=1)  # per sample, its most varied channel
    if not spread.any():
        for name in ("copying", "sameness", "spectrum_distance"):
            why[name] = "samples constant"
    h, w = samples.shape[2:]
    grey_std = training.mean(axis=1).std()
    if min(h, w) <= 2 * metrics.FRAME_MARGIN:
        why["frame_score"] = f"canvas {h}x{w} has no interior"
    elif not grey_std >= FLAT_GREY_LEVELS:  # the frame score's unit
        why["frame_score"] = "training images flat in grey"
    else:
        flat = int(np.sum(samples.mean(axis=1).std(axis=(1, 2)) < FLAT_SAMPLES * grey_std))
        if flat:
            many = "" if flat == len(samples) else f"{flat} of {len(samples)} "
            why["frame_score"] = f"{many}samples nearly flat"
    if not training.std(axis=(2, 3)).max() >= FLAT_GREY_LEVELS:
        for name in ("copying", "frame_score", "spectrum_distance", "std_ratio"):
            why[name] = "training images flat"
    return {name: why[name] for name in NUMBERS if name in why}


def _shown(summary, name):
    """A number of the summary for the console: two decimals, or ``n/a`` and why."""
    value = summary.get(name)
    if _finite(value):
        return f"{value:.2f}"
    reason = summary.get("not_meaningful", {}).get(name, "not a finite number")
    return f"n/a ({reason})"


def summary_line(summary):
    """One line for the console; a number that is ``None`` (or not finite) is ``n/a``
    with its reason from ``not_meaningful``.

    Examples
    --------
    >>> summary_line({"copying": 0.31, "sameness": 0.4, "frame_score": 0.12,
    ...               "frame_reference": (0.02, 0.15)})
    'copying 0.31, sameness 0.40, frame score 0.12 (real crops 0.02-0.15)'
    >>> summary_line({"copying": 0.05, "sameness": None, "frame_score": None,
    ...               "not_meaningful": {"sameness": "one chain",
    ...                                  "frame_score": "samples nearly flat"}})
    'copying 0.05, sameness n/a (one chain), frame score n/a (samples nearly flat)'
    """
    parts = [f"copying {_shown(summary, 'copying')}", f"sameness {_shown(summary, 'sameness')}"]
    frame = f"frame score {_shown(summary, 'frame_score')}"
    if "frame_reference" in summary and _finite(summary.get("frame_score")):
        lo, hi = summary["frame_reference"]
        frame += f" (real crops {lo:.2f}-{hi:.2f})"
    parts.append(frame)
    if "recon_error" in summary:
        parts.append(f"reconstruction error {_shown(summary, 'recon_error')}")
    return ", ".join(parts)


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def _json_ready(summary):
    """The summary with every non-finite number replaced by ``None`` and named in
    ``not_meaningful`` (JSON has no nan or inf)."""
    ready, why = {}, dict(summary.get("not_meaningful", {}))
    for name, value in summary.items():
        if isinstance(value, (list, tuple)):
            value = [v if not isinstance(v, float) or math.isfinite(v) else None for v in value]
            if None in value:
                why.setdefault(name, "not a finite number")
        elif isinstance(value, float) and not math.isfinite(value):
            value = None
            why.setdefault(name, "not a finite number")
        ready[name] = value
    if why:
        ready["not_meaningful"] = why
    return ready


def write_summary(path, summary):
    """Write the summary as JSON (atomically: a temporary file, then a rename); a number
    that is not finite is written ``null`` and named in ``not_meaningful``.

    Examples
    --------
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "summary.json")
    >>> write_summary(path, {"copying": 0.3, "frame_reference": (0.02, 0.2)})
    >>> json.load(open(path))
    {'copying': 0.3, 'frame_reference': [0.02, 0.2]}
    >>> write_summary(path, {"copying": float("nan")})
    >>> json.load(open(path))
    {'copying': None, 'not_meaningful': {'copying': 'not a finite number'}}
    """
    text = json.dumps(_json_ready(summary), indent=2, allow_nan=False)
    atomic_write(path, lambda f: f.write((text + "\n").encode()))
