"""The backend seam: the few kernels the model calls, one module per implementation.

:class:`Backend` writes the seam as code: a backend is a module with these names, and
``tests/test_backend_seam.py`` checks that each one has them all, with the same signatures.
:mod:`gcn_numpy.backends.reference` is the float64 oracle that documents each one; the fast
kernels (:mod:`~gcn_numpy.backends.numba.seam`, :mod:`~gcn_numpy.backends.cupy_gpu`) point
back to it and are tested against it.
"""

import importlib
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["BACKENDS", "MODULES", "Backend", "get_backend"]

BACKENDS = ("numpy", "numba", "cupy")
MODULES = {  # the module of each backend, imported by get_backend on first use
    "numpy": "gcn_numpy.backends.reference",
    "numba": "gcn_numpy.backends.numba.seam",
    "cupy": "gcn_numpy.backends.cupy_gpu",
}

Array = Any  # numpy.ndarray, or cupy.ndarray on the GPU backend


@runtime_checkable
class Backend(Protocol):
    """What the model needs from a backend module. Shapes, for one layer of ``K`` filters
    ``kh x kw`` over ``C`` channels, stride ``s`` and zero padding ``p``: ``x`` ``(N, C, H,
    W)``, ``W`` ``(K, C, kh, kw)``, ``b`` ``(K,)``, maps and coefficients ``(N, K, Ho, Wo)``
    (see :func:`gcn_numpy.backends.reference.output_size`).

    Examples
    --------
    >>> from gcn_numpy.backends import Backend, get_backend
    >>> isinstance(get_backend("numpy"), Backend)
    True
    """

    name: str
    xp: ModuleType  # the array module: numpy or cupy

    def asarray(self, a: Any, dtype: np.dtype) -> Array:
        """``a`` as a C-contiguous backend array of ``dtype``."""

    def to_numpy(self, a: Array) -> np.ndarray:
        """A host NumPy array of ``a``."""

    def empty(self, shape: tuple, dtype: np.dtype) -> Array:
        """An uninitialised C-contiguous array, for maps filled outside the kernels."""

    def conv2d(self, x: Array, W: Array, stride: int, padding: int) -> Array:
        """Linear filter responses, eq. (12)."""

    def conv_relu(self, x: Array, W: Array, b: Array, stride: int, padding: int) -> tuple:
        """One bottom-up layer, eqs. (13)-(14): ``(F, delta)``."""

    def gate(self, B: Array, delta: Array) -> Array:
        """Top-down coefficients ``B^{(l)} * delta^{(l)}`` of eq. (16)."""

    def conv_transpose(
        self,
        G: Array,
        W: Array,
        stride: int,
        padding: int,
        in_hw: tuple[int, int],
        delta: Array | None = None,
    ) -> Array:
        """Top-down deconvolution, eq. (16); with ``delta``, gated by it (:meth:`gate`)."""

    def conv_weight_grad(
        self, x: Array, G: Array, kernel_hw: tuple[int, int], stride: int, padding: int
    ) -> tuple:
        """``(dW, db)``: the gradient of ``<G, conv2d(x, W) + b>``, summed over the batch."""

    def standard_normal(self, rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> Array:
        """Gaussian white noise, a function of the NumPy ``rng``'s state alone."""

    def langevin_step(self, I: Array, B: Array, Z: Array, step_size: float, sigma: float) -> Array:
        """One step of eq. (19)."""

    def pad_maps(self, x: Array, rows: np.ndarray, cols: np.ndarray) -> Array:
        """``x[..., rows[p], cols[q]]``: the maps padded by a boundary other than zeros
        (:func:`gcn_numpy.boundary.sources` gives ``rows`` and ``cols``)."""

    def fold_maps(
        self,
        a: Array,
        rows: np.ndarray,
        cols: np.ndarray,
        before: int,
        in_hw: tuple[int, int],
        delta: Array | None = None,
    ) -> Array:
        """The adjoint of :meth:`pad_maps` onto maps of ``in_hw``; with ``delta``, gated."""


def get_backend(name):
    """Return the backend module called ``name`` (one of :data:`BACKENDS`).

    Raises
    ------
    ValueError
        For an unknown name.
    RuntimeError
        When the backend's requirements (CuPy, a GPU) are missing on this machine.

    Examples
    --------
    >>> get_backend("numpy").name
    'numpy'
    """
    if name not in MODULES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module = importlib.import_module(MODULES[name])
    check = getattr(module, "check_available", None)
    if check is not None:
        check()
    return module
