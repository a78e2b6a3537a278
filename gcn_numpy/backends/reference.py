"""The readable float64 NumPy reference for the kernels of the backend seam.

Every fast backend (Numba, CuPy) implements the same functions with the same signatures
(the seam, :class:`gcn_numpy.backends.Backend`) and is tested against this module. The
code mirrors the paper's vector notation of section 5: a layer's filter ``W[k]`` placed
at output position ``x`` is the basis function ``w^{(l)}_{k,x}`` of eq. (11)-(12);
convolution takes inner products with these translated copies (bottom-up), the
transposed convolution adds them up with
coefficients (top-down, eq. 16).

Shapes, for one layer with stride ``s`` and zero padding ``p`` on each side:

- ``x``: input maps ``F^{(l-1)} * I``, shape ``(N, C, H, W)``;
- ``W``: filters, shape ``(K, C, kh, kw)``; ``b``: biases, shape ``(K,)``;
- output maps: shape ``(N, K, Ho, Wo)`` with ``Ho = (H + 2p - kh) // s + 1`` (PyTorch
  ``conv2d`` semantics: cross-correlation, floor division).

The loops run over the ``kh * kw`` filter offsets ``(u, v)``; for each offset one
``einsum`` contracts the channels of all positions at once. This is slow for large
images but obviously right, which is its job.
"""

import numpy as np

__all__ = [
    "name",
    "xp",
    "asarray",
    "to_numpy",
    "empty",
    "output_size",
    "conv2d",
    "conv_relu",
    "gate",
    "conv_transpose",
    "conv_weight_grad",
    "standard_normal",
    "langevin_step",
    "pad_maps",
    "fold_maps",
]

name = "numpy"
xp = np


def asarray(a, dtype):
    """Return ``a`` as a C-contiguous array of ``dtype`` (a copy only where needed).

    Examples
    --------
    >>> asarray([[1, 2]], np.float64)
    array([[1., 2.]])
    """
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


def to_numpy(a):
    """Host NumPy view of a backend array (the identity here).

    Examples
    --------
    >>> to_numpy(np.zeros(2))
    array([0., 0.])
    """
    return np.asarray(a)


def _pad(x, padding):
    p = padding
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def _window(xpad, u, v, stride, out_hw):
    """The input samples that filter tap ``(u, v)`` meets at every output position.

    ``window[n, c, i, j] = xpad[n, c, i*s + u, j*s + v]``, shape ``(N, C, Ho, Wo)``.
    """
    Ho, Wo = out_hw
    return xpad[
        :, :, u : u + stride * (Ho - 1) + 1 : stride, v : v + stride * (Wo - 1) + 1 : stride
    ]


