"""The backend seam: the few kernels the model calls, one module per implementation.

A backend is a module exposing

- ``name`` and ``xp`` (its array module: NumPy or CuPy);
- ``asarray(a, dtype)`` and ``to_numpy(a)``;
- ``conv2d(x, W, stride, padding)``: linear responses, eq. (12);
- ``conv_relu(x, W, b, stride, padding) -> (F, delta)``: one bottom-up layer, eqs. (13)-(14);
- ``gate(B, delta)``: the top-down coefficients ``B * delta`` of eq. (16);
- ``conv_transpose(G, W, stride, padding, in_hw)``: top-down deconvolution, eq. (16);
- ``conv_weight_grad(x, G, kernel_hw, stride, padding) -> (dW, db)``;
- ``standard_normal(rng, shape, dtype)``: noise from a NumPy ``Generator`` ``rng``;
- ``langevin_step(I, B, Z, step_size, sigma)``: the update of eq. (19).

:mod:`gcn_numpy.backends.reference` is the float64 oracle that documents each one.
"""

import importlib

BACKENDS = ("numpy", "numba", "cupy")
_MODULES = {
    "numpy": "gcn_numpy.backends.reference",
    "numba": "gcn_numpy.backends.numba_cpu",
    "cupy": "gcn_numpy.backends.cupy_gpu",
}


def get_backend(name):
    """Return the backend module called ``name`` (one of :data:`BACKENDS`).

    Raises
    ------
    ValueError
        For an unknown name.
    RuntimeError
        When the backend's requirements (CuPy, a GPU) are missing on this machine.
    """
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module = importlib.import_module(_MODULES[name])
    check = getattr(module, "check_available", None)
    if check is not None:
        check()
    return module
