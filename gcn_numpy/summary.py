"""The numbers a run ends with: are the samples new (copying, sameness), clean at the
border (frame score against real crops), and close to the texture's statistics.

Definitions (see :mod:`gcn_numpy.metrics`):

- ``copying``: the largest normalised cross-correlation of a sample's central patch (half
  its side) over every placement in the training images, worst sample; 1 is a copy;
- ``sameness``: the same against the other chains; 1 means two chains hold the same image;
- ``frame_score``: :func:`gcn_numpy.metrics.frame_score` on the whole canvases, with
  ``frame_reference``, the range of the same score on 16 real crops of the canvas size
  from the training photograph at the training scale;
- ``spectrum_distance`` and ``std_ratio``: the samples' radial power spectrum and standard
  deviation against the training images'.
"""

import json
import os

import numpy as np

from . import metrics

__all__ = ["run_summary", "summary_line", "write_summary"]


def run_summary(samples, training, photo=None):
    """The summary of a run's samples ``(N, C, h, w)`` against its training images
    ``(M, C, H, W)`` (model units or 0-255 alike); ``photo``: the training photograph at the
    training scale, grey ``(H', W')``, for the frame score's reference range (left out
    when ``None``). Returns a dict of floats (and the reference range as a pair).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = run_summary(rng.normal(size=(3, 1, 40, 40)), rng.normal(size=(1, 1, 32, 32)))
    >>> sorted(s)
    ['copying', 'frame_score', 'sameness', 'spectrum_distance', 'std_ratio']
    """
    samples = np.asarray(samples, dtype=np.float64)
    training = np.asarray(training, dtype=np.float64)
    novelty = metrics.novelty(samples, training)
    stats = metrics.texture_stats(samples, training)
    summary = {
        "copying": float(novelty["to_training"].max()),
        "sameness": float(np.nanmax(novelty["to_other_chains"]))
        if len(samples) > 1
        else float("nan"),
        "frame_score": float("nan"),
        "spectrum_distance": stats["spectrum_distance"],
        "std_ratio": stats["std_samples"] / stats["std_training"],
    }
    if min(samples.shape[2:]) <= 2 * metrics.FRAME_MARGIN:  # no interior to compare with
        return summary
    summary["frame_score"] = metrics.frame_score(samples, training)
    if photo is not None:
        training_std = float(training.mean(axis=1).std())
        crops = metrics.frame_reference(photo, samples.shape[-1], training_std)
        summary["frame_reference"] = (float(crops.min()), float(crops.max()))
    return summary


def summary_line(summary):
    """One line for the console.

    Examples
    --------
    >>> summary_line({"copying": 0.31, "sameness": 0.4, "frame_score": 0.12,
    ...               "frame_reference": (0.02, 0.15)})
    'copying 0.31, sameness 0.40, frame score 0.12 (real crops 0.02-0.15)'
    """
    parts = [f"copying {summary['copying']:.2f}", f"sameness {summary['sameness']:.2f}"]
    frame = f"frame score {summary['frame_score']:.2f}"
    if "frame_reference" in summary:
        lo, hi = summary["frame_reference"]
        frame += f" (real crops {lo:.2f}-{hi:.2f})"
    parts.append(frame)
    if "recon_error" in summary:
        parts.append(f"reconstruction error {summary['recon_error']:.2f}")
    return ", ".join(parts)


def write_summary(path, summary):
    """Write the summary as JSON (atomically: a temporary file, then a rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
