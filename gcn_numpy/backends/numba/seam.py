"""The Numba backend: hand-written CPU kernels around BLAS matrix products, float32 and float64.

The default backend. The functions and their conventions are those of
:mod:`gcn_numpy.backends.reference`, on NumPy arrays; each names the reference function it
implements. This module holds the seam's functions and the choice, per pass, of how each
layer is computed (:func:`algorithm`); the kernels live beside it, one idea a module:

- :mod:`.im2col`: a patch matrix and one BLAS product per block of output rows;
- :mod:`.winograd` and :mod:`.winograd_layers`: Winograd F(m x m, r x r) tiles, for square
  filters whose polyphase components are 2x2 to 5x5, on layers with enough channels;
- :mod:`.sparse`: mostly zero coefficients, one window each, and filters silent in the batch;
- :mod:`.padding`: borders of zeros, and the boundaries other than zeros
  (:func:`pad_maps`, :func:`fold_maps`);
- :mod:`.pointwise`: the gate and the Langevin step, one loop each;
- :mod:`.threads`: the thread pool (:func:`.threads.each_task`), runs of images and the
  weight gradient's fixed chunks;
- :mod:`~gcn_numpy.backends.numba.memory`: output memory reused, scratch kept per layer,
  filter transforms remembered, and the channels-last order of the maps;
- :mod:`.blas`: a BLAS product with leading dimensions, one BLAS thread per call.

Every kernel is compiled once per dtype, and ``cache=True`` keeps the machine code on disk
for the next process. Maps come back channels last in memory (:func:`.memory.shaped`), so
that one layer's output goes into the next layer's kernels without a copy; NumPy operations
on them work as on any other array. The design and the measurements behind each choice are
in docs/numba_design.md.
"""

import numpy as np

from ..reference import output_size
from . import im2col, memory, pointwise, sparse, winograd_layers
from .memory import release_scratch
from .padding import check_delta, fold_maps, pad_maps

__all__ = ["name", "xp", "asarray", "to_numpy", "empty", "standard_normal", "langevin_step"]
__all__ += ["conv2d", "conv_relu", "gate", "conv_transpose", "conv_weight_grad"]
__all__ += ["pad_maps", "fold_maps", "release_scratch"]  # from .padding and .memory
__all__ += ["algorithm", "active_subset", "SPARSE_SHARE", "SUBSET_SHARE"]
__all__ += ["WINOGRAD_MIN_PAIRS_GRADIENT", "WINOGRAD_MIN_PAIRS", "WINOGRAD_MIN_INPUTS"]

name = "numba"
xp = np

# Winograd where its products are large enough: channels in x out, and channels in
WINOGRAD_MIN_PAIRS_GRADIENT = 128
WINOGRAD_MIN_PAIRS = 256
WINOGRAD_MIN_INPUTS = 16
SPARSE_SHARE = 0.06  # non-zero coefficients in G, at most, for the sparse kernels
SUBSET_SHARE = 0.875  # filters active in the batch, at most, for the kernels to take them alone


def asarray(a, dtype):
    """Return ``a`` as a C-contiguous array of ``dtype`` (a copy only where needed).

    See :func:`gcn_numpy.backends.reference.asarray`.

    Examples
    --------
    >>> a = np.zeros((2, 3), np.float32)
    >>> asarray(a, np.float32) is a, asarray(a, np.float64).dtype
    (True, dtype('float64'))
    """
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


