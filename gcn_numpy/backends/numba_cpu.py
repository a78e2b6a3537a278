"""The Numba backend: hand-written CPU kernels around BLAS matrix products, float32 and float64.

The default backend. The functions and their conventions are those of
:mod:`gcn_numpy.backends.reference`, on NumPy arrays. Every kernel is compiled once per
dtype, and ``cache=True`` keeps the machine code on disk for the next process.

Design. A layer is an explicit im2col followed by a matrix product (BLAS, through Numba's
``np.dot``), one block of output rows of one image at a time. The image is copied channels
last, so that the window under output position ``x`` (what the filters ``w_{k,x}`` of eq.
11 meet there) is ``kh`` contiguous runs; ``P`` holds one window per row:

- bottom-up, eqs. (12)-(14): responses ``P @ Wt``, one row per position; bias, ReLU and
  ``delta`` in the loop that stores them;
- top-down, eq. (16): ``P = G.T @ Wk``, row ``x`` being the sum of the filters weighted
  by the coefficients ``G_k(x)``; :func:`_add_patches` adds the overlapping windows up;
- weight gradient: ``dWt += P.T @ G.T``, the correlation of ``G`` with the layer's input.

Filters with no active unit in an image (``G_k = 0`` everywhere) are left out of that
image's top-down product and gradient (:func:`_active_channels`). Single units are not:
with about half the units active, a kernel that skipped them ran slower than BLAS on the
dense product (measured in ``benchmarks/results_cpu.md``, as the other choices here). A
direct loop nest ran at 3-17 GFLOP/s per core against 28-72 for im2col and BLAS, and a
hand-written register-blocked product reached 55-65% of BLAS.

Threads: :func:`numba.get_num_threads` threads take the batch's images one at a time, each
image with its own buffers; BLAS runs one thread per call (:mod:`.numba_blas`). The
per-image kernels are plain ``nogil`` functions called from a thread pool: the same work
inside a ``prange`` loop took four times longer to compile, and a static split of the batch
lost a whole core's share whenever another process shared a core. The pointwise kernels
are single loops: memory-bound, they cost about 1% of a Langevin step, and a ``prange``
version was slower whenever another process used a core (measured 8 ms a call instead of
0.4 on the texture net's first layer).
"""

import concurrent.futures
import functools
import itertools

import numba
import numpy as np
from numba import njit

from .numba_blas import single_threaded
from .reference import output_size

name = "numba"
xp = np

BLOCK_BYTES = 2**22  # target size of ``P``: it stays in cache between its copy and product


def asarray(a, dtype):
    """Return ``a`` as a C-contiguous array of ``dtype`` (a copy only where needed)."""
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


def to_numpy(a):
    """Host NumPy view of a backend array (the identity here)."""
    return np.asarray(a)


# ------------------------------------------------------------- copies within one image
#
# One image's maps are copied channels last, ``(H + 2p, W + 2p, C)`` with a zero border,
# so that each row of a filter's window is one contiguous run of ``kw*C`` numbers. Flat
# offsets are unsigned (np.uint64) in the innermost loops: Numba then drops its test for
# negative indices, which would keep those loops from vectorising.


@njit(cache=True, nogil=True)
def _channels_last(x, p, xpad):
    """``xpad[i + p, j + p, c] = x[c, i, j]``: one image inside the zero border of ``xpad``."""
    C, H, W = x.shape
    for i in range(H):
        for j in range(W):
            for c in range(C):
                xpad[i + p, j + p, c] = x[c, i, j]


@njit(cache=True, nogil=True)
def _channels_first(xpad, p, x):
    """``x[c, i, j] = xpad[i + p, j + p, c]``: the interior of ``xpad``, channels first."""
    C, H, W = x.shape
    for c in range(C):
        for i in range(H):
            for j in range(W):
                x[c, i, j] = xpad[i + p, j + p, c]


