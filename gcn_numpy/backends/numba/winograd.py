"""The Winograd tiles of the Numba backend: minimal filtering F(m x m, r x r) on one image.

The three passes of a stride-1 layer with ``r x r`` filters, ``2 <= r <= 5``: the bottom-up
responses of eq. (12) (:func:`gcn_numpy.backends.reference.conv2d`), the top-down
deconvolution of eq. (16) (:func:`gcn_numpy.backends.reference.conv_transpose`, here as
the correlation of ``G`` with the flipped filters) and the weight gradient
(:func:`gcn_numpy.backends.reference.conv_weight_grad`). Each output tile of ``m x m``
positions is computed from the ``n x n`` input tile under it, ``n = m + r - 1``, with
``n^2`` products per filter and channel instead of ``m^2 r^2``: for the texture net's 5x5
layer with ``m = 3``, ``49`` instead of ``225``; for 3x3 with ``m = 4``, ``36`` instead of
``144`` (:func:`tile_size` chooses ``m``). In one dimension, with the ``n x k`` matrix
``V_k`` that evaluates a polynomial of degree ``k - 1`` at the points :data:`POINTS` and
at infinity,

    y_i = sum_j d_{i+j} g_j  (i < m, j < r)   is   y = V_m^T [(V_r g) * (V_n^{-T} d)]

(Toom-Cook; Lavin and Gray, "Fast algorithms for convolutional neural networks", 2016), and
in two dimensions the same on rows and columns. Summed over the channels, the products
``*`` are ``n^2`` matrix products, one per frequency ``f = (a, b)``:

- responses: ``M_f (tiles x K) = V_f (tiles x C) @ U_f (C x K)``, ``V`` the transformed
  input tiles, ``U`` the transformed filters; the output transform ``V_m^T M V_m`` gives
  the ``m x m`` responses of each tile;
- top-down: the same, with ``G`` (padded by ``r - 1 - p``) as the input and the filters
  flipped and transposed: ``B^{(l-1)}_c(x) = sum_{k,u,v} G_k(x + (u, v) - (r-1-p))
  W[k, c, r-1-u, r-1-v]``;
- weight gradient: ``F(r x r, m x m)`` on the same input tiles (the same ``V_n^{-T}``):
  ``D_f (C x K) = sum over tiles of V_f^T (C x tiles) @ T_f (tiles x K)`` with ``T`` the
  ``m x m`` tiles of ``G`` transformed by ``V_m``, then ``dW = V_r^T D V_r``.

Accuracy: the transforms add rounding error, more for larger tiles and more channels
summed. In float32 the larger tiles are kept only up to :data:`LARGE_TILE_CHANNELS`
channels, where the error stays well within the backend's float32 budget of 1e-5 of the
largest entry (:func:`tile_size`); the points of each ``(m, r)`` were chosen by that error
(:data:`POINTS`). Float64 results stay near 1e-14. docs/numba_design.md has the
measurements.

Layouts. A map enters as ``xs``, channels last and split by column modulo ``m``:
``xs[i, j % m, j // m, c]``, so that the ``n`` columns of every tile in a row of tiles
(tile ``t`` starts at column ``m t``) are, for each column offset, one contiguous run over
tiles and channels. Every transform is then a few long vector loops (``axpy``) over such
runs: the first stage transforms the rows of a whole row of tiles at once, the second
the columns. The products are :func:`.blas.gemm` calls on blocks of tile rows small
enough for the transformed tiles to stay in cache (:data:`BLOCK_TILES`).

A layer's sizes and matrices are one :class:`Tiling`, and each thread's scratch one
:class:`TileScratch`, passed as they are into the compiled code. :mod:`.winograd_layers`
runs the layers' passes over a batch with them.
"""

import functools
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from numba import njit

from .blas import gemm

__all__ = [
    "KERNELS",
    "TILES",
    "LARGE_TILE_CHANNELS",
    "POINTS",
    "BLOCK_TILES",
    "tile_size",
    "matrices",
    "tiles",
    "split_shape",
    "block_rows",
    "Tiling",
    "tiling",
    "TileScratch",
    "tile_scratch",
    "filters",
    "split_channels_last",
    "split_rows",
    "correlate_image",
    "correlate_blocks",
    "weight_grad_image",
    "gradient_output_transform",
]

