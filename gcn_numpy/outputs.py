"""What a training run writes: its record (:class:`Run`), ``metrics.csv``, the samples and
pictures, the frames of ``chains.gif``, the drift test of its final model and
``summary.json``.

Every file is written atomically (a temporary file, then a rename), so a run that is
stopped or watched never leaves or shows half a file. The samples are
:meth:`gcn_numpy.learning.Learner.samples`: the chains less the margin they leave out, the
same images in every file and in the summary's scores.
"""

import csv
import glob
import io
import os
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import data, plots
from ._io import OutputError, atomic_write
from .drift import drift_line, drift_test, drift_verdict
from .learning import METRICS, position_mask
from .metrics import FRAME_MARGIN, frame_reference
from .presets import TrainConfig
from .sampling import inner_window
from .summary import run_summary, summary_line, write_summary

__all__ = [
    "CSV_COLUMNS",
    "MetricsRow",
    "frame_iteration",
    "Run",
    "makedirs",
    "write_csv",
    "save_frame",
    "frame_paths",
    "save_stage",
    "write_outputs",
    "run_drift",
    "finish_summary",
]


class MetricsRow(NamedTuple):
    """One line of ``metrics.csv``: an iteration's metrics (:meth:`Learner.step`), the
    learning rate it used, whether it was rolled back (0/1), and its wall time."""

    iteration: int
    layers: int
    f_obs: float
    f_syn: float
    energy: float
    grad_norm: float
    recon_error: float
    lr: float
    rollback: int
    seconds: float

    @classmethod
    def of(cls, learner, metrics, seconds):
        """The row of an iteration: ``metrics`` as :meth:`Learner.step` returned them."""
        undone = int(bool(metrics["rollback"]))
        values = {k: float(metrics[k]) for k in METRICS}
        return cls(
            learner.iteration + undone,
            len(learner.net.layers),
            lr=float(metrics["lr"]),
            rollback=undone,
            seconds=seconds,
            **values,
        )

    def csv(self):
        return [
            f"{v:.6g}" if isinstance(v, float) and name not in INTEGER_COLUMNS else str(int(v))
            for name, v in zip(self._fields, self, strict=True)
        ]


CSV_COLUMNS = MetricsRow._fields
INTEGER_COLUMNS = ("iteration", "layers", "rollback")
assert CSV_COLUMNS == ("iteration", "layers") + METRICS + ("lr", "rollback", "seconds")
FRAME_PIXELS = 384  # width of a frame of chains.gif at most
DRIFT_SEED = 21  # with the run's seed and iteration: the drift test's noise


@dataclass
class Run:
    """What a training run keeps besides its learner: where it writes, the training
    images' mean, the metrics rows so far and the photograph the samples are judged
    against.

    Examples
    --------
    >>> import numpy as np
    >>> from gcn_numpy.presets import get_preset
    >>> run = Run(get_preset("texture"), "runs/example", np.zeros(1))
    >>> run.checkpoint
    'runs/example/checkpoint.npz'
    """

    config: TrainConfig
    out: str
    mean: np.ndarray
    metrics: list = field(default_factory=list)  # MetricsRow, one per iteration tried
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


