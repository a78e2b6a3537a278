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

import numpy as np

from ._validate import positive_float
from ._validate import positive_int as _positive_int
from .backends import get_backend
from .boundary import BOUNDARIES, clean_positions, layer_padding, map_size, sources
from .layer import Layer

__all__ = ["GenerativeConvNet", "Layer", "prototype_model", "energy_from_score", "TOPS"]

TOPS = ("sum", "linear")


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
    boundary : {"zero", "circular", "reflect", "symmetric"}
        What each layer's filters see beyond the edge of its input (see
        :mod:`gcn_numpy.boundary`): ``"zero"`` pads with ``Layer.padding`` zeros (the
        release, PyTorch's ``conv2d``); ``"circular"`` makes every map a torus (sizes must
        divide by the strides; ``Layer.padding`` is not used); ``"reflect"`` mirrors the
        ``Layer.padding`` rows behind the edge, ``"symmetric"`` the edge rows themselves.

    Notes
    -----
    Arrays passed in may be NumPy arrays (or, on the CuPy backend, device arrays).
    Public methods return NumPy arrays; ``net.params`` holds the weights as arrays of the
    backend (device arrays on the GPU) for the learning loop.

    Examples
    --------
    >>> import numpy as np
    >>> net = GenerativeConvNet(1, [Layer(8, 5, stride=2, padding=2), Layer(4, 3, padding=1)],
    ...                         backend="numpy", seed=0)
    >>> net.layer_shapes(32, 32)
    [(8, 16, 16), (4, 16, 16)]
    >>> I = np.random.default_rng(0).normal(size=(2, 1, 32, 32))
    >>> alpha, B = net.top_down(I)  # f(I) = alpha + <I, B> on the piece of I (eq. 17)
    >>> bool(np.allclose(net.score(I), alpha + (I * B).sum(axis=(1, 2, 3))))
    True
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
        boundary="zero",
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
        if boundary not in BOUNDARIES:
            raise ValueError(
                f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}"
            )
        self.boundary = boundary
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
        shapes = self._expected_shapes()
        self.set_weights([(rng.normal(0.0, init_std, size=w), np.zeros(b)) for w, b in shapes])

    # ------------------------------------------------------------------ shapes

    def __repr__(self):
        layers = ", ".join(
            f"Layer({l.channels}, kernel={l.kernel}, stride={l.stride}, padding={l.padding})"
            for l in self.layers
        )
        return (
            f"GenerativeConvNet(in_channels={self.in_channels}, layers=[{layers}], "
            f"top={self.top!r}, image_size={self.image_size}, backend={self.backend!r}, "
            f"dtype={self.dtype.name}, boundary={self.boundary!r})"
        )

    def min_image_size(self):
        """Smallest ``(H, W)`` (equal here) for which every layer has a map: at least 1x1,
        larger than a reflecting padding, divisible by the strides on a torus."""
        need = 1
        for layer in reversed(self.layers):
            need = max(1, (need - 1) * layer.stride + layer.kernel - 2 * layer.padding)
        while True:  # the other boundaries' conditions, checked on sizes from there up
            try:
                self._shapes(need, need)
                return need, need
            except ValueError:
                need += 1

    def _shapes(self, H, W):
        shapes = []
        h, w = H, W
        for l, layer in enumerate(self.layers, start=1):
            h, w = (map_size(n, layer, self.boundary) for n in (h, w))
            if h < 1 or w < 1:
                raise ValueError(f"layer {l} would have no output")
            shapes.append((layer.channels, h, w))
        return shapes

    def layer_shapes(self, H, W):
        """Map shape ``(K_l, H_l, W_l)`` of each layer ``l = 1..L`` for an ``H x W`` image.

        Raises ``ValueError`` if the image is smaller than the net's receptive field, or
        does not fit the boundary (see :func:`gcn_numpy.boundary.map_size`).
        """
        H, W = _positive_int(H, "image height"), _positive_int(W, "image width")
        try:
            return self._shapes(H, W)
        except ValueError as e:
            need = self.min_image_size()[0]
            if min(H, W) < need:
                raise ValueError(
                    f"image of size {H}x{W} is smaller than the net's receptive field ({e}); "
                    f"the smallest image is {need}x{need}"
                ) from None
            raise ValueError(f"image of size {H}x{W} does not fit the net: {e}") from None

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

    # --------------------------------------------------------- backend access

    @property
    def kernels(self):
        """The backend module that runs the passes (it implements
        :class:`gcn_numpy.backends.Backend`): its kernels, for code that works below the
        model, such as the Langevin loop."""
        return self._be

    @property
    def xp(self):
        """The array module of the backend: ``numpy``, or ``cupy`` on the GPU."""
        return self._be.xp

    def asarray(self, a):
        """``a`` as a backend array (on the device for CuPy) of the net's dtype."""
        return self._be.asarray(a, self.dtype)

    def to_numpy(self, a):
        """A host NumPy array of the backend array ``a``."""
        return self._be.to_numpy(a)

    @property
    def params(self):
        """The parameters as backend arrays, a tuple of ``(W, b)`` pairs shaped like
        :attr:`weights`: what the learning loop updates without a host round trip. Replace
        them with :meth:`set_params` (backend arrays) or :meth:`set_weights` (any arrays)."""
        return self._params

    @property
    def weights(self):
        """List of ``(W, b)`` NumPy arrays: one per conv layer, then the top filter for
        ``"linear"``. Copies: change weights with :meth:`set_weights`."""
        return [(np.array(self.to_numpy(W)), np.array(self.to_numpy(b))) for W, b in self._params]

    def set_weights(self, weights):
        """Replace all weights after checking their number, shapes and values.

        ``weights`` is a sequence of ``(W, b)`` pairs of any arrays (NumPy, or device
        arrays on the GPU backend); they are copied to the backend in the net's dtype.
        """
        expected = self._expected_shapes()
        weights = list(weights)
        if len(weights) != len(expected):
            raise ValueError(f"expected {len(expected)} (W, b) pairs, got {len(weights)}")
        params = []
        for i, (pair, (w_shape, b_shape)) in enumerate(zip(weights, expected, strict=True)):
            W, b = (np.asarray(self.to_numpy(a)) for a in pair)
            if W.shape != w_shape or b.shape != b_shape:
                raise ValueError(
                    f"weights[{i}]: expected W of shape {w_shape} and b of shape {b_shape}, "
                    f"got {W.shape} and {b.shape}"
                )
            if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
                raise ValueError(f"weights[{i}] holds non-finite values")
            params.append((self.asarray(W), self.asarray(b)))
        self._params = tuple(params)

    def set_params(self, params):
        """Replace the parameters by backend arrays, kept where they are (no copy, no host
        round trip): the learning loop's update. Number, shapes, dtype and array type are
        checked; values are not (that would cost a device synchronisation), so the caller
        checks finiteness, as :class:`gcn_numpy.learning.Learner` does.
        """
        expected = self._expected_shapes()
        params = tuple(tuple(pair) for pair in params)
        if len(params) != len(expected):
            raise ValueError(f"expected {len(expected)} (W, b) pairs, got {len(params)}")
        for i, (pair, shapes) in enumerate(zip(params, expected, strict=True)):
            for a, shape, what in zip(pair, shapes, ("W", "b"), strict=True):
                if not isinstance(a, self.xp.ndarray) or a.dtype != self.dtype:
                    raise ValueError(
                        f"params[{i}] {what}: expected a {self.xp.__name__} array of "
                        f"{self.dtype}, got {type(a).__name__} of {getattr(a, 'dtype', None)}"
                    )
                if a.shape != shape:
                    raise ValueError(
                        f"params[{i}] {what}: expected shape {shape}, got {tuple(a.shape)}"
                    )
        self._params = params

    # ------------------------------------------------------------------ inputs

    def check_images(self, I):
        """Return ``I`` as a backend array of the net's dtype, or raise ``ValueError``."""
        xp = self.xp
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
        I = self.asarray(I)
        if not bool(xp.all(xp.isfinite(I))):
            raise ValueError("images hold non-finite values (nan or inf)")
        return I

    def check_pattern(self, deltas, image_shape):
        """Return a given activation pattern as backend bool arrays, or raise ``ValueError``.

        ``deltas`` holds one array per layer ``l = 1..L``, of shape ``(N, K_l, H_l, W_l)``
        for images of shape ``image_shape = (N, C, H, W)``.
        """
        N, _, H, W = image_shape
        deltas = list(deltas)
        shapes = [(N,) + shape for shape in self.layer_shapes(H, W)]
        if len(deltas) != len(shapes):
            raise ValueError(
                f"deltas: expected {len(shapes)} arrays (one per layer), got {len(deltas)}"
            )
        checked = []
        for l, (d, shape) in enumerate(zip(deltas, shapes, strict=True), start=1):
            if tuple(d.shape) != shape:
                raise ValueError(
                    f"deltas[{l - 1}] (layer {l}): expected shape {shape}, got {tuple(d.shape)}"
                )
            checked.append(self._be.asarray(d, bool))
        return checked

    # -------------------------------------------------------------- the passes

    def _conv_params(self):
        return self._params[: len(self.layers)]

    def _kernel_input(self, x, layer):
        """``(x, padding)`` as the layer's kernels take them: for a boundary other than
        ``"zero"``, the input padded here (the backend's ``pad_maps``) and padding 0."""
        if self.boundary == "zero":
            return x, layer.padding
        before, after = layer_padding(layer, self.boundary)
        rows, cols = (sources(before, after, n, self.boundary) for n in x.shape[2:])
        return self._be.pad_maps(x, rows, cols), 0

    def _deconvolve(self, G, W, layer, in_hw, delta=None):
        """Top-down deconvolution of one layer, eq. (16), onto its input of size ``in_hw``;
        copies of the filters that fall on the padding are folded back onto the pixels the
        padding copied (nothing, for zeros). With ``delta``, the layer below's activation
        pattern, ``B * delta``: that layer's coefficients ``G``."""
        if self.boundary == "zero":
            return self._be.conv_transpose(G, W, layer.stride, layer.padding, in_hw, delta)
        before, after = layer_padding(layer, self.boundary)
        padded_hw = (in_hw[0] + before + after, in_hw[1] + before + after)
        B = self._be.conv_transpose(G, W, layer.stride, 0, padded_hw)
        rows, cols = (sources(before, after, n, self.boundary) for n in in_hw)
        return self._be.fold_maps(B, rows, cols, before, in_hw, delta)

    def clean_positions(self, H, W, tolerance=0):
        """Which units of each layer see only the image, never the boundary's zeros or
        copies: one bool NumPy array ``(H_l, W_l)`` per layer, for an ``H x W`` image; with
        ``tolerance`` pixels, those whose receptive field leaves the image by at most that
        much (see :func:`gcn_numpy.boundary.clean_positions`).

        Examples
        --------
        >>> from gcn_numpy import GenerativeConvNet, Layer
        >>> net = GenerativeConvNet(1, [Layer(2, 3, padding=1)], backend="numpy")
        >>> net.clean_positions(6, 6)[-1].sum()  # the 4 x 4 positions of a net without padding
        np.int64(16)
        """
        self.layer_shapes(H, W)
        return clean_positions(self.layers, self.boundary, H, W, tolerance)

    def bottom_up(self, I, deltas=None):
        """Bottom-up pass, eqs. (13)-(14), on a checked backend array.

        Returns ``(maps, deltas)``: ``maps[0] = I`` and ``maps[l] = F^{(l)} * I``;
        ``deltas[l-1] = delta^{(l)}``. With a given pattern ``deltas`` (checked, see
        :meth:`check_pattern`) the maps are those of the piece ``A(delta; w)`` continued
        linearly, ``F^{(l)} = delta^{(l)} (<w^{(l)}_{k,x}, F^{(l-1)}> + b_{l,k})``: on that
        piece they equal the ReLU maps, and elsewhere they define the linear ``f`` of
        eq. (17) for that ``delta``.
        """
        be = self._be
        maps, pattern = [I], []
        for l, (layer, (W, b)) in enumerate(zip(self.layers, self._conv_params(), strict=True)):
            x, padding = self._kernel_input(maps[-1], layer)
            if deltas is None:
                F, delta = be.conv_relu(x, W, b, layer.stride, padding)
            else:
                delta = deltas[l]
                F = be.gate(be.conv2d(x, W, layer.stride, padding) + b[:, None, None], delta)
            maps.append(F)
            pattern.append(delta)
        return maps, pattern

    def _top_coefficients(self, top_shape, B_top):
        """``(B^{(L)}, alpha_L)`` of eq. (15) at the top; ``B^{(L)}`` is ``None`` for the
        ``"sum"`` top, whose coefficients are all 1 (then ``G^{(L)} = delta^{(L)}``)."""
        xp, N = self.xp, top_shape[0]
        if B_top is not None:
            B = xp.broadcast_to(self.asarray(B_top), top_shape)
            return self.asarray(B), xp.zeros(N, dtype=self.dtype)
        if self.top == "sum":
            # eq. (6): f = sum_{k,x} F^{(L)}_k(x), so B^{(L)} = 1 and alpha_L = 0 (eq. 15).
            return None, xp.zeros(N, dtype=self.dtype)
        # eq. (2): f = <w_top, F^{(L)}> + b_top, so B^{(L)} = w_top and alpha_L = b_top.
        w_top, b_top = self._params[-1]
        return xp.broadcast_to(w_top, top_shape), xp.full(N, b_top[0], dtype=self.dtype)

    def forward_backward(
        self,
        I,
        need_B=True,
        need_grads=False,
        need_f=True,
        deltas=None,
        B_top=None,
        need_layers=False,
    ):
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

        Parameters
        ----------
        I : backend array of shape (N, C, H, W)
            Checked images (:meth:`check_images`).
        need_B : bool
            Compute ``B = B^{(0)}`` (one more deconvolution, the bottom layer's).
        need_grads : bool
            Compute the weight gradient.
        need_f : bool
            Compute ``f`` and ``alpha``; the Langevin loop needs neither.
        deltas : list of arrays, optional
            A given activation pattern, one ``(N, K_l, H_l, W_l)`` array per layer, instead
            of ``delta(I)``: the pass is then that of the linear ``f = alpha_{w,delta} +
            <I, B_{w,delta}>`` of eq. (17), whatever piece ``I`` lies in. ``B`` and
            ``alpha`` depend on ``delta`` and ``w`` alone; with ``need_f`` and
            ``need_grads`` off, ``I`` only gives the shapes.
        B_top : array, optional
            Top coefficients ``B^{(L)}``, broadcastable to the top map ``(N, K_L, H_L,
            W_L)``, instead of the model's (1 for ``"sum"``, ``w_top`` for ``"linear"``):
            the pass then differentiates ``phi(I) = <B_top, F^{(L)}(I)>`` (``alpha_L =
            0``), and ``grads`` has the conv layers only. With ``B_top = c_n`` per image it
            gives ``sum_n c_n df(I_n)/dw``.
        need_layers : bool
            Also return every layer's coefficients and offsets (implies ``need_B``).

        Returns
        -------
        out : dict
            ``deltas`` (list), and as asked: ``f`` and ``alpha`` (N,); ``B`` (N, C, H, W);
            ``grads``, a list shaped like ``params`` of batch *sums* of ``(df/dW, df/db)``;
            ``maps`` (``F^{(0..L)}``), ``B_layers`` (``B^{(0..L)}``, with ``B^{(L)}``
            broadcast) and ``alphas`` (``alpha_0..alpha_L``).

        Examples
        --------
        >>> import numpy as np
        >>> from gcn_numpy import GenerativeConvNet, Layer
        >>> net = GenerativeConvNet(1, [Layer(4, 3), Layer(2, 3)], backend="numpy", seed=1)
        >>> I = net.check_images(np.random.default_rng(0).normal(size=(2, 1, 8, 8)))
        >>> out = net.forward_backward(I)
        >>> bool(np.allclose(out["f"], out["alpha"] + (I * out["B"]).sum(axis=(1, 2, 3))))
        True
        """
        need_B, need_alpha = need_B or need_layers, need_f or need_layers
        N, _, H, W = I.shape
        if deltas is not None:
            deltas = self.check_pattern(deltas, I.shape)
        maps = None  # B_{w,delta} needs delta and w only
        if deltas is None or need_f or need_grads:
            maps, deltas = self.bottom_up(I, deltas)
        shapes = self.layer_shapes(H, W)
        B, alpha = self._top_coefficients((N,) + shapes[-1], B_top)
        out, grads = {"deltas": deltas}, []
        if need_f:  # eq. (15) at the top
            F_top = maps[-1]
            out["f"] = alpha + (F_top if B is None else F_top * B).sum(axis=(1, 2, 3))
        if need_grads and self.top == "linear" and B_top is None:
            grads.append((maps[-1].sum(axis=0, keepdims=True), self.xp.full((1,), N, self.dtype)))
        if need_layers:
            out["maps"] = maps
            B_layers = [self.xp.ones((N,) + shapes[-1], self.dtype) if B is None else B]
            alphas = [alpha]
        in_hw = [(H, W)] + [shape[1:] for shape in shapes[:-1]]

        # The recursion of eqs. (15)-(16), l = L, ..., 1: G^{(l)} = B^{(l)} * delta^{(l)};
        # alpha_{l-1} = alpha_l + sum G^{(l)} b_l; the gradient of layer l from G^{(l)} and
        # F^{(l-1)}; B^{(l-1)} = sum G^{(l)} w^{(l)}. The fast paths: _top_gate, _step_down.
        G = self._top_gate(B, deltas[-1])
        for l in range(len(self.layers), 0, -1):
            layer, (W, b) = self.layers[l - 1], self._params[l - 1]
            if need_alpha:
                alpha = alpha + G.sum(axis=(2, 3)) @ b
            if need_grads:
                x, padding = self._kernel_input(maps[l - 1], layer)
                grads.append(self._be.conv_weight_grad(x, G, W.shape[2:], layer.stride, padding))
            B, G = self._step_down(l, G, deltas, in_hw[l - 1], need_B, need_layers)
            if need_layers:
                B_layers.insert(0, B)
                alphas.insert(0, alpha)

        if need_f:
            out["alpha"] = alpha
        if need_B:
            out["B"] = B
        if need_grads:
            out["grads"] = grads[::-1]
        if need_layers:
            out["B_layers"], out["alphas"] = B_layers, alphas
        return out

    def _top_gate(self, B, delta):
        """``G^{(L)} = B^{(L)} * delta^{(L)}``. Fast path: at a ``"sum"`` top (``B`` is None,
        all ones) that is ``delta^{(L)}`` itself, with no product."""
        return delta.astype(self.dtype) if B is None else self._be.gate(B, delta)

    def _step_down(self, l, G, deltas, in_hw, need_B, need_layers):
        """``(B^{(l-1)}, G^{(l-1)})`` from ``G^{(l)}``: the deconvolution of eq. (16), then the
        gate by the activation pattern ``delta^{(l-1)}`` of the layer below.

        Fast paths: where ``B^{(l-1)}`` itself is not asked for (``need_layers`` off), the
        backend gates each image as it deconvolves it (``conv_transpose(..., delta)``, one
        pass over the maps fewer) and ``B^{(l-1)}`` comes back None; at the bottom there is
        no gate, and ``B = B^{(0)}``, one more deconvolution, is made only where asked for
        (else None). ``G^{(0)}`` is None.
        """
        layer, W = self.layers[l - 1], self._params[l - 1][0]
        if l == 1:
            return (self._deconvolve(G, W, layer, in_hw) if need_B else None), None
        delta = deltas[l - 2]
        if not need_layers:
            return None, self._deconvolve(G, W, layer, in_hw, delta)
        B = self._deconvolve(G, W, layer, in_hw)
        return B, self._be.gate(B, delta)

    # ------------------------------------------------------------- public API

    def score(self, I):
        """``f(I; w)`` for a batch: ndarray of shape (N,), ``I`` of shape (N, C, H, W).

        Examples
        --------
        >>> import numpy as np
        >>> from gcn_numpy import prototype_model
        >>> net = prototype_model(K=3, size=2, backend="numpy")
        >>> net.score(np.zeros((1, 1, 2, 2)))  # biases start at 0: every unit is off
        array([0.])
        """
        return self.to_numpy(self.forward_backward(self.check_images(I), need_B=False)["f"])

    def activation_pattern(self, I):
        """The activation pattern ``delta(I; w)`` of eq. (13): one bool array of shape
        ``(N, K_l, H_l, W_l)`` per layer ``l = 1..L``.

        Examples
        --------
        >>> import numpy as np
        >>> from gcn_numpy import GenerativeConvNet, Layer
        >>> net = GenerativeConvNet(1, [Layer(4, 3, stride=2)], backend="numpy")
        >>> [d.shape for d in net.activation_pattern(np.ones((2, 1, 9, 9)))]
        [(2, 4, 4, 4)]
        """
        _, deltas = self.bottom_up(self.check_images(I))
        return [self.to_numpy(d).astype(bool) for d in deltas]

    def top_down(self, I, deltas=None):
        """``(alpha, B)`` of eq. (17): ``f(I) = alpha + <I, B>`` on the piece of ``I``.

        ``B`` (shape (N, C, H, W)) is built by the top-down deconvolution of eq. (16) gated
        by the bottom-up ``delta``; ``alpha`` (shape (N,)) by the recursion derived in
        :meth:`forward_backward`. ``B`` is the mean of the Gaussian piece (Theorem 1) and
        equals ``df/dI``. With ``deltas`` given (one array per layer, as
        :meth:`activation_pattern` returns), it is ``(alpha_{w,delta}, B_{w,delta})`` of
        that pattern's piece instead, which depends on ``delta`` and ``w`` alone.

        Examples
        --------
        >>> import numpy as np
        >>> from gcn_numpy import GenerativeConvNet, Layer
        >>> net = GenerativeConvNet(1, [Layer(4, 3), Layer(2, 3)], backend="numpy", seed=1)
        >>> I = np.random.default_rng(0).normal(size=(1, 1, 8, 8))
        >>> alpha, B = net.top_down(I)
        >>> bool(np.allclose(net.score(I), alpha + (I * B).sum()))
        True
        """
        I = self.check_images(I)
        out = self.forward_backward(I, deltas=deltas)
        return self.to_numpy(out["alpha"]), self.to_numpy(out["B"])

    def weight_gradient(self, I):
        """Batch mean of ``(df/dW, df/db)`` per layer, shaped like :attr:`weights`.

        Hand-written backprop reusing the top-down coefficients ``B^{(l)} * delta^{(l)}``.

        Examples
        --------
        >>> import numpy as np
        >>> from gcn_numpy import GenerativeConvNet, Layer
        >>> net = GenerativeConvNet(3, [Layer(4, 5, stride=2)], backend="numpy")
        >>> [(dW.shape, db.shape) for dW, db in net.weight_gradient(np.ones((2, 3, 9, 9)))]
        [((4, 3, 5, 5), (4,))]
        """
        I = self.check_images(I)
        grads = self.forward_backward(I, need_B=False, need_f=False, need_grads=True)["grads"]
        n = I.shape[0]
        return [(self.to_numpy(dW) / n, self.to_numpy(db) / n) for dW, db in grads]

    def energy(self, I, sigma=1.0, B_top=None):
        """``U(I) = ||I||^2 / (2 sigma^2) - f(I)``, so that ``p(I) ~ exp(-U(I))``; shape (N,).
        ``B_top``: the top coefficients ``f`` sums with (:meth:`forward_backward`; a 0/1
        mask of top positions), or None for the net's own top.

        Examples
        --------
        >>> import numpy as np
        >>> from gcn_numpy import prototype_model
        >>> net = prototype_model(K=1, size=2, backend="numpy")
        >>> net.set_weights([(np.ones((1, 1, 2, 2)), np.zeros(1))])
        >>> net.energy(np.ones((1, 1, 2, 2)))  # ||I||^2 / 2 - max(0, <I, w>) = 2 - 4
        array([-2.])
        """
        sigma = positive_float(sigma, "sigma")
        I = self.check_images(I)
        f = self.forward_backward(I, need_B=False, B_top=B_top)["f"]
        return self.to_numpy(energy_from_score(I, f, sigma))


def energy_from_score(I, f, sigma):
    """``U(I) = ||I||^2 / (2 sigma^2) - f(I)`` from scores already computed (backend arrays).

    Examples
    --------
    >>> import numpy as np
    >>> energy_from_score(np.ones((1, 1, 2, 2)), np.array([1.0]), 1.0)
    array([1.])
    """
    return (I * I).sum(axis=(1, 2, 3)) / (2 * sigma**2) - f


def prototype_model(K, size, channels=1, **kwargs):
    """The prototype model of eq. (7): ``f(I) = sum_k h(<I, w_k> + b_k)``.

    The special case of one layer of ``K`` filters, each covering the whole
    ``size x size`` image, summed at the top. On each piece the mean is
    ``sum_k delta_k w_k`` (eq. 9). Extra keyword arguments go to
    :class:`GenerativeConvNet` (``backend``, ``dtype``, ``seed``, ``init_std``).

    Examples
    --------
    >>> import numpy as np
    >>> net = prototype_model(K=3, size=4, backend="numpy", seed=0)
    >>> I = np.random.default_rng(1).normal(size=(1, 1, 4, 4))
    >>> (W, b), = net.weights
    >>> delta = net.activation_pattern(I)[0][0, :, 0, 0]  # which filters are on
    >>> _, B = net.top_down(I)
    >>> bool(np.allclose(B[0], (W * delta[:, None, None, None]).sum(axis=0)))  # eq. (9)
    True
    """
    size = _positive_int(size, "size")
    return GenerativeConvNet(
        in_channels=channels,
        layers=[Layer(K, kernel=size)],
        top="sum",
        image_size=(size, size),
        **kwargs,
    )
