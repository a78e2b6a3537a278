"""The Numba backend: hand-written CPU kernels around BLAS matrix products, float32 and float64.

The default backend. The functions and their conventions are those of
:mod:`gcn_numpy.backends.reference`, on NumPy arrays. Every kernel is compiled once per
dtype, and ``cache=True`` keeps the machine code on disk for the next process.

Design. A layer is an explicit im2col followed by a matrix product (BLAS, through Numba's
``np.dot``), one block of output rows of one image at a time:

- bottom-up, eqs. (12)-(14): ``cols = im2col(x)`` of shape ``(C*kh*kw, rows*Wo)``; the
  responses ``W_mat @ cols``; bias, ReLU and ``delta`` in the loop that stores them;
- top-down, eq. (16): ``cols = W_mat.T @ G``, each coefficient ``G_k(x)`` times its
  filter ``w_k`` (a basis function, eq. 11); ``col2im`` adds the overlapping copies up;
- weight gradient: ``dW += G @ cols.T``, the correlation of ``G`` with the layer's input.

Measured on the texture net's layers (``benchmarks/results_cpu.md``): a direct loop nest ran
at 1-2 GFLOP/s per core against 25-50 for this, and a hand-written register-blocked product
in Numba reached 55-65% of BLAS. Row blocks keep ``cols`` near :data:`BLOCK_BYTES`, in cache
between im2col and the product.

Threads: the batch is split between :func:`numba.get_num_threads` threads, image ``n`` going
to thread ``n % n_threads``, each with its own buffers. The per-thread kernels are plain
``nogil`` functions started from a thread pool: the same work inside a ``prange`` loop took
four times longer to compile. BLAS runs one thread per call
(:mod:`gcn_numpy.backends.numba_blas`). The pointwise kernels are ``prange`` loops.
"""

import concurrent.futures
import functools

import numba
import numpy as np
from numba import njit, prange

from .numba_blas import single_threaded
from .reference import output_size

name = "numba"
xp = np

BLOCK_BYTES = 2**21  # target size of one block of the column matrix


def asarray(a, dtype):
    """Return ``a`` as a C-contiguous array of ``dtype`` (a copy only where needed)."""
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


def to_numpy(a):
    """Host NumPy view of a backend array (the identity here)."""
    return np.asarray(a)


# ---------------------------------------------------------------- copies of one image
#
# Flat offsets are unsigned (np.uint64) in the innermost loops: Numba then drops its test
# for negative indices, which would keep those loops from vectorising.


@njit(cache=True, nogil=True)
def _im2col(xpad, kh, kw, stride, i0, i1, Wo, cols):
    """The input samples met by every filter tap at output rows ``i0 <= i < i1``.

    ``xpad`` is one image with its zero border, ``(C, H + 2p, W + 2p)``; ``cols`` has shape
    ``(C*kh*kw, (i1 - i0)*Wo)``::

        for c, u, v:                              # one row of cols per tap
            for i in i0 .. i1-1, j in 0 .. Wo-1:
                cols[(c*kh + u)*kw + v, (i - i0)*Wo + j] = xpad[c, i*s + u, j*s + v]
    """
    C, Hp, Wp = xpad.shape
    src, dst = xpad.ravel(), cols.ravel()
    m = (i1 - i0) * Wo
    s = np.uint64(stride)
    for c in range(C):
        for u in range(kh):
            for v in range(kw):
                row = (c * kh + u) * kw + v
                for i in range(i0, i1):
                    d = np.uint64(row * m + (i - i0) * Wo)
                    e = np.uint64((c * Hp + i * stride + u) * Wp + v)
                    for j in range(np.uint64(Wo)):
                        dst[d + j] = src[e + j * s]


@njit(cache=True, nogil=True)
def _col2im(cols, kh, kw, stride, i0, i1, Wo, outpad):
    """Add ``cols`` onto the padded maps ``outpad``: the adjoint of :func:`_im2col`::

    for c, u, v:
        for i in i0 .. i1-1, j in 0 .. Wo-1:
            outpad[c, i*s + u, j*s + v] += cols[(c*kh + u)*kw + v, (i - i0)*Wo + j]
    """
    C, Hp, Wp = outpad.shape
    src, dst = cols.ravel(), outpad.ravel()
    m = (i1 - i0) * Wo
    s = np.uint64(stride)
    for c in range(C):
        for u in range(kh):
            for v in range(kw):
                row = (c * kh + u) * kw + v
                for i in range(i0, i1):
                    e = np.uint64(row * m + (i - i0) * Wo)
                    d = np.uint64((c * Hp + i * stride + u) * Wp + v)
                    for j in range(np.uint64(Wo)):
                        dst[d + j * s] += src[e + j]


@njit(cache=True, nogil=True)
def _pad(x, p, xpad):
    """Copy one image's maps ``x`` ``(C, H, W)`` inside the zero border of ``xpad``."""
    C, H, W = x.shape
    for c in range(C):
        for i in range(H):
            for j in range(W):
                xpad[c, i + p, j + p] = x[c, i, j]


