"""What the Numba kernels skip: mostly zero coefficients and filters silent in the batch.

In a trained net the top layer's coefficients ``G`` are mostly zero (a few percent of
``delta^{(L)}`` on), and whole filters fall silent. A mostly zero ``G`` takes the kernels
here, one window of ``kh*kw*C`` multiply-adds per non-zero coefficient (:func:`top_down`,
:func:`weight_grad`), against every tile's or block's products in the dense kernels. Filters
silent in the whole batch are found by :func:`active_filters`; the seam decides when to leave
them out (:func:`gcn_numpy.backends.numba.seam.active_subset`), and :func:`gathered` copies
``G`` on the active ones for the im2col kernels.
"""

import numpy as np
from numba import njit

from . import memory, threads
from .im2col import active_channels, filter_rows
from .padding import into_border, out_of_border
from .pointwise import gate_image

__all__ = ["nonzero_share", "active_filters", "gathered", "top_down", "weight_grad"]


@njit(cache=True, nogil=True)
def nonzero_share(G, most):
    """The share of non-zero entries of ``G``, counted until it passes ``most`` (a dense
    ``G`` is not read to its end: only far enough to know it is dense)."""
    flat = G.ravel()
    limit = most * flat.size
    count = 0
    for q0 in range(0, flat.size, 4096):
        for q in range(q0, min(flat.size, q0 + 4096)):
            count += flat[q] != 0
        if count > limit:
            break
    return count / max(flat.size, 1)


# ------------------------------------------------------------------ silent filters


@njit(cache=True, nogil=True)
def active_filters(G):
    """The filters ``k`` with some ``G[n, ..., k] != 0`` in a batch ``(N, Ho, Wo, K)``: the
    others add nothing to ``B`` and have a zero gradient."""
    return active_channels(G.reshape((-1, G.shape[3])))


@njit(cache=True, nogil=True)
def _gather_channels(G, channels, out):
    """``out[..., c] = G[..., channels[c]]`` for channels-last maps (flat rows of ``K``)."""
    K, n = G.shape[-1], len(channels)
    src, dst = G.reshape((-1, K)), out.reshape((-1, n))
    for q in range(src.shape[0]):
        row, target = src[q], dst[q]
        for c in range(n):
            target[c] = row[channels[c]]


def gathered(G, active):
    """``G[..., active]`` of a channels-last ``G`` ``(N, Ho, Wo, K)``, in :func:`.memory.output`
    memory.

    Examples
    --------
    >>> G = np.arange(12.0).reshape(1, 2, 2, 3)
    >>> gathered(G, np.array([0, 2]))[0, 0]
    array([[0., 2.],
           [3., 5.]])
    """
    G_active = memory.output(G.shape[:3] + (len(active),), G.dtype)
    _gather_channels(G, active, G_active)
    return G_active


# ------------------------------------------------- one window per coefficient


@njit(cache=True, nogil=True, fastmath={"contract"})
def _sparse_windows(G, kh, kw, stride, xpad, rows, adjoint, db):
    """For each non-zero ``G[i, j, k]``, positions in row order: ``rows[k] += G[i, j, k] *
    window(i, j)`` of ``xpad`` (taps ``(u, v, c)``, as :func:`.im2col.patches` orders a
    window) and ``db[k] += G[i, j, k]``; or, with ``adjoint``, ``window(i, j) += G[i, j, k]
    * rows[k]`` (a copy of filter ``k`` added onto the map, ``db`` untouched)."""
    Ho, Wo, K = G.shape
    Wp, C = xpad.shape[1], xpad.shape[2]
    flat = xpad.ravel()
    run = np.uint64(kw * C)
    for i in range(Ho):
        for j in range(Wo):
            g = G[i, j]
            for k in range(K):
                v = g[k]
                if v == 0:
                    continue
                row = rows[k]
                if not adjoint:
                    db[k] += v
                for u in range(kh):
                    x0 = np.uint64(((i * stride + u) * Wp + j * stride) * C)
                    r0 = np.uint64(u) * run
                    if adjoint:
                        for a in range(run):
                            flat[x0 + a] += v * row[r0 + a]
                    else:
                        for a in range(run):
                            row[r0 + a] += v * flat[x0 + a]