@njit(cache=True, nogil=True)
def _patches(xpad, kh, kw, stride, i0, i1, Wo, P):
    """The window under every output position of rows ``i0 <= i < i1``, one per row of ``P``.

    Row ``q`` of ``P`` ``((i1 - i0)*Wo, kh*kw*C)`` is what the filters ``w_{k,x}`` meet at
    ``x = (i, j)``, ordered ``(u, v, c)``::

        for i in i0 .. i1-1, j in 0 .. Wo-1:
            q = (i - i0)*Wo + j
            for u in 0 .. kh-1:
                P[q, u*kw*C : (u+1)*kw*C] = xpad[i*s + u, j*s : j*s + kw, :]
    """
    Wp, C = xpad.shape[1], xpad.shape[2]
    src, dst = xpad.ravel(), P.ravel()
    run = np.uint64(kw * C)
    for i in range(i0, i1):
        for j in range(Wo):
            q = (i - i0) * Wo + j
            for u in range(kh):
                d = np.uint64((q * kh + u) * kw * C)
                e = np.uint64(((i * stride + u) * Wp + j * stride) * C)
                for a in range(run):
                    dst[d + a] = src[e + a]


@njit(cache=True, nogil=True)
def _add_patches(P, kh, kw, stride, i0, i1, Wo, xpad):
    """Add each row of ``P`` onto the window it came from: the adjoint of :func:`_patches`::

    for i in i0 .. i1-1, j in 0 .. Wo-1:
        q = (i - i0)*Wo + j
        for u in 0 .. kh-1:
            xpad[i*s + u, j*s : j*s + kw, :] += P[q, u*kw*C : (u+1)*kw*C]
    """
    Wp, C = xpad.shape[1], xpad.shape[2]
    src, dst = P.ravel(), xpad.ravel()
    run = np.uint64(kw * C)
    for i in range(i0, i1):
        for j in range(Wo):
            q = (i - i0) * Wo + j
            for u in range(kh):
                e = np.uint64((q * kh + u) * kw * C)
                d = np.uint64(((i * stride + u) * Wp + j * stride) * C)
                for a in range(run):
                    dst[d + a] += src[e + a]


@njit(cache=True, nogil=True)
def _active_channels(G_flat):
    """The channels ``k`` with some ``G_k(x) != 0`` in one image's ``(K, positions)`` map.

    A filter with no active unit in an image adds no copy of itself to ``B`` (eq. 16) and
    gets no gradient from that image: in a trained net whole filters fall silent (after
    120 iterations on a texture, 29 of the top layer's 30), and their work is skipped.
    """
    K, n_positions = G_flat.shape
    channels = np.empty(K, dtype=np.int64)
    count = 0
    for k in range(K):
        for q in range(n_positions):
            if G_flat[k, q] != 0:
                channels[count] = k
                count += 1
                break
    return channels[:count]


@njit(cache=True, nogil=True)
def _transposed_block(G_flat, q0, gT):
    """``gT[q, k] = G_flat[k, q0 + q]``: a block of ``m`` positions as an ``(m, K)`` matrix."""
    m, K = gT.shape
    for k in range(K):
        for q in range(m):
            gT[q, k] = G_flat[k, q0 + q]


# ------------------------------------------------------------- the layers, one image
#
# The filters enter as matrices with the window's ``(u, v, c)`` order: ``Wt[(u, v, c), k]
# = W[k, c, u, v]`` and its transpose ``Wk``. Each product is oriented as measured fastest
# with OpenBLAS on the texture net's layers (20-40% faster than the transposed ones).
# Scratch arrays are the calling thread's, reused from image to image: ``xpad`` (zero
# border), ``P_buf`` (``rows*Wo*kh*kw*C`` numbers) and ``g_buf`` (``rows*Wo*K``).


