"""Padding in the Numba backend: one image inside a border of zeros (what the im2col and
sparse kernels read their windows from), and the boundaries other than zeros, padded and
folded back by index (:func:`pad_maps`, :func:`fold_maps`, the seam's; see
:mod:`gcn_numpy.boundary`).

Flat offsets are unsigned (``np.uint64``) in the innermost loops: Numba then drops its test
for negative indices, which would keep those loops from vectorising.
"""

import numpy as np
from numba import njit

from . import memory, threads
from .pointwise import NO_DELTA

__all__ = [
    "copy_rows",
    "into_border",
    "into_border_rows",
    "out_of_border",
    "pad_maps",
    "fold_maps",
    "check_delta",
]


# --------------------------------------------------------------- a border of zeros


@njit(cache=True, nogil=True)
def copy_rows(src, s0, s_step, dst, d0, d_step, rows, run):
    """``dst[d0 + i*d_step + a] = src[s0 + i*s_step + a]`` for ``i < rows``, ``a < run``."""
    n = np.uint64(run)
    for i in range(rows):
        s = np.uint64(s0 + i * s_step)
        d = np.uint64(d0 + i * d_step)
        for a in range(n):
            dst[d + a] = src[s + a]


@njit(cache=True, nogil=True)
def into_border(x, p, xpad):
    """``xpad[i + p, j + p, :] = x[i, j, :]``: one image ``(H, W, C)`` inside the border of
    ``xpad`` ``(H + 2p, W + 2p, C)``, whose border the caller keeps zero; each row of a
    filter's window is then one contiguous run of ``kw*C`` numbers."""
    into_border_rows(x, p, xpad, 0, x.shape[0])


@njit(cache=True, nogil=True)
def into_border_rows(x, p, xpad, r0, r1):
    """The rows ``r0 <= i < r1`` of :func:`into_border`."""
    H, W, C = x.shape
    Wp = xpad.shape[1]
    if r1 > r0:
        copy_rows(x.ravel(), r0 * W * C, W * C, xpad.ravel(), ((r0 + p) * Wp + p) * C, Wp * C,
                  r1 - r0, W * C)  # fmt: skip


@njit(cache=True, nogil=True)
def out_of_border(xpad, p, x):
    """``x[i, j, :] = xpad[i + p, j + p, :]``: the interior of ``xpad``."""
    H, W, C = x.shape
    Wp = xpad.shape[1]
    copy_rows(xpad.ravel(), (p * Wp + p) * C, Wp * C, x.ravel(), 0, W * C, H, W * C)


# ---------------------------------------------------------- boundaries by index


@njit(cache=True, nogil=True)
def _pad_run(x, n0, n1, p0, p1, rows, cols, out):
    """Images ``n0 <= n < n1``, their rows ``p0 <= p < p1``: ``out[n, p, q, :] = x[n,
    rows[p], cols[q], :]``."""
    for n in range(n0, n1):
        for p in range(p0, p1):
            src_row, dst_row = x[n, rows[p]], out[n, p]
            for q in range(len(cols)):
                src, dst = src_row[cols[q]], dst_row[q]
                for c in range(len(dst)):
                    dst[c] = src[c]


@njit(cache=True, nogil=True)
def _fold_run(a, n0, n1, i0, i1, rows, cols, before, tmp, out, delta, gated):
    """Images ``n0 <= n < n1`` of :func:`fold_maps`, their output rows ``i0 <= i < i1``:
    the padded rows added onto their sources in ``tmp`` (``(H, Wp, C)``), then the padded
    columns, each in increasing order (the order of
    :func:`gcn_numpy.backends.reference.fold_maps`, so that the sums round the same); with
    ``gated``, the result times ``delta``. An output row reads its own row of ``tmp`` only:
    threads may take disjoint ranges of rows of one image."""
    _, H, W, C = out.shape
    Hp, Wp = a.shape[1], a.shape[2]
    for n in range(n0, n1):
        image, result = a[n], out[n]
        for i in range(i0, i1):
            src, dst = image[before + i].ravel(), tmp[i].ravel()
            for e in range(Wp * C):
                dst[e] = src[e]
        for p in range(Hp):
            if before <= p < before + H or not i0 <= rows[p] < i1:
                continue
            src, dst = image[p].ravel(), tmp[rows[p]].ravel()
            for e in range(Wp * C):
                dst[e] += src[e]
        for i in range(i0, i1):
            row, dst = tmp[i], result[i]
            inner, flat = row[before : before + W].ravel(), dst.ravel()
            for e in range(W * C):
                flat[e] = inner[e]
            for q in range(Wp):
                if before <= q < before + W:
                    continue
                src, target = row[q], dst[cols[q]]
                for c in range(C):
                    target[c] += src[c]
            if gated:
                on = delta[n, i].ravel()
                for e in range(W * C):
                    flat[e] = flat[e] * on[e]