@njit(cache=True, nogil=True)
def _weight_grad_image(x, G, kh, kw, stride, padding, xpad, dW_rows, db):
    """Add one image's share of the weight gradient to ``dW_rows`` ``(K, kh*kw*C)`` and
    ``db``, one window per non-zero coefficient (:func:`_sparse_windows`)."""
    into_border(x, padding, xpad)
    _sparse_windows(G, kh, kw, stride, xpad, dW_rows, False, db)


@njit(cache=True, nogil=True)
def _deconvolve_image(G, W_rows, kh, kw, stride, padding, out, xpad):
    """Top-down deconvolution, eq. (16), of one image's ``G`` ``(Ho, Wo, K)`` into ``out``
    ``(H, W, C)``: a copy of filter ``k`` (``W_rows[k]``) per non-zero ``G[i, j, k]``
    (:func:`_sparse_windows`)."""
    xpad.fill(0)
    _sparse_windows(G, kh, kw, stride, xpad, W_rows, True, W_rows[0, :0])
    out_of_border(xpad, padding, out)


def _padded_scratch(H, W, padding, C, dtype):
    """A thread's ``xpad``: one image's maps inside a zero border."""
    return np.zeros((H + 2 * padding, W + 2 * padding, C), dtype=dtype)


def top_down(G, W, stride, padding, out, delta):
    """``conv_transpose`` of a mostly zero ``G`` (channels last) into ``out``, gated by
    ``delta`` unless it is None, one image per task.

    Examples
    --------
    >>> G = np.zeros((1, 2, 2, 1))
    >>> G[0, 1, 0, 0] = 2.0
    >>> out = np.empty((1, 3, 3, 1))
    >>> top_down(G, np.ones((1, 1, 2, 2)), 1, 0, out, None)
    >>> out[0, :, :, 0]
    array([[0., 0., 0.],
           [2., 2., 0.],
           [2., 2., 0.]])
    """
    N, H, Wd, C = out.shape
    kh, kw = W.shape[2:]
    W_rows = filter_rows(W)

    def run(n, xpad):
        _deconvolve_image(G[n], W_rows, kh, kw, stride, padding, out[n], xpad)
        if delta is not None:
            gate_image(out, delta, n)

    threads.each_task(
        N,
        run,
        lambda: _padded_scratch(H, Wd, padding, C, out.dtype),
        ("sparse_top_down", G.shape[1:], W.shape, stride, padding, (H, Wd), out.dtype),
    )


def weight_grad(x, G, kernel_hw, stride, padding):
    """``conv_weight_grad`` of a mostly zero ``G`` (channels last), the images in the fixed
    chunks of :func:`.threads.chunks`.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> G = np.zeros((1, 2, 2, 1))
    >>> G[0, 1, 1, 0] = 1.0  # one window: the lower right one
    >>> dW, db = weight_grad(x, G, (2, 2), 1, 0)
    >>> dW[0, 0], db
    (array([[4., 5.],
           [7., 8.]]), array([1.]))
    """
    (kh, kw), (N, H, Wd, C), K = kernel_hw, x.shape, G.shape[3]
    chunks = threads.chunks(N)
    dW_each = np.zeros((len(chunks), K, kh * kw * C), dtype=x.dtype)
    db_each = np.zeros((len(chunks), K), dtype=x.dtype)

    def run(i, xpad):
        start, stop = chunks[i]
        for n in range(start, stop):
            _weight_grad_image(x[n], G[n], kh, kw, stride, padding, xpad, dW_each[i],
                               db_each[i])  # fmt: skip

    threads.each_task(
        len(chunks),
        run,
        lambda: _padded_scratch(H, Wd, padding, C, x.dtype),
        ("sparse_weight_grad", x.shape[1:], kernel_hw, stride, padding, x.dtype),
    )
    dW_rows, db = dW_each.sum(axis=0), db_each.sum(axis=0)
    return np.ascontiguousarray(dW_rows.reshape(K, kh, kw, C).transpose(0, 3, 1, 2)), db
