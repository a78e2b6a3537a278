"""A layer's three passes over a batch in Winograd tiles (:mod:`.winograd`), for the Numba
backend: bottom-up, top-down in its gather form, and the weight gradient.

A stride-``s`` layer is a stride-1 layer on the ``s*s`` polyphase components of its input
(:func:`taps`): the texture net's 15x15 stride-3 first layer is a 5x5 one on 27 (color)
channels. The top-down pass is the correlation of ``G``, padded by ``r - 1 - p``, with the
flipped filters: each output position sums the filters' taps over the ``G`` around it, so
that no overlapping copies are added up. The filters' transforms are remembered from call to
call (:func:`.memory.remembered`): a Langevin chain runs each layer many times per learning
iteration with the same weights.

The images go over the threads in runs (:func:`.threads.image_runs`), one call of compiled
code each; the weight gradient sums its chunks of images (:func:`.threads.chunks`) in the
transform domain and runs the output transform once, on the same threads, once the chunks
have ended (:func:`.threads.each_task`'s ``then``). With fewer images than threads (one
large canvas being sampled), each image's tile rows go over the threads instead
(:func:`_by_blocks`): its split input and outputs are shared, each thread transforms and
multiplies whole blocks of its own, the same blocks as on one thread, so the results do
not depend on the threads.
"""

import numpy as np
from numba import njit

from . import memory, threads
from . import winograd as wino
from .pointwise import gate_flat, gate_image

__all__ = [
    "ALL_CHANNELS",
    "OUTPUT_PAIRS",
    "components",
    "applies",
    "taps",
    "padded",
    "bottom_up",
    "top_down",
    "weight_grad",
]

ALL_CHANNELS = np.zeros(0, dtype=np.int64)  # ``channels`` of the kernels: take them all
OUTPUT_PAIRS = 512  # filter-channel pairs per thread of the gradient's output transform, at least