@njit(cache=True, nogil=True)
def _forward(x, Wt, b, kh, kw, stride, padding, rows, relu, out, delta, xpad, P_buf, g_buf):
    """Responses of eq. (12) of one image ``x`` ``(C, H, W)`` into ``out`` ``(K, Ho, Wo)``;
    with ``relu``, one bottom-up layer of eqs. (13)-(14): ``out = F`` and ``delta``::

        xpad = x, channels last, inside a border of p zeros
        for each block i0 .. i1-1 of output rows:
            r = patches(xpad) @ Wt                       # (positions, K), BLAS
            if relu: delta = r + b > 0, out[:, i0:i1] = delta * (r + b)
            else:    out[:, i0:i1] = r
    """
    CKK, K = Wt.shape
    Ho, Wo = out.shape[1], out.shape[2]
    _channels_last(x, padding, xpad)
    out_flat = out.reshape((K, Ho * Wo))
    delta_flat = delta.reshape((K, Ho * Wo)) if relu else delta[0]
    for i0 in range(0, Ho, rows):
        i1 = min(Ho, i0 + rows)
        m, q0 = (i1 - i0) * Wo, i0 * Wo
        P = P_buf[: m * CKK].reshape((m, CKK))
        r = g_buf[: m * K].reshape((m, K))
        _patches(xpad, kh, kw, stride, i0, i1, Wo, P)
        np.dot(P, Wt, r)
        for k in range(K):
            for q in range(m):
                if relu:
                    pre = r[q, k] + b[k]
                    delta_flat[k, q0 + q] = pre > 0
                    out_flat[k, q0 + q] = pre if pre > 0 else 0
                else:
                    out_flat[k, q0 + q] = r[q, k]


@njit(cache=True, nogil=True)
def _transpose(G, Wk, kh, kw, stride, padding, rows, out, xpad, P_buf, g_buf):
    """Top-down deconvolution, eq. (16), of one image's ``G`` ``(K, Ho, Wo)`` into ``out``
    ``(C, H, W)``::

        xpad = zeros (H + 2p, W + 2p, C)
        ks = the active channels
        for each block i0 .. i1-1 of rows of G:
            P = G[ks, i0:i1].T @ Wk[ks]                  # (positions, kh*kw*C), BLAS
            add_patches(P) into xpad                     # the filter copies add up
        out = xpad without its border, channels first
    """
    K, Ho, Wo = G.shape
    CKK = Wk.shape[1]
    xpad.fill(0)
    G_flat = G.reshape((K, Ho * Wo))
    channels = _active_channels(G_flat)
    n = len(channels)
    if n < K:
        G_flat, Wk = G_flat[channels], Wk[channels]
    for i0 in range(0, Ho if n else 0, rows):
        i1 = min(Ho, i0 + rows)
        m = (i1 - i0) * Wo
        gT = g_buf[: m * n].reshape((m, n))
        _transposed_block(G_flat, i0 * Wo, gT)
        P = P_buf[: m * CKK].reshape((m, CKK))
        np.dot(gT, Wk, P)
        _add_patches(P, kh, kw, stride, i0, i1, Wo, xpad)
    _channels_first(xpad, padding, out)


@njit(cache=True, nogil=True)
def _weight_grad(x, G, kh, kw, stride, padding, rows, xpad, P_buf, g_buf, product, dWt, db):
    """Add one image's share to ``dWt`` (``dW`` as a ``(kh*kw*C, K)`` matrix like ``Wt``)
    and to ``db``; ``x`` ``(C, H, W)``, ``G`` ``(K, Ho, Wo)``; ``product`` is scratch of
    ``dWt``'s size::

        xpad = x, channels last, inside a border of p zeros
        ks = the active channels
        for each block i0 .. i1-1 of rows of G:
            dWt[:, ks] += patches(xpad).T @ G[ks, i0:i1].T     # BLAS
            db[ks] += G[ks, i0:i1] summed over positions
    """
    K, Ho, Wo = G.shape
    CKK = dWt.shape[0]
    G_flat = G.reshape((K, Ho * Wo))
    channels = _active_channels(G_flat)
    n = len(channels)
    if n < K:
        G_flat = G_flat[channels]
    _channels_last(x, padding, xpad)
    block = product.ravel()[: CKK * n].reshape((CKK, n))
    dWt_active = dWt if n == K else np.zeros((CKK, n), dtype=x.dtype)
    db_active = np.zeros(n, dtype=x.dtype)
    for i0 in range(0, Ho if n else 0, rows):
        i1 = min(Ho, i0 + rows)
        m = (i1 - i0) * Wo
        gT = g_buf[: m * n].reshape((m, n))
        _transposed_block(G_flat, i0 * Wo, gT)
        P = P_buf[: m * CKK].reshape((m, CKK))
        _patches(xpad, kh, kw, stride, i0, i1, Wo, P)
        np.dot(P.T, gT, block)
        dWt_active += block
        for q in range(m):
            db_active += gT[q]
    for c in range(n):
        db[channels[c]] += db_active[c]
    if n < K:
        for c in range(n):
            dWt[:, channels[c]] += dWt_active[:, c]


