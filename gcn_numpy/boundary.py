"""What a filter sees beyond the edge of the image: the boundary condition of every layer.

The release pads each layer's input with zeros (``"zero"``, PyTorch's ``conv2d``). Zeros are
the mean intensity, so units near the edge of a texture see a flat band; the observed
image's border responses enter ``H_obs`` (eq. 21) and the chains learn to reproduce them, a
frame along the border of every sample. Three alternatives are described here; each layer's
input is padded explicitly and the kernels run without padding. Which input row each padded
row copies (:func:`sources`) is all a backend needs: its ``pad_maps`` copies them and its
``fold_maps`` adds them back (:func:`gcn_numpy.backends.reference.pad_maps` and
``fold_maps``, the plain versions, behind :func:`pad` and :func:`fold` here).

- ``"circular"``: every map is a torus, as in the FRAME models' synthesis. A layer with
  kernel ``k`` and stride ``s`` wraps ``max(k - s, 0)`` rows and columns around, so that its
  map has exactly ``H / s`` rows: no position is special, and the map above is again a
  torus. Map sizes must be divisible by the strides.
- ``"reflect"``: the layer's ``padding`` rows and columns mirror the image (the edge itself
  not repeated, NumPy's ``"reflect"``); same map sizes as ``"zero"``.
- ``"symmetric"``: the mirror with the edge repeated (NumPy's ``"symmetric"``); same map
  sizes as ``"zero"``. With an odd kernel ``k = 2 * padding + 1`` and stride 1, every pixel
  of the image then enters exactly ``k`` windows per axis, as in the interior: the edge row
  once for itself and once for its copy, and so on inwards. ``"reflect"`` gives the edge
  row ``padding + 1`` windows and the next ``padding`` rows ``2 * padding + 2``: the edge
  is held less by ``f`` than the interior (it drifts towards the reference's mean, a grey
  rim in the samples) and the rows behind it more (docs/frame.md).

Padding is linear in the input, so ``f`` stays piecewise linear and Theorem 1 holds as it
is; the top-down pass adds the padded band's coefficients back onto the pixels they were
copied from (:func:`fold`, the adjoint of :func:`pad`).
"""

import functools

import numpy as np

from .backends.reference import fold_maps, output_size, pad_maps

__all__ = [
    "BOUNDARIES",
    "layer_padding",
    "map_size",
    "sources",
    "pad",
    "fold",
    "clean_positions",
]

BOUNDARIES = ("zero", "circular", "reflect", "symmetric")


def layer_padding(layer, boundary):
    """``(before, after)``: rows (and columns) added on each side of the layer's input.

    Examples
    --------
    >>> from gcn_numpy import Layer
    >>> layer_padding(Layer(8, kernel=7, stride=2, padding=2), "circular")
    (2, 3)
    >>> layer_padding(Layer(8, kernel=7, stride=2, padding=2), "zero")
    (2, 2)
    """
    if boundary == "circular":
        total = max(layer.kernel - layer.stride, 0)
        return total // 2, total - total // 2
    return layer.padding, layer.padding


def map_size(size, layer, boundary):
    """Rows (or columns) of the layer's map over an input of ``size``; ``ValueError`` where
    a circular map would not be a torus.

    Examples
    --------
    >>> from gcn_numpy import Layer
    >>> map_size(96, Layer(8, kernel=7, stride=2, padding=2), "circular")
    48
    >>> map_size(96, Layer(8, kernel=7, stride=2, padding=2), "zero")
    47
    """
    before, after = layer_padding(layer, boundary)
    if boundary == "circular" and size % layer.stride:
        raise ValueError(
            f"a circular boundary needs map sizes divisible by the stride: a map of {size} "
            f"does not divide by stride {layer.stride}"
        )
    if boundary == "reflect" and max(before, after) >= size:
        raise ValueError(
            f"a reflecting boundary needs maps larger than the padding: {size} <= {before}"
        )
    if boundary == "symmetric" and max(before, after) > size:
        raise ValueError(
            f"a symmetric boundary needs maps at least as large as the padding: {size} < {before}"
        )
    if boundary == "zero":
        return output_size(size, layer.kernel, layer.stride, layer.padding)
    return (size + before + after - layer.kernel) // layer.stride + 1


def _source(j, before, size, boundary):
    """The input row that padded row ``j`` is a copy of."""
    i = j - before
    if boundary == "circular":
        return i % size
    if boundary == "symmetric":  # ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
        i %= 2 * size
        return i if i < size else 2 * size - 1 - i
    period = 2 * (size - 1)  # reflect: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
    i = abs(i) % period if period else 0
    return period - i if i >= size else i