def makedirs(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder {path}: {e.strerror or e}") from None


def csv_text(rows, header=False):
    """``rows`` of CSV_COLUMNS as CSV text (iteration, layers and rollback as integers)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(MetricsRow(*row).csv())
    return buffer.getvalue()


def write_csv(run, rows, mode="w"):
    """Write ``metrics.csv`` anew with its header (``mode="w"``, atomically) or append
    ``rows``."""
    path = run.path("metrics.csv")
    if mode == "w":
        atomic_write(path, lambda f: f.write(csv_text(rows, header=True).encode()))
        return
    try:
        with open(path, "a") as f:
            f.write(csv_text(rows))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


def sheet_frame(learner, mean):
    """One frame of chains.gif: up to 16 samples, the sheet at most FRAME_PIXELS wide."""
    samples = learner.samples()[:16]
    sheet = plots.tile(data.to_uint8(samples, mean), columns=min(4, len(samples)))
    return plots.fit(sheet, FRAME_PIXELS)


def frame_paths(run):
    return sorted(glob.glob(run.path("frames", "frame_*.png")))


def frame_iteration(path):
    """The iteration a frame of chains.gif was taken at, from its file name.

    Examples
    --------
    >>> frame_iteration("runs/x/frames/frame_000120_00.png")
    120
    """
    match = re.fullmatch(r"frame_(\d+)(?:_\d+)?\.png", os.path.basename(path))
    if match is None:
        raise ValueError(f"{path} is not a frame of chains.gif")
    return int(match.group(1))


def save_frame(run, learner):
    frame = sheet_frame(learner, run.mean)
    plots.save_images(run.path("frames"), [frame], prefix=f"frame_{learner.iteration:06d}")


def save_stage(run, learner):
    """The samples at the end of a layer-growing stage (section 7), kept beside the final
    ones: ``stages/layers_<n>/chain_XX.png``."""
    samples = data.to_uint8(learner.samples(), run.mean)
    plots.save_images(run.path("stages", f"layers_{len(learner.net.layers)}"), samples)


def write_outputs(run, learner, final=False):
    """Samples, pictures and curves from the current state (each file written
    atomically); ``final`` adds ``chains.gif``."""
    obs = learner.net.to_numpy(learner.obs)
    samples, training = data.to_uint8(learner.samples(), run.mean), data.to_uint8(obs, run.mean)
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
    frames = frame_paths(run)
    if final and frames:
        plots.save_gif(run.path("chains.gif"), [plots.read_png(p) for p in frames])


def run_drift(run, learner, progress=None):
    """The drift test (:func:`gcn_numpy.drift.drift_test`) of the run's final model, on a
    copy of its chains, ``drift_steps`` Langevin steps at the learned weights with the
    run's step size and sigma (its own noise: the learner's generator is left alone);
    ``drift.png`` pictures it. Returns the summary's ``"drift"`` entry, or ``None`` when
    ``drift_steps`` is 0 or the run is contrastive divergence (its chains are one step
    from the data: nothing to keep)."""
    cfg = learner.config
    if not cfg.drift_steps or cfg.mode != "ml":
        return None
    obs = learner.net.to_numpy(learner.obs)
    records, final = drift_test(
        learner.net,
        learner.net.to_numpy(learner.chains),
        obs,
        steps=cfg.drift_steps,
        step_size=cfg.step_size,
        sigma=cfg.sigma,
        rng=np.random.SeedSequence([cfg.seed, learner.iteration, DRIFT_SEED]),
        mean=run.mean,
        margin=learner.margin,
        progress=progress,
        B_top=position_mask(
            learner.net,
            cfg.synthesized_positions,
            *learner.chains.shape[2:],
            cfg.positions_tolerance,
        )[0],
    )
    final = inner_window(final, learner.margin)
    frames = run.photo is not None and cfg.top == "sum"
    crops = None
    if frames and min(np.shape(run.photo)[-2:]) > 2 * FRAME_MARGIN:
        training_std = float(obs.mean(axis=1).std())
        crops = frame_reference(run.photo, final.shape[-1], training_std)
    # the training images' mean (0-255) and std, the std as the records measure the
    # chains': in model units, about the channels' means
    data_mean = float(np.mean(run.mean))
    data_std = float(obs.std(axis=(1, 2, 3)).mean())
    kept, reasons = drift_verdict(
        records,
        data_mean=data_mean,
        frame_limit=None if crops is None else float(crops.max()) + 0.05,
        texture=cfg.top == "sum",
    )
    plots.save_drift(
        run.path("drift.png"),
        records,
        data.to_uint8(learner.samples(), run.mean),
        data.to_uint8(final, run.mean),
        data_mean=data_mean,
        data_std=data_std,
        frame_range=None if crops is None else (float(crops.min()), float(crops.max())),
    )
    return {
        "steps": cfg.drift_steps,
        "records": records,
        "kept": kept,
        "reasons": reasons,
        "data_mean": data_mean,
        "data_std": data_std,
    }


def finish_summary(run, learner, seconds, drift=None):
    """``summary.json`` and its one line: copying, sameness, the frame score (against
    real crops), texture statistics, rollbacks, wall time, and the drift test's result
    (``drift``, from :func:`run_drift`)."""
    samples = learner.samples()
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
    if drift is not None:
        summary["drift"] = drift
    write_summary(run.path("summary.json"), summary)
    line = summary_line(summary)
    if learner.rollbacks:
        line += f", {learner.rollbacks} rollback(s)"
    if drift is not None:
        line += "\n" + drift_line(drift)
    return line
