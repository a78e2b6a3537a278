"""The generative ConvNet: bottom-up scoring f(I; w), top-down reconstruction B.

The model of eq. (5) is ``p(I; w) = exp[f(I; w)] q(I) / Z(w)`` with ``f`` a ReLU ConvNet
and ``q`` Gaussian white noise of variance ``sigma**2``. On each piece of image space where
the activation pattern ``delta`` is fixed, ``f(I) = alpha + <I, B>`` (eq. 17), so the
density is the Gaussian ``N(B, sigma**2 * 1)`` restricted to that piece (Theorem 1).

- Bottom-up (eqs. 13-14): each layer filters the maps below, ``delta`` records which
  responses are positive, ReLU keeps those.
- Top-down (eq. 16): starting from the top coefficients, each layer adds up its filters
  as basis functions with coefficients ``B^{(l)} * delta^{(l)}``; at the bottom this is
  ``B = B^{(0)}``, the reconstruction. Backprop of ``f`` *is* this pass, which is why the
  same coefficients give the weight gradient.
"""

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from .backends import get_backend

TOPS = ("sum", "linear")


def _positive_int(value, what, minimum=1):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Layer:
    """One convolutional layer followed by ReLU, eq. (1).

    Parameters
    ----------
    channels : int
        Number of filters ``N_l`` (output channels).
    kernel : int
        Filter size; filters are ``kernel x kernel`` (the local support ``S_l``).
    stride : int
        Sub-sampling step.
    padding : int
        Zero padding added on each side of the input before filtering.
    """

    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        _positive_int(self.channels, "Layer channels")
        _positive_int(self.kernel, "Layer kernel")
        _positive_int(self.stride, "Layer stride")
        _positive_int(self.padding, "Layer padding", minimum=0)


