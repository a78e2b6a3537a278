"""Pictures of a run: samples, training images beside them, learning curves, the chains
over time, reconstructions and filters. Images come in as uint8 arrays of shape
(N, H, W) (gray) or (N, H, W, 3) (color), as :func:`gcn_numpy.data.to_uint8` returns."""

import os

import numpy as np
from PIL import Image

from ._io import atomic_write

__all__ = [
    "read_png",
    "save_images",
    "tile",
    "fit",
    "save_rows",
    "save_grid",
    "save_curves",
    "save_gif",
    "save_reconstructions",
    "save_filters",
    "save_drift",
]


def _figure(**kwargs):
    """A Matplotlib ``Figure`` (no pyplot, no display), imported on first use: importing
    Matplotlib takes about a second, which every command would otherwise pay at start."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save_png(path, image):
    """A uint8 image as a PNG, written atomically (a run being watched never shows half a
    file)."""
    atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"))


def _save_figure(path, fig):
    atomic_write(path, lambda f: fig.savefig(f, format="png"))


def read_png(path):
    """A PNG written by :func:`save_images` as a uint8 array.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> save_images(folder, np.full((1, 4, 4), 7, dtype=np.uint8))
    >>> read_png(os.path.join(folder, "chain_00.png"))[0]
    array([7, 7, 7, 7], dtype=uint8)
    """
    with Image.open(path) as im:
        return np.asarray(im)


def save_images(folder, images, prefix="chain"):
    """One PNG per image: ``folder/<prefix>_00.png``, ...

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> save_images(folder, np.zeros((2, 8, 8), dtype=np.uint8))
    >>> sorted(os.listdir(folder))
    ['chain_00.png', 'chain_01.png']
    """
    os.makedirs(folder, exist_ok=True)
    for i, im in enumerate(images):
        _save_png(os.path.join(folder, f"{prefix}_{i:02d}.png"), im)


def tile(images, columns=None, gap=2, fill=255):
    """A contact sheet of equally sized images, ``columns`` wide (default: square-ish).

    Examples
    --------
    >>> import numpy as np
    >>> tile(np.zeros((4, 10, 10), dtype=np.uint8), gap=2).shape  # 2 x 2 with gaps
    (22, 22)
    """
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    shape = (rows * (h + gap) - gap, columns * (w + gap) - gap) + images.shape[3:]
    sheet = np.full(shape, fill, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = im
    return sheet


def fit(image, max_side):
    """Shrink a uint8 image so that its longer side is at most ``max_side`` pixels.

    Examples
    --------
    >>> import numpy as np
    >>> fit(np.zeros((100, 50), dtype=np.uint8), 40).shape
    (40, 20)
    """
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    small = Image.fromarray(image).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
    )
    return np.asarray(small)


def _show(ax, image, title=None):
    ax.imshow(
        image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest"
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def save_rows(path, rows, max_width=420):
    """Rows of uint8 images, each row under its label, every image drawn at the same number
    of screen pixels per image pixel (an integer zoom), so that images of different sizes
    keep their proportions; intensities as they are (0-255, no contrast stretching).

    ``rows``: a list of ``(label, images)``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.png")
    >>> small, large = np.zeros((1, 16, 16), np.uint8), np.full((2, 24, 24), 255, np.uint8)
    >>> save_rows(path, [("16 px", list(small)), ("24 px, drawn larger", list(large))])
    >>> os.path.exists(path)
    True
    """
    label_px, gap = 18, 6
    widest = max(sum(im.shape[1] for im in ims) + gap * (len(ims) - 1) for _, ims in rows)
    zoom = max(1, min(4, round(max_width / widest)))  # screen pixels per image pixel
    heights = [max(im.shape[0] for im in ims) * zoom for _, ims in rows]
    W = widest * zoom + 2 * gap
    H = sum(heights) + len(rows) * label_px + 2 * gap
    fig = _figure(figsize=(W / 100, H / 100), dpi=100)
    y = H - gap
    for (label, ims), height in zip(rows, heights, strict=True):
        y -= label_px + height
        fig.text(gap / W, (y + height + 4) / H, label, fontsize=9, va="bottom")
        x = gap
        for im in ims:
            h, w = im.shape[0] * zoom, im.shape[1] * zoom
            _show(fig.add_axes([x / W, (y + height - h) / H, w / W, h / H]), im)
            x += w + gap * zoom
    _save_figure(path, fig)


def save_grid(path, training, samples, max_training=4, max_samples=8, columns=4):
    """Training images (top row) above synthesized ones, at one pixel scale: a chain on a
    larger canvas than the training image looks larger, not shrunk (:func:`save_rows`).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
    >>> save_grid(path, np.zeros((1, 32, 32), np.uint8), np.zeros((4, 48, 48), np.uint8))
    >>> os.path.exists(path)
    True
    """
    training, samples = training[:max_training], samples[:max_samples]
    rows = [(f"training ({training.shape[2]}x{training.shape[1]} px)", list(training))]
    for i in range(0, len(samples), columns):
        label = f"synthesized ({samples.shape[2]}x{samples.shape[1]} px)" if i == 0 else ""
        rows.append((label, list(samples[i : i + columns])))
    save_rows(path, rows, max_width=840)


def save_curves(path, metrics, stage_starts=(), rollbacks=()):
    """f_obs and f_syn (with their gap), the chains' energy, the gradient norm and, for CD,
    the reconstruction error, against the iteration. ``metrics``: dict of arrays (the
    iterations kept); ``stage_starts`` and ``rollbacks``: iterations marked by dashed grey
    and dotted red lines.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> it = np.arange(1.0, 11.0)
    >>> metrics = dict(iteration=it, f_obs=it, f_syn=it / 2, energy=-it, grad_norm=1 / it)
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
    >>> save_curves(path, metrics, stage_starts=[5], rollbacks=[7])
    >>> os.path.exists(path)
    True
    """
    it = np.asarray(metrics["iteration"])
    panels = [
        ("score f", ("f_obs", "f_syn")),
        ("mean energy of the chains", ("energy",)),
        ("gradient norm", ("grad_norm",)),
    ]
    if np.any(np.asarray(metrics.get("recon_error", [0])) > 0):
        panels.append(("reconstruction error |B - I| (0-255)", ("recon_error",)))
    fig = _figure(figsize=(4.2 * len(panels), 3.2), dpi=100)
    for k, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for key in keys:
            ax.plot(it, metrics[key], label=key, lw=1)
        for s in stage_starts:
            ax.axvline(s, color="0.6", lw=0.8, ls="--")
        for s in rollbacks:
            ax.axvline(s, color="tab:red", lw=0.8, ls=":")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        if len(keys) > 1:
            ax.legend(fontsize=8)
        if keys == ("grad_norm",):
            ax.set_yscale("log")
    fig.tight_layout()
    _save_figure(path, fig)


def save_gif(path, frames, duration_ms=120):
    """An animated GIF from a list of uint8 sheets (each gray (H, W) or color (H, W, 3)).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "chains.gif")
    >>> save_gif(path, [np.full((8, 8), v, dtype=np.uint8) for v in (0, 128, 255)])
    >>> Image.open(path).n_frames
    3
    """
    images = [Image.fromarray(f) for f in frames]
    atomic_write(
        path,
        lambda f: images[0].save(
            f, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0
        ),
    )


def save_reconstructions(path, training, reconstructions, max_images=8):
    """Training images (top row) above their auto-encodings ``B_{w, delta(I)}``, at one
    pixel scale (:func:`save_rows`).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> images = np.zeros((2, 16, 16), dtype=np.uint8)
    >>> path = os.path.join(tempfile.mkdtemp(), "reconstructions.png")
    >>> save_reconstructions(path, images, images + 100)
    >>> os.path.exists(path)
    True
    """
    n = min(max_images, len(training))
    rows = [
        ("training", list(training[:n])),
        ("reconstruction B(delta(I))", list(reconstructions[:n])),
    ]
    save_rows(path, rows)


def save_filters(path, W, max_filters=64):
    """First-layer filters ``W`` (K, C, k, k), each scaled to its own range: the basis
    functions of the top-down pass (eq. 16).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "filters.png")
    >>> save_filters(path, np.random.default_rng(0).normal(size=(8, 1, 5, 5)))
    >>> os.path.exists(path)
    True
    """
    W = np.asarray(W, dtype=np.float64)[:max_filters]
    lo = W.min(axis=(1, 2, 3), keepdims=True)
    hi = W.max(axis=(1, 2, 3), keepdims=True)
    u = np.uint8(np.rint(255 * (W - lo) / np.maximum(hi - lo, 1e-12)))
    u = u[:, 0] if u.shape[1] == 1 else u[:, :3].transpose(0, 2, 3, 1)
    sheet = tile(u, gap=1, fill=128)
    factor = max(1, 192 // sheet.shape[0])
    _save_png(
        path, np.kron(sheet, np.ones((factor, factor) + (1,) * (sheet.ndim - 2), dtype=np.uint8))
    )


def save_drift(path, records, before, after, data_mean=None, data_std=None, frame_range=None):
    """The drift test (:func:`gcn_numpy.drift.drift_test`) as a picture: mean, standard
    deviation, texture closeness and frame score of the chains against the Langevin steps
    at fixed weights (the data's mean and std, and the real crops' frame scores, as dashed
    lines where given), above the chains before and after (uint8 images, up to four each).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> records = [dict(step=s, mean=130.0, std=40.0, closeness=0.7, frame_score=0.2)
    ...            for s in (0, 10, 100)]
    >>> images = np.zeros((2, 24, 24), np.uint8)
    >>> path = os.path.join(tempfile.mkdtemp(), "drift.png")
    >>> save_drift(path, records, images, images, data_mean=131.0, frame_range=(0.1, 0.3))
    >>> os.path.exists(path)
    True
    """
    steps = np.array([r["step"] for r in records], dtype=np.float64)
    panels = [
        ("mean (0-255)", "mean", [data_mean]),
        ("standard deviation", "std", [data_std]),
        ("texture closeness", "closeness", [records[0]["closeness"]]),
        ("frame score", "frame_score", list(frame_range or ())),
    ]
    before, after = list(before[:4]), list(after[:4])
    fig = _figure(figsize=(12, 5.6), dpi=100)
    grid = fig.add_gridspec(2, 2 * len(panels), height_ratios=[1, 1])
    for k, (title, key, lines) in enumerate(panels):
        ax = fig.add_subplot(grid[0, 2 * k : 2 * k + 2])
        ax.plot(steps, [r[key] for r in records], "o-", lw=1, ms=3)
        for y in lines:
            if y is not None:
                ax.axhline(y, color="0.5", lw=0.8, ls="--")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, max(10.0, steps[-1]) * 1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("Langevin steps at fixed weights", fontsize=8)
    n = len(before) + len(after)
    for i, (label, image) in enumerate(
        [("start", im) for im in before] + [(f"step {int(steps[-1])}", im) for im in after]
    ):
        _show(fig.add_subplot(grid[1, i] if n <= 8 else grid[1, i % 8]), image, label)
    fig.tight_layout()
    _save_figure(path, fig)
