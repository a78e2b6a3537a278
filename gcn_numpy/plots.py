"""Pictures of a run: samples, training images beside them, learning curves, the chains
over time, reconstructions and filters. Images come in as uint8 arrays of shape
(N, H, W) (gray) or (N, H, W, 3) (color), as :func:`gcn_numpy.data.to_uint8` returns."""

import os

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ._io import atomic_write

__all__ = [
    "read_png",
    "save_images",
    "tile",
    "fit",
    "save_grid",
    "save_curves",
    "save_gif",
    "save_reconstructions",
    "save_filters",
]


def _save_png(path, image):
    """A uint8 image as a PNG, written atomically (a run being watched never shows half a
    file)."""
    atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"))


def _save_figure(path, fig):
    atomic_write(path, lambda f: fig.savefig(f, format="png"))


def read_png(path):
    """A PNG written by :func:`save_images` as a uint8 array."""
    with Image.open(path) as im:
        return np.asarray(im)


def save_images(folder, images, prefix="chain"):
    """One PNG per image: ``folder/<prefix>_00.png``, ..."""
    os.makedirs(folder, exist_ok=True)
    for i, im in enumerate(images):
        _save_png(os.path.join(folder, f"{prefix}_{i:02d}.png"), im)


def tile(images, columns=None, gap=2, fill=255):
    """A contact sheet of equally sized images, ``columns`` wide (default: square-ish)."""
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
    """Shrink a uint8 image so that its longer side is at most ``max_side`` pixels."""
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


def save_grid(path, training, samples, max_training=4, max_samples=8, columns=4):
    """Training images (top row) above synthesized ones, every image drawn at the same
    number of screen pixels per image pixel, so that a chain on a larger canvas than the
    training image looks larger, not shrunk; intensities as they are (0-255, no
    stretching)."""
    training, samples = training[:max_training], samples[:max_samples]
    rows = [list(training)] + [
        list(samples[i : i + columns]) for i in range(0, len(samples), columns)
    ]
    label_px, gap = 18, 6
    widest = max(sum(im.shape[1] for im in row) + gap * (len(row) - 1) for row in rows)
    zoom = max(1, min(4, round(420 / widest)))  # screen pixels per image pixel
    heights = [max(im.shape[0] for im in row) * zoom for row in rows]
    W = widest * zoom + 2 * gap
    H = sum(heights) + len(rows) * label_px + 2 * gap
    fig = Figure(figsize=(W / 100, H / 100), dpi=100)
    y = H - gap
    for r, row in enumerate(rows):
        y -= label_px + heights[r]
        x = gap
        for i, im in enumerate(row):
            h, w = im.shape[0] * zoom, im.shape[1] * zoom
            ax = fig.add_axes([x / W, (y + heights[r] - h) / H, w / W, h / H])
            title = None
            if i == 0 and r < 2:
                kind = "training" if r == 0 else "synthesized"
                title = f"{kind} ({im.shape[1]}x{im.shape[0]} px)"
            _show(ax, im, title)
            if title:
                ax.title.set_horizontalalignment("left")
                ax.title.set_x(0.0)
            x += w + gap * zoom
    _save_figure(path, fig)


def save_curves(path, metrics, stage_starts=(), rollbacks=()):
    """f_obs and f_syn (with their gap), the chains' energy, the gradient norm and, for CD,
    the reconstruction error, against the iteration. ``metrics``: dict of arrays (the
    iterations kept); ``stage_starts`` and ``rollbacks``: iterations marked by dashed grey
    and dotted red lines."""
    it = np.asarray(metrics["iteration"])
    panels = [
        ("score f", ("f_obs", "f_syn")),
        ("mean energy of the chains", ("energy",)),
        ("gradient norm", ("grad_norm",)),
    ]
    if np.any(np.asarray(metrics.get("recon_error", [0])) > 0):
        panels.append(("reconstruction error |B - I| (0-255)", ("recon_error",)))
    fig = Figure(figsize=(4.2 * len(panels), 3.2), dpi=100)
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
    """An animated GIF from a list of uint8 sheets (each gray (H, W) or color (H, W, 3))."""
    images = [Image.fromarray(f) for f in frames]
    atomic_write(
        path,
        lambda f: images[0].save(
            f, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0
        ),
    )


def save_reconstructions(path, training, reconstructions, max_images=8):
    """Training images (top row) and their auto-encodings ``B_{w, delta(I)}`` (bottom)."""
    n = min(max_images, len(training))
    fig = Figure(figsize=(1.5 * n, 3.3), dpi=100)
    for i in range(n):
        _show(fig.add_subplot(2, n, i + 1), training[i], "training" if i == 0 else None)
        _show(
            fig.add_subplot(2, n, n + i + 1),
            reconstructions[i],
            "reconstruction" if i == 0 else None,
        )
    fig.tight_layout()
    _save_figure(path, fig)


def save_filters(path, W, max_filters=64):
    """First-layer filters ``W`` (K, C, k, k), each scaled to its own range: the basis
    functions of the top-down pass (eq. 16)."""
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
