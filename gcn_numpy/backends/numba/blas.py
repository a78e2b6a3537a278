"""BLAS for the Numba kernels: a general matrix product, and one BLAS thread per call.

:func:`gemm` is the matrix product of BLAS (``sgemm``/``dgemm``) callable from ``@njit``
code, with what Numba's ``np.dot`` does not offer: leading dimensions, so that a product
reads a sub-matrix or a shifted window of a larger array without a copy, and ``beta``, so
that products add onto their output. It calls the BLAS that SciPy ships
(``scipy.linalg.cython_blas``), the one behind Numba's own ``np.dot``. The functions are
registered with LLVM by name, so that compiled kernels still find them when Numba loads
them from its disk cache in a later process.

That BLAS has a thread pool of its own, one thread per core by default. The kernels run one
image per thread themselves, and BLAS threads started on top of them compete for the same
cores (docs/numba_design.md has the measurement): :func:`single_threaded` holds SciPy's
OpenBLAS at one thread while kernels run.

Where the library is not an OpenBLAS that exports its thread setter (MKL, BLIS, an unusual
build), nothing is changed: MKL already runs single-threaded inside an OpenMP region.
"""

import contextlib
import ctypes
import functools
import threading

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address, overload

__all__ = ["SETTERS", "gemm", "thread_functions", "describe", "single_threaded"]

# OpenBLAS's setter under the names that SciPy wheels, distributions and 64-bit builds use
SETTERS = (
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads",
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
)

# ------------------------------------------------------------------------ the product


def _blas_function(name):
    """SciPy's Fortran ``name`` (13 pointer arguments) as an external function of Numba."""
    symbol = f"gcn_numpy_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_blas", name))
    return types.ExternalFunction(symbol, types.void(*[types.voidptr] * 13))


_sgemm = _blas_function("sgemm")
_dgemm = _blas_function("dgemm")


def _fortran_gemm(flags, ints, scalars, A, B, C):
    """The Fortran call's arguments as :func:`gemm` packs them, computed with NumPy: what
    runs with ``NUMBA_DISABLE_JIT=1``. Compiled, :func:`_fortran_gemm_impl` calls sgemm or
    dgemm instead."""
    trans_b, trans_a = flags[0] == 84, flags[1] == 84
    n, m, k, ldb, lda, ldc = (int(v) for v in ints)
    alpha, beta = scalars

    def matrix(flat, rows, cols, ld):
        step = flat.itemsize
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (ld * step, step))

    op_a = matrix(A, k, m, lda).T if trans_a else matrix(A, m, k, lda)
    op_b = matrix(B, n, k, ldb).T if trans_b else matrix(B, k, n, ldb)
    out = matrix(C, m, n, ldc)
    product = alpha * (op_a @ op_b)
    out[...] = product if beta == 0 else product + beta * out


@overload(_fortran_gemm, jit_options={"nogil": True})
def _fortran_gemm_impl(flags, ints, scalars, A, B, C):
    blas = _sgemm if C.dtype == types.float32 else _dgemm

    def impl(flags, ints, scalars, A, B, C):
        # Fortran is column-major: the row-major C = op(A) op(B) is C^T = op(B)^T op(A)^T
        blas(
            flags[0:].ctypes,
            flags[1:].ctypes,
            ints[0:].ctypes,
            ints[1:].ctypes,
            ints[2:].ctypes,
            scalars[0:].ctypes,
            B.ctypes,
            ints[3:].ctypes,
            A.ctypes,
            ints[4:].ctypes,
            scalars[1:].ctypes,
            C.ctypes,
            ints[5:].ctypes,
        )

    return impl


@njit(cache=True, nogil=True)
def _extent(rows, cols, ld):
    """Numbers that a row-major ``rows x cols`` matrix with leading dimension ``ld`` spans."""
    return 0 if rows == 0 or cols == 0 else (rows - 1) * ld + cols


