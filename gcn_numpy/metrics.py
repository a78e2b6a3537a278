"""Measures of what a texture model learned: copies or new texture, and how close the
statistics are.

- :func:`max_ncc`: the best normalised cross-correlation of a patch over every placement
  in an image (1 means the patch is found there, up to brightness and contrast);
- :func:`novelty`: for each sample, the max NCC of its central patch in the training
  images, and in the other samples;
- :func:`radial_spectrum` and :func:`texture_stats`: mean, standard deviation and the
  radially averaged power spectrum, compared between samples and training images.
"""

import numpy as np
from scipy.signal import fftconvolve

__all__ = ["max_ncc", "central_patch", "novelty", "radial_spectrum", "texture_stats"]


def max_ncc(patch, image):
    """Largest normalised cross-correlation of ``patch`` over all placements inside ``image``.

    Parameters
    ----------
    patch : ndarray of shape (C, h, w)
    image : ndarray of shape (C, H, W), ``H >= h``, ``W >= w``

    Returns
    -------
    float in [-1, 1]. Channels are stacked into one vector per placement; a flat window
    (zero variance) scores 0.
    """
    patch = np.asarray(patch, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    C, h, w = patch.shape
    if image.shape[0] != C or image.shape[1] < h or image.shape[2] < w:
        raise ValueError(f"patch {patch.shape} does not fit in image {image.shape}")
    n = C * h * w
    t = patch - patch.mean()
    t_norm = np.sqrt((t * t).sum())
    if t_norm == 0:
        return 0.0
    ones = np.ones((h, w))
    num = sum(fftconvolve(image[c], t[c, ::-1, ::-1], mode="valid") for c in range(C))
    s1 = sum(fftconvolve(image[c], ones, mode="valid") for c in range(C))
    s2 = sum(fftconvolve(image[c] ** 2, ones, mode="valid") for c in range(C))
    var = np.maximum(s2 - s1 * s1 / n, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ncc = np.where(var > 1e-9 * n, num / (np.sqrt(var) * t_norm), 0.0)
    return float(np.clip(ncc, -1.0, 1.0).max())


def central_patch(image, fraction=0.5):
    """The centre of an image (C, H, W): a window of ``fraction`` of each side."""
    C, H, W = image.shape
    h, w = max(1, round(H * fraction)), max(1, round(W * fraction))
    top, left = (H - h) // 2, (W - w) // 2
    return image[:, top : top + h, left : left + w]


def novelty(samples, training, fraction=0.5):
    """How far samples are from copies of the training images and of each other.

    Returns
    -------
    dict with ``to_training`` (per sample: max NCC of its central patch over all
    placements in all training images) and ``to_other_chains`` (per sample: the same over
    the other samples).
    """
    samples, training = np.asarray(samples), np.asarray(training)
    to_training, to_others = [], []
    for i, s in enumerate(samples):
        patch = central_patch(s, fraction)
        to_training.append(max(max_ncc(patch, t) for t in training))
        others = [max_ncc(patch, o) for j, o in enumerate(samples) if j != i]
        to_others.append(max(others) if others else float("nan"))
    return {"to_training": np.array(to_training), "to_other_chains": np.array(to_others)}


def radial_spectrum(images, n_bins=16):
    """Radially averaged power spectrum of mean-removed images (N, C, H, W), normalised to
    sum 1 (the shape of the spectrum, not its energy), averaged over images/channels."""
    images = np.asarray(images, dtype=np.float64)
    N, C, H, W = images.shape
    x = images - images.mean(axis=(2, 3), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(axis=(0, 1))
    fy, fx = np.meshgrid(np.fft.fftfreq(H), np.fft.fftfreq(W), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2)
    n_bins = max(1, min(n_bins, min(H, W) // 2))
    edges = np.linspace(0, 0.5, n_bins + 1)
    which = np.digitize(radius, edges) - 1
    spectrum = np.array([power[which == k].mean() for k in range(n_bins)])
    return spectrum / spectrum.sum()


def texture_stats(samples, training):
    """Mean, standard deviation and spectrum of samples beside those of the training
    images; ``spectrum_distance`` is the total-variation distance of the two normalised
    radial spectra (0 = same shape, 1 = disjoint)."""
    s, t = np.asarray(samples, dtype=np.float64), np.asarray(training, dtype=np.float64)
    return {
        "mean_samples": float(s.mean()),
        "mean_training": float(t.mean()),
        "std_samples": float(s.std(axis=(1, 2, 3)).mean()),
        "std_training": float(t.std(axis=(1, 2, 3)).mean()),
        "spectrum_distance": float(0.5 * np.abs(radial_spectrum(s) - radial_spectrum(t)).sum()),
    }