# ------------------------------------------------------------------- pointwise kernels


@njit(cache=True, nogil=True)
def _gate(B, delta, G):
    """``G = B * delta`` element by element (flat, contiguous arrays)."""
    for i in range(G.size):
        G[i] = B[i] if delta[i] else 0


@njit(cache=True, nogil=True)
def _langevin(I, B, Z, half_eps2, sigma2, eps, out):
    """``out = I - half_eps2 * (I / sigma2 - B) + eps * Z`` element by element (flat)."""
    for i in range(out.size):
        out[i] = I[i] - half_eps2 * (I[i] / sigma2 - B[i]) + eps * Z[i]


# --------------------------------------------------------------------------- the seam


@functools.cache
def _pool(n_threads):
    """The thread pool of :func:`_each_image`, one per thread count."""
    return concurrent.futures.ThreadPoolExecutor(n_threads, thread_name_prefix="gcn_numba")


def _each_image(N, run, scratch):
    """``run(n, *own)`` for every image ``n < N``, on :func:`numba.get_num_threads` threads;
    ``own = scratch()`` is one thread's arrays, made once. Returns every thread's ``own``.

    Thread ``t`` takes the next image whenever it is done, so that a core shared with
    another process ends up with fewer images. BLAS runs one thread per call.
    """
    n_threads = min(numba.get_num_threads(), N)
    owned = [scratch() for _ in range(n_threads)]
    images = itertools.count()

    def work(own):
        while (n := next(images)) < N:
            run(n, *own)

    with single_threaded():
        if n_threads == 1:
            work(owned[0])
        else:
            for done in [_pool(n_threads).submit(work, own) for own in owned]:
                done.result()
    return owned


def _dtype(*arrays):
    dtype = np.result_type(*arrays)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"the numba backend computes in float32 or float64, not {dtype}")
    return dtype