@njit(cache=True, nogil=True)
def _unpad(xpad, p, x):
    """Copy the interior of ``xpad`` ``(C, H + 2p, W + 2p)`` into ``x`` ``(C, H, W)``."""
    C, H, W = x.shape
    for c in range(C):
        for i in range(H):
            for j in range(W):
                x[c, i, j] = xpad[c, i + p, j + p]


@njit(cache=True, nogil=True)
def _block(G_n, q0, g):
    """``g = G_n[:, q0 : q0 + m]``, a block of positions as a contiguous ``(K, m)`` matrix."""
    K, m = g.shape
    for k in range(K):
        for q in range(m):
            g[k, q] = G_n[k, q0 + q]


# ------------------------------------------------------ the layers, one thread's images


@njit(cache=True, nogil=True)
def _forward(x, Wm, b, kh, kw, stride, padding, rows, relu, out, delta, t, n_threads):
    """Responses of eq. (12) into ``out``; with ``relu``, one bottom-up layer of eqs.
    (13)-(14): ``out = F`` and ``delta``.

    ``Wm`` is ``W`` as a ``(K, C*kh*kw)`` matrix; ``out`` has shape ``(N, K, Ho, Wo)``::

        for n = t, t + n_threads, ...:
            xpad = x[n] inside a border of p zeros
            for each block i0 .. i1-1 of output rows:
                r = Wm @ im2col(xpad)                     # (K, (i1-i0)*Wo), BLAS
                if relu: delta = r + b > 0, out[n, :, i0:i1] = delta * (r + b)
                else:    out[n, :, i0:i1] = r
    """
    N, C, H, W = x.shape
    K, CKK = Wm.shape
    Ho, Wo = out.shape[2], out.shape[3]
    xpad = np.zeros((C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    col_buf = np.empty(CKK * rows * Wo, dtype=x.dtype)
    r_buf = np.empty(K * rows * Wo, dtype=x.dtype)
    for n in range(t, N, n_threads):
        _pad(x[n], padding, xpad)
        out_n = out[n].reshape((K, Ho * Wo))
        delta_n = delta[n].reshape((K, Ho * Wo)) if relu else delta[0, 0]
        for i0 in range(0, Ho, rows):
            i1 = min(Ho, i0 + rows)
            m, q0 = (i1 - i0) * Wo, i0 * Wo
            cols = col_buf[: CKK * m].reshape((CKK, m))
            r = r_buf[: K * m].reshape((K, m))
            _im2col(xpad, kh, kw, stride, i0, i1, Wo, cols)
            np.dot(Wm, cols, r)
            for k in range(K):
                for q in range(m):
                    if relu:
                        pre = r[k, q] + b[k]
                        delta_n[k, q0 + q] = pre > 0
                        out_n[k, q0 + q] = pre if pre > 0 else 0
                    else:
                        out_n[k, q0 + q] = r[k, q]


@njit(cache=True, nogil=True)
def _transpose(G, Wm, kh, kw, stride, padding, rows, out, t, n_threads):
    """Top-down deconvolution, eq. (16), into ``out`` of shape ``(N, C, H, W)``::

    for n = t, t + n_threads, ...:
        outpad = zeros (C, H + 2p, W + 2p)
        for each block i0 .. i1-1 of rows of G:
            cols = Wm.T @ G[n, :, i0:i1]              # (C*kh*kw, (i1-i0)*Wo), BLAS
            col2im(cols) into outpad                  # the filter copies add up
        out[n] = outpad without its border
    """
    N, K, Ho, Wo = G.shape
    C, H, W = out.shape[1], out.shape[2], out.shape[3]
    CKK = Wm.shape[1]
    outpad = np.empty((C, H + 2 * padding, W + 2 * padding), dtype=out.dtype)
    col_buf = np.empty(CKK * rows * Wo, dtype=out.dtype)
    g_buf = np.empty(K * rows * Wo, dtype=out.dtype)
    for n in range(t, N, n_threads):
        outpad.fill(0)
        G_n = G[n].reshape((K, Ho * Wo))
        for i0 in range(0, Ho, rows):
            i1 = min(Ho, i0 + rows)
            m = (i1 - i0) * Wo
            g = g_buf[: K * m].reshape((K, m))
            _block(G_n, i0 * Wo, g)
            cols = col_buf[: CKK * m].reshape((CKK, m))
            np.dot(Wm.T, g, cols)
            _col2im(cols, kh, kw, stride, i0, i1, Wo, outpad)
        _unpad(outpad, padding, out[n])


@njit(cache=True, nogil=True)
def _weight_grad(x, G, kh, kw, stride, padding, rows, dW_parts, db_parts, t, n_threads):
    """Thread ``t``'s part of ``dW`` (a ``(K, C*kh*kw)`` matrix) and ``db``, batch sums::

    for n = t, t + n_threads, ...:
        xpad = x[n] inside a border of p zeros
        for each block i0 .. i1-1 of rows of G:
            dW_parts[t] += G[n, :, i0:i1] @ im2col(xpad).T     # BLAS
            db_parts[t] += G[n, :, i0:i1] summed over positions
    """
    N, C, H, W = x.shape
    K, Ho, Wo = G.shape[1], G.shape[2], G.shape[3]
    CKK = dW_parts.shape[2]
    dW, db = dW_parts[t], db_parts[t]
    xpad = np.zeros((C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    col_buf = np.empty(CKK * rows * Wo, dtype=x.dtype)
    g_buf = np.empty(K * rows * Wo, dtype=x.dtype)
    block_dW = np.empty((K, CKK), dtype=x.dtype)
    for n in range(t, N, n_threads):
        _pad(x[n], padding, xpad)
        G_n = G[n].reshape((K, Ho * Wo))
        for i0 in range(0, Ho, rows):
            i1 = min(Ho, i0 + rows)
            m = (i1 - i0) * Wo
            g = g_buf[: K * m].reshape((K, m))
            _block(G_n, i0 * Wo, g)
            cols = col_buf[: CKK * m].reshape((CKK, m))
            _im2col(xpad, kh, kw, stride, i0, i1, Wo, cols)
            np.dot(g, cols.T, block_dW)
            for k in range(K):
                db[k] += g[k].sum()
                for a in range(CKK):
                    dW[k, a] += block_dW[k, a]


# ------------------------------------------------------------------- pointwise kernels


@njit(parallel=True, cache=True)
def _gate(B, delta, G):
    """``G = B * delta`` element by element (flat, contiguous arrays)."""
    for i in prange(G.size):
        G[i] = B[i] if delta[i] else 0


@njit(parallel=True, cache=True)
def _langevin(I, B, Z, half_eps2, sigma2, eps, out):
    """``out = I - half_eps2 * (I / sigma2 - B) + eps * Z`` element by element (flat)."""
    for i in prange(out.size):
        out[i] = I[i] - half_eps2 * (I[i] / sigma2 - B[i]) + eps * Z[i]


# --------------------------------------------------------------------------- the seam


@functools.cache
def _pool(n_threads):
    return concurrent.futures.ThreadPoolExecutor(n_threads, thread_name_prefix="gcn_numba")


def _in_threads(kernel, *args):
    """``kernel(*args, t, n_threads)`` for every thread ``t``, all at once; one BLAS thread
    per call."""
    n_threads = numba.get_num_threads()
    with single_threaded():
        if n_threads == 1:
            kernel(*args, 0, 1)
            return
        runs = [_pool(n_threads).submit(kernel, *args, t, n_threads) for t in range(n_threads)]
        for run in runs:
            run.result()


def _dtype(*arrays):
    dtype = np.result_type(*arrays)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"the numba backend computes in float32 or float64, not {dtype}")
    return dtype


def _rows_per_block(col_rows, Wo, dtype):
    """Output rows per block so that ``cols`` (``col_rows`` rows) is about BLOCK_BYTES."""
    return max(1, BLOCK_BYTES // (col_rows * max(Wo, 1) * np.dtype(dtype).itemsize))


def _responses(x, W, b, stride, padding, relu):
    dtype = _dtype(x, W, b)
    x, W, b = asarray(x, dtype), asarray(W, dtype), asarray(b, dtype)
    N, _, H, Wd = x.shape
    K, C, kh, kw = W.shape
    Ho, Wo = output_size(H, kh, stride, padding), output_size(Wd, kw, stride, padding)
    out = np.empty((N, K, Ho, Wo), dtype=dtype)
    delta = np.empty((N, K, Ho, Wo) if relu else (1, 1, 1, 1), dtype=bool)
    if out.size:
        rows = _rows_per_block(C * kh * kw, Wo, dtype)
        Wm = W.reshape(K, -1)
        _in_threads(_forward, x, Wm, b, kh, kw, stride, padding, rows, relu, out, delta)
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
    K, C, kh, kw = W.shape
    out = np.empty((G.shape[0], C) + tuple(in_hw), dtype=dtype)
    if out.size:
        rows = _rows_per_block(C * kh * kw, G.shape[3], dtype)
        _in_threads(_transpose, G, W.reshape(K, -1), kh, kw, stride, padding, rows, out)
    return out


def conv_weight_grad(x, G, kernel_hw, stride, padding):
    """Gradient of ``<G, conv2d(x, W) + b>`` in ``W`` and ``b``, summed over the batch.

    Returns ``(dW, db)`` of shapes ``(K, C, kh, kw)`` and ``(K,)``, as the reference.
    """
    dtype = _dtype(x, G)
    x, G = asarray(x, dtype), asarray(G, dtype)
    (kh, kw), C, K = kernel_hw, x.shape[1], G.shape[1]
    n_threads = numba.get_num_threads()
    dW_parts = np.zeros((n_threads, K, C * kh * kw), dtype=dtype)
    db_parts = np.zeros((n_threads, K), dtype=dtype)
    if G.size:
        rows = _rows_per_block(C * kh * kw, G.shape[3], dtype)
        _in_threads(_weight_grad, x, G, kh, kw, stride, padding, rows, dW_parts, db_parts)
    return dW_parts.sum(axis=0).reshape(K, C, kh, kw), db_parts.sum(axis=0)


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
