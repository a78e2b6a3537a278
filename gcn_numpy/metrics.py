"""Measures of what a texture model learned: copies or new texture, and how close the
statistics are.

- :func:`max_ncc`: the best normalised cross-correlation of a patch over every placement
  in an image (1 means the patch is found there, up to brightness and contrast);
- :func:`novelty`: for each sample, the max NCC of its central patch in the training
  images, and in the other samples;
- :func:`radial_spectrum` and :func:`texture_stats`: mean, standard deviation and the
  radially averaged power spectrum, compared between samples and training images;
- :func:`frame_score`: how much a band along the border of the samples differs from
  their interior, with :func:`frame_reference`, the same on crops of a real photograph;
- :func:`texture_closeness`: how close the histograms of a bank of filter responses
  (FRAME's statistics) of the samples are to the training images', 1 the same, 0 as far
  as white noise of the training images' mean and standard deviation.
"""

import numpy as np

__all__ = [
    "max_ncc",
    "central_patch",
    "novelty",
    "radial_spectrum",
    "texture_stats",
    "frame_scores",
    "frame_score",
    "frame_reference",
    "frame_profile",
    "filter_responses",
    "texture_distance",
    "texture_closeness",
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

    Examples
    --------
    >>> import numpy as np
    >>> image = np.random.default_rng(0).normal(size=(1, 32, 32))
    >>> round(max_ncc(image[:, 5:15, 7:17], image), 6)  # the patch is found where it was cut
    1.0
    >>> round(max_ncc(2 * image[:, 5:15, 7:17] + 3, image), 6)  # up to brightness, contrast
    1.0
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
    from scipy.signal import fftconvolve  # here: importing scipy.signal takes a second

    ones = np.ones((h, w))
    num = sum(fftconvolve(image[c], t[c, ::-1, ::-1], mode="valid") for c in range(C))
    s1 = sum(fftconvolve(image[c], ones, mode="valid") for c in range(C))
    s2 = sum(fftconvolve(image[c] ** 2, ones, mode="valid") for c in range(C))
    var = np.maximum(s2 - s1 * s1 / n, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ncc = np.where(var > 1e-9 * n, num / (np.sqrt(var) * t_norm), 0.0)
    return float(np.clip(ncc, -1.0, 1.0).max())


def central_patch(image, fraction=0.5):
    """The centre of an image (C, H, W): a window of ``fraction`` of each side.

    Examples
    --------
    >>> import numpy as np
    >>> central_patch(np.zeros((3, 64, 48))).shape
    (3, 32, 24)
    """
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

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> training = rng.normal(size=(1, 1, 48, 48))
    >>> copies = np.stack([training[0, :, :32, :32], training[0, :, 10:42, 5:37]])
    >>> novelty(copies, training)["to_training"].round(3)  # both are copies
    array([1., 1.])
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
    sum 1 (the shape of the spectrum, not its energy), averaged over images/channels.

    Examples
    --------
    >>> import numpy as np
    >>> white = np.random.default_rng(0).normal(size=(8, 1, 64, 64))
    >>> spectrum = radial_spectrum(white, n_bins=4)
    >>> spectrum.round(2)  # white noise: flat
    array([0.25, 0.25, 0.25, 0.25])
    """
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
    radial spectra (0 = same shape, 1 = disjoint).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> stats = texture_stats(rng.normal(size=(4, 1, 32, 32)), rng.normal(size=(1, 1, 32, 32)))
    >>> round(stats["std_samples"], 1), round(stats["std_training"], 1)
    (1.0, 1.0)
    """
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


def frame_profile(images, training_std, depth, width=2):
    """The border profile of each image: for every band of ``width`` pixels at distance
    ``d, d + width, ...`` from the nearest edge, up to ``depth``, how much its mean and
    its standard deviation differ from those of the interior beyond ``depth``, in units of
    ``training_std``, ``(|mean(band) - mean(interior)| + |std(band) - std(interior)|) /
    training_std`` on the grey image. A fixed band along the edge (:func:`frame_scores`)
    misses an outline further in; this profile finds it at any distance up to the
    receptive field.

    Returns
    -------
    ndarray of shape (N, ceil(depth / width)): row n is image n's profile, column k the
    band starting at distance ``k * width``.

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(0).normal(size=(1, 1, 96, 96))
    >>> outlined = noise.copy()
    >>> outlined[:, :, 12:14, 12:-12] += 3.0  # a line 12 px inside the top edge
    >>> bool(frame_profile(noise, 1.0, 20).max() < 0.25)
    True
    >>> int(frame_profile(outlined, 1.0, 20).argmax())  # the band at 12-13 px
    6
    """
    grey = np.asarray(images, dtype=np.float64).mean(axis=1)
    N, H, W = grey.shape
    if min(H, W) <= 2 * depth + 2:
        raise ValueError(f"images of {H}x{W} have no interior beyond {depth} px")
    if not training_std > 0:
        raise ValueError(f"training_std must be positive, got {training_std!r}")
    y, x = np.mgrid[:H, :W]
    dist = np.minimum(np.minimum(y, H - 1 - y), np.minimum(x, W - 1 - x))
    inner = grey[:, dist >= depth]
    i_mean, i_std = inner.mean(axis=1), inner.std(axis=1)
    bands = []
    for d in range(0, depth, width):
        band = grey[:, (dist >= d) & (dist < min(d + width, depth))]
        bands.append(np.abs(band.mean(axis=1) - i_mean) + np.abs(band.std(axis=1) - i_std))
    return np.stack(bands, axis=1) / training_std


CLOSENESS_SCALES = (1.0, 2.0, 4.0)  # Gaussian scales of the filter bank, in pixels
CLOSENESS_QUANTILES = np.linspace(0.005, 0.995, 100)


def filter_responses(images, scales=CLOSENESS_SCALES):
    """The responses of a small filter bank, per filter and channel, pooled over images.

    The bank of the FRAME models (Zhu, Wu and Mumford, 1997), whose histograms of filter
    responses are the statistics a texture is defined by: the intensity itself, and at each
    Gaussian scale ``s`` the two first derivatives and the Laplacian of the Gaussian.
    Each response keeps only the positions farther than ``3 s`` from the edge, where the
    filter sees no boundary; a scale with no such position is left out.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W)
    scales : sequence of float

    Returns
    -------
    list (one per filter: ``1 + 3 x`` the scales that fit) of ``C`` 1-D arrays (one per
    channel), the responses of every image at every interior position.

    Examples
    --------
    >>> import numpy as np
    >>> r = filter_responses(np.random.default_rng(0).normal(size=(2, 3, 32, 32)))
    >>> len(r), len(r[0]), r[0][0].shape, r[-1][0].shape  # LoG at scale 4: 12 px cut
    (10, 3, (2048,), (128,))
    >>> len(filter_responses(np.zeros((1, 1, 16, 16))))  # scale 4 does not fit
    7
    """
    from scipy import ndimage  # here: importing it takes half a second

    images = np.asarray(images, dtype=np.float64)
    N, C, H, W = images.shape
    bank = [(None, 0, None)]
    for s in scales:
        m = int(np.ceil(3 * s))
        if min(H, W) > 2 * m:
            bank += [(s, m, (0, 1)), (s, m, (1, 0)), (s, m, "log")]
    out = []
    for s, m, kind in bank:
        per_channel = []
        for c in range(C):
            responses = []
            for n in range(N):
                x = images[n, c]
                if kind == "log":
                    x = ndimage.gaussian_laplace(x, s, mode="reflect")
                elif kind is not None:
                    x = ndimage.gaussian_filter(x, s, order=kind, mode="reflect")
                responses.append(x[m : H - m, m : W - m].ravel())
            per_channel.append(np.concatenate(responses))
        out.append(per_channel)
    return out


def texture_distance(samples, training, scales=CLOSENESS_SCALES):
    """How far the samples' filter-response histograms are from the training images'.

    For each filter of :func:`filter_responses` (the scales that fit both sets of
    images) and each channel, the 1-Wasserstein distance between the two distributions of
    responses (from 100 quantiles), in units of the training images' own spread of that
    response; the mean over filters and channels. NaN when the training images are flat
    (no filter has any spread).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = rng.normal(size=(1, 1, 64, 64))
    >>> round(texture_distance(t, t), 6)
    0.0
    >>> round(texture_distance(t + 1.0, t), 2)  # the intensity's histogram moved by 1 std
    0.1
    """
    samples = np.asarray(samples, dtype=np.float64)
    training = np.asarray(training, dtype=np.float64)
    side = min(samples.shape[2:] + training.shape[2:])
    scales = [s for s in scales if side > 2 * int(np.ceil(3 * s))]
    s_resp = filter_responses(samples, scales)
    t_resp = filter_responses(training, scales)
    distances = []
    for s_filter, t_filter in zip(s_resp, t_resp, strict=True):
        for s, t in zip(s_filter, t_filter, strict=True):
            spread = t.std()
            if spread > 0:
                qs = np.quantile(s, CLOSENESS_QUANTILES)
                qt = np.quantile(t, CLOSENESS_QUANTILES)
                distances.append(np.abs(qs - qt).mean() / spread)
    return float(np.mean(distances)) if distances else float("nan")


def texture_closeness(samples, training, scales=CLOSENESS_SCALES, seed=0):
    """``1 - texture_distance(samples) / texture_distance(white noise)``: 1 when the
    samples' filter-response histograms are the training images', 0 when they are as far as
    Gaussian white noise with the training images' mean and standard deviation (per
    channel, of the samples' shape), negative when farther.

    A real crop of the same texture held out from the training image scores below 1 (a
    texture photograph is not perfectly stationary): compare samples with that.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> rng = np.random.default_rng(0)
    >>> streaks = ndimage.gaussian_filter(rng.normal(size=(1, 1, 96, 192)), (0, 0, 1.5, 3))
    >>> left, right = streaks[..., :96], streaks[..., 96:]
    >>> round(texture_closeness(left, right), 2)  # two halves of one texture
    0.77
    >>> noise = right.std() * rng.normal(size=(1, 1, 96, 96))
    >>> round(texture_closeness(noise, right), 2)  # white noise of the same std: about 0
    -0.01
    """
    samples = np.asarray(samples, dtype=np.float64)
    training = np.asarray(training, dtype=np.float64)
    mu = training.mean(axis=(0, 2, 3))[None, :, None, None]
    sd = training.std(axis=(0, 2, 3))[None, :, None, None]
    noise = mu + sd * np.random.default_rng(seed).standard_normal(samples.shape)
    return 1.0 - texture_distance(samples, training, scales) / texture_distance(
        noise, training, scales
    )
