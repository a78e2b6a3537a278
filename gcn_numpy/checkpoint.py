"""``checkpoint.npz``: everything a training run needs to continue, written so that a crash,
a full disk or a kill never leaves a damaged one behind, and read so that a damaged or
foreign file gets a one-line reason instead of a traceback.

A checkpoint holds the learner's state (:meth:`gcn_numpy.learning.Learner.state_dict`:
weights, optimizer, chains, random generator, iteration), the configuration, the observed
images and their mean, and the metrics rows so far. Its size does not grow with the run
except for those rows (the frames of ``chains.gif`` live in their own folder). It is
written to a temporary file in the same folder, synced, then renamed over the previous
one: the old checkpoint stays whole until the new one is.
"""

import json
import os
import zipfile
import zlib

import numpy as np

from ._io import OutputError, atomic_write
from .presets import TrainConfig

__all__ = ["FORMAT", "CheckpointError", "OutputError", "save", "load"]

FORMAT = 2  # 1: the first release, whose checkpoints also held the GIF frames


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem.

    Examples
    --------
    >>> try:
    ...     load("no-such-checkpoint.npz", columns=10)
    ... except CheckpointError as e:
    ...     print(e)
    no such checkpoint: no-such-checkpoint.npz
    """


def save(path, learner, mean, metrics):
    """Write the checkpoint of ``learner`` atomically (see :func:`atomic_write`).

    Parameters
    ----------
    path : str
    learner : gcn_numpy.learning.Learner
    mean : ndarray of shape (C,)
        The mean subtracted from the training images.
    metrics : ndarray of shape (rows, columns)
        The run's metrics rows.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from gcn_numpy.learning import Learner
    >>> from gcn_numpy.presets import get_preset
    >>> config = get_preset("texture")
    >>> config.backend, config.chains = "numpy", 2
    >>> learner = Learner(config, np.zeros((1, 1, 32, 32)))
    >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.npz")
    >>> save(path, learner, mean=np.zeros(1), metrics=np.zeros((0, 10)))
    >>> config, state = load(path, columns=10)
    >>> int(state["iteration"]), state["chains"].shape
    (0, (2, 1, 86, 86))
    """
    state = learner.state_dict()
    state["format"] = np.array(FORMAT)
    state["config"] = np.array(json.dumps(learner.config.to_dict()))
    state["obs"] = learner.net.to_numpy(learner.obs)
    state["mean"] = np.asarray(mean, dtype=np.float64)
    state["metrics"] = np.asarray(metrics, dtype=np.float64)
    atomic_write(path, lambda f: np.savez(f, **state))


def load(path, columns):
    """``(config, state)`` from a checkpoint, or :class:`CheckpointError` naming the file
    and what is wrong with it: missing, not an npz archive, truncated, a missing entry, an
    entry of the wrong shape or type, or a configuration this version cannot read.
    ``columns``: the number of metrics columns expected. Whether the state fits the
    configuration (the net's shapes, the chains) is checked when a learner loads it.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.npz")
    >>> with open(path, "w") as f:
    ...     _ = f.write("not an archive")
    >>> try:
    ...     load(path, columns=10)
    ... except CheckpointError as e:
    ...     print("not an npz archive" in str(e))
    True
    """
    if not os.path.exists(path):
        raise CheckpointError(f"no such checkpoint: {path}")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {key: z[key] for key in z.files}
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or damaged ({e})") from None
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path} is not an npz archive ({e})") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    try:
        return _config(state), _checked(state, columns)
    except (KeyError, ValueError, TypeError) as e:
        what = f"lacks the entry {e}" if isinstance(e, KeyError) else str(e)
        raise CheckpointError(f"checkpoint {path} {what}") from None


def _config(state):
    try:
        config = json.loads(str(state["config"]))
    except json.JSONDecodeError:
        raise ValueError("holds a configuration that is not JSON") from None
    if not isinstance(config, dict):
        raise ValueError("holds a configuration that is not a dictionary")
    return TrainConfig.from_dict(config)


def _checked(state, columns):
    fmt = int(state.get("format", 1))
    if fmt > FORMAT:
        raise ValueError(
            f"was written by a newer gcn_numpy (format {fmt}, this one reads {FORMAT})"
        )
    obs, mean, metrics = state["obs"], state["mean"], state["metrics"]
    if obs.ndim != 4 or obs.dtype.kind != "f" or not np.all(np.isfinite(obs)):
        raise ValueError(f"holds observed images of shape {obs.shape} and type {obs.dtype}")
    if mean.shape != (obs.shape[1],) or mean.dtype.kind != "f":
        raise ValueError(f"holds a mean of shape {mean.shape}, expected ({obs.shape[1]},)")
    if fmt == 1 and metrics.ndim == 2 and metrics.shape[1] == columns - 2:
        # format 1 had no lr and rollback columns (before "seconds"): lr unknown, no rollback
        extra = np.zeros((len(metrics), 2))
        extra[:, 0] = np.nan
        metrics = state["metrics"] = np.hstack([metrics[:, :-1], extra, metrics[:, -1:]])
    if metrics.ndim != 2 or metrics.shape[1] != columns:
        if metrics.size == 0:
            state["metrics"] = np.zeros((0, columns))
        else:
            raise ValueError(f"holds metrics of shape {metrics.shape}, expected (rows, {columns})")
    state["iteration"]  # noqa: B018 -- a KeyError names it
    return state
