"""Winograd's minimal filtering F(m x m, r x r) for the Numba backend's stride-1 layers.

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

Accuracy: the transforms add rounding error, more for larger tiles (:func:`tile_size`
has the measurements). Against the float64 reference, float32 results of random layers
were within 2e-6 of the largest entry for F(2, 5) (5e-7 for the direct product) and 3e-7
for F(2, 3); F(3, 5) stays within 6.3e-6 up to 100 channels and F(4, 3) within 3.6e-6 up
to 128, past which the backend takes ``m = 2`` in float32. The points of each ``(m, r)``
were chosen by that error (:data:`POINTS`). Float64 results are within 1e-14.

Layouts. A map enters as ``xs``, channels last and split by column modulo ``m``:
``xs[i, j % m, j // m, c]``, so that the ``n`` columns of every tile in a row of tiles
(tile ``t`` starts at column ``m t``) are, for each column offset, one contiguous run over
tiles and channels. Every transform is then a few long vector loops (``axpy``) over such
runs: the first stage transforms the rows of a whole row of tiles at once, the second
the columns. The products are :func:`.numba_blas.gemm` calls on blocks of tile rows small
enough for the transformed tiles to stay in cache.
"""

import functools
from fractions import Fraction

import numpy as np
from numba import njit

from .numba_blas import gemm

KERNELS = (2, 3, 4, 5)  # the filter sizes r computed here
TILES = {2: 2, 3: 4, 4: 2, 5: 3}  # m, outputs per tile side, for each r (see tile_size)
LARGE_TILE_CHANNELS = {2: 0, 3: 128, 4: 0, 5: 100}  # float32: TILES up to so many channels
# the n - 1 finite interpolation points of F(m, r), chosen by the float32 error measured
# on random tiles of 64 channels, relative to the largest output (in brackets; every
# subset of 0, +-1, +-2, +-1/2, 3/2 holding 0 was tried)
POINTS = {
    (2, 2): (0, 1),
    (2, 3): (0, 1, -1),  # 3.6e-7
    (2, 4): (0, 1, -1, Fraction(1, 2)),
    (2, 5): (0, 1, -1, Fraction(1, 2), -2),  # 2.0e-6
    (4, 3): (0, 1, -1, Fraction(-1, 2), Fraction(3, 2)),  # 1.4e-6
    (3, 5): (0, 1, -1, -2, Fraction(-1, 2), Fraction(3, 2)),  # 3.2e-6
}
BLOCK_TILES = 128  # tiles per block: the products ran fastest with 100-150 rows


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
    5.4 for F(3, 5); 4 for F(2, 3), 2.25 for F(4, 3). The texture net's 5x5 layer at 64
    px took 204 us of products an image with F(3, 5) against 292 with F(2, 5), its 3x3
    layer 37 against 50 with F(4, 3) (one thread); whole passes 20-25% less time.

    They cost accuracy: the transforms' rounding error, relative to the largest output,
    grows with the channels summed. Measured in float32 on random layers (all three
    passes, the worst of a few seeds and map sizes up to 74 x 74): F(3, 5) 4.3e-6 on 64
    channels, 6.3e-6 on 100, 9.1e-6 on 128 (F(2, 5): 3.5e-6 on 256); F(4, 3) 3.6e-6 on 128
    and 5.0e-6 on 256 (F(2, 3) below 1e-6). :data:`LARGE_TILE_CHANNELS` keeps the larger
    tiles where the error stays well within the backend's float32 budget of 1e-5 (100
    channels for 5x5, 128 for 3x3); in float64 it stays near 1e-14 whatever the tile."""
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
    """Rows and columns of ``m x m`` output tiles that cover an ``Ho x Wo`` map."""
    return (Ho + m - 1) // m, (Wo + m - 1) // m


def split_shape(th, tw, n, channels, m):
    """Shape of ``xs``, the input of ``th x tw`` tiles of size ``n`` (``m`` apart), split
    by column modulo ``m``."""
    return (m * th + n - m, m, tw + (n - 1) // m, channels)


def block_rows(th, tw):
    """Tile rows per block, blocks of equal size and about BLOCK_TILES tiles."""
    blocks = -(-th * tw // BLOCK_TILES)
    return -(-th // blocks)


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
    gathered as they are copied (see ``_active_subset`` in :mod:`.numba_cpu`)."""
    H, W, C = x.shape
    gather = channels.size > 0
    if gather:
        C = channels.size
    rows, m, half, _ = xs.shape
    s, lo = stride, max(0, -shift)
    for i in range(lo, H):
        I, a = (i + shift) // s, (i + shift) % s
        if I >= rows:
            break
        # the columns of phase b, j = lo + (b - lo - shift) % s, lo + s + ..., go to J, J + 1,
        # ...: counted up (a division per column took 53 of the 252 us of the texture net's
        # first layer at 64 px, one image's bottom-up pass, on 3 channels)
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
# loop (fused multiply-adds allowed: "contract"). The loops are written out for 2, 4, 6 and
# 8 terms, an odd count padded with a zero term (F(2, 3)'s input transform has 2 non-zero
# coefficients a row out of 4, F(2, 5)'s 4 or 5 out of 6, F(3, 5)'s up to 7 out of 7).


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
        dst[d + q] = (
            c0 * src[o0 + q]
            + c1 * src[o1 + q]
            + c2 * src[o2 + q]
            + c3 * src[o3 + q]
            + c4 * src[o4 + q]
            + c5 * src[o5 + q]
        )


