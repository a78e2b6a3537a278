"""im2col layers of the Numba backend: an explicit patch matrix ``P`` and one BLAS product
per block of output rows, the blocks small enough for ``P`` to stay in cache between the
copy and the product (:data:`BLOCK_BYTES`).

- bottom-up, eqs. (12)-(14): responses ``P @ W_win``, one row per position, written in
  place into the output; bias, ReLU and ``delta`` in one more loop over it;
- top-down, eq. (16): ``P = G @ W_rows``, row ``x`` being the sum of the filters weighted by
  the coefficients ``G_k(x)``; :func:`add_patches` adds the overlapping windows up;
- weight gradient: ``dW_win += P.T @ G``, the correlation of ``G`` with the input.

``W_win`` is the filters as a ``(kh*kw*C, K)`` matrix, one column per filter, its rows in the
order of :func:`patches` (:func:`filter_columns`); ``W_rows`` is its transpose, one row per
filter (:func:`filter_rows`). Each product is oriented as OpenBLAS ran it fastest.

Column order of the patches: a window is copied row ``u`` by row ``u``, each row as ``kw``
positions ``v`` of ``C`` channels, so column ``(u*kw + v)*C + c`` of ``P`` holds the input
under tap ``(u, v)`` of channel ``c``. The reference sums over the same taps in its loops
``for u, for v`` with the channels contracted inside: ``W_win``'s row ``(u*kw + v)*C + c`` is
``W[:, c, u, v]``, and the product visits the terms in that order.

Filters with no active unit in an image (``G_k = 0`` everywhere) are left out of that
image's top-down product and gradient (:func:`active_channels`): in a trained net whole
filters fall silent. Single units are not: with about half of them active, skipping them
one by one was slower than BLAS on the dense product.

Images are ``(H, W, C)``, channels last; each thread has its own :class:`Scratch`, reused
from image to image.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from . import threads
from .padding import into_border, into_border_rows, out_of_border
from .pointwise import gate_image

__all__ = [
    "BLOCK_BYTES",
    "Blocks",
    "Scratch",
    "rows_per_block",
    "scratch",
    "filter_rows",
    "filter_columns",
    "patches",
    "add_patches",
    "active_channels",
    "bottom_up",
    "top_down",
    "weight_grad",
]

BLOCK_BYTES = 2**22  # target size of ``P``: it stays in cache between copy and product


class Blocks(NamedTuple):
    """The plan of an im2col layer: ``kh x kw`` filters, ``stride``, zero ``padding``, and
    ``rows`` output rows per block of ``P`` (:func:`rows_per_block`), passed as it is into
    the compiled kernels.

    Examples
    --------
    >>> Blocks(kh=3, kw=3, stride=1, padding=1, rows=8).rows
    8
    """

    kh: int
    kw: int
    stride: int
    padding: int
    rows: int


class Scratch(NamedTuple):
    """One thread's arrays for an im2col layer: ``xpad`` (one image inside a zero border),
    ``P_buf`` (``rows*Wo*kh*kw*C`` numbers), ``g_buf`` (``rows*Wo*K``) and, for the weight
    gradient, ``product`` (a ``(kh*kw*C, K)`` block of it; empty otherwise). Made by
    :func:`scratch`.

    Examples
    --------
    >>> scratch(2, 5, 5, 1, 18, 5, 5, 3, np.float32)._fields
    ('xpad', 'P_buf', 'g_buf', 'product')
    """

    xpad: np.ndarray
    P_buf: np.ndarray
    g_buf: np.ndarray
    product: np.ndarray


def rows_per_block(window, Ho, Wo, dtype):
    """Output rows per block: ``P``, ``window`` numbers per position, about BLOCK_BYTES.

    Examples
    --------
    >>> rows_per_block(15 * 15 * 3, 72, 72, np.float32)
    21
    """
    return max(1, min(Ho, BLOCK_BYTES // (window * max(Wo, 1) * np.dtype(dtype).itemsize)))


def scratch(C, H, W, padding, window, rows, Wo, K, dtype, product=False):
    """A thread's :class:`Scratch` for one im2col layer on ``(H, W, C)`` images.

    Examples
    --------
    >>> own = scratch(3, 8, 8, 1, 27, 2, 8, 4, np.float64)
    >>> own.xpad.shape, own.P_buf.size, own.g_buf.size, own.product.shape
    ((10, 10, 3), 432, 64, (0, 0))
    """
    return Scratch(
        np.zeros((H + 2 * padding, W + 2 * padding, C), dtype=dtype),
        np.empty(rows * Wo * window, dtype=dtype),
        np.empty(rows * Wo * K, dtype=dtype),
        np.empty((window, K) if product else (0, 0), dtype=dtype),
    )


def filter_rows(W):
    """The filters ``W`` ``(K, C, kh, kw)`` as ``W_rows`` ``(K, kh*kw*C)``, one row per
    filter, its taps ordered ``(u, v, c)`` as :func:`patches` orders a window.

    Examples
    --------
    >>> filter_rows(np.arange(8.0).reshape(1, 2, 2, 2))
    array([[0., 4., 1., 5., 2., 6., 3., 7.]])
    """
    K, C, kh, kw = W.shape
    return np.ascontiguousarray(W.transpose(0, 2, 3, 1).reshape(K, kh * kw * C))


def filter_columns(W):
    """The filters ``W`` ``(K, C, kh, kw)`` as ``W_win`` ``(kh*kw*C, K)``, one column per
    filter (the transpose of :func:`filter_rows`).

    Examples
    --------
    >>> filter_columns(np.arange(8.0).reshape(1, 2, 2, 2)).T
    array([[0., 4., 1., 5., 2., 6., 3., 7.]])
    """
    K, C, kh, kw = W.shape
    return np.ascontiguousarray(W.transpose(2, 3, 1, 0).reshape(kh * kw * C, K))


# ------------------------------------------------------------- windows of one image


@njit(cache=True, nogil=True)
def _windows(xpad, P, kh, kw, stride, i0, i1, Wo, adjoint):
    """Copy every output window of rows ``i0 <= i < i1`` of ``xpad`` into its row of ``P``,
    or with ``adjoint`` add each row of ``P`` back onto its window (see :func:`patches`)."""
    Wp, C = xpad.shape[1], xpad.shape[2]
    x_flat, p_flat = xpad.ravel(), P.ravel()
    run = np.uint64(kw * C)
    for i in range(i0, i1):
        for j in range(Wo):
            q = (i - i0) * Wo + j
            for u in range(kh):
                r = np.uint64((q * kh + u) * kw * C)
                x = np.uint64(((i * stride + u) * Wp + j * stride) * C)
                if adjoint:
                    for a in range(run):
                        x_flat[x + a] += p_flat[r + a]
                else:
                    for a in range(run):
                        p_flat[r + a] = x_flat[x + a]


@njit(cache=True, nogil=True)
def patches(xpad, kh, kw, stride, i0, i1, Wo, P):
    """The window under every output position of rows ``i0 <= i < i1``, one per row of ``P``.

    Row ``q`` of ``P`` ``((i1 - i0)*Wo, kh*kw*C)`` is what the filters ``w_{k,x}`` meet at
    ``x = (i, j)``, ordered ``(u, v, c)`` (see the module's note on the column order)::

        for i in i0 .. i1-1, j in 0 .. Wo-1:
            q = (i - i0)*Wo + j
            for u in 0 .. kh-1:
                P[q, u*kw*C : (u+1)*kw*C] = xpad[i*s + u, j*s : j*s + kw, :]
    """
    _windows(xpad, P, kh, kw, stride, i0, i1, Wo, False)


@njit(cache=True, nogil=True)
def add_patches(P, kh, kw, stride, i0, i1, Wo, xpad):
    """Add each row of ``P`` onto the window it came from: the adjoint of :func:`patches`.

    Row ``q`` of ``P`` goes back onto the window of position ``x = (i, j)``::

        for i in i0 .. i1-1, j in 0 .. Wo-1:
            q = (i - i0)*Wo + j
            for u in 0 .. kh-1:
                xpad[i*s + u, j*s : j*s + kw, :] += P[q, u*kw*C : (u+1)*kw*C]
    """
    _windows(xpad, P, kh, kw, stride, i0, i1, Wo, True)


@njit(cache=True, nogil=True)
def active_channels(G_rows):
    """The channels ``k`` with some ``G_k(x) != 0`` in one image's ``(positions, K)`` map.

    A filter with no active unit in an image adds no copy of itself to ``B`` (eq. 16) and
    gets no gradient from that image; its work is skipped. The rows are read in blocks of
    64, each with one branch-free vector loop, until every channel has been seen (a map
    with silent channels is read to its end).
    """
    n_positions, K = G_rows.shape
    seen = np.zeros(K, dtype=np.uint8)
    for q0 in range(0, n_positions, 64):
        for q in range(q0, min(n_positions, q0 + 64)):
            row = G_rows[q]
            for k in range(K):
                seen[k] |= row[k] != 0
        if seen.min() == 1:
            break
    return np.flatnonzero(seen)


@njit(cache=True, nogil=True)
def _active_block(G_rows, q0, m, channels, g_buf):
    """``gT[q, c] = G_rows[q0 + q, channels[c]]``: a block of ``m`` positions of the active
    channels as an ``(m, len(channels))`` matrix in ``g_buf`` (all channels active: a copy,
    which costs ``1/(kh*kw*C)`` of the product it feeds)."""
    n = len(channels)
    gT = g_buf[: m * n].reshape((m, n))
    for q in range(m):
        for c in range(n):
            gT[q, c] = G_rows[q0 + q, channels[c]]
    return gT


# -------------------------------------------------------------- one image each


@njit(cache=True, nogil=True)
def _forward_image(x, W_win, b, plan, relu, out, delta, own, b0, b1):
    """Responses of eq. (12) of one image ``x`` ``(H, W, C)`` into ``out`` ``(Ho, Wo, K)``;
    with ``relu``, one bottom-up layer of eqs. (13)-(14): ``out = F`` and ``delta``. One
    image of :func:`gcn_numpy.backends.reference.conv2d` or ``conv_relu``, its blocks of
    output rows ``b0 <= block < b1``::

        xpad = the rows of x these blocks read, inside a border of p zeros
        for each block i0 .. i1-1 of output rows:
            out[i0:i1] = patches(xpad) @ W_win           # (positions, K), BLAS, in place
            if relu: delta = out + b > 0, out = delta * (out + b)

    Threads may take disjoint ranges of blocks of one image, each with its own ``xpad``.
    """
    CKK, K = W_win.shape
    Ho, Wo = out.shape[0], out.shape[1]
    lo, hi = b0 * plan.rows, min(Ho, b1 * plan.rows)
    s, p = plan.stride, plan.padding
    first, last = max(0, lo * s - p), min(x.shape[0], (hi - 1) * s + plan.kh - p)
    into_border_rows(x, p, own.xpad, first, last)  # the input rows the blocks read
    out_rows = out.reshape((Ho * Wo, K))
    delta_rows = delta.reshape((Ho * Wo, K)) if relu else delta[0]
    for i0 in range(lo, hi, plan.rows):
        i1 = min(Ho, i0 + plan.rows)
        m, q0 = (i1 - i0) * Wo, i0 * Wo
        P = own.P_buf[: m * CKK].reshape((m, CKK))
        r = out_rows[q0 : q0 + m]
        patches(own.xpad, plan.kh, plan.kw, plan.stride, i0, i1, Wo, P)
        np.dot(P, W_win, r)
        if relu:
            for q in range(m):
                for k in range(K):
                    pre = r[q, k] + b[k]
                    delta_rows[q0 + q, k] = pre > 0
                    r[q, k] = pre if pre > 0 else 0


@njit(cache=True, nogil=True)
def _deconvolve_image(G, W_rows, plan, out, own):
    """Top-down deconvolution, eq. (16), of one image's ``G`` ``(Ho, Wo, K)`` into ``out``
    ``(H, W, C)``: one image of :func:`gcn_numpy.backends.reference.conv_transpose`::

        xpad = zeros (H + 2p, W + 2p, C)
        ks = the active channels
        for each block i0 .. i1-1 of rows of G:
            P = G[i0:i1, :, ks] @ W_rows[ks]              # (positions, kh*kw*C), BLAS
            add_patches(P) into xpad                     # the filter copies add up
        out = xpad without its border
    """
    Ho, Wo, K = G.shape
    CKK = W_rows.shape[1]
    xpad = own.xpad
    xpad.fill(0)
    G_rows = G.reshape((Ho * Wo, K))
    channels = active_channels(G_rows)
    n = len(channels)
    if n < K:
        W_rows = W_rows[channels]
    for i0 in range(0, Ho if n else 0, plan.rows):
        i1 = min(Ho, i0 + plan.rows)
        m, q0 = (i1 - i0) * Wo, i0 * Wo
        gT = _active_block(G_rows, q0, m, channels, own.g_buf)
        P = own.P_buf[: m * CKK].reshape((m, CKK))
        np.dot(gT, W_rows, P)
        add_patches(P, plan.kh, plan.kw, plan.stride, i0, i1, Wo, xpad)
    out_of_border(xpad, plan.padding, out)


@njit(cache=True, nogil=True)
def _weight_grad_image(x, G, plan, own, dW_win, db):
    """Add one image's share of :func:`gcn_numpy.backends.reference.conv_weight_grad` to
    ``dW_win`` (``dW`` as a ``(kh*kw*C, K)`` matrix like ``W_win``) and to ``db``; ``x``
    ``(H, W, C)``, ``G`` ``(Ho, Wo, K)``::

        xpad = x inside a border of p zeros
        ks = the active channels
        for each block i0 .. i1-1 of rows of G:
            dW_win[:, ks] += patches(xpad).T @ G[i0:i1, :, ks]     # BLAS
            db[ks] += G[i0:i1, :, ks] summed over positions
    """
    Ho, Wo, K = G.shape
    CKK = dW_win.shape[0]
    G_rows = G.reshape((Ho * Wo, K))
    channels = active_channels(G_rows)
    n = len(channels)
    into_border(x, plan.padding, own.xpad)
    block = own.product.ravel()[: CKK * n].reshape((CKK, n))
    dW_active = dW_win if n == K else np.zeros((CKK, n), dtype=x.dtype)
    db_active = np.zeros(n, dtype=x.dtype)
    for i0 in range(0, Ho if n else 0, plan.rows):
        i1 = min(Ho, i0 + plan.rows)
        m, q0 = (i1 - i0) * Wo, i0 * Wo
        gT = _active_block(G_rows, q0, m, channels, own.g_buf)
        P = own.P_buf[: m * CKK].reshape((m, CKK))
        patches(own.xpad, plan.kh, plan.kw, plan.stride, i0, i1, Wo, P)
        np.dot(P.T, gT, block)
        dW_active += block
        for q in range(m):
            db_active += gT[q]
    for c in range(n):
        db[channels[c]] += db_active[c]
    if n < K:
        for c in range(n):
            dW_win[:, channels[c]] += dW_active[:, c]


# ------------------------------------------------ runs of images, one call each


@njit(cache=True, nogil=True)
def _forward_run(x, n0, n1, b0, b1, W_win, b, plan, relu, out, delta, own):
    """Images ``n0 <= n < n1`` of the bottom-up pass, their blocks of output rows ``b0 <=
    block < b1`` (:func:`_forward_image`)."""
    for n in range(n0, n1):
        _forward_image(x[n], W_win, b, plan, relu, out[n], delta[n if relu else 0], own, b0, b1)


@njit(cache=True, nogil=True)
def _deconvolve_run(G, n0, n1, W_rows, plan, out, own, delta, gated):
    """Images ``n0 <= n < n1`` of the top-down pass (:func:`_deconvolve_image`), then
    gated by ``delta`` if ``gated``."""
    for n in range(n0, n1):
        _deconvolve_image(G[n], W_rows, plan, out[n], own)
        if gated:
            gate_image(out, delta, n)


@njit(cache=True, nogil=True)
def _weight_grad_run(x, G, n0, n1, plan, own, dW_win, db):
    """One chunk's images ``n0 <= n < n1`` of the weight gradient, in image order
    (:func:`_weight_grad_image`)."""
    for n in range(n0, n1):
        _weight_grad_image(x[n], G[n], plan, own, dW_win, db)


# --------------------------------------------------------------- a layer's passes


def bottom_up(x, W, b, stride, padding, relu, out, delta):
    """One bottom-up layer into ``out`` (and ``delta`` with ``relu``), every array channels
    last: :func:`gcn_numpy.backends.numba.seam.conv_relu` by im2col, the images in runs
    over the threads.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)  # one 3 x 3 image, channels last
    >>> out, delta = np.empty((1, 2, 2, 1)), np.empty((1, 2, 2, 1), bool)
    >>> bottom_up(x, np.ones((1, 1, 2, 2)), np.array([-10.0]), 1, 0, True, out, delta)
    >>> out[0, :, :, 0], delta[0, :, :, 0]
    (array([[ 0.,  2.],
           [10., 14.]]), array([[False,  True],
           [ True,  True]]))
    """
    N, H, Wd, C = x.shape
    K, _, kh, kw = W.shape
    Ho, Wo = out.shape[1:3]
    plan = Blocks(kh, kw, stride, padding, rows_per_block(C * kh * kw, Ho, Wo, x.dtype))
    W_win = filter_columns(W)
    parts = threads.image_parts(N, -(-Ho // plan.rows))
    threads.each_task(
        len(parts),
        lambda i, own: _forward_run(x, *parts[i], W_win, b, plan, relu, out, delta, own),
        lambda: scratch(C, H, Wd, padding, C * kh * kw, plan.rows, Wo, 0, x.dtype),
        ("bottom_up", x.shape[1:], W.shape, stride, padding, "im2col", x.dtype),
    )


def top_down(G, W, stride, padding, out, delta, gated):
    """The top-down pass of one layer into ``out``, gated by ``delta`` if ``gated``, every
    array channels last: :func:`gcn_numpy.backends.numba.seam.conv_transpose` by im2col,
    leaving out the filters silent in each image.

    Examples
    --------
    >>> G = np.zeros((1, 2, 2, 1))
    >>> G[0, 1, 0, 0] = 2.0  # one copy of the filter, times 2, with its corner at (1, 0)
    >>> out = np.empty((1, 3, 3, 1))
    >>> top_down(G, np.ones((1, 1, 2, 2)), 1, 0, out, np.zeros((1, 1, 1, 1), bool), False)
    >>> out[0, :, :, 0]
    array([[0., 0., 0.],
           [2., 2., 0.],
           [2., 2., 0.]])
    """
    N, Ho, Wo, K = G.shape
    _, H, Wd, C = out.shape
    kh, kw = W.shape[2:]
    plan = Blocks(kh, kw, stride, padding, rows_per_block(C * kh * kw, Ho, Wo, out.dtype))
    W_rows = filter_rows(W)
    runs = threads.image_runs(N)
    threads.each_task(
        len(runs),
        lambda i, own: _deconvolve_run(G, *runs[i], W_rows, plan, out, own, delta, gated),
        lambda: scratch(C, H, Wd, padding, C * kh * kw, plan.rows, Wo, K, out.dtype),
        ("top_down", G.shape[1:], W.shape, stride, padding, (H, Wd), "im2col", out.dtype),
    )


def weight_grad(x, G, kernel_hw, stride, padding):
    """``(dW, db)`` of channels-last ``x`` and ``G`` by im2col, leaving out the filters
    silent in each image; each chunk of images (:func:`.threads.chunks`) adds into its own
    sum, in image order, and the sums are added in chunk order.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> dW, db = weight_grad(x, np.ones((1, 2, 2, 1)), (2, 2), 1, 0)
    >>> dW[0, 0], db  # each tap sums the inputs it meets
    (array([[ 8., 12.],
           [20., 24.]]), array([4.]))
    """
    (kh, kw), (N, H, Wd, C), (_, Ho, Wo, K) = kernel_hw, x.shape, G.shape
    dtype, window = x.dtype, kh * kw * C
    plan = Blocks(kh, kw, stride, padding, rows_per_block(window, Ho, Wo, dtype))
    chunks = threads.chunks(N)
    dW_each = np.zeros((len(chunks), window, K), dtype=dtype)
    db_each = np.zeros((len(chunks), K), dtype=dtype)
    threads.each_task(
        len(chunks),
        lambda i, own: _weight_grad_run(x, G, *chunks[i], plan, own, dW_each[i], db_each[i]),
        lambda: scratch(C, H, Wd, padding, window, plan.rows, Wo, K, dtype, product=True),
    )
    dW_win, db = dW_each.sum(axis=0), db_each.sum(axis=0)
    dW = dW_win.reshape(kh, kw, C, K).transpose(3, 2, 0, 1)
    return np.ascontiguousarray(dW), db
