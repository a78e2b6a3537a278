"""The Numba backend: hand-written CPU kernels around BLAS matrix products, float32 and float64.

The default backend. The functions and their conventions are those of
:mod:`gcn_numpy.backends.reference`, on NumPy arrays; each seam function names the
reference function it implements. Every kernel is compiled once per dtype, and
``cache=True`` keeps the machine code on disk for the next process.

Two ways of computing a layer, chosen per pass by :func:`_algorithm`:

- **Winograd** (:mod:`.numba_winograd`): ``m x m`` output tiles from ``(m+r-1) x
  (m+r-1)`` input tiles, for square filters whose polyphase components are ``r x r``,
  ``2 <= r <= 5``: 4.6 times fewer multiply-adds than the direct sum for 5x5 filters
  (``m = 3``), 4 for 3x3 (``m = 4``); 2.8 and 2.25 with ``2 x 2`` tiles, which float32
  layers on many channels keep for accuracy (:func:`.numba_winograd.tile_size`). A
  stride-``s`` layer is a stride-1 layer on the ``s*s`` polyphase components of its input
  (:func:`_taps`): the texture net's 15x15 stride-3 first layer is a 5x5 one on 27 (color)
  channels. Bottom-up pass, top-down pass (for stride 1; the correlation of ``G`` with the
  flipped filters) and weight gradient, where the layer has enough channels.
- **im2col**, for the rest (the first layer's top-down pass, layers on few channels,
  other filter sizes): an explicit patch matrix ``P`` followed by one BLAS product per
  block of output rows:

  - bottom-up, eqs. (12)-(14): responses ``P @ W_win``, one row per position, written
    in place into the output; bias, ReLU and ``delta`` in one more loop over it;
  - top-down, eq. (16): ``P = G @ W_rows``, row ``x`` being the sum of the filters
    weighted by the coefficients ``G_k(x)``; :func:`_add_patches` adds the overlapping
    windows up;
  - weight gradient: ``dW_win += P.T @ G``, the correlation of ``G`` with the input.

  ``W_win`` is the filters as a ``(kh*kw*C, K)`` matrix, one column per filter, its rows
  in the order of :func:`_patches`; ``W_rows`` is its transpose, one row per filter.

Column order of the patches: a window is copied row ``u`` by row ``u``, each row as ``kw``
positions ``v`` of ``C`` channels, so column ``(u*kw + v)*C + c`` of ``P`` holds the input
under tap ``(u, v)`` of channel ``c``. The reference sums over the same taps in its loops
``for u, for v`` with the channels contracted inside (``einsum("kc,...")``): ``W_win``'s row
``(u*kw + v)*C + c`` is ``W[:, c, u, v]``, and the product visits the terms in that order.

Memory order: maps are shaped ``(N, C, H, W)`` as in the reference, and those the kernels
return are channels last in memory: an ``(N, H, W, C)`` C-contiguous array seen through
``transpose(0, 3, 1, 2)``. Every kernel works on the channels-last order (a filter's
window is then a few contiguous runs, a product's rows are positions), and takes such
arrays without a copy: one layer's output goes into the next layer's kernels as it is,
instead of being transposed on the way out and back on the way in (measured 10-20% of a
Winograd layer). Arrays in the usual order (the images, an array from elsewhere) are
copied channels last first. Values are the same whatever the order; NumPy operations on
the returned arrays work as on any other.

Filters with no active unit in an image (``G_k = 0`` everywhere) are left out of that
image's im2col top-down product and gradient (:func:`_active_channels`): in a trained net
whole filters fall silent. Single units are not: with about half the units active, a
kernel that skipped them ran slower than BLAS on the dense product
(``benchmarks/results_cpu.md``).

A mostly zero ``G`` (at most :data:`SPARSE_SHARE` of it non-zero: a trained net's top
layer) takes the sparse kernels, one window of multiply-adds per non-zero coefficient, in
the top-down pass and the weight gradient. Filters silent in the whole batch are left out
of the top-down pass and the weight gradient where enough of them are
(:func:`_active_subset`), and the Winograd transforms of the filters are remembered from
call to call (:func:`_transformed_filters`): a Langevin chain runs each layer 20 times per
learning iteration with the same weights.

Memory kept between calls: each layer's scratch arrays (:func:`_reused`) and the memory of
outputs the caller has let go of (:func:`_output`), so that a Langevin chain, which asks
for the same shapes at every step, does not map fresh memory and fault on every page of it
(3 ms of a 22 ms top-down pass at 64 px). :func:`release_scratch` frees it.

Threads: :func:`numba.get_num_threads` threads, the calling thread among them, take the
batch's images in runs, long first and single images at the end (:func:`_image_runs`; a
core shared with another process then simply does fewer), each with its own scratch
arrays; BLAS runs one thread per call (:mod:`.numba_blas`, safe when several threads of
the caller run kernels at once). The weight gradient is summed in a fixed order (per chunk
of images, chunks in order; :func:`_chunks`), so that results do not depend on which thread
took which image, nor on the thread count; its output transform runs on the same threads
once the chunks have ended (:func:`_each_task`'s ``then``). The per-image kernels are plain
``nogil`` functions called from a thread pool: the same work inside a ``prange`` loop took
four times longer to compile. The pointwise kernels are single loops: memory-bound, they
cost about 1% of a Langevin step. A boundary other than zeros is padded, and folded back,
by compiled loops too (:func:`pad_maps`, :func:`fold_maps`).
"""

import collections
import concurrent.futures
import contextlib
import functools
import itertools
import sys
import threading

import numba
import numpy as np
from numba import njit

from . import numba_winograd as wino
from .numba_blas import single_threaded
from .reference import output_size

name = "numba"
xp = np

BLOCK_BYTES = 2**22  # target size of the im2col ``P``: it stays in cache between copy and product


def asarray(a, dtype):
    """Return ``a`` as a C-contiguous array of ``dtype`` (a copy only where needed).

    See :func:`gcn_numpy.backends.reference.asarray`.
    """
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