def empty(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, for maps filled
    outside the kernels (the boundary's padded copies, :mod:`gcn_numpy.boundary`).

    Examples
    --------
    >>> empty((2, 3), np.float32).shape
    (2, 3)
    """
    return np.empty(shape, dtype=dtype)


def output_size(size, kernel, stride, padding):
    """Map size after one layer: ``floor((size + 2p - k) / s) + 1`` (may be < 1).

    Examples
    --------
    >>> output_size(224, kernel=15, stride=3, padding=2)
    72
    """
    return (size + 2 * padding - kernel) // stride + 1


def conv2d(x, W, stride, padding):
    """Linear filter responses ``<w_{k,x}, F^{(l-1)} * I>``, eq. (12), without bias.

    ``r[n, k, i, j] = sum_{c, u, v} W[k, c, u, v] * xpad[n, c, i*s + u, j*s + v]``.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    W : ndarray of shape (K, C, kh, kw)

    Returns
    -------
    r : ndarray of shape (N, K, Ho, Wo)

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> conv2d(x, np.ones((1, 1, 2, 2)), stride=1, padding=0)  # sums of 2 x 2 windows
    array([[[[ 8., 12.],
             [20., 24.]]]])
    """
    N, C, H, Wd = x.shape
    K, _, kh, kw = W.shape
    out_hw = (output_size(H, kh, stride, padding), output_size(Wd, kw, stride, padding))
    xpad = _pad(x, padding)
    r = np.zeros((N, K) + out_hw, dtype=np.result_type(x, W))
    for u in range(kh):
        for v in range(kw):
            r += np.einsum("kc,nchw->nkhw", W[:, :, u, v], _window(xpad, u, v, stride, out_hw))
    return r


def conv_relu(x, W, b, stride, padding):
    """One bottom-up layer: activation pattern, eq. (13), and ReLU response, eq. (14).

    ``delta = 1(r + b > 0)`` and ``F = delta * (r + b)`` where ``r = conv2d(x, W)``.

    Returns
    -------
    F : ndarray of shape (N, K, Ho, Wo), the layer's maps ``F^{(l)} * I``
    delta : bool ndarray of shape (N, K, Ho, Wo), the binary activations ``delta^{(l)}``

    Examples
    --------
    >>> x = np.array([[[[1.0, -2.0, 3.0]]]])
    >>> F, delta = conv_relu(x, np.ones((1, 1, 1, 1)), np.array([0.5]), stride=1, padding=0)
    >>> F, delta
    (array([[[[1.5, 0. , 3.5]]]]), array([[[[ True, False,  True]]]]))
    """
    pre = conv2d(x, W, stride, padding) + b[None, :, None, None]
    delta = pre > 0
    return np.where(delta, pre, pre.dtype.type(0)), delta  # +0 where off (not -0)


def gate(B, delta):
    """Top-down coefficients ``B^{(l)}_k(x) * delta^{(l)}_{k,x}`` of eq. (16).

    Examples
    --------
    >>> gate(np.array([2.0, 3.0]), np.array([True, False]))
    array([2., 0.])
    """
    return B * delta


def conv_transpose(G, W, stride, padding, in_hw, delta=None):
    """Top-down deconvolution, eq. (16): ``B^{(l-1)} = sum_{k,x} G_k(x) w^{(l)}_{k,x}``;
    with ``delta``, the activation pattern of the layer below, ``gate(B^{(l-1)}, delta)``:
    the next step's coefficients ``G^{(l-1)}`` (the fast backends gate each image as it
    comes out, instead of a second pass over the maps).

    Each coefficient ``G[n, k, i, j]`` places a copy of filter ``W[k]`` (now a basis
    function) with its corner at ``(i*s - p, j*s - p)`` in the layer below; the copies
    add up. This is the adjoint of :func:`conv2d`.

    Parameters
    ----------
    G : ndarray of shape (N, K, Ho, Wo), coefficients ``B^{(l)} * delta^{(l)}``
    W : ndarray of shape (K, C, kh, kw)
    in_hw : (H, W), the size of the layer below (floor division in the forward size
        means it cannot be recovered from ``G``)
    delta : bool ndarray of shape (N, C, H, W), optional

    Returns
    -------
    ndarray of shape (N, C, H, W): ``B^{(l-1)}``, or ``G^{(l-1)}`` with ``delta``

    Examples
    --------
    One coefficient places one copy of the filter (the basis function):

    >>> G = np.zeros((1, 1, 2, 2))
    >>> G[0, 0, 1, 0] = 2.0
    >>> conv_transpose(G, np.ones((1, 1, 2, 2)), stride=1, padding=0, in_hw=(3, 3))[0, 0]
    array([[0., 0., 0.],
           [2., 2., 0.],
           [2., 2., 0.]])
    """
    N, K, Ho, Wo = G.shape
    _, C, kh, kw = W.shape
    H, Wd = in_hw
    p = padding
    out = np.zeros((N, C, H + 2 * p, Wd + 2 * p), dtype=np.result_type(G, W))
    for u in range(kh):
        for v in range(kw):
            _window(out, u, v, stride, (Ho, Wo))[...] += np.einsum(
                "kc,nkhw->nchw", W[:, :, u, v], G
            )
    B = out[:, :, p : p + H, p : p + Wd]
    return B if delta is None else gate(B, delta)


def conv_weight_grad(x, G, kernel_hw, stride, padding):
    """Gradient of ``<G, conv2d(x, W) + b>`` in ``W`` and ``b``, summed over the batch.

    ``dW[k, c, u, v] = sum_{n, i, j} G[n, k, i, j] * xpad[n, c, i*s + u, j*s + v]`` and
    ``db[k] = sum_{n, i, j} G[n, k, i, j]``. With ``G = B^{(l)} * delta^{(l)}`` this is
    ``df/dW^{(l)}`` by the chain rule through eq. (14)-(15).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), the layer's input maps
    G : ndarray of shape (N, K, Ho, Wo)

    Returns
    -------
    dW : ndarray of shape (K, C, kh, kw)
    db : ndarray of shape (K,)

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> dW, db = conv_weight_grad(x, np.ones((1, 1, 2, 2)), (2, 2), stride=1, padding=0)
    >>> dW[0, 0], db  # each tap sums the inputs it meets
    (array([[ 8., 12.],
           [20., 24.]]), array([4.]))
    """
    kh, kw = kernel_hw
    N, K, Ho, Wo = G.shape
    C = x.shape[1]
    xpad = _pad(x, padding)
    dW = np.empty((K, C, kh, kw), dtype=np.result_type(x, G))
    for u in range(kh):
        for v in range(kw):
            dW[:, :, u, v] = np.einsum("nkhw,nchw->kc", G, _window(xpad, u, v, stride, (Ho, Wo)))
    return dW, G.sum(axis=(0, 2, 3))


def standard_normal(rng, shape, dtype):
    """Gaussian white noise ``Z ~ N(0, 1)`` of ``shape`` drawn from the NumPy Generator ``rng``.

    Examples
    --------
    >>> standard_normal(np.random.default_rng(0), (2, 3), np.float64).shape
    (2, 3)
    """
    return rng.standard_normal(shape, dtype=dtype)


def langevin_step(I, B, Z, step_size, sigma):
    """One step of the Langevin dynamics, eq. (19), with reference variance ``sigma**2``:

    ``I - (eps^2 / 2) (I / sigma^2 - B) + eps Z``. The drift is the reconstruction error:
    the negative energy gradient is ``B - I / sigma^2``.

    Examples
    --------
    Without noise, a step of ``eps^2 / 2 = 1/2`` goes half way from ``I`` to ``B``:

    >>> langevin_step(np.array([0.0]), np.array([4.0]), np.array([0.0]), 1.0, 1.0)
    array([2.])
    """
    return I - (0.5 * step_size**2) * (I / sigma**2 - B) + step_size * Z


def pad_maps(x, rows, cols):
    """The maps ``x`` ``(N, C, H, W)`` padded by a boundary other than zeros:
    ``out[n, c, p, q] = x[n, c, rows[p], cols[q]]``, each padded row and column a copy of
    the input row and column it names (:func:`gcn_numpy.boundary.sources` gives ``rows``
    and ``cols`` for each boundary).

    Examples
    --------
    >>> x = np.arange(3.0).reshape(1, 1, 1, 3)
    >>> pad_maps(x, np.array([0]), np.array([0, 1, 2, 2, 1]))  # 2 mirrored columns after
    array([[[[0., 1., 2., 2., 1.]]]])
    """
    return x[:, :, rows][:, :, :, cols]


def fold_maps(a, rows, cols, before, in_hw, delta=None):
    """The adjoint of :func:`pad_maps`: each padded pixel of ``a`` ``(N, C, Hp, Wp)`` added
    onto the pixel ``(rows[p], cols[q])`` it copies, for unpadded maps of ``in_hw = (H,
    W)`` whose rows and columns start at ``before`` in ``a``; with ``delta``,
    ``gate(..., delta)``. This is how the top-down pass, eq. (16), returns the
    coefficients that fell on the padding to the pixels the padding copied.

    The rows are folded first, then the columns, each padded row or column in increasing
    order: the order the fast backends follow, so that their sums round the same. Written
    with array methods alone (the CuPy backend runs it on device arrays).

    Examples
    --------
    >>> a = np.ones((1, 1, 1, 5))
    >>> fold_maps(a, np.array([0]), np.array([0, 1, 2, 2, 1]), 0, (1, 3))
    array([[[[1., 2., 2.]]]])
    """
    H, W = in_hw
    out = a[:, :, before : before + H].copy()
    for p in range(a.shape[2]):
        if not before <= p < before + H:
            out[:, :, int(rows[p])] += a[:, :, p]
    folded = out[:, :, :, before : before + W].copy()
    for q in range(a.shape[3]):
        if not before <= q < before + W:
            folded[:, :, :, int(cols[q])] += out[:, :, :, q]
    return folded if delta is None else gate(folded, delta)
