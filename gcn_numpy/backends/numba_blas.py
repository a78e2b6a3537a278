"""One BLAS thread inside the Numba kernels, which run one image per thread themselves.

Numba's ``np.dot`` calls the BLAS that SciPy ships (``scipy.linalg.cython_blas``), whose own
thread pool defaults to one thread per core. Called from every Numba thread at once, each
product would start that pool on cores that are already busy: measured on a loaded 2-core
machine, a layer ran at 1.4 GFLOP/s that way against 22 GFLOP/s with one BLAS thread per
call. :func:`single_threaded` lowers the count for the duration of a kernel and restores it.

Where the library is not an OpenBLAS that exports its thread setter (MKL, BLIS, an unusual
build), nothing is changed: MKL already runs single-threaded inside an OpenMP region.
"""

import contextlib
import ctypes
import functools

# OpenBLAS's setter under the names that SciPy wheels, distributions and 64-bit builds use
SETTERS = (
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads",
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
)


@functools.cache
def _library():
    """``cython_blas``'s library handle, whose symbol lookups also search its BLAS, or None."""
    try:
        from scipy.linalg import cython_blas

        return ctypes.CDLL(cython_blas.__file__)
    except (ImportError, OSError):
        return None


@functools.cache
def _thread_functions():
    """``(get, set)`` of the thread count of the BLAS behind ``np.dot`` in Numba, or None."""
    lib = _library()
    if lib is None:
        return None
    for setter in SETTERS:
        getter = setter.replace("_set_", "_get_")
        if hasattr(lib, setter) and hasattr(lib, getter):
            get, set_ = getattr(lib, getter), getattr(lib, setter)
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            return get, set_
    return None


def describe():
    """OpenBLAS's own description of the BLAS behind ``np.dot`` in Numba, or ``"unknown"``."""
    lib = _library()
    for name in ("scipy_openblas_get_config", "openblas_get_config"):
        if lib is not None and hasattr(lib, name):
            get_config = getattr(lib, name)
            get_config.restype, get_config.argtypes = ctypes.c_char_p, []
            return get_config().decode()
    return "unknown"


@contextlib.contextmanager
def single_threaded():
    """Run the block with one BLAS thread per call, then restore the previous count."""
    functions = _thread_functions()
    if functions is None:
        yield
        return
    get, set_ = functions
    previous = get()
    set_(1)
    try:
        yield
    finally:
        set_(previous)