def empty(shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype``: memory of an earlier output no
    longer held, where there is one (:func:`_output`).

    See :func:`gcn_numpy.backends.reference.empty`.
    """
    return _output(shape, dtype)


def to_numpy(a):
    """Host NumPy view of a backend array (the identity here).

    See :func:`gcn_numpy.backends.reference.to_numpy`.
    """
    return np.asarray(a)


# Winograd where the products are large enough (measured, 16 images on two threads, against
# im2col): the weight gradient from 128 channels in x out (4 x 32 5x5: 4.3 against 4.6 ms;
# the gray first layer, 9 x 100: 6.5 against 7.5 ms at 128 px); the other passes from 16
# channels in and 256 in x out (16 x 16 3x3: 2.7 against 3.5 ms; on 4 or 9 channels in
# im2col stayed faster, 5.6 against 6.3 ms for the gray first layer's bottom-up pass).
WINOGRAD_MIN_PAIRS_GRADIENT = 128
WINOGRAD_MIN_PAIRS = 256
WINOGRAD_MIN_INPUTS = 16


def _algorithm(C, K, kh, kw, stride, pass_):
    """``"winograd"`` or ``"im2col"`` for one pass (``"bottom_up"``, ``"top_down"``,
    ``"weight_grad"``) of a layer of ``K`` filters ``kh x kw`` on ``C`` channels (the tests
    force each in turn, so that both are checked on every shape they apply to).

    Winograd where it applies (:func:`_winograd_applies`) and the products are large
    enough (the thresholds above): on fewer channels the transforms and the short
    products cost more than they save. The top-down pass of a strided layer stays im2col:
    its gather form has only ``s*s*C`` outputs (27 for the texture net's first layer,
    1.35 times slower than im2col's scatter form)."""
    if not _winograd_applies(kh, kw, stride):
        return "im2col"
    if pass_ == "top_down":
        inputs, outputs = K, stride * stride * C
        if stride > 1:
            return "im2col"
    else:
        inputs, outputs = stride * stride * C, K
    if pass_ == "weight_grad":
        large = inputs * outputs >= WINOGRAD_MIN_PAIRS_GRADIENT
    else:
        large = inputs >= WINOGRAD_MIN_INPUTS and inputs * outputs >= WINOGRAD_MIN_PAIRS
    return "winograd" if large else "im2col"


def _winograd_applies(kh, kw, stride):
    """Whether :mod:`.numba_winograd` computes the layer: square filters whose polyphase
    components (:func:`_taps`) are 2x2 to 5x5, ``ceil(kh / stride)`` in its KERNELS."""
    return kh == kw and _components(kh, stride) in wino.KERNELS


def _components(kernel, stride):
    """``r``: the size of a stride-``stride`` filter's polyphase components."""
    return -(-kernel // stride)


def _taps(W, stride, flip):
    """The filters ``W`` ``(K, C, k, k)`` of a stride-``s`` layer as ``(r*r, I, O)``: tap
    ``(u, v)`` of the stride-1 layer on the ``s*s`` polyphase components of the input
    (:func:`.numba_winograd.split_channels_last`), ``W[k, c, s*u + a, s*v + b]`` (zero
    past ``k``) for channel ``(a*s + b)*C + c``.

    Bottom-up and weight gradient (not ``flip``): ``I = s*s*C`` channels in, ``O = K``
    out. Top-down (``flip``): the gather form, ``I = K`` and ``O = s*s*C``, taps flipped.
    """
    K, C, k, _ = W.shape
    s, r = stride, _components(k, stride)
    shape = (r * r, K, s * s * C) if flip else (r * r, s * s * C, K)
    taps = np.zeros(shape, dtype=W.dtype)
    _gather_taps(np.ascontiguousarray(W), s, r, flip, taps)
    return taps


@njit(cache=True, nogil=True)
def _gather_taps(W, s, r, flip, taps):
    """Fill the non-zero taps of :func:`_taps`."""
    K, C, k, _ = W.shape
    for c in range(C):
        for u in range(k):
            for v in range(k):
                a, b = u % s, v % s
                ch = (a * s + b) * C + c
                if flip:
                    t = (r - 1 - u // s) * r + (r - 1 - v // s)
                    for f in range(K):
                        taps[t, f, ch] = W[f, c, u, v]
                else:
                    t = (u // s) * r + v // s
                    for f in range(K):
                        taps[t, ch, f] = W[f, c, u, v]


# ------------------------------------------------------------- copies within one image
#
# One image's maps ``(H, W, C)`` are copied into ``xpad`` ``(H + 2p, W + 2p, C)`` with a zero
# border, so that each row of a filter's window is one contiguous run of ``kw*C`` numbers.
# Flat offsets are unsigned (np.uint64) in the innermost loops: Numba then drops its test
# for negative indices, which would keep those loops from vectorising.


@njit(cache=True, nogil=True)
def _copy_rows(src, s0, s_step, dst, d0, d_step, rows, run):
    """``dst[d0 + i*d_step + a] = src[s0 + i*s_step + a]`` for ``i < rows``, ``a < run``."""
    n = np.uint64(run)
    for i in range(rows):
        s = np.uint64(s0 + i * s_step)
        d = np.uint64(d0 + i * d_step)
        for a in range(n):
            dst[d + a] = src[s + a]


@njit(cache=True, nogil=True)
def _into_border(x, p, xpad):
    """``xpad[i + p, j + p, :] = x[i, j, :]``: one image inside the zero border of ``xpad``."""
    H, W, C = x.shape
    Wp = xpad.shape[1]
    _copy_rows(x.ravel(), 0, W * C, xpad.ravel(), (p * Wp + p) * C, Wp * C, H, W * C)


@njit(cache=True, nogil=True)
def _out_of_border(xpad, p, x):
    """``x[i, j, :] = xpad[i + p, j + p, :]``: the interior of ``xpad``."""
    H, W, C = x.shape
    Wp = xpad.shape[1]
    _copy_rows(xpad.ravel(), (p * Wp + p) * C, Wp * C, x.ravel(), 0, W * C, H, W * C)


@njit(cache=True, nogil=True)
def _windows(xpad, P, kh, kw, stride, i0, i1, Wo, adjoint):
    """Copy every output window of rows ``i0 <= i < i1`` of ``xpad`` into its row of ``P``,
    or with ``adjoint`` add each row of ``P`` back onto its window (see :func:`_patches`)."""
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
def _patches(xpad, kh, kw, stride, i0, i1, Wo, P):
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
def _add_patches(P, kh, kw, stride, i0, i1, Wo, xpad):
    """Add each row of ``P`` onto the window it came from: the adjoint of :func:`_patches`::

    for i in i0 .. i1-1, j in 0 .. Wo-1:
        q = (i - i0)*Wo + j
        for u in 0 .. kh-1:
            xpad[i*s + u, j*s : j*s + kw, :] += P[q, u*kw*C : (u+1)*kw*C]
    """
    _windows(xpad, P, kh, kw, stride, i0, i1, Wo, True)


@njit(cache=True, nogil=True)
def _active_channels(G_rows):
    """The channels ``k`` with some ``G_k(x) != 0`` in one image's ``(positions, K)`` map.

    A filter with no active unit in an image adds no copy of itself to ``B`` (eq. 16) and
    gets no gradient from that image: in a trained net whole filters fall silent (after
    120 iterations on a texture, 29 of the top layer's 30), and their work is skipped.
    The rows are read in blocks of 64, each with one branch-free vector loop, until every
    channel has been seen (a map with silent channels is read to its end: 92 us for the
    texture net's second layer at 64 px, 16 images, where a loop testing each entry took
    twice as long).
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
def _active_filters(G):
    """The filters ``k`` with some ``G[n, ..., k] != 0`` in a batch ``(N, Ho, Wo, K)``: the
    others add nothing to ``B`` and have a zero gradient. In a trained net most of a
    layer's filters can be silent on every chain (29 of the texture net's top 30 after 120
    iterations)."""
    return _active_channels(G.reshape((-1, G.shape[3])))


@njit(cache=True, nogil=True)
def _gather_channels(G, channels, out):
    """``out[..., c] = G[..., channels[c]]`` for channels-last maps (flat rows of ``K``)."""
    K, n = G.shape[-1], len(channels)
    src, dst = G.reshape((-1, K)), out.reshape((-1, n))
    for q in range(src.shape[0]):
        row, target = src[q], dst[q]
        for c in range(n):
            target[c] = row[channels[c]]


# non-zero coefficients in G, at most, for the sparse kernels: on the texture net's 3x3 layer
# at 64 px, 16 images, two threads, they took 0.9 against 1.7 ms (weight gradient) and 0.95
# against 1.4 (top-down) at 5% (the trained net's top layer), and were slower from about 8%
SPARSE_SHARE = 0.06
SUBSET_SHARE = 0.875  # filters active in the batch, at most: below, the kernels take them alone


def _active_subset(G):
    """``(active, subset)``: the filters active somewhere in the batch ``G`` ``(N, Ho, Wo,
    K)``, and whether the kernels are to take those alone (not where nearly all are
    active). A silent filter only adds zeros; leaving it out of the products saves work,
    but the im2col kernels need a copy of ``G`` on the active filters (:func:`_gathered`;
    0.67 ms with NumPy's indexing, 61 of 64 filters at 64 px: more than the 3 filters
    saved; see :data:`SUBSET_SHARE`), while the Winograd kernels gather them as they split
    each image's map into tiles (:func:`.numba_winograd.split_channels_last`): in a pass
    of the trained texture net at 64 px the copy had cost 0.3-0.4 ms a layer, on one
    thread, twice (top-down and weight gradient)."""
    K = G.shape[3]
    active = _active_filters(G) if G.size else np.zeros(0, dtype=np.int64)
    return active, 0 < len(active) <= SUBSET_SHARE * K


def _gathered(G, active):
    """``G[..., active]``, channels last (:func:`_gather_channels`)."""
    G_active = _output(G.shape[:3] + (len(active),), G.dtype)
    _gather_channels(G, active, G_active)
    return G_active


_ALL = np.zeros(0, dtype=np.int64)  # "channels" of the Winograd kernels: take them all


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


# ------------------------------------------------------- im2col layers, one image each
#
# Each product is oriented as measured fastest with OpenBLAS on the texture net's layers
# (20-40% faster than the transposed ones). Scratch arrays are the calling thread's, reused
# from image to image: ``xpad`` (zero border), ``P_buf`` (``rows*Wo*kh*kw*C`` numbers) and
# ``g_buf`` (``rows*Wo*K``).


@njit(cache=True, nogil=True)
def _forward_image(x, W_win, b, kh, kw, stride, padding, rows, relu, out, delta, xpad, P_buf):
    """Responses of eq. (12) of one image ``x`` ``(H, W, C)`` into ``out`` ``(Ho, Wo, K)``;
    with ``relu``, one bottom-up layer of eqs. (13)-(14): ``out = F`` and ``delta``. One
    image of :func:`gcn_numpy.backends.reference.conv2d` or ``conv_relu``::

        xpad = x inside a border of p zeros
        for each block i0 .. i1-1 of output rows:
            out[i0:i1] = patches(xpad) @ W_win           # (positions, K), BLAS, in place
            if relu: delta = out + b > 0, out = delta * (out + b)
    """
    CKK, K = W_win.shape
    Ho, Wo = out.shape[0], out.shape[1]
    _into_border(x, padding, xpad)
    out_rows = out.reshape((Ho * Wo, K))
    delta_rows = delta.reshape((Ho * Wo, K)) if relu else delta[0]
    for i0 in range(0, Ho, rows):
        i1 = min(Ho, i0 + rows)
        m, q0 = (i1 - i0) * Wo, i0 * Wo
        P = P_buf[: m * CKK].reshape((m, CKK))
        r = out_rows[q0 : q0 + m]
        _patches(xpad, kh, kw, stride, i0, i1, Wo, P)
        np.dot(P, W_win, r)
        if relu:
            for q in range(m):
                for k in range(K):
                    pre = r[q, k] + b[k]
                    delta_rows[q0 + q, k] = pre > 0
                    r[q, k] = pre if pre > 0 else 0


@njit(cache=True, nogil=True)
def _deconvolve_image(G, W_rows, kh, kw, stride, padding, rows, out, xpad, P_buf, g_buf):
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
    xpad.fill(0)
    G_rows = G.reshape((Ho * Wo, K))
    channels = _active_channels(G_rows)
    n = len(channels)
    if n < K:
        W_rows = W_rows[channels]
    for i0 in range(0, Ho if n else 0, rows):
        i1 = min(Ho, i0 + rows)
        m, q0 = (i1 - i0) * Wo, i0 * Wo
        gT = _active_block(G_rows, q0, m, channels, g_buf)
        P = P_buf[: m * CKK].reshape((m, CKK))
        np.dot(gT, W_rows, P)
        _add_patches(P, kh, kw, stride, i0, i1, Wo, xpad)
    _out_of_border(xpad, padding, out)


@njit(cache=True, nogil=True)
def _weight_grad_image(x, G, kh, kw, stride, padding, rows, xpad, P_buf, g_buf, product,
                       dW_win, db):  # fmt: skip
    """Add one image's share of :func:`gcn_numpy.backends.reference.conv_weight_grad` to
    ``dW_win`` (``dW`` as a ``(kh*kw*C, K)`` matrix like ``W_win``) and to ``db``; ``x``
    ``(H, W, C)``, ``G`` ``(Ho, Wo, K)``; ``product`` is scratch of ``dW_win``'s size::

        xpad = x inside a border of p zeros
        ks = the active channels
        for each block i0 .. i1-1 of rows of G:
            dW_win[:, ks] += patches(xpad).T @ G[i0:i1, :, ks]     # BLAS
            db[ks] += G[i0:i1, :, ks] summed over positions
    """
    Ho, Wo, K = G.shape
    CKK = dW_win.shape[0]
    G_rows = G.reshape((Ho * Wo, K))
    channels = _active_channels(G_rows)
    n = len(channels)
    _into_border(x, padding, xpad)
    block = product.ravel()[: CKK * n].reshape((CKK, n))
    dW_active = dW_win if n == K else np.zeros((CKK, n), dtype=x.dtype)
    db_active = np.zeros(n, dtype=x.dtype)
    for i0 in range(0, Ho if n else 0, rows):
        i1 = min(Ho, i0 + rows)
        m, q0 = (i1 - i0) * Wo, i0 * Wo
        gT = _active_block(G_rows, q0, m, channels, g_buf)
        P = P_buf[: m * CKK].reshape((m, CKK))
        _patches(xpad, kh, kw, stride, i0, i1, Wo, P)
        np.dot(P.T, gT, block)
        dW_active += block
        for q in range(m):
            db_active += gT[q]
    for c in range(n):
        db[channels[c]] += db_active[c]
    if n < K:
        for c in range(n):
            dW_win[:, channels[c]] += dW_active[:, c]


# ------------------------------------------------ sparse G: one window per coefficient
#
# In a trained net the top layer's coefficients are mostly zero (the texture net's 3x3
# layer after 120 iterations: 5% of delta^{(3)} on, 2% at 224 px): each non-zero G_k(x)
# then costs one window of kh*kw*C multiply-adds, against every tile's products in the
# dense kernels (see SPARSE_SHARE).


@njit(cache=True, nogil=True)
def _nonzero_share(G, most):
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


@njit(cache=True, nogil=True, fastmath={"contract"})
def _sparse_windows(G, kh, kw, stride, xpad, rows, adjoint, db):
    """For each non-zero ``G[i, j, k]``, positions in row order: ``rows[k] += G[i, j, k] *
    window(i, j)`` of ``xpad`` (taps ``(u, v, c)``, as :func:`_patches` orders a window)
    and ``db[k] += G[i, j, k]``; or, with ``adjoint``, ``window(i, j) += G[i, j, k] *
    rows[k]`` (a copy of filter ``k`` added onto the map, ``db`` untouched)."""
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
def _sparse_weight_grad_image(x, G, kh, kw, stride, padding, xpad, dW_rows, db):
    """Add one image's share of the weight gradient to ``dW_rows`` ``(K, kh*kw*C)`` and
    ``db``, one window per non-zero coefficient (:func:`_sparse_windows`)."""
    _into_border(x, padding, xpad)
    _sparse_windows(G, kh, kw, stride, xpad, dW_rows, False, db)


@njit(cache=True, nogil=True)
def _sparse_deconvolve_image(G, W_rows, kh, kw, stride, padding, out, xpad):
    """Top-down deconvolution, eq. (16), of one image's ``G`` ``(Ho, Wo, K)`` into ``out``
    ``(H, W, C)``: a copy of filter ``k`` (``W_rows[k]``) per non-zero ``G[i, j, k]``
    (:func:`_sparse_windows`)."""
    xpad.fill(0)
    _sparse_windows(G, kh, kw, stride, xpad, W_rows, True, W_rows[0, :0])
    _out_of_border(xpad, padding, out)


# ----------------------------------------------------- Winograd layers: out of the tiles


@njit(cache=True, nogil=True)
def _unsplit(ys, b, relu, out, delta):
    """``out[i, j, :] = ys[i, j % m, j // m, :] + b`` (``m = ys.shape[1]``, the tile size)
    for the ``(Ho, Wo, K)`` positions of ``out`` (the tiles' extra rows and columns
    dropped); with ``relu``, ``delta`` and ``out`` of eqs. (13)-(14) instead."""
    Ho, Wo, K = out.shape
    m = ys.shape[1]
    for i in range(Ho):
        for j in range(Wo):
            src, dst, on = ys[i, j % m, j // m], out[i, j], delta[i, j] if relu else delta[0, 0]
            for k in range(K):
                pre = src[k] + b[k]
                if relu:
                    on[k] = pre > 0
                    dst[k] = pre if pre > 0 else 0
                else:
                    dst[k] = pre


@njit(cache=True, nogil=True)
def _unsplit_phases(ys, stride, padding, out):
    """The top-down output of a stride-``s`` layer, ``out`` ``(H, W, C)``, from the gather
    form's ``ys``: ``out[y, x, c] = ys[I, J % m, J // m, (a*s + b)*C + c]`` where ``y + p =
    s*(I + p // s) + a`` and ``x + p = s*(J + p // s) + b``: output channel ``(a, b, c)`` of
    the correlation is polyphase component ``(a, b)`` of the padded ``B``."""
    H, W, C = out.shape
    s, first, m = stride, padding // stride, ys.shape[1]
    for y in range(H):
        I, a = (y + padding) // s - first, (y + padding) % s
        for x in range(W):
            J, b = (x + padding) // s - first, (x + padding) % s
            src, dst = ys[I, J % m, J // m], out[y, x]
            offset = (a * s + b) * C
            for c in range(C):
                dst[c] = src[offset + c]


# ------------------------------------------------------------------- pointwise kernels


@njit(cache=True, nogil=True)
def _gate(B, delta, G):
    """``G = B * delta`` element by element (flat, contiguous arrays): a product, as in the
    reference, so that a non-finite ``B`` where ``delta`` is 0 gives NaN there too."""
    for i in range(G.size):
        G[i] = B[i] * delta[i]


@njit(cache=True, nogil=True)
def _gate_image(out, delta, n):
    """Image ``n`` of the top-down output ``out`` gated in place by ``delta`` (same
    shapes, channels last)."""
    _gate(out[n].ravel(), delta[n].ravel(), out[n].ravel())


@njit(cache=True, nogil=True)
def _langevin(I, B, Z, half_eps2, sigma2, eps, out):
    """``out = I - half_eps2 * (I / sigma2 - B) + eps * Z`` element by element; 4-d arrays
    of one shape in any memory order, looped in the order of their axes (given as
    ``(N, H, W, C)`` views where ``B`` is channels last)."""
    N, C, H, W = out.shape
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    v = I[n, c, i, j]
                    out[n, c, i, j] = (
                        v - half_eps2 * (v / sigma2 - B[n, c, i, j]) + eps * Z[n, c, i, j]
                    )


# ---------------------------------------------------------------- runs of images
#
# A task of :func:`_each_task` takes a run of consecutive images (:func:`_image_runs`) and
# makes one call into compiled code for all of them: each call from Python costs 7-13 us
# of argument checks under the GIL, two or three calls an image (measured at 64 px, 16
# images on two threads: the texture net's layers 2.35 -> 2.16, 3.15 -> 2.97 and 1.26 ->
# 1.17 ms bottom-up).


@njit(cache=True, nogil=True)
def _correlate_run(x, n0, n1, shift, stride, U, BT, AT, rows, xs, V, M, rows_buf, out_buf, ys,
                   b, relu, out, delta):  # fmt: skip
    """Images ``n0 <= n < n1`` of the bottom-up pass in Winograd tiles
    (:func:`.numba_winograd.correlate_image`, then :func:`_unsplit`)."""
    for n in range(n0, n1):
        wino.correlate_image(x[n], _ALL, shift, stride, U, BT, AT, rows, xs, V, M, rows_buf,
                             out_buf, ys)  # fmt: skip
        _unsplit(ys, b, relu, out[n], delta[n if relu else 0])


@njit(cache=True, nogil=True)
def _forward_run(x, n0, n1, W_win, b, kh, kw, stride, padding, rows, relu, out, delta, xpad,
                 P_buf):  # fmt: skip
    """Images ``n0 <= n < n1`` of the bottom-up pass by im2col (:func:`_forward_image`)."""
    for n in range(n0, n1):
        _forward_image(x[n], W_win, b, kh, kw, stride, padding, rows, relu, out[n],
                       delta[n if relu else 0], xpad, P_buf)  # fmt: skip


@njit(cache=True, nogil=True)
def _correlate_top_down_run(G, n0, n1, channels, shift, U, BT, AT, rows, xs, V, M, rows_buf,
                            out_buf, ys, stride, padding, out, delta, gated):  # fmt: skip
    """Images ``n0 <= n < n1`` of the top-down pass in its gather form, Winograd tiles
    (:func:`.numba_winograd.correlate_image`, :func:`_unsplit_phases`) on the filters
    ``channels`` (all if empty), then gated by ``delta`` if ``gated``."""
    for n in range(n0, n1):
        wino.correlate_image(G[n], channels, shift, 1, U, BT, AT, rows, xs, V, M, rows_buf,
                             out_buf, ys)  # fmt: skip
        _unsplit_phases(ys, stride, padding, out[n])
        if gated:
            _gate_image(out, delta, n)


@njit(cache=True, nogil=True)
def _deconvolve_run(G, n0, n1, W_rows, kh, kw, stride, padding, rows, out, xpad, P_buf, g_buf,
                    delta, gated):  # fmt: skip
    """Images ``n0 <= n < n1`` of the top-down pass by im2col (:func:`_deconvolve_image`),
    then gated by ``delta`` if ``gated``."""
    for n in range(n0, n1):
        _deconvolve_image(G[n], W_rows, kh, kw, stride, padding, rows, out[n], xpad, P_buf,
                          g_buf)  # fmt: skip
        if gated:
            _gate_image(out, delta, n)


@njit(cache=True, nogil=True)
def _weight_grad_winograd_run(x, G, n0, n1, channels, padding, stride, BT, GG, rows, xs, gs, V,
                              T, rows_buf, g_buf, D, db_each):  # fmt: skip
    """One chunk's images ``n0 <= n < n1`` of the Winograd weight gradient, in image order
    (:func:`.numba_winograd.weight_grad_image`) on the filters ``channels`` of ``G`` (all
    if empty): ``D`` set by the first, then added to."""
    for n in range(n0, n1):
        db_each[n] = wino.weight_grad_image(x[n], G[n], channels, padding, stride, BT, GG, rows,
                                            xs, gs, V, T, rows_buf, g_buf, D, n == n0)  # fmt: skip


@njit(cache=True, nogil=True)
def _weight_grad_run(x, G, n0, n1, kh, kw, stride, padding, rows, xpad, P_buf, g_buf, product,
                     dW_win, db):  # fmt: skip
    """One chunk's images ``n0 <= n < n1`` of the im2col weight gradient, in image order
    (:func:`_weight_grad_image`)."""
    for n in range(n0, n1):
        _weight_grad_image(x[n], G[n], kh, kw, stride, padding, rows, xpad, P_buf, g_buf,
                           product, dW_win, db)  # fmt: skip


# ---------------------------------------------------------------------------- threads


def _thread_count():
    """Threads of the kernels: Numba's setting (:func:`numba.set_num_threads`)."""
    return numba.get_num_threads()


@functools.cache
def _pool(n_threads):
    """The helper threads of :func:`_each_task` (the caller and ``n_threads`` more), one
    pool per count."""
    return concurrent.futures.ThreadPoolExecutor(n_threads, thread_name_prefix="gcn_numba")


def _each_task(count, run, scratch, key=None, then=None):
    """``run(i, *own)`` for every task ``i < count``, on :func:`_thread_count` threads (the
    caller's among them); ``own = scratch()`` is one thread's arrays, made once, or kept
    from an earlier call with the same ``key`` (:func:`_reused`). ``then = (count2,
    run2)``: tasks ``run2(j)``, ``j < count2``, that start once every task of ``run`` has
    ended, on the same threads (a second call would wake the threads again, about 0.1 ms
    on two threads).

    Each thread takes the next task whenever it is done, so that a core shared with another
    process ends up with fewer tasks. BLAS runs one thread per call. Several threads of the
    caller may run kernels at once: each call waits for its own tasks only.
    """
    n_threads = max(1, min(_thread_count(), max(count, then[0] if then else 0)))
    tasks, later = itertools.count(), itertools.count()
    left, ended = [count], threading.Condition()

    def work(own):
        while (i := next(tasks)) < count:
            try:
                run(i, *own)
            finally:  # on an error too: the other threads then end their tasks, not wait
                with ended:
                    left[0] -= 1
                    ended.notify_all()
        if then is not None:
            with ended:  # every task is taken: those still running end
                ended.wait_for(lambda: left[0] == 0)
            while (j := next(later)) < then[0]:
                then[1](j)

    with _reused(key, scratch, n_threads) as owned, single_threaded():
        # the calling thread is one of the threads: it starts at once, where a pool thread
        # starts 60-90 us after the call and the caller wakes 50-100 us after the last
        # task (passes at 64 px took 2-6% less time than with pool threads alone)
        helpers = [_pool(n_threads - 1).submit(work, own) for own in owned[1:]]
        try:
            work(owned[0])
        finally:  # the scratch goes back only once no thread uses it
            concurrent.futures.wait(helpers)
        for done in helpers:
            done.result()  # a helper's error


_SPARE = collections.OrderedDict()  # key -> [scratch not in use, ...], recent last
_SPARE_KEYS = 64  # keys kept: 3 passes x 3 layers x a few sizes and dtypes
_SPARE_PER_KEY = 16  # sets kept per key: the threads of a few callers at once
_SPARE_LOCK = threading.Lock()


@contextlib.contextmanager
def _reused(key, make, count):
    """``count`` sets of scratch arrays ``make()``, given back for the next call with the
    same ``key`` when the block ends (none kept where ``key`` is None).

    New arrays cost more than their size: the memory of a large one is mapped afresh and
    each of its pages faults on first touch, about 2000 faults (2-3 ms on two threads) in
    a weight-gradient call of the texture net's second layer at 64 px, a third of the
    call. Whether NumPy's memory came back from the system depended on the calls before.

    ``key`` must determine everything about the arrays that the kernels rely on: their
    shapes, and, for arrays whose borders are zeros that the kernels never write (the
    padded and split inputs), the region they do write: the input's shape, padding and
    stride. A set is used by one call at a time; callers on several threads each take
    their own.
    """
    owned = []
    if key is not None:
        with _SPARE_LOCK:
            spare = _SPARE.get(key, [])
            owned = spare[:count]
            del spare[:count]
    owned += [make() for _ in range(count - len(owned))]
    try:
        yield owned
    finally:
        if key is not None:
            with _SPARE_LOCK:
                spare = _SPARE.setdefault(key, [])
                spare.extend(owned[: _SPARE_PER_KEY - len(spare)])
                _SPARE.move_to_end(key)
                while len(_SPARE) > _SPARE_KEYS:
                    _SPARE.popitem(last=False)


_OUTPUTS = collections.OrderedDict()  # (shape, dtype) -> [memory of outputs], recent last
_OUTPUTS_BYTES = 2**28  # kept at most, in all
_OUTPUTS_PER_KEY = 8  # a pass holds up to 3 maps of one shape at once (F, G, B of a layer)


def _holders(kept, i):
    return sys.getrefcount(kept[i])


_UNHELD = _holders([np.empty(0)], 0)  # the count of an array only ``kept`` holds


def _output(shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype`` for a kernel's output: the memory
    of an earlier output of the same shape once nothing outside holds it any longer, else
    new memory (kept for later, at most :data:`_OUTPUTS_BYTES` in all).

    Why: new memory faults on first touch, page by page; a top-down pass of the texture
    net at 64 px writes about 10 MB of maps and spent 3 ms of its 22 faulting (1.6 us a
    fault on this 2-core VM), every call, because the memory freed after a call went
    back to the system. A Langevin chain asks for the same shapes at every step.

    Safety: the array handed out is a view of the kept one, and every NumPy view of it,
    direct or not, holds a reference to the kept array (its ``base``); its reference
    count is back to what ``_OUTPUTS`` alone gives only when no view of it is alive
    anywhere. Any other holder (a traceback, a view kept by the caller) keeps it out of
    use.
    """
    dtype = np.dtype(dtype)
    key = (tuple(shape), dtype.str)
    with _SPARE_LOCK:
        kept = _OUTPUTS.get(key, [])
        for i in range(len(kept)):
            if _holders(kept, i) == _UNHELD:
                _OUTPUTS.move_to_end(key)
                return kept[i].view()
    a = np.empty(shape, dtype=dtype)
    if a.nbytes <= _OUTPUTS_BYTES // 4:
        with _SPARE_LOCK:
            kept = _OUTPUTS.setdefault(key, [])
            if len(kept) < _OUTPUTS_PER_KEY:
                kept.append(a)
            _OUTPUTS.move_to_end(key)
            total = sum(b.nbytes for arrays in _OUTPUTS.values() for b in arrays)
            while total > _OUTPUTS_BYTES:
                _, dropped = _OUTPUTS.popitem(last=False)
                total -= sum(b.nbytes for b in dropped)
    return a.view()


def release_scratch():
    """Free the memory kept between calls: scratch arrays (:func:`_reused`: a few MB per
    layer and size, at most :data:`_SPARE_KEYS` layers and sizes) and the memory of
    outputs no longer in use (:func:`_output`, at most :data:`_OUTPUTS_BYTES`)."""
    with _SPARE_LOCK:
        _SPARE.clear()
        _OUTPUTS.clear()


OUTPUT_PAIRS = 512  # filter-channel pairs per thread of the gradient's output transform, at least
CHUNKS = 4  # of the weight gradient's batch: 8 made the final sum cost 0.3 ms more at 64 px


def _chunks(N):
    """The weight gradient's chunks of images ``[(start, stop), ...]``: each chunk is summed
    by one thread in image order, the chunks' sums are added in chunk order. The chunks
    depend on ``N`` alone, so that the result does not depend on the threads."""
    size = -(-N // CHUNKS)
    return [(start, min(N, start + size)) for start in range(0, N, size)]


RUNS_SHARE = 2  # a run takes 1 / (RUNS_SHARE * threads) of the images left, at least one


def _image_runs(N):
    """Runs of consecutive images ``[(start, stop), ...]``, the tasks of the per-image
    kernels, one call of compiled code each (see :func:`_correlate_run`): long runs first,
    then shorter ones, down to single images at the end (16 images on two threads: 4, 3,
    3, 2, 1, 1, 1, 1), so that a thread slowed down by another process waits for the
    others at most one image's time. On a quiet machine this took the same time as runs
    of two images throughout (within 1% on passes at 64 px); single images, one call each,
    1-4% more."""
    return _runs(N, RUNS_SHARE * _thread_count())


@functools.lru_cache(maxsize=64)
def _runs(N, share):
    runs, start = [], 0
    while start < N:
        stop = start + max(1, -(-(N - start) // share))
        runs.append((start, stop))
        start = stop
    return tuple(runs)


def _dtype(*arrays):
    dtype = np.result_type(*arrays)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"the numba backend computes in float32 or float64, not {dtype}")
    return dtype


def _channels_last(a, dtype):
    """``a`` ``(N, C, H, W)`` as a C-contiguous ``(N, H, W, C)`` array of ``dtype``: a view
    where ``a`` is already channels last in memory (a kernel's output), else a copy."""
    a = np.asarray(a)
    last = a.transpose(0, 2, 3, 1)
    if last.dtype == dtype and last.flags.c_contiguous:
        return last
    copy = _output(last.shape, dtype)
    floats = (np.float32, np.float64)
    if a.shape[1] <= FEW_CHANNELS and a.dtype in floats and copy.dtype in floats:
        _copy_channels_last(a, copy)
    else:
        copy[...] = last
    return copy


FEW_CHANNELS = 16  # images: the compiled copy below; maps of more channels: NumPy's


@njit(cache=True, nogil=True)
def _copy_channels_last(a, out):
    """``out[n, i, j, c] = a[n, c, i, j]``, read in the order of ``a``'s channels: for 16
    color images of 64 x 64, 72 us against NumPy's 236 (1.0 against 2.8 ms at 224 px); on
    100 channels NumPy's order was the faster."""
    N, C, H, W = a.shape
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    out[n, i, j, c] = a[n, c, i, j]


def _shaped(last):
    """The ``(N, C, H, W)`` view of a channels-last ``(N, H, W, C)`` array."""
    return last.transpose(0, 3, 1, 2)


def _rows_per_block(window, Ho, Wo, dtype):
    """Output rows per block: ``P``, ``window`` numbers per position, about BLOCK_BYTES."""
    return max(1, min(Ho, BLOCK_BYTES // (window * max(Wo, 1) * np.dtype(dtype).itemsize)))


def _scratch(C, H, W, padding, window, rows, Wo, K, dtype):
    """A thread's ``(xpad, P_buf, g_buf)`` for one im2col layer (see the kernels above)."""
    return (
        np.zeros((H + 2 * padding, W + 2 * padding, C), dtype=dtype),
        np.empty(rows * Wo * window, dtype=dtype),
        np.empty(rows * Wo * K, dtype=dtype),
    )


class _Tiling:
    """Sizes and scratch of the Winograd kernels for one layer: ``C`` channels in, ``K``
    out, ``r x r`` filters, an ``Ho x Wo`` map of outputs."""

    def __init__(self, C, K, r, Ho, Wo, dtype):
        self.m = wino.tile_size(r, C, dtype)
        self.C, self.r, self.n, self.dtype = C, r, r + self.m - 1, dtype
        self.K = K
        self.th, self.tw = wino.tiles(Ho, Wo, self.m)
        self.rows = wino.block_rows(self.th, self.tw)
        self.BT, self.AT, self.GW, self.GG, self.AW = wino.matrices(r, dtype, self.m)

    def input_scratch(self):
        """``(xs, V, rows_buf)``: the split input (zero border) and the input transform's."""
        xs_shape = wino.split_shape(self.th, self.tw, self.n, self.C, self.m)
        block = self.n * self.n * self.rows * self.tw
        return (
            np.zeros(xs_shape, dtype=self.dtype),
            np.empty(block * self.C, dtype=self.dtype),
            np.empty(self.n * int(np.prod(xs_shape[1:])), dtype=self.dtype),
        )

    def correlate_scratch(self):
        """A thread's scratch of :func:`.numba_winograd.correlate_image`."""
        xs, V, rows_buf = self.input_scratch()
        block = self.n * self.n * self.rows * self.tw
        return (
            xs,
            V,
            np.empty(block * self.K, dtype=self.dtype),
            rows_buf,
            np.empty(self.m * self.n * self.tw * self.K, dtype=self.dtype),
            np.empty((self.m * self.th, self.m, self.tw, self.K), dtype=self.dtype),
        )

    def filters(self, taps):
        """``U`` ``(n*n, I, K)`` (:func:`.numba_winograd.filter_transform`) of the filters
        ``taps`` ``(r*r, I, O)`` (:func:`_taps`), zero past ``O`` if ``K`` is larger."""
        rr, I, O = taps.shape
        if O < self.K:
            taps = np.concatenate([taps, np.zeros((rr, I, self.K - O), dtype=taps.dtype)], 2)
        U = np.empty((self.n * self.n, I, self.K), dtype=self.dtype)
        wino.filter_transform(taps.reshape(rr, -1), self.GW, U.reshape(self.n * self.n, -1))
        return U


_FILTERS = collections.OrderedDict()  # (flip, stride, K, dtype, shape) -> [(W, U)], recent last
_FILTERS_KEPT = 16
_FILTERS_LOCK = threading.Lock()


@njit(cache=True, nogil=True)
def _same_bits_flat(a, b):
    same = True
    for i in range(a.size):  # no early exit: one vector loop
        same &= a[i] == b[i]
    return same


def _same_bits(a, b):
    """Whether two C-contiguous float arrays of one shape and dtype are equal bit for bit
    (half the time of ``np.array_equal`` on the texture net's 5x5 layer, 15 against 27
    us, without its temporary array)."""
    bits = np.int32 if a.dtype.itemsize == 4 else np.int64
    return _same_bits_flat(a.reshape(-1).view(bits), b.reshape(-1).view(bits))


def _transformed_filters(tiling, W, stride, flip):
    """``tiling.filters(_taps(W, stride, flip))``, remembered for the last few filters.

    A Langevin chain calls the same layers with the same weights many times (20 times per
    learning iteration), and the transform cost 0.2 ms a call for the texture net's 5x5
    layer, serially, against about 3 ms for the whole layer on two threads. An entry is
    used only for weights equal to the ones it was made from, bit for bit (a copy is
    kept, so that weights changed in place are not mistaken for the old ones).
    """
    key = (flip, stride, tiling.m, tiling.K, W.dtype.str, W.shape)
    with _FILTERS_LOCK:
        for W_seen, U in _FILTERS.get(key, ()):
            if _same_bits(W_seen, W):
                _FILTERS.move_to_end(key)
                return U
    U = tiling.filters(_taps(W, stride, flip))
    with _FILTERS_LOCK:
        _FILTERS[key] = [(W.copy(), U)] + _FILTERS.get(key, [])[:1]
        _FILTERS.move_to_end(key)
        while len(_FILTERS) > _FILTERS_KEPT:
            _FILTERS.popitem(last=False)
    return U


def _padded(K):
    """Outputs of the bottom-up Winograd products: ``K`` or, where that adds at most 1/8,
    the next multiple of 16 (OpenBLAS's float32 kernels take 16 columns at a time: the
    texture net's top layer, 30 filters, ran 9% faster padded to 32 at 64 px; the top-down
    pass's 100 outputs padded to 112 ran slower, and stay as they are)."""
    up = -(-K // 16) * 16
    return up if up - K <= K // 8 else K


def _responses(x, W, b, stride, padding, relu):
    """``(out, delta)`` of one bottom-up layer for the batch, channels last (``delta`` a
    dummy without ``relu``)."""
    dtype = _dtype(x, W, b)
    x, W, b = _channels_last(x, dtype), asarray(W, dtype), asarray(b, dtype)
    N, H, Wd, C = x.shape
    K, _, kh, kw = W.shape
    Ho, Wo = output_size(H, kh, stride, padding), output_size(Wd, kw, stride, padding)
    out = _output((N, Ho, Wo, K), dtype)
    delta = _output((N, Ho, Wo, K) if relu else (1, 1, 1, 1), bool)
    if not out.size:
        return _shaped(out), _shaped(delta)
    algorithm = _algorithm(C, K, kh, kw, stride, "bottom_up")
    runs = _image_runs(N)
    key = ("bottom_up", x.shape[1:], W.shape, stride, padding, algorithm, dtype)
    if algorithm == "winograd":
        s = stride
        tiling = _Tiling(s * s * C, _padded(K), _components(kh, s), Ho, Wo, dtype)
        key += (tiling.m,)  # the scratch's sizes
        U = _transformed_filters(tiling, W, s, flip=False)

        def run(i, *own):
            _correlate_run(x, *runs[i], padding, s, U, tiling.BT, tiling.AT, tiling.rows, *own,
                           b, relu, out, delta)  # fmt: skip

        _each_task(len(runs), run, tiling.correlate_scratch, key)
    else:
        rows = _rows_per_block(C * kh * kw, Ho, Wo, dtype)
        W_win = np.ascontiguousarray(W.transpose(2, 3, 1, 0).reshape(kh * kw * C, K))
        _each_task(
            len(runs),
            lambda i, xpad, P_buf, _: _forward_run(
                x, *runs[i], W_win, b, kh, kw, stride, padding, rows, relu, out, delta, xpad,
                P_buf,
            ),
            lambda: _scratch(C, H, Wd, padding, C * kh * kw, rows, Wo, 0, dtype),
            key,
        )  # fmt: skip
    return _shaped(out), _shaped(delta)


def conv2d(x, W, stride, padding):
    """Linear filter responses ``<w_{k,x}, F^{(l-1)} * I>``, eq. (12), without bias.

    See :func:`gcn_numpy.backends.reference.conv2d` (shapes: ``(N, K, Ho, Wo)``; returned
    channels last in memory).

    Optimizations: Winograd F(m x m, r x r) tiles for square filters whose polyphase
    components are 2x2 to 5x5 and enough channels (:func:`_algorithm`), else im2col blocks
    that stay in cache and one BLAS product each, written in place into the output; no
    transposes between layers (channels last); images spread over threads, one BLAS
    thread each.
    """
    return _responses(x, W, np.zeros(W.shape[0], W.dtype), stride, padding, relu=False)[0]


def conv_relu(x, W, b, stride, padding):
    """One bottom-up layer, eqs. (13)-(14): ``(F, delta)``, delta a bool array.

    See :func:`gcn_numpy.backends.reference.conv_relu` (both returned channels last in
    memory).

    Optimizations: those of :func:`conv2d`, with bias, ReLU and ``delta`` computed in the
    loop that stores the responses (no second pass over the maps).
    """
    return _responses(x, W, b, stride, padding, relu=True)


@njit(cache=True, nogil=True)
def _pad_run(x, n0, n1, rows, cols, out):
    """Images ``n0 <= n < n1``: ``out[n, p, q, :] = x[n, rows[p], cols[q], :]``."""
    for n in range(n0, n1):
        for p in range(len(rows)):
            src_row, dst_row = x[n, rows[p]], out[n, p]
            for q in range(len(cols)):
                src, dst = src_row[cols[q]], dst_row[q]
                for c in range(len(dst)):
                    dst[c] = src[c]


@njit(cache=True, nogil=True)
def _fold_run(a, n0, n1, rows, cols, before, tmp, out, delta, gated):
    """Images ``n0 <= n < n1`` of :func:`fold_maps`: the padded rows added onto their
    sources in ``tmp`` (``(H, Wp, C)``), then the padded columns, each in increasing order
    (the order of :func:`gcn_numpy.boundary.fold`, so that the sums round the same); with
    ``gated``, the result times ``delta``."""
    _, H, W, C = out.shape
    Hp, Wp = a.shape[1], a.shape[2]
    for n in range(n0, n1):
        image, result = a[n], out[n]
        for i in range(H):
            src, dst = image[before + i].ravel(), tmp[i].ravel()
            for e in range(Wp * C):
                dst[e] = src[e]
        for p in range(Hp):
            if before <= p < before + H:
                continue
            src, dst = image[p].ravel(), tmp[rows[p]].ravel()
            for e in range(Wp * C):
                dst[e] += src[e]
        for i in range(H):
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
    padded by a boundary (:func:`gcn_numpy.boundary.sources` gives ``rows`` and ``cols``),
    in one compiled pass on the kernels' threads (returned channels last in memory).

    See :func:`gcn_numpy.boundary.pad`, whose copies, NumPy slices on one thread, took 1.4
    s of the paper's texture run's 4.35 s iteration at 224 px (stage 3, reflecting
    padding, with the folds below). The model uses these where a backend has them.
    """
    dtype = _dtype(x)
    x = _channels_last(x, dtype)
    N, H, W, C = x.shape
    rows, cols = _check_sources(rows, H, "rows"), _check_sources(cols, W, "columns")
    out = _output((N, len(rows), len(cols), C), dtype)
    runs = _image_runs(N)
    _each_task(len(runs), lambda i: _pad_run(x, *runs[i], rows, cols, out), tuple)
    return _shaped(out)


def fold_maps(a, rows, cols, before, in_hw, delta=None):
    """The adjoint of :func:`pad_maps`: each padded pixel of ``a`` ``(N, C, Hp, Wp)`` added
    onto the pixel ``(rows[p], cols[q])`` it copies, for an unpadded map of ``in_hw``
    whose rows and columns start at ``before`` in ``a``; with ``delta``, the result times
    ``delta`` (the coefficients ``G`` of the layer below, as :func:`gate`).

    See :func:`gcn_numpy.boundary.fold`: the same sums in the same order, bit for bit.
    """
    dtype = _dtype(a)
    a = _channels_last(a, dtype)
    N, Hp, Wp, C = a.shape
    H, W = in_hw
    rows, cols = _check_sources(rows, H, "rows"), _check_sources(cols, W, "columns")
    if len(rows) != Hp or len(cols) != Wp or not 0 <= before <= min(Hp - H, Wp - W):
        raise ValueError(f"maps of {Hp} x {Wp} are not {H} x {W} padded from {before}")
    inner = np.arange(before, before + H), np.arange(before, before + W)
    if np.any(rows[inner[0]] != np.arange(H)) or np.any(cols[inner[1]] != np.arange(W)):
        raise ValueError("the sources of the unpadded rows and columns must be themselves")
    out = _output((N, H, W, C), dtype)
    gated = delta is not None
    if gated:
        delta = _channels_last(delta, bool)
        if delta.shape != out.shape:
            raise ValueError(f"delta of shape {_shaped(delta).shape}, the maps are "
                             f"{_shaped(out).shape}")  # fmt: skip
    runs = _image_runs(N)
    _each_task(
        len(runs),
        lambda i, tmp: _fold_run(
            a, *runs[i], rows, cols, before, tmp, out, delta if gated else _NO_DELTA, gated
        ),  # fmt: skip
        lambda: (np.empty((H, Wp, C), dtype=dtype),),
        ("fold", a.shape[1:], (H, W), dtype),
    )
    return _shaped(out)


def gate(B, delta):
    """Top-down coefficients ``B^{(l)}_k(x) * delta^{(l)}_{k,x}`` of eq. (16).

    See :func:`gcn_numpy.backends.reference.gate` (returned channels last in memory).

    Optimizations: one compiled loop, no temporary arrays; ``B`` and ``delta`` from the
    kernels (channels last) are read without copies.
    """
    dtype = _dtype(B)
    B = np.asarray(B)
    if B.ndim != 4:
        G = np.empty(B.shape, dtype=dtype)
        _gate(asarray(B, dtype).ravel(), asarray(delta, bool).ravel(), G.ravel())
        return G
    B, delta = _channels_last(B, dtype), _channels_last(delta, bool)
    G = _output(B.shape, dtype)
    _gate(B.ravel(), delta.ravel(), G.ravel())
    return _shaped(G)


def conv_transpose(G, W, stride, padding, in_hw, delta=None):
    """Top-down deconvolution, eq. (16): ``B^{(l-1)} = sum_{k,x} G_k(x) w^{(l)}_{k,x}``;
    with ``delta``, ``G^{(l-1)} = B^{(l-1)} * delta``.

    See :func:`gcn_numpy.backends.reference.conv_transpose` (shapes: ``(N, C, H, W)``;
    returned channels last in memory).

    Optimizations: the filters silent in the whole batch are left out
    (:func:`_active_subset`). For stride 1 and filters 2x2 to 5x5 with enough channels
    (:func:`_algorithm`), the gather form (each output position sums the filters' taps over
    the ``G`` around it: the correlation of ``G``, padded by ``r - 1 - p``, with the flipped
    filters) in Winograd tiles, so that no overlapping copies are added up; else im2col's
    scatter form, one BLAS product per block of positions and the windows added up in cache,
    leaving out the filters that are silent in the image. With ``delta``, each image is
    gated as soon as its thread has it, while it is in cache (:func:`gate` took another
    0.25-0.3 ms a layer at 64 px, on one thread).
    """
    dtype = _dtype(G, W)
    G, W = _channels_last(G, dtype), asarray(W, dtype)
    H, Wd = in_hw
    out = _output((G.shape[0], H, Wd, W.shape[1]), dtype)  # each kernel writes all of it
    if delta is not None:
        delta = _channels_last(delta, bool)
        if delta.shape != out.shape:
            raise ValueError(f"delta of shape {_shaped(delta).shape}, the maps are "
                             f"{_shaped(out).shape}")  # fmt: skip
    if out.size and G.size and _nonzero_share(G, SPARSE_SHARE) <= SPARSE_SHARE:
        _sparse_conv_transpose(G, W, stride, padding, out, delta)
        return _shaped(out)
    active, subset = _active_subset(G)
    if not out.size or not len(active):
        out.fill(0)  # and so is out * delta
        return _shaped(out)
    # chosen for the whole layer: with few filters left, the work on the other side (the
    # C channels' transforms or windows) decides, and Winograd's is the smaller (the top
    # layer at 128 px with 6 of its 30 filters active, 16 chains: 5.8 ms, 12.5 with im2col)
    K, C, kh, kw = W.shape
    algorithm = _algorithm(C, K, kh, kw, stride, "top_down")
    channels = _ALL
    if subset:
        W = np.ascontiguousarray(W[active])
        if algorithm == "winograd":
            channels = active  # gathered as the tiles are split
        else:
            G = _gathered(G, active)
    (N, Ho, Wo, _), K = G.shape, W.shape[0]
    runs = _image_runs(N)
    gated = delta is not None
    gate_by = delta if gated else _NO_DELTA
    key = ("top_down", G.shape[1:], W.shape, stride, padding, in_hw, algorithm, dtype)
    if algorithm == "winograd":
        s, r = stride, _components(kh, stride)
        first = padding // s  # the polyphase grid's first row holding an output row
        Hq, Wq = (H + padding + s - 1) // s - first, (Wd + padding + s - 1) // s - first
        tiling = _Tiling(K, s * s * C, r, Hq, Wq, dtype)
        key += (tiling.m,)  # the scratch's sizes
        U = _transformed_filters(tiling, W, s, flip=True)

        def run(i, *own):
            _correlate_top_down_run(G, *runs[i], channels, r - 1 - first, U, tiling.BT,
                                    tiling.AT, tiling.rows, *own, s, padding, out, gate_by,
                                    gated)  # fmt: skip

        _each_task(len(runs), run, tiling.correlate_scratch, key)
    else:
        rows = _rows_per_block(C * kh * kw, Ho, Wo, dtype)
        W_rows = _filter_rows(W)

        def run(i, *own):
            _deconvolve_run(G, *runs[i], W_rows, kh, kw, stride, padding, rows, out, *own,
                            gate_by, gated)  # fmt: skip

        _each_task(
            len(runs), run, lambda: _scratch(C, H, Wd, padding, C * kh * kw, rows, Wo, K, dtype),
            key,
        )  # fmt: skip
    return _shaped(out)


def _filter_rows(W):
    """The filters ``W`` ``(K, C, kh, kw)`` as ``W_rows`` ``(K, kh*kw*C)``, one row per
    filter, its taps ordered ``(u, v, c)`` as :func:`_patches` orders a window."""
    K, C, kh, kw = W.shape
    return np.ascontiguousarray(W.transpose(0, 2, 3, 1).reshape(K, kh * kw * C))


_NO_DELTA = np.zeros((1, 1, 1, 1), dtype=bool)  # the compiled runs' delta when not gated


def _padded_scratch(H, W, padding, C, dtype):
    """A thread's ``(xpad,)``: one image's maps inside a zero border (the sparse kernels)."""
    return (np.zeros((H + 2 * padding, W + 2 * padding, C), dtype=dtype),)


def _sparse_conv_transpose(G, W, stride, padding, out, delta):
    """:func:`conv_transpose` of a mostly zero ``G`` (channels last) into ``out``, one
    image per task (:func:`_sparse_deconvolve_image`)."""
    N, H, Wd, C = out.shape
    kh, kw = W.shape[2:]
    W_rows = _filter_rows(W)

    def run(n, xpad):
        _sparse_deconvolve_image(G[n], W_rows, kh, kw, stride, padding, out[n], xpad)
        if delta is not None:
            _gate_image(out, delta, n)

    _each_task(
        N,
        run,
        lambda: _padded_scratch(H, Wd, padding, C, out.dtype),
        ("sparse_top_down", G.shape[1:], W.shape, stride, padding, (H, Wd), out.dtype),
    )


def conv_weight_grad(x, G, kernel_hw, stride, padding):
    """Gradient of ``<G, conv2d(x, W) + b>`` in ``W`` and ``b``, summed over the batch.

    See :func:`gcn_numpy.backends.reference.conv_weight_grad`: returns ``(dW, db)`` of
    shapes ``(K, C, kh, kw)`` and ``(K,)``.

    Optimizations: the filters silent in the whole batch are left out
    (:func:`_active_subset`; their gradient is 0). For square filters whose polyphase
    components are 2x2 to 5x5 with enough channels (:func:`_algorithm`), Winograd F(r x r, m
    x m) on the same input tiles as the bottom-up pass, the sum over positions and images
    done in the transform domain (one output transform per call); else im2col blocks and one
    BLAS product each, leaving out the filters that are silent in the image. Images spread
    over threads; the sum's order is fixed (:func:`_chunks`).
    """
    dtype = _dtype(x, G)
    x, G = _channels_last(x, dtype), _channels_last(G, dtype)
    K = G.shape[3]
    if G.size and x.size and _nonzero_share(G, SPARSE_SHARE) <= SPARSE_SHARE:
        return _sparse_weight_grad(x, G, kernel_hw, stride, padding)
    active, subset = _active_subset(G)
    # chosen for the whole layer, as in conv_transpose (same layer: 9.8 ms, 17.5 with im2col)
    algorithm = _algorithm(x.shape[3], K, *kernel_hw, stride, "weight_grad")
    if len(active) and not subset:  # a silent filter's gradient comes out exactly 0
        return _weight_grad(x, G, _ALL, kernel_hw, stride, padding, algorithm)
    dW = np.zeros((K, x.shape[3]) + tuple(kernel_hw), dtype=dtype)
    db = np.zeros(K, dtype=dtype)
    if len(active):
        channels = active  # the Winograd kernels gather them as the tiles are split
        if algorithm != "winograd":
            G, channels = _gathered(G, active), _ALL
        dW[active], db[active] = _weight_grad(x, G, channels, kernel_hw, stride, padding,
                                              algorithm)  # fmt: skip
    return dW, db


def _sparse_weight_grad(x, G, kernel_hw, stride, padding):
    """:func:`conv_weight_grad` of a mostly zero ``G`` (channels last), the images in the
    fixed chunks of :func:`_chunks` (:func:`_sparse_weight_grad_image`)."""
    (kh, kw), (N, H, Wd, C), K = kernel_hw, x.shape, G.shape[3]
    chunks = _chunks(N)
    dW_each = np.zeros((len(chunks), K, kh * kw * C), dtype=x.dtype)
    db_each = np.zeros((len(chunks), K), dtype=x.dtype)

    def run(i, xpad):
        start, stop = chunks[i]
        for n in range(start, stop):
            _sparse_weight_grad_image(x[n], G[n], kh, kw, stride, padding, xpad, dW_each[i],
                                      db_each[i])  # fmt: skip

    _each_task(
        len(chunks),
        run,
        lambda: _padded_scratch(H, Wd, padding, C, x.dtype),
        ("sparse_weight_grad", x.shape[1:], kernel_hw, stride, padding, x.dtype),
    )
    dW_rows, db = dW_each.sum(axis=0), db_each.sum(axis=0)
    return np.ascontiguousarray(dW_rows.reshape(K, kh, kw, C).transpose(0, 3, 1, 2)), db


def _weight_grad(x, G, channels, kernel_hw, stride, padding, algorithm):
    """:func:`conv_weight_grad` of channels-last arrays of one dtype, ``G`` not empty, on
    its filters ``channels`` (Winograd; all if empty)."""
    dtype = x.dtype
    (kh, kw), (N, H, Wd, C), (_, Ho, Wo, K) = kernel_hw, x.shape, G.shape
    K = len(channels) or K
    chunks = _chunks(N)
    key = ("weight_grad", x.shape, G.shape, K, kernel_hw, stride, padding, algorithm, dtype)
    if algorithm == "winograd":
        s, r = stride, _components(kh, stride)
        tiling = _Tiling(s * s * C, K, r, Ho, Wo, dtype)
        key += (tiling.m,)  # the scratch's sizes
        nf = tiling.n * tiling.n
        # D is (C x K) per frequency: with the texture net's first layer (27 polyphase
        # channels, 100 filters) that product ran at 131 GFLOP/s, (K x C) at 98
        D_shape = (len(chunks), nf, s * s * C, K)
        db_each = np.zeros((N, K), dtype=dtype)

        def scratch():
            xs, V, rows_buf = tiling.input_scratch()
            block = nf * tiling.rows * tiling.tw * K
            return (
                xs,
                np.zeros((tiling.m * tiling.th, tiling.m, tiling.tw, K), dtype=dtype),
                V,
                np.empty(block, dtype=dtype),
                rows_buf,
                np.empty(tiling.m * tiling.n * tiling.tw * K, dtype=dtype),
            )

        # The chunks' sum and the output transform by ranges of filter-channel pairs, once
        # the chunks have ended, on the same threads (_each_task's then). On one thread
        # after the chunks it took 0.9 ms of the 5x5 layer's 4.7 in a pass at 64 px; as a
        # second call on two threads 0.47 against 0.35 ms on one; a transform per chunk,
        # then a sum of the chunks' taps, 4.2 against 4.0 ms for the whole layer.
        pairs = K * s * s * C
        parts = max(1, min(_thread_count(), pairs // OUTPUT_PAIRS))
        cuts = np.linspace(0, pairs, parts + 1).astype(int)
        dW_t = np.empty((r, r, pairs), dtype=dtype)

        def run(i, *own):
            _weight_grad_winograd_run(x, G, *chunks[i], channels, padding, s, tiling.BT,
                                      tiling.GG, tiling.rows, *own, D_each[i], db_each)  # fmt: skip

        def transform(part):
            D_pairs = D_each.reshape(len(chunks), nf, pairs)
            wino.gradient_output_transform(D_pairs, tiling.AW, cuts[part], cuts[part + 1], dW_t)

        with _reused(key + ("D",), lambda: np.empty(D_shape, dtype=dtype), 1) as (D_each,):
            _each_task(len(chunks), run, scratch, key, then=(parts, transform))
        # tap (u, v) of channel (a, b, c) is W[k, c, s*u + a, s*v + b] (see _taps)
        phases = dW_t.reshape(r, r, s, s, C, K).transpose(5, 4, 0, 2, 1, 3)
        dW = phases.reshape(K, C, r * s, r * s)[:, :, :kh, :kw]
        return np.ascontiguousarray(dW), db_each.sum(axis=0)
    window = kh * kw * C
    rows = _rows_per_block(window, Ho, Wo, dtype)

    def scratch():  # and the thread's product
        return _scratch(C, H, Wd, padding, window, rows, Wo, K, dtype) + (
            np.empty((window, K), dtype=dtype),
        )

    # Each chunk adds its images into its own slice, in image order; the slices are summed
    # below in chunk order: the result does not depend on the threads.
    dW_each = np.zeros((len(chunks), window, K), dtype=dtype)
    db_each = np.zeros((len(chunks), K), dtype=dtype)

    def run(i, *own):
        _weight_grad_run(x, G, *chunks[i], kh, kw, stride, padding, rows, *own, dW_each[i],
                         db_each[i])  # fmt: skip

    _each_task(len(chunks), run, scratch)
    dW_win, db = dW_each.sum(axis=0), db_each.sum(axis=0)
    dW = dW_win.reshape(kh, kw, C, K).transpose(3, 2, 0, 1)
    return np.ascontiguousarray(dW), db


def standard_normal(rng, shape, dtype):
    """Gaussian white noise ``Z ~ N(0, 1)`` of ``shape`` drawn from the NumPy Generator ``rng``:
    the same draws as the reference backend's.

    See :func:`gcn_numpy.backends.reference.standard_normal`.
    """
    return rng.standard_normal(shape, dtype=dtype)


def langevin_step(I, B, Z, step_size, sigma):
    """One Langevin step, eq. (19): ``I - (eps^2 / 2) (I / sigma^2 - B) + eps Z``.

    See :func:`gcn_numpy.backends.reference.langevin_step`.

    Optimizations: one compiled loop, no temporary arrays; ``B`` from
    :func:`conv_transpose` (channels last) read in place, and the new ``I`` returned in
    the same order (channels last in memory), so that the next step's first layer reads
    it without a copy.
    """
    dtype = _dtype(I, B, Z)
    I, Z, B = np.asarray(I), np.asarray(Z), np.asarray(B)
    half_eps2, sigma2 = 0.5 * step_size**2, sigma**2
    if B.ndim == 4 and B.dtype == dtype and B.shape == I.shape:
        last = B.transpose(0, 2, 3, 1)
        if last.flags.c_contiguous:  # loop in that order, and write in it
            out = _output(last.shape, dtype)
            I_last = I.astype(dtype, copy=False).transpose(0, 2, 3, 1)
            Z_last = Z.astype(dtype, copy=False).transpose(0, 2, 3, 1)
            _langevin(I_last, last, Z_last, half_eps2, sigma2, step_size, out)
            return _shaped(out)
    I, Z = asarray(I, dtype), asarray(Z, dtype)
    out = _output(I.shape, dtype)
    B = asarray(B, dtype).reshape(I.shape)
    _langevin(I.reshape(1, 1, 1, -1), B.reshape(1, 1, 1, -1), Z.reshape(1, 1, 1, -1),
              half_eps2, sigma2, step_size, out.reshape(1, 1, 1, -1))  # fmt: skip
    return out