def components(kernel, stride):
    """``r``: the size of a stride-``stride`` filter's polyphase components.

    Examples
    --------
    >>> components(15, 3), components(5, 1), components(7, 2)
    (5, 5, 4)
    """
    return -(-kernel // stride)


def applies(kh, kw, stride):
    """Whether the Winograd kernels compute the layer: square filters whose polyphase
    components (:func:`taps`) are 2x2 to 5x5, ``ceil(kh / stride)`` in
    :data:`.winograd.KERNELS`.

    Examples
    --------
    >>> applies(15, 15, 3), applies(3, 3, 1), applies(7, 7, 1), applies(1, 1, 1)
    (True, True, False, False)
    """
    return kh == kw and components(kh, stride) in wino.KERNELS


def taps(W, stride, flip):
    """The filters ``W`` ``(K, C, k, k)`` of a stride-``s`` layer as ``(r*r, I, O)``: tap
    ``(u, v)`` of the stride-1 layer on the ``s*s`` polyphase components of the input
    (:func:`.winograd.split_channels_last`), ``W[k, c, s*u + a, s*v + b]`` (zero past
    ``k``) for channel ``(a*s + b)*C + c``.

    Bottom-up and weight gradient (not ``flip``): ``I = s*s*C`` channels in, ``O = K`` out.
    Top-down (``flip``): the gather form, ``I = K`` and ``O = s*s*C``, taps flipped.

    Examples
    --------
    >>> W = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> taps(W, 2, flip=False)[:, :, 0]  # tap (u, v) of the 4 components, zero past k
    array([[0., 1., 3., 4.],
           [2., 0., 5., 0.],
           [6., 7., 0., 0.],
           [8., 0., 0., 0.]])
    """
    K, C, k, _ = W.shape
    s, r = stride, components(k, stride)
    shape = (r * r, K, s * s * C) if flip else (r * r, s * s * C, K)
    out = np.zeros(shape, dtype=W.dtype)
    _gather_taps(np.ascontiguousarray(W), s, r, flip, out)
    return out


@njit(cache=True, nogil=True)
def _gather_taps(W, s, r, flip, taps):
    """Fill the non-zero taps of :func:`taps`."""
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


def padded(K):
    """Outputs of the bottom-up products: ``K`` or, where that adds at most 1/8, the next
    multiple of 16 (OpenBLAS's float32 kernels take 16 columns at a time; the top-down
    pass, where padding ran slower, keeps its outputs as they are).

    Examples
    --------
    >>> padded(30), padded(100), padded(64)
    (32, 112, 64)
    """
    up = -(-K // 16) * 16
    return up if up - K <= K // 8 else K


def _transformed_filters(t, W, stride, flip):
    """``wino.filters(t, taps(W, stride, flip))``, remembered while ``W`` stays the same."""
    key = ("winograd", flip, stride, t.m, t.K, W.dtype.str, W.shape)
    return memory.remembered(key, W, lambda: wino.filters(t, taps(W, stride, flip)))


# ----------------------------------------------------------------- out of the tiles


@njit(cache=True, nogil=True)
def _unsplit(ys, b, relu, out, delta):
    """``out[i, j, :] = ys[i, j % m, j // m, :] + b`` (``m = ys.shape[1]``, the tile size)
    for the ``(Ho, Wo, K)`` positions of ``out`` (the tiles' extra rows and columns
    dropped); with ``relu``, ``delta`` and ``out`` of eqs. (13)-(14) instead."""
    _unsplit_rows(ys, b, relu, out, delta, 0, out.shape[0])


@njit(cache=True, nogil=True)
def _unsplit_rows(ys, b, relu, out, delta, i0, i1):
    """The rows ``i0 <= i < i1`` of ``out`` of :func:`_unsplit`."""
    Ho, Wo, K = out.shape
    m = ys.shape[1]
    for i in range(i0, i1):
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
    _unsplit_phases_rows(ys, stride, padding, out, 0, out.shape[0])


@njit(cache=True, nogil=True)
def _unsplit_phases_rows(ys, stride, padding, out, y0, y1):
    """The rows ``y0 <= y < y1`` of ``out`` of :func:`_unsplit_phases`."""
    H, W, C = out.shape
    s, first, m = stride, padding // stride, ys.shape[1]
    for y in range(y0, y1):
        I, a = (y + padding) // s - first, (y + padding) % s
        for x in range(W):
            J, b = (x + padding) // s - first, (x + padding) % s
            src, dst = ys[I, J % m, J // m], out[y, x]
            offset = (a * s + b) * C
            for c in range(C):
                dst[c] = src[offset + c]


# ------------------------------------------------ runs of images, one call each


@njit(cache=True, nogil=True)
def _correlate_run(x, n0, n1, padding, stride, U, t, own, b, relu, out, delta):
    """Images ``n0 <= n < n1`` of the bottom-up pass (:func:`.winograd.correlate_image`,
    then :func:`_unsplit`)."""
    for n in range(n0, n1):
        wino.correlate_image(x[n], ALL_CHANNELS, padding, stride, U, t, own)
        _unsplit(own.ys, b, relu, out[n], delta[n if relu else 0])


@njit(cache=True, nogil=True)
def _correlate_top_down_run(G, n0, n1, channels, shift, U, t, own, stride, padding, out, delta,
                            gated):  # fmt: skip
    """Images ``n0 <= n < n1`` of the top-down pass in its gather form
    (:func:`.winograd.correlate_image`, :func:`_unsplit_phases`) on the filters
    ``channels`` (all if empty), then gated by ``delta`` if ``gated``."""
    for n in range(n0, n1):
        wino.correlate_image(G[n], channels, shift, 1, U, t, own)
        _unsplit_phases(own.ys, stride, padding, out[n])
        if gated:
            gate_image(out, delta, n)


@njit(cache=True, nogil=True)
def _weight_grad_run(x, G, n0, n1, channels, padding, stride, t, own, D, db_each):
    """One chunk's images ``n0 <= n < n1`` of the weight gradient, in image order
    (:func:`.winograd.weight_grad_image`) on the filters ``channels`` of ``G`` (all if
    empty): ``D`` set by the first, then added to."""
    for n in range(n0, n1):
        db_each[n] = wino.weight_grad_image(x[n], G[n], channels, padding, stride, t, own, D,
                                            n == n0)  # fmt: skip


# ------------------------------------------- one image's tile rows over the threads


def _blocks(t):
    """Blocks of tile rows an image has (:data:`.winograd.Tiling` ``rows`` each)."""
    return -(-t.th // t.rows)


def _by_blocks(N, t):
    """Whether the tile rows of each image go over the threads (:func:`_each_image_by_blocks`):
    :func:`.threads.splits_images` on blocks of tile rows.

    Examples
    --------
    >>> t = wino.tiling(32, 32, 3, 200, 200, np.float32)
    >>> _by_blocks(1, t) == (threads.thread_count() > 1), _by_blocks(10**6, t)
    (True, False)
    """
    return threads.splits_images(N, _blocks(t))


def _block_runs(t):
    """The tasks of one image split over the threads: ranges ``(ti0, ti1)`` of whole blocks
    of tile rows, long ranges first and single blocks at the end (the rule of
    :func:`.threads.image_runs`, on blocks).

    Examples
    --------
    >>> t = wino.tiling(32, 32, 3, 200, 200, np.float32)
    >>> runs = _block_runs(t)
    >>> runs[0][0], runs[-1][1] == t.th, all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
    (0, True, True)
    """
    runs = threads.image_runs(_blocks(t))
    return [(b0 * t.rows, min(t.th, b1 * t.rows)) for b0, b1 in runs]


def _each_image_by_blocks(N, t, U, key, split, unsplit, rows_in, rows_out):
    """For each image ``n < N``, each step over the threads: ``split(n, xs, i0, i1)`` fills
    rows ``i0 <= i < i1`` (of ``rows_in``) of the shared split input ``xs``; the tile rows
    are correlated by ranges of blocks (:func:`_block_runs`,
    :func:`.winograd.correlate_blocks`) into the shared ``ys``; ``unsplit(n, ys, i0, i1)``
    takes rows ``i0 <= i < i1`` (of ``rows_out``) of the outputs out of the tiles."""
    runs, ins, outs = _block_runs(t), threads.image_runs(rows_in), threads.image_runs(rows_out)
    with memory.reused(key + ("one image",), lambda: wino.tile_scratch(t), 1) as (whole,):
        for n in range(N):
            threads.each_task(len(ins), lambda i, _, n=n: split(n, whole.xs, *ins[i]), tuple)
            threads.each_task(
                len(runs),
                lambda i, own: wino.correlate_blocks(whole.xs, *runs[i], U, t, own, whole.ys),
                lambda: wino.tile_scratch(t, maps=False),
                key + ("blocks",),
                then=(len(outs), lambda j, n=n: unsplit(n, whole.ys, *outs[j])),
            )


# --------------------------------------------------------------- a layer's passes


def bottom_up(x, W, b, stride, padding, relu, out, delta):
    """One bottom-up layer into ``out`` (and ``delta`` with ``relu``), every array channels
    last: :func:`gcn_numpy.backends.numba.seam.conv_relu` in Winograd tiles.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> out, delta = np.empty((1, 2, 2, 1)), np.empty((1, 2, 2, 1), bool)
    >>> bottom_up(x, np.ones((1, 1, 2, 2)), np.array([-10.0]), 1, 0, True, out, delta)
    >>> out[0, :, :, 0].round(12) + 0.0  # the sums of the 2 x 2 windows, minus 10
    array([[ 0.,  2.],
           [10., 14.]])
    """
    N, H, Wd, C = x.shape
    K, _, kh, _ = W.shape
    Ho, Wo = out.shape[1:3]
    s = stride
    t = wino.tiling(s * s * C, padded(K), components(kh, s), Ho, Wo, x.dtype)
    U = _transformed_filters(t, W, s, flip=False)
    key = ("bottom_up", x.shape[1:], W.shape, stride, padding, "winograd", x.dtype, t.m)
    if _by_blocks(N, t):
        _each_image_by_blocks(
            N,
            t,
            U,
            key,
            lambda n, xs, i0, i1: wino.split_rows(x[n], padding, s, xs, ALL_CHANNELS, i0, i1),
            lambda n, ys, i0, i1: _unsplit_rows(
                ys, b, relu, out[n], delta[n if relu else 0], i0, i1
            ),  # fmt: skip
            H,
            Ho,
        )
        return
    runs = threads.image_runs(N)
    threads.each_task(
        len(runs),
        lambda i, own: _correlate_run(x, *runs[i], padding, s, U, t, own, b, relu, out, delta),
        lambda: wino.tile_scratch(t),
        key,
    )


def top_down(G, W, channels, stride, padding, out, delta, gated):
    """The top-down pass of one layer into ``out``, gated by ``delta`` if ``gated``, every
    array channels last: :func:`gcn_numpy.backends.numba.seam.conv_transpose` in Winograd
    tiles, in its gather form, on the filters ``channels`` of ``G`` (all if empty).

    Examples
    --------
    >>> G = np.zeros((1, 2, 2, 1))
    >>> G[0, 1, 0, 0] = 2.0
    >>> out = np.empty((1, 3, 3, 1))
    >>> top_down(G, np.ones((1, 1, 2, 2)), ALL_CHANNELS, 1, 0, out, np.zeros((1, 1, 1, 1), bool),
    ...          False)
    >>> out[0, :, :, 0].round(12) + 0.0
    array([[0., 0., 0.],
           [2., 2., 0.],
           [2., 2., 0.]])
    """
    N, H, Wd, C = out.shape
    K, _, kh, _ = W.shape
    s, r = stride, components(kh, stride)
    first = padding // s  # the polyphase grid's first row holding an output row
    Hq, Wq = (H + padding + s - 1) // s - first, (Wd + padding + s - 1) // s - first
    t = wino.tiling(K, s * s * C, r, Hq, Wq, out.dtype)
    U = _transformed_filters(t, W, s, flip=True)
    shift = r - 1 - first
    key = ("top_down", G.shape[1:], W.shape, stride, padding, (H, Wd), "winograd", out.dtype)
    key += (t.m,)
    if _by_blocks(N, t):

        def unsplit(n, ys, y0, y1):
            _unsplit_phases_rows(ys, s, padding, out[n], y0, y1)
            if gated:
                gate_flat(out[n, y0:y1].ravel(), delta[n, y0:y1].ravel(), out[n, y0:y1].ravel())

        _each_image_by_blocks(
            N,
            t,
            U,
            key,
            lambda n, xs, i0, i1: wino.split_rows(G[n], shift, 1, xs, channels, i0, i1),
            unsplit,
            G.shape[1],
            H,
        )
        return
    runs = threads.image_runs(N)
    threads.each_task(
        len(runs),
        lambda i, own: _correlate_top_down_run(
            G, *runs[i], channels, shift, U, t, own, s, padding, out, delta, gated
        ),  # fmt: skip
        lambda: wino.tile_scratch(t),
        key,
    )


def weight_grad(x, G, channels, kernel_hw, stride, padding):
    """``(dW, db)`` of channels-last ``x`` and ``G`` in Winograd tiles, on the filters
    ``channels`` of ``G`` (all if empty): each chunk of images sums ``D = V^T T`` in the
    transform domain, then the chunks' sum and the output transform run by ranges of
    filter-channel pairs on the same threads.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> dW, db = weight_grad(x, np.ones((1, 2, 2, 1)), ALL_CHANNELS, (2, 2), 1, 0)
    >>> dW[0, 0].round(12) + 0.0, db
    (array([[ 8., 12.],
           [20., 24.]]), array([4.]))
    """
    dtype = x.dtype
    (kh, kw), (N, _, _, C), (_, Ho, Wo, K) = kernel_hw, x.shape, G.shape
    K = len(channels) or K
    chunks = threads.chunks(N)
    s, r = stride, components(kh, stride)
    t = wino.tiling(s * s * C, K, r, Ho, Wo, dtype)
    nf = t.n * t.n
    # D is (C x K) per frequency, the orientation whose products ran faster
    D_shape = (len(chunks), nf, s * s * C, K)
    db_each = np.zeros((N, K), dtype=dtype)
    pairs = K * s * s * C
    parts = max(1, min(threads.thread_count(), pairs // OUTPUT_PAIRS))
    cuts = np.linspace(0, pairs, parts + 1).astype(int)
    dW_t = np.empty((r, r, pairs), dtype=dtype)

    def run(i, own):
        _weight_grad_run(x, G, *chunks[i], channels, padding, s, t, own, D_each[i], db_each)

    def scratch():
        return wino.tile_scratch(t, gradient=True)

    def transform(part):
        D_pairs = D_each.reshape(len(chunks), nf, pairs)
        wino.gradient_output_transform(D_pairs, t.AW, cuts[part], cuts[part + 1], dW_t)

    key = ("weight_grad", x.shape, G.shape, K, kernel_hw, stride, padding, "winograd", dtype, t.m)
    with memory.reused(key + ("D",), lambda: np.empty(D_shape, dtype=dtype), 1) as (D_each,):
        threads.each_task(len(chunks), run, scratch, key, then=(parts, transform))
    # tap (u, v) of channel (a, b, c) is W[k, c, s*u + a, s*v + b] (see taps)
    phases = dW_t.reshape(r, r, s, s, C, K).transpose(5, 4, 0, 2, 1, 3)
    dW = phases.reshape(K, C, r * s, r * s)[:, :, :kh, :kw]
    return np.ascontiguousarray(dW), db_each.sum(axis=0)