def _rows_per_block(window, Ho, Wo, dtype):
    """Output rows per block: ``P``, ``window`` numbers per position, about BLOCK_BYTES."""
    return max(1, min(Ho, BLOCK_BYTES // (window * max(Wo, 1) * np.dtype(dtype).itemsize)))


def _scratch(C, H, W, padding, window, rows, Wo, K, dtype):
    """A thread's ``(xpad, P_buf, g_buf)`` for one layer (see the kernels above)."""
    return (
        np.zeros((H + 2 * padding, W + 2 * padding, C), dtype=dtype),
        np.empty(rows * Wo * window, dtype=dtype),
        np.empty(rows * Wo * K, dtype=dtype),
    )


def _responses(x, W, b, stride, padding, relu):
    """``(out, delta)`` of :func:`_forward` for the batch (``delta`` a dummy without relu)."""
    dtype = _dtype(x, W, b)
    x, W, b = asarray(x, dtype), asarray(W, dtype), asarray(b, dtype)
    N, _, H, Wd = x.shape
    K, C, kh, kw = W.shape
    Ho, Wo = output_size(H, kh, stride, padding), output_size(Wd, kw, stride, padding)
    out = np.empty((N, K, Ho, Wo), dtype=dtype)
    delta = np.empty((N, K, Ho, Wo) if relu else (1, 1, 1, 1), dtype=bool)
    if out.size:
        rows = _rows_per_block(C * kh * kw, Ho, Wo, dtype)
        Wt = np.ascontiguousarray(W.transpose(2, 3, 1, 0).reshape(kh * kw * C, K))
        _each_image(
            N,
            lambda n, *own: _forward(
                x[n], Wt, b, kh, kw, stride, padding, rows, relu, out[n], delta[n if relu else 0],
                *own,
            ),
            lambda: _scratch(C, H, Wd, padding, C * kh * kw, rows, Wo, K, dtype),
        )  # fmt: skip
    return out, delta


def conv2d(x, W, stride, padding):
    """Linear filter responses ``<w_{k,x}, F^{(l-1)} * I>``, eq. (12), without bias.

    Shapes as in :func:`gcn_numpy.backends.reference.conv2d`: ``(N, K, Ho, Wo)``.
    """
    return _responses(x, W, np.zeros(W.shape[0], W.dtype), stride, padding, relu=False)[0]


def conv_relu(x, W, b, stride, padding):
    """One bottom-up layer, eqs. (13)-(14): ``(F, delta)``, delta a bool array."""
    return _responses(x, W, b, stride, padding, relu=True)


def gate(B, delta):
    """Top-down coefficients ``B^{(l)}_k(x) * delta^{(l)}_{k,x}`` of eq. (16)."""
    B = np.ascontiguousarray(B)
    G = np.empty(B.shape, dtype=_dtype(B))
    _gate(B.ravel(), np.ascontiguousarray(delta, dtype=bool).ravel(), G.ravel())
    return G


def conv_transpose(G, W, stride, padding, in_hw):
    """Top-down deconvolution, eq. (16): ``B^{(l-1)} = sum_{k,x} G_k(x) w^{(l)}_{k,x}``.

    Shapes as in :func:`gcn_numpy.backends.reference.conv_transpose`: ``(N, C, H, W)``.
    """
    dtype = _dtype(G, W)
    G, W = asarray(G, dtype), asarray(W, dtype)
    N, K, Ho, Wo = G.shape
    _, C, kh, kw = W.shape
    H, Wd = in_hw
    out = np.empty((N, C, H, Wd), dtype=dtype)
    if out.size:
        rows = _rows_per_block(C * kh * kw, Ho, Wo, dtype)
        Wk = np.ascontiguousarray(W.transpose(0, 2, 3, 1).reshape(K, kh * kw * C))
        _each_image(
            N,
            lambda n, *own: _transpose(G[n], Wk, kh, kw, stride, padding, rows, out[n], *own),
            lambda: _scratch(C, H, Wd, padding, C * kh * kw, rows, Wo, K, dtype),
        )
    return out


def conv_weight_grad(x, G, kernel_hw, stride, padding):
    """Gradient of ``<G, conv2d(x, W) + b>`` in ``W`` and ``b``, summed over the batch.

    Returns ``(dW, db)`` of shapes ``(K, C, kh, kw)`` and ``(K,)``, as the reference.
    """
    dtype = _dtype(x, G)
    x, G = asarray(x, dtype), asarray(G, dtype)
    (kh, kw), (N, C, H, Wd), (_, K, Ho, Wo) = kernel_hw, x.shape, G.shape
    window = kh * kw * C
    dWt, db = np.zeros((window, K), dtype=dtype), np.zeros(K, dtype=dtype)
    if G.size:
        rows = _rows_per_block(window, Ho, Wo, dtype)

        def scratch():  # and the thread's product
            return _scratch(C, H, Wd, padding, window, rows, Wo, K, dtype) + (
                np.empty((window, K), dtype=dtype),
            )

        # Each image adds into its own slice, summed below in image order: the result
        # does not depend on which thread took which image (runs are reproducible).
        dWt_each, db_each = np.zeros((N, window, K), dtype=dtype), np.zeros((N, K), dtype=dtype)
        _each_image(
            N,
            lambda n, *own: _weight_grad(
                x[n], G[n], kh, kw, stride, padding, rows, *own, dWt_each[n], db_each[n]
            ),
            scratch,
        )
        dWt, db = dWt_each.sum(axis=0), db_each.sum(axis=0)
    dW = dWt.reshape(kh, kw, C, K).transpose(3, 2, 0, 1)
    return np.ascontiguousarray(dW), db


def standard_normal(rng, shape, dtype):
    """Gaussian white noise ``Z ~ N(0, 1)`` of ``shape`` drawn from the NumPy Generator ``rng``:
    the same draws as the reference backend's."""
    return rng.standard_normal(shape, dtype=dtype)


def langevin_step(I, B, Z, step_size, sigma):
    """One Langevin step, eq. (19): ``I - (eps^2 / 2) (I / sigma^2 - B) + eps Z``."""
    dtype = _dtype(I, B, Z)
    I, B, Z = (asarray(a, dtype) for a in (I, B, Z))
    out = np.empty(I.shape, dtype=dtype)
    _langevin(I.ravel(), B.ravel(), Z.ravel(), 0.5 * step_size**2, sigma**2, step_size, out.ravel())
    return out
