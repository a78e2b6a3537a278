"""Does a learned model keep its samples? Langevin dynamics at fixed weights (eq. 19).

The chains a learner shows are snapshots of persistent chains while the weights move;
that they look like the texture says that the energy guides its own short chains, not
that ``p(I; w)`` is a model of the texture. :func:`drift_test` runs the model's own
dynamics at fixed weights from a start (the final chains, zeros, an image) and reports,
at a few step counts, what the chains have become: their mean and standard deviation in
0-255 units, their energy, their texture closeness to the training images
(:func:`gcn_numpy.metrics.texture_closeness`) and their frame score
(:func:`gcn_numpy.metrics.frame_score`). A model whose numbers stay where they started
keeps its texture under its own dynamics ("convergent" learning, in the sense of Nijkamp,
Hill, Zhu and Wu, AAAI 2020); a model whose numbers move is a good guide for short chains
only.
"""

import numpy as np

from . import metrics
from ._validate import positive_float, positive_int
from .model import energy_from_score
from .sampling import inner_window, langevin_chains

__all__ = [
    "drift_test",
    "drift_checkpoints",
    "drift_verdict",
    "drift_line",
    "verdict_words",
    "DRIFT_STEPS",
]

DRIFT_STEPS = 1000  # the test's default length
PROGRESS_STEPS = 50  # progress is reported at least this often
TOLERANCE = {"mean": 5.0, "std": 0.10, "closeness": 0.9}  # what "kept" means, see drift_verdict


def drift_checkpoints(steps):
    """The step counts a drift test of ``steps`` steps reports: 0, then 10, 30, 100, 300,
    1000, ... up to ``steps``, and ``steps`` itself.

    Examples
    --------
    >>> drift_checkpoints(1000)
    [0, 10, 30, 100, 300, 1000]
    >>> drift_checkpoints(50)
    [0, 10, 30, 50]
    """
    marks, k = [0], 10
    while k < steps:
        marks.append(k)
        k = 3 * k if str(k)[0] == "1" else round(k * 10 / 3)
    return marks + ([steps] if steps > 0 else [])


def _record(net, I, training, offset, sigma, step, training_std, margin, B_top=None):
    """The numbers of one checkpoint of the drift test (backend array ``I``); all but the
    energy on the canvas less ``margin`` pixels along each edge."""
    f = net.forward_backward(I, need_B=False, need_grads=False, B_top=B_top)["f"]
    energy = net.to_numpy(energy_from_score(I, f, sigma))
    x = net.to_numpy(I).astype(np.float64)
    x = inner_window(x, margin)
    pixels = x + offset
    record = {
        "step": int(step),
        "mean": float(pixels.mean()),
        "std": float(x.std(axis=(1, 2, 3)).mean()),
        "energy": float(energy.mean() / np.prod(x.shape[1:])),
        "closeness": float(metrics.texture_closeness(x, training)),
        "frame_score": float("nan"),
    }
    if min(x.shape[2:]) > 2 * metrics.FRAME_MARGIN and training_std > 0:
        grey = x.mean(axis=1, keepdims=True)
        record["frame_score"] = float(metrics.frame_scores(grey, training_std).max())
    return record