@njit(cache=True, nogil=True, fastmath={"contract"})
def _row8(c, o, src, dst, d, run):
    c0, c1, c2, c3, c4, c5, c6, c7 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    o0, o1, o2, o3 = np.uint64(o[0]), np.uint64(o[1]), np.uint64(o[2]), np.uint64(o[3])
    o4, o5, o6, o7 = np.uint64(o[4]), np.uint64(o[5]), np.uint64(o[6]), np.uint64(o[7])
    d = np.uint64(d)
    for q in range(np.uint64(run)):
        dst[d + q] = (
            c0 * src[o0 + q]
            + c1 * src[o1 + q]
            + c2 * src[o2 + q]
            + c3 * src[o3 + q]
            + c4 * src[o4 + q]
            + c5 * src[o5 + q]
            + c6 * src[o6 + q]
            + c7 * src[o7 + q]
        )


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
        for l in range(n):
            offsets[l] = (m * ti + l) * row
            d_offsets[l] = l * row
        _mix(BT, src, offsets, tmp, d_offsets, row)
        # columns: tile tj's column j is group j % m, index tj + j // m
        for a in range(n):
            for j in range(n):
                offsets[j] = a * row + ((j % m) * half + j // m) * C
                d_offsets[j] = ((a * n + j) * V.shape[1] + (ti - ti0) * tw) * C
            _mix(BT, tmp, offsets, dst, d_offsets, tw * C)


@njit(cache=True, nogil=True)
def output_transform(M, AT, ti0, ti1, ys, rows_buf):
    """The ``m x m`` outputs ``AT M_t AT^T`` of the tiles of rows ``ti0 <= ti < ti1`` into
    ``ys[m ti + a, b, tj, :]`` (output row ``m ti + a``, column ``m tj + b``, channels
    last); ``M`` is ``(n*n, tiles, K)``, ``rows_buf`` scratch of ``m*n*tw*K`` numbers."""
    m, n = AT.shape
    tw, K = ys.shape[2], ys.shape[3]
    run = tw * K
    src, tmp, dst = M.ravel(), rows_buf.ravel(), ys.ravel()
    offsets = np.empty(n, np.int64)
    d_offsets = np.empty(m, np.int64)
    for ti in range(ti0, ti1):
        t0 = (ti - ti0) * tw
        for b in range(n):
            for a in range(n):
                offsets[a] = ((a * n + b) * M.shape[1] + t0) * K
            for a2 in range(m):
                d_offsets[a2] = (a2 * n + b) * run
            _mix(AT, src, offsets, tmp, d_offsets, run)
        for a2 in range(m):
            for b in range(n):
                offsets[b] = (a2 * n + b) * run
            for b2 in range(m):
                d_offsets[b2] = ((m * ti + a2) * m + b2) * run
            _mix(AT, tmp, offsets, dst, d_offsets, run)


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
            for i in range(m):
                offsets[i] = ((m * ti + i) * m + par) * run
            for a in range(n):
                d_offsets[a] = (a * m + par) * run
            _mix(GG, src, offsets, tmp, d_offsets, run)
        for a in range(n):
            for j in range(m):
                offsets[j] = (a * m + j) * run
            for b in range(n):
                d_offsets[b] = ((a * n + b) * T.shape[1] + (ti - ti0) * tw) * K
            _mix(GG, tmp, offsets, dst, d_offsets, run)


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
        for u in range(r):
            offsets[u] = (u * r + v) * P
        for a in range(n):
            d_offsets[a] = (a * r + v) * P
        _mix(GW, src, offsets, tmp, d_offsets, P)
    for a in range(n):
        for v in range(r):
            offsets[v] = (a * r + v) * P
        for b in range(n):
            d_offsets[b] = (a * n + b) * P
        _mix(GW, tmp, offsets, dst, d_offsets, P)


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
        for a in range(n):
            offsets[a] = (a * n + b) * run
        for u in range(r):
            d_offsets[u] = (u * n + b) * run
        _mix(AW, D, offsets, tmp, d_offsets, run)
    for u in range(r):
        for b in range(n):
            offsets[b] = (u * n + b) * run
        for v in range(r):
            d_offsets[v] = (u * r + v) * P + p0
        _mix(AW, tmp, offsets, dst, d_offsets, run)


# ------------------------------------------------------------------ one image


@njit(cache=True, nogil=True)
def correlate_image(x, channels, shift, stride, U, BT, AT, rows, xs, V, M, rows_buf, out_buf,
                    ys):  # fmt: skip
    """``ys`` = the correlation of one image's maps ``x`` ``(H, W, C)``, shifted by
    ``shift`` (the zero padding) and split into its ``stride**2`` polyphase components
    (:func:`split_channels_last`), with the filters whose transform is ``U`` ``(n*n,
    s*s*C, K)``: ``ys[i, j % m, j // m, k]`` for the ``m th x m tw`` positions of the tiles
    (those past the map's ``Ho x Wo`` are to be dropped). One image of
    :func:`gcn_numpy.backends.reference.conv2d`, or, on ``G`` with the flipped filters, of
    ``conv_transpose``. Scratch: ``xs`` (:func:`split_shape`, zero outside the image),
    ``V`` and ``M`` (flat, ``n*n*rows*tw`` times ``C`` or ``K``), ``rows_buf`` and
    ``out_buf`` for the two transforms; ``channels`` those of ``x`` to take, if not empty
    (:func:`split_channels_last`)."""
    nf, C, K = U.shape[0], U.shape[1], U.shape[2]
    th, tw = ys.shape[0] // ys.shape[1], ys.shape[2]
    split_channels_last(x, shift, stride, xs, channels)
    for ti0 in range(0, th, rows):
        ti1 = min(th, ti0 + rows)
        m = (ti1 - ti0) * tw
        Vb = V[: nf * m * C].reshape((nf, m, C))
        Mb = M[: nf * m * K].reshape((nf, m, K))
        input_transform(xs, BT, ti0, ti1, Vb, rows_buf)
        for f in range(nf):
            gemm(False, False, m, K, C, 1.0, Vb[f].ravel(), C, U[f].ravel(), K, 0.0,
                 Mb[f].ravel(), K)  # fmt: skip
        output_transform(Mb, AT, ti0, ti1, ys, out_buf)


@njit(cache=True, nogil=True)
def weight_grad_image(x, G, channels, padding, stride, BT, GG, rows, xs, gs, V, T, rows_buf,
                      g_buf, D, first):  # fmt: skip
    """Add one image's share of the weight gradient
    (:func:`gcn_numpy.backends.reference.conv_weight_grad`), in the transform domain, to
    ``D`` ``(n*n, s*s*C, K)`` (or set it, with ``first``): ``D_f += V_f^T T_f`` over the
    image's tiles, ``x`` ``(H, W, C)`` its input (split as in :func:`correlate_image`),
    ``G`` ``(Ho, Wo, K)`` its coefficients. Returns the sum of ``G`` over positions,
    ``(K,)``. Scratch as in :func:`correlate_image`, and ``gs`` (``(m th, m, tw, K)``, zero
    past the map) and ``T`` (flat, ``n*n*rows*tw*K``); ``channels`` those of ``G`` to take,
    if not empty (:func:`split_channels_last`)."""
    nf, C, K = D.shape[0], D.shape[1], D.shape[2]
    th, tw = gs.shape[0] // gs.shape[1], gs.shape[2]
    split_channels_last(x, padding, stride, xs, channels[:0])
    split_channels_last(G, 0, 1, gs, channels)
    db = np.zeros(K, dtype=D.dtype)
    for row in G.reshape((-1, G.shape[2])):
        if channels.size:
            for c in range(K):
                db[c] += row[channels[c]]
        else:
            db += row
    for ti0 in range(0, th, rows):
        ti1 = min(th, ti0 + rows)
        m = (ti1 - ti0) * tw
        Vb = V[: nf * m * C].reshape((nf, m, C))
        Tb = T[: nf * m * K].reshape((nf, m, K))
        input_transform(xs, BT, ti0, ti1, Vb, rows_buf)
        gradient_transform(gs, GG, ti0, ti1, Tb, g_buf)
        beta = 0.0 if first and ti0 == 0 else 1.0
        for f in range(nf):
            gemm(True, False, C, K, m, 1.0, Vb[f].ravel(), C, Tb[f].ravel(), K, beta,
                 D[f].ravel(), K)  # fmt: skip
    return db