KERNELS = (2, 3, 4, 5)  # the filter sizes r computed here
TILES = {2: 2, 3: 4, 4: 2, 5: 3}  # m, outputs per tile side, for each r (see tile_size)
LARGE_TILE_CHANNELS = {2: 0, 3: 128, 4: 0, 5: 100}  # float32: TILES up to so many channels
# the n - 1 finite interpolation points of F(m, r): of every subset of 0, +-1, +-2, +-1/2,
# 3/2 holding 0, those with the smallest float32 error on random tiles
POINTS = {
    (2, 2): (0, 1),
    (2, 3): (0, 1, -1),
    (2, 4): (0, 1, -1, Fraction(1, 2)),
    (2, 5): (0, 1, -1, Fraction(1, 2), -2),
    (4, 3): (0, 1, -1, Fraction(-1, 2), Fraction(3, 2)),
    (3, 5): (0, 1, -1, -2, Fraction(-1, 2), Fraction(3, 2)),
}
BLOCK_TILES = 128  # tiles per block: the transformed tiles stay in cache for the products


# -------------------------------------------------------------------- the matrices


def _evaluation(points, k):
    """``V_k``: values of the ``k`` coefficients' polynomial at ``points`` and infinity."""
    rows = [[p**j for j in range(k)] for p in points]
    rows.append([Fraction(0)] * (k - 1) + [Fraction(1)])  # at infinity: the leading one
    return rows