def drift_test(
    net,
    start,
    training,
    steps=DRIFT_STEPS,
    step_size=0.3,
    sigma=1.0,
    rng=None,
    mean=0.0,
    margin=0,
    progress=None,
    B_top=None,
):
    """Langevin dynamics (eq. 19) at fixed weights, measured along the way.

    Parameters
    ----------
    net : GenerativeConvNet
        The learned model; its weights are not changed.
    start : ndarray of shape (N, C, H, W)
        Where the chains start, in model units (the training images' mean subtracted): a
        copy of a run's final chains, ``zeros`` (the mean image), an image.
    training : ndarray of shape (M, C, h, w)
        The training images in model units: what closeness and frame score compare with.
    steps : int
        Langevin steps in all (0: only the start is measured).
    step_size, sigma : float
        ``eps`` and the reference's ``sigma``, as in learning.
    rng : numpy.random.Generator, int or None
        The noise; a run's own generator is left alone when given a seed instead.
    mean : float or ndarray of shape (C,)
        The training images' mean, added back for the mean intensity in 0-255 units.
    margin : int
        Pixels along each edge of the canvas left out of every number but the energy:
        the part of the canvas a run does not return (``Learner.margin``).
    progress : callable or None
        Called with the number of steps done, at least every ``PROGRESS_STEPS`` steps (it
        may raise to end the test).
    B_top : array or None
        The top positions ``f`` sums (:func:`gcn_numpy.learning.position_mask`), as in
        learning; ``None``: every position.

    Returns
    -------
    records : list of dict
        One per step count of :func:`drift_checkpoints`: ``step``, ``mean`` (0-255),
        ``std`` (per image, averaged over the chains), ``energy`` (``U = ||I||^2 / (2
        sigma^2) - f`` per pixel, averaged over the chains), ``closeness`` and
        ``frame_score`` (in units of the training images' standard deviation; NaN for
        canvases with no interior).
    final : ndarray of shape (N, C, H, W)
        The chains after ``steps`` steps.

    Examples
    --------
    A model with zero weights is q itself: from zeros its chains become white noise of
    standard deviation ``sigma``, and stay there.

    >>> import numpy as np
    >>> from gcn_numpy import GenerativeConvNet, Layer
    >>> net = GenerativeConvNet(1, [Layer(2, 3)], backend="numpy", init_std=0.0)
    >>> training = np.random.default_rng(1).normal(size=(1, 1, 24, 24))
    >>> records, final = drift_test(net, np.zeros((4, 1, 24, 24)), training, steps=100,
    ...                             sigma=2.0, rng=0)
    >>> [r["step"] for r in records]
    [0, 10, 30, 100]
    >>> [round(r["std"], 1) for r in records]
    [0.0, 0.9, 1.4, 1.9]
    """
    steps = positive_int(steps, "steps", minimum=0)
    margin = positive_int(margin, "margin", minimum=0)
    step_size = positive_float(step_size, "step_size")
    sigma = positive_float(sigma, "sigma")
    rng = np.random.default_rng(rng)
    training = np.asarray(training, dtype=np.float64)
    offset = np.asarray(mean, dtype=np.float64).reshape(1, -1, 1, 1)
    training_std = float(training.mean(axis=1).std())
    I = net.check_images(start)
    done, records = 0, []
    for mark in drift_checkpoints(steps):
        while done < mark:
            n = min(PROGRESS_STEPS, mark - done)
            I = langevin_chains(net, I, n, step_size, sigma, rng, B_top=B_top)
            done += n
            if progress is not None:
                progress(done)
        records.append(_record(net, I, training, offset, sigma, done, training_std, margin, B_top))
    return records, net.to_numpy(I)