@njit(cache=True, nogil=True)
def gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """``C = alpha * op(A) @ op(B) + beta * C`` on row-major matrices, as in BLAS.

    ``A``, ``B`` and ``C`` are 1-d arrays (flat views) that start at the matrices' first
    entries, of one dtype, float32 or float64; ``C`` is ``m x n`` with rows ``ldc`` apart,
    ``op(A)`` ``m x k`` and ``op(B)`` ``k x n``. ``op(A)`` is ``A``, stored ``m x k`` with
    rows ``lda`` apart, or with ``trans_a`` the transpose of ``A`` stored ``k x m``; same
    for ``B``. Rows of ``A`` and ``B`` may overlap, for instance the shifted windows of one
    image. With ``beta == 0``, ``C`` is written without being read.

    Raises ValueError where a matrix would reach past its array, instead of letting BLAS
    read or write memory that is not the array's.
    """
    if m <= 0 or n <= 0:
        return
    a_rows, a_cols = (k, m) if trans_a else (m, k)
    b_rows, b_cols = (n, k) if trans_b else (k, n)
    if (
        _extent(a_rows, a_cols, lda) > A.size
        or _extent(b_rows, b_cols, ldb) > B.size
        or _extent(m, n, ldc) > C.size
        or lda < max(1, a_cols)
        or ldb < max(1, b_cols)
        or ldc < n
    ):
        raise ValueError("gemm: a matrix reaches past its array")
    flags = np.empty(2, np.uint8)
    flags[0] = 84 if trans_b else 78  # "T" or "N"
    flags[1] = 84 if trans_a else 78
    ints = np.empty(6, np.int32)
    ints[0], ints[1], ints[2] = n, m, k
    ints[3], ints[4], ints[5] = max(1, ldb), max(1, lda), ldc
    scalars = np.empty(2, C.dtype)
    scalars[0], scalars[1] = alpha, beta
    _fortran_gemm(flags, ints, scalars, A, B, C)


# --------------------------------------------------------------------------- threads


@functools.cache
def _library():
    """``cython_blas``'s library handle, whose symbol lookups also search its BLAS, or None."""
    try:
        from scipy.linalg import cython_blas

        return ctypes.CDLL(cython_blas.__file__)
    except (ImportError, OSError):
        return None


@functools.cache
def thread_functions():
    """``(get, set)`` of the thread count of the BLAS behind :func:`gemm`, or None where
    that BLAS exports no OpenBLAS thread setter.

    Examples
    --------
    >>> functions = thread_functions()
    >>> functions is None or functions[0]() >= 1
    True
    """
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
    """OpenBLAS's own description of the BLAS behind :func:`gemm`, or ``"unknown"``.

    Examples
    --------
    >>> isinstance(describe(), str)
    True
    """
    lib = _library()
    for name in ("scipy_openblas_get_config", "openblas_get_config"):
        if lib is not None and hasattr(lib, name):
            get_config = getattr(lib, name)
            get_config.restype, get_config.argtypes = ctypes.c_char_p, []
            return get_config().decode()
    return "unknown"


_lock = threading.Lock()
_holders = 0  # blocks inside single_threaded(), in every thread
_saved = None  # the count before the first of them


@contextlib.contextmanager
def single_threaded():
    """Run the block with SciPy's OpenBLAS at one thread, then restore its previous count.

    OpenBLAS keeps one thread count for the whole process (``openblas_set_num_threads_local``
    changes the same global in its pthreads builds), so the count cannot be set per call.
    Blocks may run at once in several threads: the first one in saves the count and sets 1,
    the last one out restores it, under a lock, so that one thread never restores the count
    while another one's kernels still run, nor saves the 1 another one set.

    While any block runs, every caller of SciPy's BLAS in the process (``scipy.linalg``,
    Numba's ``np.dot``) gets one thread. NumPy's own BLAS is another library and is not
    touched. Changing SciPy's BLAS thread count from another thread meanwhile (for instance
    with threadpoolctl) is not coordinated with this lock: the last block out restores
    the count it saved.

    Examples
    --------
    >>> functions = thread_functions()
    >>> with single_threaded():
    ...     inside = functions[0]() if functions else 1
    >>> inside
    1
    """
    global _holders, _saved
    functions = thread_functions()
    if functions is None:
        yield
        return
    get, set_ = functions
    with _lock:
        if _holders == 0:
            _saved = get()
            set_(1)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                set_(_saved)