class GenerativeConvNet:
    """A ReLU ConvNet scoring function ``f(I; w)`` defining the model of eq. (4)/(5).

    Parameters
    ----------
    in_channels : int
        Image channels (1 for gray, 3 for color).
    layers : sequence of Layer
        The convolutional layers, bottom to top; ReLU after each.
    top : {"sum", "linear"}
        ``"sum"``: ``f`` is the sum of the top layer's responses over all channels and
        positions (eq. 6, the texture model). ``"linear"``: one more filter covering the
        whole top map, without ReLU, ``f = <w_top, F^{(L)}> + b_top`` (eq. 2 with one
        category, the object model); it needs ``image_size``.
    image_size : (int, int) or None
        ``(H, W)`` of the images. Required for ``"linear"``; optional for ``"sum"``,
        where it only makes inputs of another size an error.
    backend : {"numpy", "numba", "cupy"}
        Which kernels run the passes; ``"numba"`` (the default) compiles them for the CPU,
        ``"numpy"`` is the readable float64 reference.
    dtype : numpy dtype
        Floating type of weights and computation (float64 or float32).
    seed : int or None
        Seed of the weight initialisation: weights ``N(0, init_std**2)``, biases 0, as
        in the original release.
    init_std : float
        Standard deviation of the initial weights.

    Notes
    -----
    Arrays passed in may be NumPy arrays (or, on the CuPy backend, device arrays).
    Public methods return NumPy arrays; ``net.params`` holds the weights as arrays of the
    backend (device arrays on the GPU) for the learning loop.
    """

    def __init__(
        self,
        in_channels,
        layers,
        top="sum",
        image_size=None,
        backend="numba",
        dtype=np.float64,
        seed=0,
        init_std=0.01,
    ):
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.layers = tuple(layers)
        if not self.layers:
            raise ValueError("layers must hold at least one Layer")
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise ValueError(f"layers must be Layer instances, got {layer!r}")
        if top not in TOPS:
            raise ValueError(f"unknown top {top!r}; choose one of {', '.join(TOPS)}")
        self.top = top
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if image_size is not None:
            image_size = tuple(_positive_int(s, "image_size entries") for s in image_size)
            if len(image_size) != 2:
                raise ValueError(f"image_size must be (H, W), got {image_size!r}")
        elif top == "linear":
            raise ValueError('top="linear" needs image_size=(H, W): its filter covers the top map')
        self.image_size = image_size
        self.backend = backend
        self._be = get_backend(backend)
        if image_size is not None:
            self.layer_shapes(*image_size)  # raises if the image is too small
        rng = np.random.default_rng(seed)
        weights = []
        c_in = self.in_channels
        for layer in self.layers:
            k = layer.kernel
            W = rng.normal(0.0, init_std, size=(layer.channels, c_in, k, k))
            weights.append((W, np.zeros(layer.channels)))
            c_in = layer.channels
        if top == "linear":
            K, Ht, Wt = self.layer_shapes(*image_size)[-1]
            weights.append((rng.normal(0.0, init_std, size=(1, K, Ht, Wt)), np.zeros(1)))
        self.set_weights(weights)

    # ------------------------------------------------------------------ shapes

    def __repr__(self):
        layers = ", ".join(
            f"Layer({l.channels}, kernel={l.kernel}, stride={l.stride}, padding={l.padding})"
            for l in self.layers
        )
        return (
            f"GenerativeConvNet(in_channels={self.in_channels}, layers=[{layers}], "
            f"top={self.top!r}, image_size={self.image_size}, backend={self.backend!r}, "
            f"dtype={self.dtype.name})"
        )

    def min_image_size(self):
        """Smallest ``(H, W)`` (equal here) for which every layer's map is at least 1x1."""
        need = 1
        for layer in reversed(self.layers):
            need = max(1, (need - 1) * layer.stride + layer.kernel - 2 * layer.padding)
        return need, need

    def layer_shapes(self, H, W):
        """Map shape ``(K_l, H_l, W_l)`` of each layer ``l = 1..L`` for an ``H x W`` image.

        Raises ``ValueError`` if the image is smaller than the net's receptive field.
        """
        H, W = _positive_int(H, "image height"), _positive_int(W, "image width")
        shapes = []
        h, w = H, W
        for l, layer in enumerate(self.layers, start=1):
            h = (h + 2 * layer.padding - layer.kernel) // layer.stride + 1
            w = (w + 2 * layer.padding - layer.kernel) // layer.stride + 1
            if h < 1 or w < 1:
                raise ValueError(
                    f"image of size {H}x{W} is smaller than the net's receptive field: "
                    f"layer {l} would have no output; the smallest image is "
                    f"{self.min_image_size()[0]}x{self.min_image_size()[1]}"
                )
            shapes.append((layer.channels, h, w))
        return shapes

    # ----------------------------------------------------------------- weights

    def _expected_shapes(self):
        shapes = []
        c_in = self.in_channels
        for layer in self.layers:
            shapes.append(((layer.channels, c_in, layer.kernel, layer.kernel), (layer.channels,)))
            c_in = layer.channels
        if self.top == "linear":
            K, Ht, Wt = self.layer_shapes(*self.image_size)[-1]
            shapes.append(((1, K, Ht, Wt), (1,)))
        return shapes

    @property
    def weights(self):
        """List of ``(W, b)`` NumPy arrays: one per conv layer, then the top filter for
        ``"linear"``. Copies: change weights with :meth:`set_weights`."""
        to_np = self._be.to_numpy
        return [(np.array(to_np(W)), np.array(to_np(b))) for W, b in self.params]

    def set_weights(self, weights):
        """Replace all weights after checking their number, shapes and values."""
        expected = self._expected_shapes()
        weights = list(weights)
        if len(weights) != len(expected):
            raise ValueError(f"expected {len(expected)} (W, b) pairs, got {len(weights)}")
        params = []
        for i, (pair, (w_shape, b_shape)) in enumerate(zip(weights, expected, strict=True)):
            W, b = (np.asarray(self._be.to_numpy(a)) for a in pair)
            if W.shape != w_shape or b.shape != b_shape:
                raise ValueError(
                    f"weights[{i}]: expected W of shape {w_shape} and b of shape {b_shape}, "
                    f"got {W.shape} and {b.shape}"
                )
            if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
                raise ValueError(f"weights[{i}] holds non-finite values")
            params.append((self._be.asarray(W, self.dtype), self._be.asarray(b, self.dtype)))
        self.params = params

    # ------------------------------------------------------------------ inputs

    def check_images(self, I):
        """Return ``I`` as a backend array of the net's dtype, or raise ``ValueError``."""
        xp = self._be.xp
        if not hasattr(I, "shape"):
            I = np.asarray(I)
        if I.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got shape {tuple(I.shape)}")
        N, C, H, W = I.shape
        if N < 1:
            raise ValueError("images: the batch is empty")
        if C != self.in_channels:
            raise ValueError(f"images have {C} channels, the net expects {self.in_channels}")
        if self.image_size is not None and (H, W) != self.image_size:
            raise ValueError(
                f"images are {H}x{W}, the net was built for image_size={self.image_size}"
            )
        self.layer_shapes(H, W)
        I = self._be.asarray(I, self.dtype)
        if not bool(xp.all(xp.isfinite(I))):
            raise ValueError("images hold non-finite values (nan or inf)")
        return I

    # -------------------------------------------------------------- the passes

    def _conv_params(self):
        return self.params[: len(self.layers)]

    def bottom_up(self, I):
        """Bottom-up pass, eqs. (13)-(14), on a checked backend array.

        Returns ``(maps, deltas)``: ``maps[0] = I`` and ``maps[l] = F^{(l)} * I``;
        ``deltas[l-1] = delta^{(l)}``.
        """
        be = self._be
        maps, deltas = [I], []
        for layer, (W, b) in zip(self.layers, self._conv_params(), strict=True):
            F, delta = be.conv_relu(maps[-1], W, b, layer.stride, layer.padding)
            maps.append(F)
            deltas.append(delta)
        return maps, deltas

    def _top(self, F_top):
        """Score and the top coefficients ``B^{(L)}`` with the offset ``alpha_L``."""
        xp = self._be.xp
        if self.top == "sum":
            # eq. (6): f = sum_{k,x} F^{(L)}_k(x), so B^{(L)} = 1 and alpha_L = 0 (eq. 15).
            f = F_top.sum(axis=(1, 2, 3))
            return f, xp.ones_like(F_top), xp.zeros_like(f)
        w_top, b_top = self.params[-1]
        # eq. (2): f = <w_top, F^{(L)}> + b_top, so B^{(L)} = w_top and alpha_L = b_top.
        f = (F_top * w_top).sum(axis=(1, 2, 3)) + b_top[0]
        return f, xp.broadcast_to(w_top, F_top.shape), xp.full_like(f, b_top[0])

    def forward_backward(self, I, need_B=True, need_grads=False):
        """One bottom-up and one top-down pass on a checked backend array ``I``.

        The top-down recursion runs from ``l = L`` to ``1`` with ``G^{(l)} = B^{(l)} *
        delta^{(l)}``:

        - ``B^{(l-1)} = sum_{k,x} G^{(l)}_k(x) w^{(l)}_{k,x}`` (eq. 16, a transposed
          convolution);
        - ``alpha_{l-1} = alpha_l + sum_{k,x} G^{(l)}_k(x) b_{l,k}``.

        Derivation of the second line: by eq. (14), ``F^{(l)}_k(x) = delta^{(l)}_{k,x}
        (<w^{(l)}_{k,x}, F^{(l-1)}> + b_{l,k})``. Insert this into eq. (15),
        ``f = alpha_l + sum_{k,x} B^{(l)}_k(x) F^{(l)}_k(x)``::

            f = alpha_l + sum_{k,x} G^{(l)}_k(x) b_{l,k}
                        + < sum_{k,x} G^{(l)}_k(x) w^{(l)}_{k,x}, F^{(l-1)} >
              = alpha_{l-1} + < B^{(l-1)}, F^{(l-1)} >,

        which is eq. (15) one layer down. At the bottom, ``F^{(0)} = I`` gives eq. (17),
        ``f = alpha + <I, B>`` with ``alpha = alpha_0`` and ``B = B^{(0)}``.

        The weight gradient reuses the same coefficients: ``f`` depends on ``W^{(l)}``
        and ``b_l`` only through the pre-activations of layer ``l``, whose coefficient
        in ``f`` is ``G^{(l)}`` (the derivative of ReLU is ``delta``), so
        ``df/dW^{(l)}_{k,c,u,v} = sum_x G^{(l)}_k(x) F^{(l-1)}_c(x*s + (u, v) - p)`` and
        ``df/db_{l,k} = sum_x G^{(l)}_k(x)``.

        Returns
        -------
        dict with ``f`` (N,), ``alpha`` (N,), ``deltas`` (list), ``B`` (N, C, H, W) if
        ``need_B``, and if ``need_grads`` ``grads``: a list shaped like ``params`` of
        batch *sums* of ``(df/dW, df/db)``.
        """
        be = self._be
        maps, deltas = self.bottom_up(I)
        f, B, alpha = self._top(maps[-1])
        grads = []
        if need_grads and self.top == "linear":
            N = I.shape[0]
            grads.append((maps[-1].sum(axis=0, keepdims=True), be.xp.full((1,), N, self.dtype)))
        lowest = 0 if need_B else 1  # B^{(0)} costs one more deconvolution
        for l in range(len(self.layers), 0, -1):
            layer, (W, b) = self.layers[l - 1], self.params[l - 1]
            G = be.gate(B, deltas[l - 1])
            alpha = alpha + G.sum(axis=(2, 3)) @ b
            if need_grads:
                grads.append(
                    be.conv_weight_grad(maps[l - 1], G, W.shape[2:], layer.stride, layer.padding)
                )
            if l - 1 >= lowest:
                B = be.conv_transpose(G, W, layer.stride, layer.padding, maps[l - 1].shape[2:])
        out = {"f": f, "alpha": alpha, "deltas": deltas}
        if need_B:
            out["B"] = B
        if need_grads:
            out["grads"] = grads[::-1]
        return out

    # ------------------------------------------------------------- public API

    def score(self, I):
        """``f(I; w)`` for a batch: ndarray of shape (N,), ``I`` of shape (N, C, H, W)."""
        I = self.check_images(I)
        maps, _ = self.bottom_up(I)
        return self._be.to_numpy(self._top(maps[-1])[0])

    def activation_pattern(self, I):
        """The activation pattern ``delta(I; w)`` of eq. (13): one bool array of shape
        ``(N, K_l, H_l, W_l)`` per layer ``l = 1..L``."""
        _, deltas = self.bottom_up(self.check_images(I))
        return [self._be.to_numpy(d).astype(bool) for d in deltas]

    def top_down(self, I):
        """``(alpha, B)`` of eq. (17): ``f(I) = alpha + <I, B>`` on the piece of ``I``.

        ``B`` (shape (N, C, H, W)) is built by the top-down deconvolution of eq. (16) gated
        by the bottom-up ``delta``; ``alpha`` (shape (N,)) by the recursion derived in
        :meth:`forward_backward`. ``B`` is the mean of the Gaussian piece (Theorem 1) and
        equals ``df/dI``.
        """
        out = self.forward_backward(self.check_images(I), need_B=True)
        return self._be.to_numpy(out["alpha"]), self._be.to_numpy(out["B"])

    def weight_gradient(self, I):
        """Batch mean of ``(df/dW, df/db)`` per layer, shaped like :attr:`weights`.

        Hand-written backprop reusing the top-down coefficients ``B^{(l)} * delta^{(l)}``.
        """
        I = self.check_images(I)
        grads = self.forward_backward(I, need_B=False, need_grads=True)["grads"]
        n = I.shape[0]
        to_np = self._be.to_numpy
        return [(to_np(dW) / n, to_np(db) / n) for dW, db in grads]

    def energy(self, I, sigma=1.0):
        """``U(I) = ||I||^2 / (2 sigma^2) - f(I)``, so that ``p(I) ~ exp(-U(I))``; shape (N,)."""
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        I = self.check_images(I)
        maps, _ = self.bottom_up(I)
        f = self._top(maps[-1])[0]
        return self._be.to_numpy((I * I).sum(axis=(1, 2, 3)) / (2 * sigma**2) - f)


def prototype_model(K, size, channels=1, **kwargs):
    """The prototype model of eq. (7): ``f(I) = sum_k h(<I, w_k> + b_k)``.

    The special case of one layer of ``K`` filters, each covering the whole
    ``size x size`` image, summed at the top. On each piece the mean is
    ``sum_k delta_k w_k`` (eq. 9). Extra keyword arguments go to
    :class:`GenerativeConvNet` (``backend``, ``dtype``, ``seed``, ``init_std``).
    """
    size = _positive_int(size, "size")
    return GenerativeConvNet(
        in_channels=channels,
        layers=[Layer(K, kernel=size)],
        top="sum",
        image_size=(size, size),
        **kwargs,
    )