def _check_sources(rows, size, what):
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= size)):
        raise ValueError(f"{what}: sources must be a 1-d array of indices below {size}")
    return np.ascontiguousarray(rows)


def pad_maps(x, rows, cols):
    """``out[..., p, q] = x[..., rows[p], cols[q]]``: the maps ``x`` ``(N, C, H, W)``
    padded by a boundary (:func:`gcn_numpy.boundary.sources` gives ``rows`` and ``cols``).

    See :func:`gcn_numpy.backends.reference.pad_maps` (returned channels last in memory).

    Optimizations: one compiled pass on the kernels' threads, written channels last, as
    the next layer's kernels read it.

    Examples
    --------
    >>> x = np.arange(3.0).reshape(1, 1, 1, 3)
    >>> pad_maps(x, np.array([0]), np.array([0, 1, 2, 2, 1]))[0, 0]  # 2 mirrored columns after
    array([[0., 1., 2., 2., 1.]])
    """
    dtype = memory.float_dtype(x)
    x = memory.channels_last(x, dtype)
    N, H, W, C = x.shape
    rows, cols = _check_sources(rows, H, "rows"), _check_sources(cols, W, "columns")
    out = memory.output((N, len(rows), len(cols), C), dtype)
    parts = threads.image_parts(N, len(rows))
    threads.each_task(len(parts), lambda i, _: _pad_run(x, *parts[i], rows, cols, out), tuple)
    return memory.shaped(out)


def check_delta(delta, out):
    """``delta`` channels last, checked against the channels-last ``out`` it gates.

    Examples
    --------
    >>> check_delta(np.ones((1, 2, 3, 3), bool), np.empty((1, 3, 3, 2))).shape
    (1, 3, 3, 2)
    >>> check_delta(np.ones((1, 2, 3, 3), bool), np.empty((1, 3, 3, 4)))
    Traceback (most recent call last):
    ...
    ValueError: delta of shape (1, 2, 3, 3), the maps are (1, 4, 3, 3)
    """
    delta = memory.channels_last(delta, bool)
    if delta.shape != out.shape:
        raise ValueError(f"delta of shape {memory.shaped(delta).shape}, the maps are "
                         f"{memory.shaped(out).shape}")  # fmt: skip
    return delta


def fold_maps(a, rows, cols, before, in_hw, delta=None):
    """The adjoint of :func:`pad_maps`: each padded pixel of ``a`` ``(N, C, Hp, Wp)`` added
    onto the pixel ``(rows[p], cols[q])`` it copies, for an unpadded map of ``in_hw``
    whose rows and columns start at ``before`` in ``a``; with ``delta``, the result times
    ``delta`` (the coefficients ``G`` of the layer below, as ``gate``).

    See :func:`gcn_numpy.backends.reference.fold_maps`: the same sums in the same order,
    bit for bit (returned channels last in memory).

    Optimizations: one compiled pass on the kernels' threads, gated in the same loop.

    Examples
    --------
    >>> a = np.ones((1, 1, 1, 5))
    >>> fold_maps(a, np.array([0]), np.array([0, 1, 2, 2, 1]), 0, (1, 3))[0, 0]
    array([[1., 2., 2.]])
    """
    dtype = memory.float_dtype(a)
    a = memory.channels_last(a, dtype)
    N, Hp, Wp, C = a.shape
    H, W = in_hw
    rows, cols = _check_sources(rows, H, "rows"), _check_sources(cols, W, "columns")
    if len(rows) != Hp or len(cols) != Wp or not 0 <= before <= min(Hp - H, Wp - W):
        raise ValueError(f"maps of {Hp} x {Wp} are not {H} x {W} padded from {before}")
    inner = np.arange(before, before + H), np.arange(before, before + W)
    if np.any(rows[inner[0]] != np.arange(H)) or np.any(cols[inner[1]] != np.arange(W)):
        raise ValueError("the sources of the unpadded rows and columns must be themselves")
    out = memory.output((N, H, W, C), dtype)
    gated = delta is not None
    if gated:
        delta = check_delta(delta, out)
    parts = threads.image_parts(N, H)
    threads.each_task(
        len(parts),
        lambda i, tmp: _fold_run(
            a, *parts[i], rows, cols, before, tmp, out, delta if gated else NO_DELTA, gated
        ),  # fmt: skip
        lambda: np.empty((H, Wp, C), dtype=dtype),
        ("fold", a.shape[1:], (H, W), dtype),
    )
    return memory.shaped(out)
