"""Measures of what a texture model learned: copies or new texture, and how close the
statistics are.

- :func:`max_ncc`: the best normalised cross-correlation of a patch over every placement
  in an image (1 means the patch is found there, up to brightness and contrast);
- :func:`novelty`: for each sample, the max NCC of its central patch in the training
  images, and in the other samples;
- :func:`radial_spectrum` and :func:`texture_stats`: mean, standard deviation and the
  radially averaged power spectrum, compared between samples and training images;
- :func:`frame_score`: how much a band along the border of the samples differs from
  their interior, with :func:`frame_reference`, the same on crops of a real photograph.
"""

import numpy as np
from scipy.signal import fftconvolve

__all__ = [
    "max_ncc",
    "central_patch",
    "novelty",
    "radial_spectrum",
    "texture_stats",
    "frame_scores",
    "frame_score",
    "frame_reference",
]

FRAME_BAND = 4  # pixels along each edge ...
FRAME_MARGIN = 8  # ... against the interior farther than this from every edge


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
    n_bins = max(1, min(16, min(s.shape[2:] + t.shape[2:]) // 2))  # the same bins for both
    return {
        "mean_samples": float(s.mean()),
        "mean_training": float(t.mean()),
        "std_samples": float(s.std(axis=(1, 2, 3)).mean()),
        "std_training": float(t.std(axis=(1, 2, 3)).mean()),
        "spectrum_distance": float(
            0.5 * np.abs(radial_spectrum(s, n_bins) - radial_spectrum(t, n_bins)).sum()
        ),
    }


def frame_scores(images, training_std, band=FRAME_BAND, margin=FRAME_MARGIN):
    """For each image, how much the band along its border differs from its interior.

    On the grey (channel-mean) image: the ``band`` pixels along the four edges against the
    interior, the pixels more than ``margin`` from every edge;
    ``(|mean(band) - mean(interior)| + |std(band) - std(interior)|) / training_std``.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W)
        Whole canvases (a crop would hide what this measures); any offset of intensities.
    training_std : float
        Standard deviation of the grey training image(s), the unit of the score.

    Returns
    -------
    ndarray of shape (N,)

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(0).normal(size=(1, 1, 64, 64))
    >>> framed = noise.copy()
    >>> framed[:, :, :4] = framed[:, :, -4:] = framed[:, :, :, :4] = framed[:, :, :, -4:] = 2.0
    >>> bool(frame_scores(noise, 1.0)[0] < 0.1), bool(frame_scores(framed, 1.0)[0] > 1.0)
    (True, True)
    """
    grey = np.asarray(images, dtype=np.float64).mean(axis=1)
    N, H, W = grey.shape
    if min(H, W) <= 2 * margin:
        raise ValueError(f"images of {H}x{W} have no interior farther than {margin} px")
    if not training_std > 0:
        raise ValueError(f"training_std must be positive, got {training_std!r}")
    edge = np.zeros((H, W), dtype=bool)
    edge[:band], edge[-band:], edge[:, :band], edge[:, -band:] = True, True, True, True
    inner = np.zeros((H, W), dtype=bool)
    inner[margin:-margin, margin:-margin] = True
    b, i = grey[:, edge], grey[:, inner]
    diff = np.abs(b.mean(axis=1) - i.mean(axis=1)) + np.abs(b.std(axis=1) - i.std(axis=1))
    return diff / training_std


def frame_score(samples, training, band=FRAME_BAND, margin=FRAME_MARGIN):
    """The worst :func:`frame_scores` over the samples, in units of the training images'
    standard deviation (grey, all pixels of all training images).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> round(frame_score(rng.normal(size=(4, 1, 48, 48)), rng.normal(size=(1, 1, 32, 32))), 2)
    0.1
    """
    training_std = float(np.asarray(training, dtype=np.float64).mean(axis=1).std())
    return float(frame_scores(samples, training_std, band, margin).max())


def frame_reference(photo, canvas, training_std, n=16, seed=0):
    """The frame scores of ``n`` real crops: what :func:`frame_score` gives on images that
    have no frame. ``photo``: a grey (H, W) or (C, H, W) photograph at the training scale;
    ``canvas``: the side of the crops (the chains' canvas; the largest square that fits if
    the photo is smaller). Returns the ``n`` scores, sorted.

    Examples
    --------
    >>> import numpy as np
    >>> photo = np.random.default_rng(0).normal(size=(128, 128))
    >>> scores = frame_reference(photo, 48, training_std=1.0)
    >>> len(scores), bool(scores.max() < 0.2)
    (16, True)
    """
    photo = np.asarray(photo, dtype=np.float64)
    photo = photo[None] if photo.ndim == 2 else photo
    side = min(canvas, photo.shape[1], photo.shape[2])
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, photo.shape[1] - side + 1, size=n)
    xs = rng.integers(0, photo.shape[2] - side + 1, size=n)
    crops = np.stack([photo[:, y : y + side, x : x + side] for y, x in zip(ys, xs, strict=True)])
    return np.sort(frame_scores(crops, training_std))