def _inverse(A):
    """Exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
    n = len(A)
    M = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(A)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if M[r][col] != 0)
        M[col], M[pivot] = M[pivot], M[col]
        M[col] = [v / M[col][col] for v in M[col]]
        for r in range(n):
            if r != col and M[r][col] != 0:
                M[r] = [a - M[r][col] * b for a, b in zip(M[r], M[col], strict=True)]
    return [row[n:] for row in M]


def _matrix_transpose(A):
    return [list(col) for col in zip(*A, strict=True)]


def tile_size(r, channels=1, dtype=np.float64):
    """``m``, the outputs per tile side for ``r x r`` filters on ``channels`` input
    channels (those the products sum over) in ``dtype``: :data:`TILES`, or 2 in float32
    past :data:`LARGE_TILE_CHANNELS` channels.

    Larger tiles take fewer products per output, ``(m + r - 1)^2 / m^2``: 9 for F(2, 5),
    5.4 for F(3, 5); 4 for F(2, 3), 2.25 for F(4, 3). They cost accuracy: the transforms'
    rounding error, relative to the largest output, grows with the channels summed.
    :data:`LARGE_TILE_CHANNELS` keeps the larger tiles where the float32 error stays well
    within the backend's budget of 1e-5 (100 channels for 5x5, 128 for 3x3); in float64 it
    stays near 1e-14 whatever the tile (docs/numba_design.md has the measurements).

    Examples
    --------
    >>> tile_size(5), tile_size(5, 101, np.float32), tile_size(3)
    (3, 2, 4)
    """
    if r not in KERNELS:
        raise ValueError(f"Winograd kernels are for filters of size {KERNELS}, not {r}")
    if np.dtype(dtype) == np.float32 and channels > LARGE_TILE_CHANNELS[r]:
        return 2
    return TILES[r]


@functools.cache
def matrices(r, dtype, m):
    """``(BT, AT, GW, GG, AW)`` of ``F(m, r)`` as arrays of ``dtype`` (``m`` from
    :func:`tile_size`), ``n = m + r - 1``:

    - ``BT = V_n^{-T}`` ``(n, n)``: the input tiles' transform;
    - ``AT = V_m^T`` ``(m, n)``: from the ``n`` products to the ``m`` responses;
    - ``GW = V_r`` ``(n, r)``: the filters' transform;
    - ``GG = V_m`` ``(n, m)``: the transform of ``G``'s tiles (weight gradient);
    - ``AW = V_r^T`` ``(r, n)``: from the products to the ``r`` gradient taps.
    """
    if (m, r) not in POINTS:
        raise ValueError(f"no interpolation points for F({m}, {r})")
    points = [Fraction(p) for p in POINTS[m, r]]
    n = m + r - 1
    Vn, Vr, Vm = (_evaluation(points, k) for k in (n, r, m))
    exact = (_matrix_transpose(_inverse(Vn)), _matrix_transpose(Vm), Vr, Vm, _matrix_transpose(Vr))
    return tuple(np.array([[float(v) for v in row] for row in A], dtype=dtype) for A in exact)


def tiles(Ho, Wo, m):
    """Rows and columns of ``m x m`` output tiles that cover an ``Ho x Wo`` map.

    Examples
    --------
    >>> tiles(10, 9, 3)
    (4, 3)
    """
    return (Ho + m - 1) // m, (Wo + m - 1) // m


def split_shape(th, tw, n, channels, m):
    """Shape of ``xs``, the input of ``th x tw`` tiles of size ``n`` (``m`` apart), split
    by column modulo ``m`` (:func:`split_channels_last`).

    Examples
    --------
    >>> split_shape(4, 3, 7, 64, 3)
    (16, 3, 5, 64)
    """
    return (m * th + n - m, m, tw + (n - 1) // m, channels)


def block_rows(th, tw):
    """Tile rows per block, blocks of equal size and about :data:`BLOCK_TILES` tiles.

    Examples
    --------
    >>> block_rows(22, 22)  # 484 tiles: 4 blocks of 6 tile rows (the last of 4)
    6
    """
    blocks = -(-th * tw // BLOCK_TILES)
    return -(-th // blocks)


# ------------------------------------------------------------------ a layer's plan


class Tiling(NamedTuple):
    """F(m x m, r x r) for one layer: ``C`` channels in, ``K`` out, ``r x r`` filters,
    ``n = m + r - 1``; ``th x tw`` tiles cover the map, ``rows`` tile rows per block
    (:func:`block_rows`); the matrices of :func:`matrices`. Made by :func:`tiling`, passed
    as it is into the compiled kernels.

    Examples
    --------
    >>> t = tiling(100, 64, 5, 18, 18, np.float32)
    >>> t.m, t.BT.shape, t.AT.shape
    (3, (7, 7), (3, 7))
    """

    C: int
    K: int
    r: int
    m: int
    n: int
    th: int
    tw: int
    rows: int
    BT: np.ndarray
    AT: np.ndarray
    GW: np.ndarray
    GG: np.ndarray
    AW: np.ndarray


def tiling(C, K, r, Ho, Wo, dtype):
    """The :class:`Tiling` of a layer of ``K`` filters ``r x r`` on ``C`` channels whose
    outputs are ``Ho x Wo``, in ``dtype`` (``m`` from :func:`tile_size`).

    Examples
    --------
    >>> t = tiling(64, 30, 3, 18, 18, np.float32)
    >>> t.m, t.n, (t.th, t.tw), t.rows
    (4, 6, (5, 5), 5)
    """
    m = tile_size(r, C, dtype)
    th, tw = tiles(Ho, Wo, m)
    return Tiling(C, K, r, m, r + m - 1, th, tw, block_rows(th, tw), *matrices(r, dtype, m))


class TileScratch(NamedTuple):
    """One thread's arrays for :func:`correlate_image` or :func:`weight_grad_image`: ``xs``
    the split input (:func:`split_shape`, zero outside the image), ``V`` the transformed
    input tiles of a block (flat, ``n*n*rows*tw*C``), ``rows_buf`` the input transform's
    own. For a correlation, ``M`` the products of a block (flat, ``n*n*rows*tw*K``),
    ``out_buf`` the output transform's own and ``ys`` the outputs ``(m*th, m, tw, K)``; for
    a weight gradient, ``ys`` holds the split coefficients ``G`` (zero past the map), ``M``
    their transformed tiles and ``out_buf`` their transform's own. Made by
    :func:`tile_scratch`.

    Examples
    --------
    >>> own = tile_scratch(tiling(16, 8, 3, 9, 9, np.float64))
    >>> own.xs.shape, own.ys.shape, own.M.size
    ((14, 4, 4, 16), (12, 4, 3, 8), 2592)
    """

    xs: np.ndarray
    V: np.ndarray
    M: np.ndarray
    rows_buf: np.ndarray
    out_buf: np.ndarray
    ys: np.ndarray


def tile_scratch(t, gradient=False, maps=True):
    """A thread's :class:`TileScratch` for the :class:`Tiling` ``t``; for a weight
    gradient (``gradient``), ``ys`` zero, since only the map's positions are written there;
    without ``maps``, ``xs`` and ``ys`` empty: a thread's share of blocks of an image whose
    maps are shared (:func:`correlate_blocks`).

    Examples
    --------
    >>> bool(tile_scratch(tiling(4, 2, 3, 5, 5, np.float64), gradient=True).ys.any())
    False
    >>> tile_scratch(tiling(4, 2, 3, 5, 5, np.float64), maps=False).xs.size
    0
    """
    xs_shape = split_shape(t.th, t.tw, t.n, t.C, t.m)
    block, dtype = t.n * t.n * t.rows * t.tw, t.BT.dtype
    ys_shape = (t.m * t.th, t.m, t.tw, t.K)
    rows_buf = np.empty(t.n * int(np.prod(xs_shape[1:])), dtype=dtype)
    if not maps:
        xs_shape = ys_shape = (0, t.m, 0, 0)
    return TileScratch(
        np.zeros(xs_shape, dtype=dtype),
        np.empty(block * t.C, dtype=dtype),
        np.empty(block * t.K, dtype=dtype),
        rows_buf,
        np.empty(t.m * t.n * t.tw * t.K, dtype=dtype),
        np.zeros(ys_shape, dtype=dtype) if gradient else np.empty(ys_shape, dtype=dtype),
    )


def filters(t, taps):
    """``U`` ``(n*n, I, K)``, the transform (:func:`filter_transform`) of the filters
    ``taps`` ``(r*r, I, O)`` for the :class:`Tiling` ``t``, zero past ``O`` if ``K`` is
    larger.

    Examples
    --------
    >>> filters(tiling(1, 1, 2, 2, 2, np.float64), np.ones((4, 1, 1))).shape
    (9, 1, 1)
    """
    rr, I, O = taps.shape
    if O < t.K:
        taps = np.concatenate([taps, np.zeros((rr, I, t.K - O), dtype=taps.dtype)], 2)
    U = np.empty((t.n * t.n, I, t.K), dtype=t.BT.dtype)
    filter_transform(taps.reshape(rr, -1), t.GW, U.reshape(t.n * t.n, -1))
    return U


# ------------------------------------------------------------------ layouts and copies
#
# Flat offsets are unsigned (np.uint64) in the vector loops: Numba then drops its test for
# negative indices, which keeps those loops from vectorising.


@njit(cache=True, nogil=True)
def split_channels_last(x, shift, stride, xs, channels):
    """``xs[I, J % m, J // m, (a*s + b)*C + c] = x[i, j, c]`` (``m = xs.shape[1]``) where
    ``i + shift = s*I + a`` and ``j + shift = s*J + b`` (``0 <= a, b < s``, ``s =
    stride``), inside ``xs``; ``x`` is one image's ``(H, W, C)`` maps, ``shift`` its zero
    padding (negative: rows and columns cut off). With stride 1 that is ``xs[i + shift,
    ...]``; with stride ``s``, the ``s * s`` polyphase components of the padded image, side
    by side as channels, on which a stride-``s`` layer is a stride-1 one. The rest of
    ``xs`` is left as it is (zeros). With ``channels`` not empty, ``x[i, j, channels[c]]``
    in place of ``x[i, j, c]``: the active filters' coefficients of a top-down pass
    gathered as they are copied
    (:func:`gcn_numpy.backends.numba.seam.active_subset`)."""
    split_rows(x, shift, stride, xs, channels, 0, x.shape[0])


@njit(cache=True, nogil=True)
def split_rows(x, shift, stride, xs, channels, i0, i1):
    """The rows ``i0 <= i < i1`` of ``x`` of :func:`split_channels_last`: threads may copy
    disjoint ranges of rows of one image at once."""
    H, W, C = x.shape
    gather = channels.size > 0
    if gather:
        C = channels.size
    rows, m, half, _ = xs.shape
    s, lo = stride, max(0, -shift)
    for i in range(max(lo, i0), min(H, i1)):
        I, a = (i + shift) // s, (i + shift) % s
        if I >= rows:
            break
        # the columns of phase b, j = lo + (b - lo - shift) % s, lo + s + ..., go to J, J + 1,
        # ...: counted up, without a division per column
        for b in range(s):
            j0 = lo + (b - lo - shift) % s
            J = (j0 + shift) // s
            group, index = J % m, J // m
            offset = (a * s + b) * C
            for j in range(j0, W, s):
                if index >= half:
                    break
                src, dst = x[i, j], xs[I, group, index]
                if gather:
                    for c in range(C):
                        dst[offset + c] = src[channels[c]]
                else:
                    for c in range(C):
                        dst[offset + c] = src[c]
                group += 1
                if group == m:
                    group, index = 0, index + 1


# The transforms multiply short vectors of coefficients with long runs of numbers: every
# output run is written once, from its input runs with non-zero coefficients, in one vector
# loop (fused multiply-adds allowed: "contract"), the terms added left to right. The loops
# are written out for 2, 4, 6 and 8 terms, an odd count padded with a zero term (F(2, 3)'s
# input transform has 2 non-zero coefficients a row out of 4, F(2, 5)'s 4 or 5 out of 6,
# F(3, 5)'s up to 7 out of 7).


@njit(cache=True, nogil=True, fastmath={"contract"})
def _row2(c, o, src, dst, d, run):
    c0, c1 = c[0], c[1]
    o0, o1 = np.uint64(o[0]), np.uint64(o[1])
    d = np.uint64(d)
    for q in range(np.uint64(run)):
        dst[d + q] = c0 * src[o0 + q] + c1 * src[o1 + q]


@njit(cache=True, nogil=True, fastmath={"contract"})
def _row4(c, o, src, dst, d, run):
    c0, c1, c2, c3 = c[0], c[1], c[2], c[3]
    o0, o1, o2, o3 = np.uint64(o[0]), np.uint64(o[1]), np.uint64(o[2]), np.uint64(o[3])
    d = np.uint64(d)
    for q in range(np.uint64(run)):
        dst[d + q] = c0 * src[o0 + q] + c1 * src[o1 + q] + c2 * src[o2 + q] + c3 * src[o3 + q]


@njit(cache=True, nogil=True, fastmath={"contract"})
def _row6(c, o, src, dst, d, run):
    c0, c1, c2, c3, c4, c5 = c[0], c[1], c[2], c[3], c[4], c[5]
    o0, o1, o2 = np.uint64(o[0]), np.uint64(o[1]), np.uint64(o[2])
    o3, o4, o5 = np.uint64(o[3]), np.uint64(o[4]), np.uint64(o[5])
    d = np.uint64(d)
    for q in range(np.uint64(run)):
        s = c0 * src[o0 + q] + c1 * src[o1 + q] + c2 * src[o2 + q] + c3 * src[o3 + q]
        dst[d + q] = s + c4 * src[o4 + q] + c5 * src[o5 + q]


@njit(cache=True, nogil=True, fastmath={"contract"})
def _row8(c, o, src, dst, d, run):
    c0, c1, c2, c3, c4, c5, c6, c7 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    o0, o1, o2, o3 = np.uint64(o[0]), np.uint64(o[1]), np.uint64(o[2]), np.uint64(o[3])
    o4, o5, o6, o7 = np.uint64(o[4]), np.uint64(o[5]), np.uint64(o[6]), np.uint64(o[7])
    d = np.uint64(d)
    for q in range(np.uint64(run)):
        s = c0 * src[o0 + q] + c1 * src[o1 + q] + c2 * src[o2 + q] + c3 * src[o3 + q]
        dst[d + q] = s + c4 * src[o4 + q] + c5 * src[o5 + q] + c6 * src[o6 + q] + c7 * src[o7 + q]


@njit(cache=True, nogil=True)
def _mix(coefs, src, offsets, dst, d_offsets, run):
    """``dst[d_offsets[b] + q] = sum_j coefs[b, j] * src[offsets[j] + q]`` for every row
    ``b`` of ``coefs`` (at most 8 columns) and ``q < run``."""
    c = np.zeros(8, dtype=coefs.dtype)
    o = np.zeros(8, dtype=np.int64)
    for b in range(coefs.shape[0]):
        terms = 0
        for j in range(coefs.shape[1]):
            if coefs[b, j] != 0:
                c[terms], o[terms] = coefs[b, j], offsets[j]
                terms += 1
        if terms == 0:
            for q in range(run):
                dst[d_offsets[b] + q] = 0
            continue
        if terms % 2:  # a zero term on an input already read
            c[terms], o[terms] = 0, o[0]
            terms += 1
        if terms == 2:
            _row2(c, o, src, dst, d_offsets[b], run)
        elif terms == 4:
            _row4(c, o, src, dst, d_offsets[b], run)
        elif terms == 6:
            _row6(c, o, src, dst, d_offsets[b], run)
        else:
            _row8(c, o, src, dst, d_offsets[b], run)


@njit(cache=True, nogil=True)
def _steps(offsets, start, step):
    """``offsets[j] = start + j*step``: rows ``step`` apart from ``start``, for :func:`_mix`."""
    for j in range(len(offsets)):
        offsets[j] = start + j * step
    return offsets


# Each transform is separable: one stage mixes rows, the other columns, each a few _mix
# calls on rows of numbers a fixed step apart (_steps).


@njit(cache=True, nogil=True)
def input_transform(xs, BT, ti0, ti1, V, rows_buf):
    """``V[a*n + b, t, :] = (BT d_t BT^T)[a, b, :]`` for the input tiles ``d_t`` of the tile
    rows ``ti0 <= ti < ti1`` (``t`` counted from ``ti0``, ``tw`` tiles a row); ``V`` is
    ``(n*n, tiles, C)``, ``rows_buf`` scratch of ``xs[0]``'s size times ``n``."""
    n = BT.shape[0]
    _, m, half, C = xs.shape
    tw = half - (n - 1) // m
    row = m * half * C
    src, tmp, dst = xs.ravel(), rows_buf.ravel(), V.ravel()
    offsets = np.empty(n, np.int64)
    d_offsets = np.empty(n, np.int64)
    for ti in range(ti0, ti1):
        # rows: tmp[a] = sum_l BT[a, l] xs[m ti + l], the whole row of tiles at once
        _mix(BT, src, _steps(offsets, m * ti * row, row), tmp, _steps(d_offsets, 0, row), row)
        # columns: tile tj's column j is group j % m, index tj + j // m
        for a in range(n):
            for j in range(n):
                offsets[j] = a * row + ((j % m) * half + j // m) * C
            d0 = (a * n * V.shape[1] + (ti - ti0) * tw) * C
            _mix(BT, tmp, offsets, dst, _steps(d_offsets, d0, V.shape[1] * C), tw * C)


@njit(cache=True, nogil=True)
def output_transform(M, AT, ti0, ti1, ys, rows_buf):
    """The ``m x m`` outputs ``AT M_t AT^T`` of the tiles of rows ``ti0 <= ti < ti1`` into
    ``ys[m ti + a, b, tj, :]`` (output row ``m ti + a``, column ``m tj + b``, channels
    last); ``M`` is ``(n*n, tiles, K)``, ``rows_buf`` scratch of ``m*n*tw*K`` numbers."""
    m, n = AT.shape
    tw, K = ys.shape[2], ys.shape[3]
    run, tiles_ = tw * K, M.shape[1]
    src, tmp, dst = M.ravel(), rows_buf.ravel(), ys.ravel()
    offsets = np.empty(n, np.int64)
    d_offsets = np.empty(m, np.int64)
    for ti in range(ti0, ti1):
        t0 = (ti - ti0) * tw
        for b in range(n):
            s0 = (b * tiles_ + t0) * K
            _mix(AT, src, _steps(offsets, s0, n * tiles_ * K), tmp,
                 _steps(d_offsets, b * run, n * run), run)  # fmt: skip
        for a2 in range(m):
            d0 = (m * ti + a2) * m * run
            _mix(AT, tmp, _steps(offsets, a2 * n * run, run), dst, _steps(d_offsets, d0, run), run)


@njit(cache=True, nogil=True)
def gradient_transform(gs, GG, ti0, ti1, T, rows_buf):
    """``T[a*n + b, t, :] = (GG g_t GG^T)[a, b, :]`` for the ``m x m`` tiles ``g_t`` of
    ``gs[i, j % m, j // m, k] = G[k, i, j]`` in tile rows ``ti0 <= ti < ti1``;
    ``rows_buf`` scratch of ``n*m*tw*K`` numbers."""
    n, m = GG.shape
    tw, K = gs.shape[2], gs.shape[3]
    run = tw * K
    src, tmp, dst = gs.ravel(), rows_buf.ravel(), T.ravel()
    offsets = np.empty(m, np.int64)
    d_offsets = np.empty(n, np.int64)
    for ti in range(ti0, ti1):
        for par in range(m):
            s0 = (m * ti * m + par) * run
            _mix(GG, src, _steps(offsets, s0, m * run), tmp,
                 _steps(d_offsets, par * run, m * run), run)  # fmt: skip
        for a in range(n):
            d0 = (a * n * T.shape[1] + (ti - ti0) * tw) * K
            _mix(GG, tmp, _steps(offsets, a * m * run, run), dst,
                 _steps(d_offsets, d0, T.shape[1] * K), run)  # fmt: skip


@njit(cache=True, nogil=True)
def filter_transform(taps, GW, U):
    """``U[a*n + b, :] = sum_{u,v} GW[a, u] GW[b, v] taps[u*r + v, :]``: the filters'
    transform, ``taps`` ``(r*r, P)`` holding tap ``(u, v)`` of every filter-channel pair;
    ``U`` is ``(n*n, P)``."""
    n, r = GW.shape
    P = taps.shape[1]
    src, dst = taps.ravel(), U.ravel()
    tmp = np.empty(n * r * P, dtype=U.dtype)
    offsets = np.empty(r, np.int64)
    d_offsets = np.empty(n, np.int64)
    for v in range(r):
        _mix(GW, src, _steps(offsets, v * P, r * P), tmp, _steps(d_offsets, v * P, r * P), P)
    for a in range(n):
        _mix(GW, tmp, _steps(offsets, a * r * P, P), dst, _steps(d_offsets, a * n * P, P), P)


@njit(cache=True, nogil=True)
def gradient_output_transform(D_each, AW, p0, p1, dW_t):
    """``dW_t[u, v, p] = (AW D AW^T)[u, v, p]`` for the filter-channel pairs ``p0 <= p <
    p1``, ``D = sum_i D_each[i]`` added in the order of ``i`` (the chunks of images);
    ``D_each`` is ``(chunks, n*n, P)``, ``dW_t`` ``(r, r, P)``. Column ranges are
    independent: threads may take one each."""
    r, n = AW.shape
    P, run = D_each.shape[2], p1 - p0
    D = np.empty(n * n * run, dtype=D_each.dtype)
    for f in range(n * n):
        row = D[f * run : (f + 1) * run]
        row[:] = D_each[0, f, p0:p1]
        for i in range(1, D_each.shape[0]):
            row += D_each[i, f, p0:p1]
    dst = dW_t.ravel()
    tmp = np.empty(r * n * run, dtype=D.dtype)
    offsets = np.empty(n, np.int64)
    d_offsets = np.empty(r, np.int64)
    for b in range(n):
        _mix(AW, D, _steps(offsets, b * run, n * run), tmp, _steps(d_offsets, b * run, n * run),
             run)  # fmt: skip
    for u in range(r):
        d0 = u * r * P + p0
        _mix(AW, tmp, _steps(offsets, u * n * run, run), dst, _steps(d_offsets, d0, P), run)


# ------------------------------------------------------------------ one image


@njit(cache=True, nogil=True)
def _input_block(t, own, xs, ti0, th, tw, nf, C, K):
    """The block of tile rows from ``ti0`` (:data:`Tiling.rows <Tiling>` of them, at most)
    of the split input ``xs``: ``(ti1, m, Vb, Mb)``, its last tile row + 1, its ``m``
    tiles, their input transform ``Vb`` ``(n*n, m, C)`` (:func:`input_transform`), and
    ``Mb`` ``(n*n, m, K)``, the block's share of ``own.M``."""
    ti1 = min(th, ti0 + t.rows)
    m = (ti1 - ti0) * tw
    Vb = own.V[: nf * m * C].reshape((nf, m, C))
    input_transform(xs, t.BT, ti0, ti1, Vb, own.rows_buf)
    return ti1, m, Vb, own.M[: nf * m * K].reshape((nf, m, K))


@njit(cache=True, nogil=True)
def correlate_image(x, channels, shift, stride, U, t, own):
    """``own.ys`` = the correlation of one image's maps ``x`` ``(H, W, C)``, shifted by
    ``shift`` (the zero padding) and split into its ``stride**2`` polyphase components
    (:func:`split_channels_last`), with the filters whose transform is ``U`` ``(n*n,
    s*s*C, K)``: ``ys[i, j % m, j // m, k]`` for the ``m th x m tw`` positions of the tiles
    (those past the map's ``Ho x Wo`` are to be dropped). One image of
    :func:`gcn_numpy.backends.reference.conv2d`, or, on ``G`` with the flipped filters, of
    ``conv_transpose``. ``t`` is the layer's :class:`Tiling`, ``own`` the thread's
    :class:`TileScratch`; ``channels`` those of ``x`` to take, if not empty
    (:func:`split_channels_last`)."""
    split_channels_last(x, shift, stride, own.xs, channels)
    correlate_blocks(own.xs, 0, t.th, U, t, own, own.ys)


@njit(cache=True, nogil=True)
def correlate_blocks(xs, ti_lo, ti_hi, U, t, own, ys):
    """The tile rows ``ti_lo <= ti < ti_hi`` of :func:`correlate_image`'s correlation, in
    blocks of :data:`Tiling.rows <Tiling>` from ``ti_lo`` (a block's first row, as
    ``ti_hi`` is a block's end or ``t.th``), from the split input ``xs`` into their rows
    of ``ys``. ``own`` is the thread's :class:`TileScratch` (its ``V``, ``M`` and buffers;
    ``own.xs`` and ``own.ys`` are not used): threads may take disjoint ranges of one image,
    each reading the shared ``xs`` and writing its own rows of the shared ``ys``."""
    nf, C, K = U.shape[0], U.shape[1], U.shape[2]
    th, tw = ys.shape[0] // ys.shape[1], ys.shape[2]
    for ti0 in range(ti_lo, ti_hi, t.rows):
        ti1, m, Vb, Mb = _input_block(t, own, xs, ti0, th, tw, nf, C, K)
        for f in range(nf):
            gemm(False, False, m, K, C, 1.0, Vb[f].ravel(), C, U[f].ravel(), K, 0.0,
                 Mb[f].ravel(), K)  # fmt: skip
        output_transform(Mb, t.AT, ti0, ti1, ys, own.out_buf)


@njit(cache=True, nogil=True)
def weight_grad_image(x, G, channels, padding, stride, t, own, D, first):
    """Add one image's share of the weight gradient
    (:func:`gcn_numpy.backends.reference.conv_weight_grad`), in the transform domain, to
    ``D`` ``(n*n, s*s*C, K)`` (or set it, with ``first``): ``D_f += V_f^T T_f`` over the
    image's tiles, ``x`` ``(H, W, C)`` its input (split as in :func:`correlate_image`),
    ``G`` ``(Ho, Wo, K)`` its coefficients. Returns the sum of ``G`` over positions,
    ``(K,)``. ``t`` is the layer's :class:`Tiling`, ``own`` the thread's
    :class:`TileScratch` (``ys`` for the split ``G``, ``M`` for its transformed tiles);
    ``channels`` those of ``G`` to take, if not empty
    (:func:`split_channels_last`)."""
    nf, C, K = D.shape[0], D.shape[1], D.shape[2]
    gs = own.ys
    th, tw = gs.shape[0] // gs.shape[1], gs.shape[2]
    split_channels_last(x, padding, stride, own.xs, channels[:0])
    split_channels_last(G, 0, 1, gs, channels)
    db = np.zeros(K, dtype=D.dtype)
    for row in G.reshape((-1, G.shape[2])):
        if channels.size:
            for c in range(K):
                db[c] += row[channels[c]]
        else:
            db += row
    for ti0 in range(0, th, t.rows):
        ti1, m, Vb, Tb = _input_block(t, own, own.xs, ti0, th, tw, nf, C, K)
        gradient_transform(gs, t.GG, ti0, ti1, Tb, own.out_buf)
        beta = 0.0 if first and ti0 == 0 else 1.0
        for f in range(nf):
            gemm(True, False, C, K, m, 1.0, Vb[f].ravel(), C, Tb[f].ravel(), K, beta,
                 D[f].ravel(), K)  # fmt: skip
    return db