def sources(before, after, size, boundary):
    """The input row (or column) each of the ``before + size + after`` padded rows copies,
    as a read-only int64 NumPy array: what a backend's ``pad_maps`` and ``fold_maps`` take
    (remembered: the model asks for the same few at every layer of every pass).

    Examples
    --------
    >>> sources(2, 2, 4, "reflect").tolist()
    [2, 1, 0, 1, 2, 3, 2, 1]
    >>> sources(1, 1, 3, "circular").tolist()
    [2, 0, 1, 2, 0]
    """
    return _sources(before, after, size, boundary)


@functools.lru_cache(maxsize=256)
def _sources(before, after, size, boundary):
    rows = range(before + size + after)
    out = np.array([_source(j, before, size, boundary) for j in rows], dtype=np.int64)
    out.flags.writeable = False
    return out


def pad(x, before, after, boundary):
    """Pad the maps ``x`` ``(N, C, H, W)`` by ``before`` and ``after`` rows and columns:
    zeros, or the copies :func:`sources` names (:func:`gcn_numpy.backends.reference.pad_maps`).

    Examples
    --------
    >>> import numpy as np
    >>> pad(np.arange(3.0).reshape(1, 1, 1, 3), 0, 0, "circular").ravel()
    array([0., 1., 2.])
    >>> pad(np.arange(9.0).reshape(1, 1, 3, 3), 1, 1, "circular")[0, 0, 0]
    array([8., 6., 7., 8., 6.])
    """
    if boundary == "zero":
        return np.pad(x, ((0, 0), (0, 0), (before, after), (before, after)))
    H, W = x.shape[2:]
    return pad_maps(x, sources(before, after, H, boundary), sources(before, after, W, boundary))


def fold(a, before, size_hw, boundary):
    """The adjoint of :func:`pad`: each padded pixel's value is added onto the pixel it
    copies (for ``"zero"``, the band is dropped). ``size_hw``: the unpadded ``(H, W)``
    (:func:`gcn_numpy.backends.reference.fold_maps`).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(1, 1, 4, 4))
    >>> y = np.random.default_rng(1).normal(size=(1, 1, 7, 7))
    >>> lhs = (pad(x, 1, 2, "circular") * y).sum()
    >>> bool(np.isclose(lhs, (x * fold(y, 1, (4, 4), "circular")).sum()))
    True
    """
    H, W = size_hw
    if boundary == "zero":
        return a[:, :, before : before + H, before : before + W].copy()
    rows = sources(before, a.shape[2] - before - H, H, boundary)
    cols = sources(before, a.shape[3] - before - W, W, boundary)
    return fold_maps(a, rows, cols, before, size_hw)


def clean_positions(layers, boundary, H, W, tolerance=0):
    """Which units of every layer see only the image, never the boundary: one bool array
    ``(H_l, W_l)`` per layer ``l = 1..L``. A unit is clean when every input it reads, at
    every layer below, lies inside the image (not a zero, wrapped or mirrored copy); for
    ``"zero"`` these are the units of a net without padding.

    With ``tolerance = X`` pixels a unit counts as clean when its receptive field (the
    pixels it would read were the image continued beyond its edge) leaves the image by at
    most ``X`` pixels on every side: the units that see the boundary only through their
    outermost ``X`` rows or columns. ``X`` at least the receptive field's padding makes
    every unit clean.

    Each axis is measured on its own: unit ``i`` of a layer whose strides multiply to ``S``
    reads pixels ``i S - P`` to ``i S - P + R - 1``, ``R`` its receptive field's width
    and ``P`` the padding in front of it, summed down the layers in pixels.

    Examples
    --------
    >>> from gcn_numpy import Layer
    >>> [m.sum() for m in clean_positions([Layer(1, 3, padding=1)], "zero", 5, 5)]
    [np.int64(9)]
    >>> [m.sum() for m in clean_positions([Layer(1, 3, padding=1)], "zero", 5, 5, 1)]
    [np.int64(25)]
    """
    tolerance = int(tolerance)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    rows = _clean_along(layers, boundary, H, tolerance)
    cols = _clean_along(layers, boundary, W, tolerance)
    return [np.outer(r, c) for r, c in zip(rows, cols, strict=True)]


def _clean_along(layers, boundary, n, tolerance):
    """Per layer, which units along one axis of ``n`` pixels read no pixel more than
    ``tolerance`` outside ``0 .. n - 1`` (see :func:`clean_positions`)."""
    size, S, P, R, clean = n, 1, 0, 1, []
    for layer in layers:
        before, after = layer_padding(layer, boundary)
        size = output_size(size + before + after, layer.kernel, layer.stride, 0)
        P, R, S = P + before * S, R + (layer.kernel - 1) * S, S * layer.stride
        first = np.arange(size) * S - P  # the first pixel each unit reads
        clean.append((first >= -tolerance) & (first + R - 1 <= n - 1 + tolerance))
    return clean