def empty(shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype``: memory of an earlier output no
    longer held, where there is one (:func:`.memory.output`).

    See :func:`gcn_numpy.backends.reference.empty`.

    Examples
    --------
    >>> empty((2, 3), np.float32).shape
    (2, 3)
    """
    return memory.output(shape, dtype)


def to_numpy(a):
    """Host NumPy view of a backend array (the identity here).

    See :func:`gcn_numpy.backends.reference.to_numpy`.

    Examples
    --------
    >>> a = np.ones(3)
    >>> to_numpy(a) is a
    True
    """
    return np.asarray(a)


# ------------------------------------------------------------ the choice of kernels


def algorithm(C, K, kh, kw, stride, pass_):
    """``"winograd"`` or ``"im2col"`` for one pass (``"bottom_up"``, ``"top_down"``,
    ``"weight_grad"``) of a layer of ``K`` filters ``kh x kw`` on ``C`` channels (the tests
    force each in turn, so that both are checked on every shape they apply to).

    Winograd where it applies (:func:`.winograd_layers.applies`) and the products are large
    enough (:data:`WINOGRAD_MIN_PAIRS` and the others): on fewer channels the transforms and
    the short products cost more than they save. The top-down pass of a strided layer
    stays im2col: its gather form has only ``s*s*C`` outputs, where im2col's scatter form
    was faster.

    Examples
    --------
    >>> algorithm(64, 30, 3, 3, 1, "bottom_up"), algorithm(3, 100, 15, 15, 3, "top_down")
    ('winograd', 'im2col')
    """
    if not winograd_layers.applies(kh, kw, stride):
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


def active_subset(G):
    """``(active, subset)``: the filters active somewhere in the batch ``G`` ``(N, Ho, Wo,
    K)`` (channels last), and whether the kernels are to take those alone.

    A silent filter only adds zeros; leaving it out of the products saves work, but the
    im2col kernels need a copy of ``G`` on the active filters (:func:`.sparse.gathered`),
    which costs more than it saves where nearly all filters are active
    (:data:`SUBSET_SHARE`). The Winograd kernels gather them as they split each image's
    map into tiles, at no extra cost.

    Examples
    --------
    >>> G = np.zeros((2, 3, 3, 8))
    >>> G[0, 1, 1, 5] = 1.0
    >>> active_subset(G)
    (array([5]), True)
    """
    K = G.shape[3]
    active = sparse.active_filters(G) if G.size else np.zeros(0, dtype=np.int64)
    return active, 0 < len(active) <= SUBSET_SHARE * K


def _sparse(G, other):
    """Whether ``G`` takes the sparse kernels: at most :data:`SPARSE_SHARE` of it non-zero."""
    return other.size and G.size and sparse.nonzero_share(G, SPARSE_SHARE) <= SPARSE_SHARE


# --------------------------------------------------------------------- the seam


def _responses(x, W, b, stride, padding, relu):
    """``(out, delta)`` of one bottom-up layer for the batch, channels last (``delta`` a
    dummy without ``relu``)."""
    dtype = memory.float_dtype(x, W, b)
    x, W, b = memory.channels_last(x, dtype), asarray(W, dtype), asarray(b, dtype)
    N, H, Wd, C = x.shape
    K, _, kh, kw = W.shape
    Ho, Wo = output_size(H, kh, stride, padding), output_size(Wd, kw, stride, padding)
    out = memory.output((N, Ho, Wo, K), dtype)
    delta = memory.output((N, Ho, Wo, K) if relu else (1, 1, 1, 1), bool)
    if out.size:
        winograd = algorithm(C, K, kh, kw, stride, "bottom_up") == "winograd"
        kernels = winograd_layers if winograd else im2col
        kernels.bottom_up(x, W, b, stride, padding, relu, out, delta)
    return memory.shaped(out), memory.shaped(delta)


def conv2d(x, W, stride, padding):
    """Linear filter responses ``<w_{k,x}, F^{(l-1)} * I>``, eq. (12), without bias.

    See :func:`gcn_numpy.backends.reference.conv2d` (shapes: ``(N, K, Ho, Wo)``; returned
    channels last in memory).

    Optimizations: Winograd F(m x m, r x r) tiles for square filters whose polyphase
    components are 2x2 to 5x5 and enough channels (:func:`algorithm`), else im2col blocks
    that stay in cache and one BLAS product each, written in place into the output; no
    transposes between layers (channels last); images spread over threads, one BLAS
    thread each.

    Examples
    --------
    >>> x = np.ones((1, 2, 4, 4), np.float32)
    >>> r = conv2d(x, np.ones((3, 2, 3, 3), np.float32), stride=1, padding=1)
    >>> r.shape, r.dtype, float(r[0, 0, 1, 1]), float(r[0, 0, 0, 0])  # 18 taps, 8 at a corner
    ((1, 3, 4, 4), dtype('float32'), 18.0, 8.0)
    >>> r.transpose(0, 2, 3, 1).flags.c_contiguous  # channels last in memory
    True
    """
    return _responses(x, W, np.zeros(W.shape[0], W.dtype), stride, padding, relu=False)[0]


def conv_relu(x, W, b, stride, padding):
    """One bottom-up layer, eqs. (13)-(14): ``(F, delta)``, delta a bool array.

    See :func:`gcn_numpy.backends.reference.conv_relu` (both returned channels last in
    memory).

    Optimizations: those of :func:`conv2d`, with bias, ReLU and ``delta`` computed in the
    loop that stores the responses (no second pass over the maps).

    Examples
    --------
    >>> x = np.array([[[[1.0, -2.0, 3.0]], [[0.0, 1.0, -1.0]]]])  # 2 channels, 1 x 3
    >>> W = np.array([[[[1.0]], [[2.0]]]])  # one filter: channel 0 + 2 * channel 1
    >>> F, delta = conv_relu(x, W, np.array([-0.5]), stride=1, padding=0)
    >>> F[0, 0], delta[0, 0]
    (array([[0.5, 0. , 0.5]]), array([[ True, False,  True]]))
    """
    return _responses(x, W, b, stride, padding, relu=True)


def gate(B, delta):
    """Top-down coefficients ``B^{(l)}_k(x) * delta^{(l)}_{k,x}`` of eq. (16).

    See :func:`gcn_numpy.backends.reference.gate` (returned channels last in memory).

    Optimizations: one compiled loop, no temporary arrays; ``B`` and ``delta`` from the
    kernels (channels last) are read without copies.

    Examples
    --------
    >>> B = np.full((1, 2, 1, 2), np.inf)
    >>> gate(B, np.array([[[[True, False]], [[False, True]]]]))[0]  # inf * 0 is nan
    array([[[inf, nan]],
    <BLANKLINE>
           [[nan, inf]]])
    """
    dtype = memory.float_dtype(B)
    B = np.asarray(B)
    if B.ndim != 4:
        G = np.empty(B.shape, dtype=dtype)
        pointwise.gate_flat(asarray(B, dtype).ravel(), asarray(delta, bool).ravel(), G.ravel())
        return G
    B, delta = memory.channels_last(B, dtype), memory.channels_last(delta, bool)
    G = memory.output(B.shape, dtype)
    pointwise.gate_flat(B.ravel(), delta.ravel(), G.ravel())
    return memory.shaped(G)


def conv_transpose(G, W, stride, padding, in_hw, delta=None):
    """Top-down deconvolution, eq. (16): ``B^{(l-1)} = sum_{k,x} G_k(x) w^{(l)}_{k,x}``;
    with ``delta``, ``G^{(l-1)} = B^{(l-1)} * delta``.

    See :func:`gcn_numpy.backends.reference.conv_transpose` (shapes: ``(N, C, H, W)``;
    returned channels last in memory).

    Optimizations: a mostly zero ``G`` takes one window per coefficient (:mod:`.sparse`);
    the filters silent in the whole batch are left out (:func:`active_subset`). For stride
    1 and filters 2x2 to 5x5 with enough channels (:func:`algorithm`), the gather form (each
    output position sums the filters' taps over the ``G`` around it: the correlation of
    ``G``, padded by ``r - 1 - p``, with the flipped filters) in Winograd tiles, so that no
    overlapping copies are added up; else im2col's scatter form, one BLAS product per block
    of positions and the windows added up in cache, leaving out the filters that are silent
    in the image. With ``delta``, each image is gated as soon as its thread has it, while
    it is in cache.

    Examples
    --------
    One coefficient places one copy of the filter, here on a 2-pixel zero border that is
    cut off again:

    >>> G = np.zeros((1, 1, 3, 3))
    >>> G[0, 0, 0, 2] = 1.0
    >>> W = np.arange(4.0).reshape(1, 1, 2, 2)
    >>> conv_transpose(G, W, stride=2, padding=2, in_hw=(2, 2))[0, 0]
    array([[0., 0.],
           [0., 0.]])
    >>> G[0, 0, 1, 1] = 1.0
    >>> conv_transpose(G, W, stride=2, padding=2, in_hw=(2, 2))[0, 0]
    array([[0., 1.],
           [2., 3.]])
    """
    dtype = memory.float_dtype(G, W)
    G, W = memory.channels_last(G, dtype), asarray(W, dtype)
    H, Wd = in_hw
    out = memory.output((G.shape[0], H, Wd, W.shape[1]), dtype)  # each kernel writes all of it
    if delta is not None:
        delta = check_delta(delta, out)
    if _sparse(G, out):
        sparse.top_down(G, W, stride, padding, out, delta)
        return memory.shaped(out)
    active, subset = active_subset(G)
    if not out.size or not len(active):
        out.fill(0)  # and so is out * delta
        return memory.shaped(out)
    # chosen for the whole layer: with few filters left, the work on the other side (the C
    # channels' transforms or windows) decides, and Winograd's is the smaller
    K, C, kh, kw = W.shape
    winograd = algorithm(C, K, kh, kw, stride, "top_down") == "winograd"
    channels = winograd_layers.ALL_CHANNELS
    if subset:
        W = np.ascontiguousarray(W[active])
        if winograd:
            channels = active  # gathered as the tiles are split
        else:
            G = sparse.gathered(G, active)
    gated = delta is not None
    gate_by = delta if gated else pointwise.NO_DELTA
    if winograd:
        winograd_layers.top_down(G, W, channels, stride, padding, out, gate_by, gated)
    else:
        im2col.top_down(G, W, stride, padding, out, gate_by, gated)
    return memory.shaped(out)


def conv_weight_grad(x, G, kernel_hw, stride, padding):
    """Gradient of ``<G, conv2d(x, W) + b>`` in ``W`` and ``b``, summed over the batch.

    See :func:`gcn_numpy.backends.reference.conv_weight_grad`: returns ``(dW, db)`` of
    shapes ``(K, C, kh, kw)`` and ``(K,)``.

    Optimizations: a mostly zero ``G`` takes one window per coefficient (:mod:`.sparse`);
    the filters silent in the whole batch are left out (:func:`active_subset`; their
    gradient is 0). For square filters whose polyphase components are 2x2 to 5x5 with
    enough channels (:func:`algorithm`), Winograd F(r x r, m x m) on the same input tiles
    as the bottom-up pass, the sum over positions and images done in the transform domain
    (one output transform per call); else im2col blocks and one BLAS product each, leaving
    out the filters that are silent in the image. Images spread over threads; the sum's
    order is fixed (:func:`.threads.chunks`).

    Examples
    --------
    >>> x = np.ones((2, 3, 5, 5), np.float32)
    >>> dW, db = conv_weight_grad(x, np.ones((2, 4, 3, 3), np.float32), (3, 3), 1, 0)
    >>> dW.shape, float(dW.max()), db  # each tap meets 9 ones in each of 2 images
    ((4, 3, 3, 3), 18.0, array([18., 18., 18., 18.], dtype=float32))
    """
    dtype = memory.float_dtype(x, G)
    x, G = memory.channels_last(x, dtype), memory.channels_last(G, dtype)
    K = G.shape[3]
    if _sparse(G, x):
        return sparse.weight_grad(x, G, kernel_hw, stride, padding)
    active, subset = active_subset(G)
    # chosen for the whole layer, as in conv_transpose
    chosen = algorithm(x.shape[3], K, *kernel_hw, stride, "weight_grad")
    if len(active) and not subset:  # a silent filter's gradient comes out exactly 0
        return _weight_grad(x, G, winograd_layers.ALL_CHANNELS, kernel_hw, stride, padding,
                            chosen)  # fmt: skip
    dW = np.zeros((K, x.shape[3]) + tuple(kernel_hw), dtype=dtype)
    db = np.zeros(K, dtype=dtype)
    if len(active):
        channels = active  # the Winograd kernels gather them as the tiles are split
        if chosen != "winograd":
            G, channels = sparse.gathered(G, active), winograd_layers.ALL_CHANNELS
        dW[active], db[active] = _weight_grad(x, G, channels, kernel_hw, stride, padding,
                                              chosen)  # fmt: skip
    return dW, db


def _weight_grad(x, G, channels, kernel_hw, stride, padding, chosen):
    """:func:`conv_weight_grad` of channels-last arrays of one dtype, ``G`` not empty, on
    its filters ``channels`` (Winograd; all if empty) by the ``chosen`` algorithm."""
    if chosen == "winograd":
        return winograd_layers.weight_grad(x, G, channels, kernel_hw, stride, padding)
    return im2col.weight_grad(x, G, kernel_hw, stride, padding)


def standard_normal(rng, shape, dtype):
    """Gaussian white noise ``Z ~ N(0, 1)`` of ``shape`` drawn from the NumPy Generator ``rng``:
    the same draws as the reference backend's.

    See :func:`gcn_numpy.backends.reference.standard_normal`.

    Examples
    --------
    >>> standard_normal(np.random.default_rng(0), (2, 3), np.float32).dtype
    dtype('float32')
    """
    return rng.standard_normal(shape, dtype=dtype)


def langevin_step(I, B, Z, step_size, sigma):
    """One Langevin step, eq. (19): ``I - (eps^2 / 2) (I / sigma^2 - B) + eps Z``.

    See :func:`gcn_numpy.backends.reference.langevin_step`.

    Optimizations: one compiled loop, no temporary arrays; ``B`` from
    :func:`conv_transpose` (channels last) read in place, and the new ``I`` returned in
    the same order (channels last in memory), so that the next step's first layer reads
    it without a copy.

    Examples
    --------
    >>> I, B = np.zeros((1, 1, 2, 2)), np.full((1, 1, 2, 2), 4.0)
    >>> langevin_step(I, B, np.ones((1, 1, 2, 2)), 0.5, 1.0)[0, 0]  # 0.125 * 4 + 0.5 * 1
    array([[1., 1.],
           [1., 1.]])
    """
    dtype = memory.float_dtype(I, B, Z)
    I, Z, B = np.asarray(I), np.asarray(Z), np.asarray(B)
    half_eps2, sigma2 = 0.5 * step_size**2, sigma**2
    if B.ndim == 4 and B.dtype == dtype and B.shape == I.shape:
        last = B.transpose(0, 2, 3, 1)
        if last.flags.c_contiguous:  # loop in that order, and write in it
            out = memory.output(last.shape, dtype)
            I_last = I.astype(dtype, copy=False).transpose(0, 2, 3, 1)
            Z_last = Z.astype(dtype, copy=False).transpose(0, 2, 3, 1)
            pointwise.langevin(I_last, last, Z_last, half_eps2, sigma2, step_size, out)
            return memory.shaped(out)
    I, Z = asarray(I, dtype), asarray(Z, dtype)
    out = memory.output(I.shape, dtype)
    B = asarray(B, dtype).reshape(I.shape)
    pointwise.langevin(I.reshape(1, 1, 1, -1), B.reshape(1, 1, 1, -1), Z.reshape(1, 1, 1, -1),
                       half_eps2, sigma2, step_size, out.reshape(1, 1, 1, -1))  # fmt: skip
    return out