def drift_verdict(records, data_mean=None, frame_limit=None, texture=True):
    """Whether the model kept its samples over the test: the mean within 5 grey levels
    of the data's (or of the start's), the standard deviation within 10% of its start,
    for a texture (``texture``) closeness no more than 10% of its size below its start
    (0.9 x the start for a positive one), and (when a limit is given) the frame score
    within it. Closeness measures a texture's statistics: it says nothing of aligned
    objects, whose verdict leaves it out. Returns ``(kept, reasons)``.

    Examples
    --------
    >>> start = {"step": 0, "mean": 130.0, "std": 40.0, "closeness": 0.6, "frame_score": 0.1}
    >>> end = dict(start, step=1000, mean=120.0, closeness=0.3)
    >>> drift_verdict([start, end], data_mean=131.0)
    (False, ['mean 120.0 is 11.0 from the data 131.0', 'closeness 0.30 fell below 0.54'])
    """
    first, last = records[0], records[-1]
    reasons = []
    ref = first["mean"] if data_mean is None else float(data_mean)
    if abs(last["mean"] - ref) > TOLERANCE["mean"]:
        what = "the start" if data_mean is None else "the data"
        reasons.append(
            f"mean {last['mean']:.1f} is {abs(last['mean'] - ref):.1f} from {what} {ref:.1f}"
        )
    if first["std"] > 0 and abs(last["std"] / first["std"] - 1) > TOLERANCE["std"]:
        reasons.append(f"std {last['std']:.1f} against {first['std']:.1f} at the start")
    floor = first["closeness"] - (1 - TOLERANCE["closeness"]) * abs(first["closeness"])
    if texture and last["closeness"] < floor:
        reasons.append(f"closeness {last['closeness']:.2f} fell below {floor:.2f}")
    if frame_limit is not None and last["frame_score"] > frame_limit:
        reasons.append(f"frame score {last['frame_score']:.2f} > {frame_limit:.2f}")
    return not reasons, reasons


def verdict_words(drift):
    """A drift test's verdict in words (``summary.json``'s ``drift``, or a model's
    ``info["summary"]["drift"]``), or ``None`` where the dictionary holds no verdict.

    Examples
    --------
    >>> verdict_words({"steps": 1000, "kept": False, "reasons": ["std 30.0 against 40.0"]})
    '1000 steps at fixed weights: not kept: std 30.0 against 40.0'
    >>> verdict_words({}) is None
    True
    """
    if "kept" not in drift:
        return None
    verdict = "kept" if drift["kept"] else "not kept: " + "; ".join(drift["reasons"])
    return f"{drift['steps']} steps at fixed weights: {verdict}"


def drift_line(drift):
    """One line for the console: how far the model's own dynamics keep its samples, with
    the training images' mean and standard deviation beside the chains' where the entry
    has them (``data_mean``, ``data_std``: entries written before December 2026 do not).

    Examples
    --------
    >>> r0 = {"step": 0, "mean": 130.0, "std": 40.0, "closeness": 0.70, "frame_score": 0.2}
    >>> r1 = dict(r0, step=1000, mean=129.0, std=41.0, closeness=0.68)
    >>> drift = {"steps": 1000, "records": [r0, r1], "kept": True, "reasons": []}
    >>> print(drift_line(drift))  # doctest: +NORMALIZE_WHITESPACE
    own dynamics, 1000 steps at fixed weights: mean 130.0 -> 129.0, std 40.0 -> 41.0,
    closeness 0.70 -> 0.68, frame score 0.20 -> 0.20: kept
    >>> print(drift_line(dict(drift, data_mean=131.2, data_std=45.0)))
    ... # doctest: +NORMALIZE_WHITESPACE
    own dynamics, 1000 steps at fixed weights: mean 130.0 -> 129.0 (data 131.2),
    std 40.0 -> 41.0 (data 45.0), closeness 0.70 -> 0.68, frame score 0.20 -> 0.20: kept
    """
    a, b = drift["records"][0], drift["records"][-1]

    def data(key):
        return f" (data {drift[key]:.1f})" if drift.get(key) is not None else ""

    parts = [
        f"mean {a['mean']:.1f} -> {b['mean']:.1f}{data('data_mean')}",
        f"std {a['std']:.1f} -> {b['std']:.1f}{data('data_std')}",
        f"closeness {a['closeness']:.2f} -> {b['closeness']:.2f}",
    ]
    if np.isfinite(a["frame_score"]) and np.isfinite(b["frame_score"]):
        parts.append(f"frame score {a['frame_score']:.2f} -> {b['frame_score']:.2f}")
    verdict = "kept" if drift["kept"] else "drifted (" + "; ".join(drift["reasons"]) + ")"
    return f"own dynamics, {drift['steps']} steps at fixed weights: {', '.join(parts)}: {verdict}"
