"""The CuPy backend: CUDA C kernels around cuBLAS matrix products, float32 and float64.

Install with ``pip install 'gcn_numpy[gpu]'``; needs an NVIDIA GPU. The functions and
their conventions are those of :mod:`gcn_numpy.backends.reference`, on CuPy device arrays;
each public kernel's docstring names the reference function it implements.

Design. A layer is one matrix product (cuBLAS) plus memory-bound kernels from
``cuda/conv.cu`` (loaded with :class:`cupy.RawModule`), with the batch folded into the
columns so that each layer costs one large GEMM:

- bottom-up, eqs. (12)-(14): ``col = im2col(x)`` of shape ``(C*kh*kw, N*P)``; the
  responses ``Y = W_mat @ col``, channel-major ``(K, N*P)``; ``bias_relu`` adds ``b``, writes
  ``F`` and ``delta`` batch-major;
- top-down, eq. (16): ``G`` is made channel-major (``swap_leading_axes``), the copies of the
  filters are added up as ``W_mat.T @ G`` (one GEMM, the basis functions of eq. 11) and
  ``col2im`` sums each pixel's overlapping copies;
- weight gradient: ``dW = G @ col.T``, the correlation of ``G`` with the layer's input.

The rows of the column matrix are ordered (c, u, v), so that ``W_mat`` is the filter array
reshaped, without a copy; ``conv.cu`` ties this order to the loops of ``reference.py``.

The pointwise steps (the gate ``B * delta`` and the Langevin update of eq. 19) are
:class:`cupy.ElementwiseKernel`\\ s. Nothing here copies to or from the host, so a learning
loop built on these functions stays on the device.

Noise: :func:`standard_normal` draws one 64-bit seed from the caller's NumPy ``Generator``
per call and expands it on the device with the counter-based generator Philox4x32-10 and
the Box-Muller transform (``normal`` in ``conv.cu``). The noise is therefore a function of
the NumPy generator's state alone: restoring that state (a checkpoint, a rollback) replays
it exactly, as on the CPU backends; no generator state lives on the device. It differs from
the NumPy backend's noise, which ``rng.standard_normal`` draws.

TF32: :func:`allow_tf32` and :func:`tf32` let cuBLAS use tensor cores for float32 products
(off by default: TF32 rounds the factors to 10-bit mantissas).

Column reuse: inside :func:`reusing_columns`, the weight gradient takes the column matrix
that the forward pass built from the same input array instead of building it again.
"""

import contextlib
import contextvars
import functools
from collections import OrderedDict
from importlib import resources

import numpy as np

from . import reference
from .reference import output_size

try:
    import cupy
except ImportError as exc:  # CuPy missing or unable to load its CUDA libraries
    cupy = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
else:
    IMPORT_ERROR = None

name = "cupy"
xp = cupy

BLOCK = 256  # threads per block along the pixel axis of every kernel
MAX_GRID_YZ = 65535  # CUDA's limit on gridDim.y and gridDim.z
MAX_INT = 2**31 - 1
KERNELS = ("im2col", "col2im", "bias_relu", "swap_leading_axes", "normal")
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def check_available():
    """Raise ``RuntimeError`` saying what is missing if CuPy or a CUDA device is absent."""
    if cupy is None:
        raise RuntimeError(
            "backend 'cupy' needs CuPy, which could not be imported "
            f"({IMPORT_ERROR}). Install it with: pip install 'gcn_numpy[gpu]'"
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver, OSError without libcudart
        raise RuntimeError(
            f"backend 'cupy' needs a CUDA device, but no CUDA device is usable here ({exc})"
        ) from exc
    if count < 1:
        raise RuntimeError("backend 'cupy' needs a CUDA device, but no CUDA device was found")
    try:
        load_libraries()
    except Exception as exc:
        raise RuntimeError(
            "backend 'cupy': CuPy cannot load the CUDA libraries it needs (cuBLAS, NVRTC): "
            f"{exc}. Install them with: pip install 'cupy-cuda13x[ctk]'"
        ) from exc


def load_libraries():
    """Load cuBLAS and NVRTC now, which CuPy would otherwise do at first use (so that
    :func:`check_available` reports missing libraries before any kernel runs)."""
    import cupy.cublas  # noqa: F401

    cupy.cuda.nvrtc.getVersion()


# ------------------------------------------------------------------------ device plumbing


def kernel_source():
    """The CUDA C source of the kernels, ``cuda/conv.cu``, shipped as package data."""
    return resources.files("gcn_numpy.backends").joinpath("cuda", "conv.cu").read_text()


@functools.cache
def _module():
    names = [f"{k}<{t}>" for k in KERNELS for t in CTYPES.values()]
    return cupy.RawModule(code=kernel_source(), options=("-std=c++17",), name_expressions=names)


@functools.cache
def _function(kernel, ctype):
    return _module().get_function(f"{kernel}<{ctype}>")


def launch(kernel, dtype, grid, block, args):
    """Run ``kernel<T>`` of ``conv.cu`` (one of :data:`KERNELS`) for ``T`` matching
    ``dtype``, on the ``grid`` of ``block`` threads (:func:`grid` gives both) with the
    kernel's arguments ``args``."""
    _function(kernel, CTYPES[np.dtype(dtype)])(grid, block, args)


def gemm(a, b, trans_a=False, trans_b=False):
    """``op(a) @ op(b)`` into a new C-contiguous array, by cuBLAS.

    Transposed operands are passed to cuBLAS as flags, never copied: the column matrices
    are the largest arrays of the backend.
    """
    from cupy import cublas

    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    out = cupy.empty((m, n), dtype=a.dtype)
    return cublas.gemm("T" if trans_a else "N", "T" if trans_b else "N", a, b, out=out)


def grid(fast, mid, slow):
    """Grid and block for ``fast`` threads along x, ``mid`` along y, ``slow`` along z.

    The kernels index pixels with ``int``: the last block's idle threads, up to
    ``BLOCK - 1`` past ``fast``, must not overflow it either.
    """
    if fast > MAX_INT - (BLOCK - 1) or mid > MAX_GRID_YZ or slow > MAX_GRID_YZ:
        raise ValueError(
            f"arrays too large for the CUDA kernels: {fast} pixels, {mid} x {slow} maps "
            f"(at most {MAX_INT - (BLOCK - 1)} and {MAX_GRID_YZ} each)"
        )
    return (-(-fast // BLOCK), mid, slow), (BLOCK, 1, 1)


def _i32(*values):
    return tuple(np.int32(v) for v in values)


def _contiguous(a, dtype):
    return xp.ascontiguousarray(a, dtype=dtype)


def im2col(x, kernel_hw, stride, padding):
    """Column matrix ``(C*kh*kw, N*Ho*Wo)`` of the maps ``x`` ``(N, C, H, W)`` and the output
    size ``(Ho, Wo)``: row ``(c, u, v)``, column ``(n, i, j)`` holds ``xpad[n, c, i*s + u,
    j*s + v]`` (see ``conv.cu``), the right factor of every layer's GEMM."""
    N, C, H, W = x.shape
    kh, kw = kernel_hw
    if H * W > MAX_INT:  # the kernel's offsets within one map are int
        raise ValueError(f"maps too large for the CUDA kernels: {H} x {W} pixels")
    Ho, Wo = output_size(H, kh, stride, padding), output_size(W, kw, stride, padding)
    col = xp.empty((C * kh * kw, N * Ho * Wo), dtype=x.dtype)
    if col.size:
        sizes = _i32(N, C, H, W, kh, kw, stride, padding, Ho, Wo)
        launch("im2col", x.dtype, *grid(Ho * Wo, C, N), (x, col) + sizes)
    return col, (Ho, Wo)


def col2im(col, x_shape, kernel_hw, stride, padding, out_hw):
    """Sum the column matrix back onto maps of ``x_shape``: the adjoint of :func:`im2col`."""
    N, C, H, W = x_shape
    (kh, kw), (Ho, Wo) = kernel_hw, out_hw
    x = xp.empty(x_shape, dtype=col.dtype)
    if x.size:
        sizes = _i32(N, C, H, W, kh, kw, stride, padding, Ho, Wo)
        launch("col2im", col.dtype, *grid(H * W, C, N), (col, x) + sizes)
    return x


def swap_leading_axes(a):
    """``a`` of shape ``(A, B, ...)`` as a C-contiguous ``(B, A, ...)`` array."""
    A, B = a.shape[:2]
    P = int(np.prod(a.shape[2:]))
    out = xp.empty((B, A) + a.shape[2:], dtype=a.dtype)
    if out.size:
        launch("swap_leading_axes", a.dtype, *grid(P, B, A), (a, out) + _i32(A, B, P))
    return out


def _dtype(*arrays):
    dtype = np.result_type(*(a.dtype for a in arrays))
    if dtype not in CTYPES:
        raise TypeError(f"the cupy backend computes in float32 or float64, not {dtype}")
    return dtype


# --------------------------------------------------------------------------- the seam


def asarray(a, dtype):
    """Return ``a`` (host or device) as a C-contiguous device array of ``dtype``."""
    return xp.ascontiguousarray(xp.asarray(a, dtype=dtype))


def to_numpy(a):
    """Copy a device array to the host (host arrays pass through)."""
    return cupy.asnumpy(a)


def empty(shape, dtype):
    """An uninitialised device array: ``reference.empty`` on the device (CuPy's memory
    pool keeps freed blocks)."""
    return xp.empty(shape, dtype=dtype)


# Column matrices kept for the weight gradient while reusing_columns() is active:
# id(x) -> (x, (kernel_hw, stride, padding, dtype), col), oldest first. The entry holds x
# itself, so its id cannot be reused by another array while the entry lives.
_COLUMNS = contextvars.ContextVar("gcn_cupy_columns", default=None)


@contextlib.contextmanager
def reusing_columns(limit=8):
    """Within this block, :func:`conv_weight_grad` reuses the column matrix that
    :func:`conv2d` or :func:`conv_relu` built from the same input array, instead of
    building it again (one ``im2col`` per layer fewer in a gradient pass).

    The caller promises not to modify those input arrays in place inside the block (the
    model never does: each layer's maps are new arrays). At most ``limit`` matrices are
    kept, the oldest dropped first; each is dropped when used. Outside the block nothing is
    kept. Blocks nest; the outermost one ends the reuse.
    """
    if _COLUMNS.get() is not None:
        yield
        return
    token = _COLUMNS.set((OrderedDict(), int(limit)))
    try:
        yield
    finally:
        _COLUMNS.reset(token)


def _keep_columns(x, geometry, col):
    kept = _COLUMNS.get()
    if kept is None:
        return
    columns, limit = kept
    columns.pop(id(x), None)
    columns[id(x)] = (x, geometry, col)
    while len(columns) > limit:
        columns.popitem(last=False)


def _kept_columns(x, geometry):
    kept = _COLUMNS.get()
    if kept is None:
        return None
    entry = kept[0].get(id(x))
    if entry is None or entry[0] is not x or entry[1] != geometry:
        return None
    del kept[0][id(x)]
    return entry[2]


def _geometry(kernel_hw, stride, padding, dtype):
    return tuple(int(k) for k in kernel_hw), int(stride), int(padding), np.dtype(dtype)


def _responses(x, W, stride, padding):
    """Channel-major responses ``W_mat @ im2col(x)`` of shape ``(K, N*P)`` and ``(Ho, Wo)``."""
    dtype = _dtype(x, W)
    W = _contiguous(W, dtype)
    col, out_hw = im2col(_contiguous(x, dtype), W.shape[2:], stride, padding)
    _keep_columns(x, _geometry(W.shape[2:], stride, padding, dtype), col)
    return gemm(W.reshape(W.shape[0], -1), col), out_hw


def conv2d(x, W, stride, padding):
    """Linear filter responses of eq. (12), without bias: ``reference.conv2d`` on the device,
    shape ``(N, K, Ho, Wo)``.

    Optimised: the whole batch is one GEMM against the column matrix (``im2col``); the
    channel-major product is brought back to batch-major by one ``swap_leading_axes``.
    """
    Y, (Ho, Wo) = _responses(x, W, stride, padding)
    return swap_leading_axes(Y.reshape(W.shape[0], x.shape[0], Ho, Wo))


def conv_relu(x, W, b, stride, padding):
    """One bottom-up layer, eqs. (13)-(14): ``reference.conv_relu`` on the device, returning
    ``(F, delta)``, delta a bool device array.

    Optimised: as :func:`conv2d`, with the bias, the ReLU, the activation pattern and the
    layout change fused into one pass over the GEMM output (``bias_relu``).
    """
    Y, (Ho, Wo) = _responses(x, W, stride, padding)
    N, K, P = x.shape[0], W.shape[0], Ho * Wo
    F = xp.empty((N, K, Ho, Wo), dtype=Y.dtype)
    delta = xp.empty((N, K, Ho, Wo), dtype=bool)
    if F.size:
        b = _contiguous(b, Y.dtype)
        launch("bias_relu", Y.dtype, *grid(P, K, N), (Y, b, F, delta) + _i32(N, K, P))
    return F, delta


def gate(B, delta):
    """Top-down coefficients ``B * delta`` of eq. (16): ``reference.gate`` on the device.

    Optimised: one ``ElementwiseKernel`` pass, which also reads a broadcast ``B`` (the
    linear top's filter) without materialising it.
    """
    return _pointwise()["gate"](B, delta)


def pad_maps(x, rows, cols):
    """``out[..., p, q] = x[..., rows[p], cols[q]]``: the maps padded by a boundary, as
    ``reference.pad_maps`` on the device: two gathers, the index arrays copied to the
    device."""
    return x[:, :, xp.asarray(rows)][:, :, :, xp.asarray(cols)]


def fold_maps(a, rows, cols, before, in_hw, delta=None):
    """The adjoint of :func:`pad_maps`, gated by ``delta`` when given: ``reference.fold_maps``
    on the device arrays (the same adds, in the same order, on device views), then
    :func:`gate`."""
    B = reference.fold_maps(a, rows, cols, before, in_hw)
    return B if delta is None else gate(B, delta)


def channel_major(G, dtype):
    """``G`` of shape ``(N, K, Ho, Wo)`` as the ``(K, N*Ho*Wo)`` matrix of the GEMMs, in
    ``dtype`` (one ``swap_leading_axes``)."""
    G = swap_leading_axes(_contiguous(G, dtype))
    return G.reshape(G.shape[0], -1)


def conv_transpose(G, W, stride, padding, in_hw, delta=None):
    """Top-down deconvolution, eq. (16): ``reference.conv_transpose`` on the device, the
    filters added up as basis functions, shape ``(N, C, H, W)``; gated by ``delta`` when
    given (:func:`gate`, a second pass).

    Optimised: the copies of all filters at all positions of the batch are one GEMM
    (``W_mat.T @ G``, the transpose passed to cuBLAS as a flag); ``col2im`` then gathers each
    pixel's overlapping copies, one thread per pixel, so no atomics are needed.
    """
    dtype = _dtype(G, W)
    W = _contiguous(W, dtype)
    N, K, Ho, Wo = G.shape
    cols = gemm(W.reshape(K, -1), channel_major(G, dtype), trans_a=True)
    B = col2im(cols, (N, W.shape[1]) + tuple(in_hw), W.shape[2:], stride, padding, (Ho, Wo))
    return B if delta is None else gate(B, delta)


def conv_weight_grad(x, G, kernel_hw, stride, padding):
    """``(dW, db)``, the gradient of ``<G, conv2d(x, W) + b>`` summed over the batch:
    ``reference.conv_weight_grad`` on the device.

    Optimised: ``dW`` is one GEMM of the channel-major ``G`` with the column matrix of ``x``
    (transposed by a cuBLAS flag), which inside :func:`reusing_columns` is the one the
    forward pass built; ``db`` is a row sum of the same ``G``.
    """
    dtype = _dtype(x, G)
    geometry = _geometry(kernel_hw, stride, padding, dtype)
    col = _kept_columns(x, geometry)
    if col is None:
        col, _ = im2col(_contiguous(x, dtype), geometry[0], stride, padding)
    Gm = channel_major(G, dtype)
    dW = gemm(Gm, col, trans_b=True)
    return dW.reshape((G.shape[1], x.shape[1]) + geometry[0]), Gm.sum(axis=1)


def seed_words(seed):
    """The Philox key ``(seed mod 2**32, seed // 2**32)`` of a 64-bit ``seed``, as the
    ``unsigned int`` kernel arguments of ``normal``."""
    seed = int(seed)
    return np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)


def normal_from_seed(seed, shape, dtype):
    """``Z ~ N(0, 1)`` of ``shape``: Philox4x32-10 keyed by the 64-bit ``seed`` and
    Box-Muller, element ``i`` of the C-order array a fixed function of ``(seed, i)`` (the
    formula is in ``conv.cu``)."""
    dtype = np.dtype(dtype)
    if dtype not in CTYPES:
        raise TypeError(f"the cupy backend draws float32 or float64 noise, not {dtype}")
    out = xp.empty(shape, dtype=dtype)
    n = out.size
    if n:
        launch("normal", dtype, *grid((n + 1) // 2, 1, 1), (out, np.int64(n)) + seed_words(seed))
    return out


def standard_normal(rng, shape, dtype):
    """Gaussian white noise ``Z ~ N(0, 1)`` on the device, a function of the NumPy ``rng``'s
    state alone: ``reference.standard_normal``'s role, with other draws.

    Each call takes one 64-bit seed from ``rng`` (``rng.integers``) and expands it with
    :func:`normal_from_seed`, so restoring ``rng``'s state replays the noise exactly, and
    no generator state is kept on the device (nothing to checkpoint, nothing to evict).
    """
    seed = rng.integers(0, 2**64, dtype=np.uint64)
    return normal_from_seed(seed, shape, dtype)


def langevin_step(I, B, Z, step_size, sigma):
    """One Langevin step, eq. (19): ``I - (eps^2 / 2) (I / sigma^2 - B) + eps Z``, as
    ``reference.langevin_step``, in one ``ElementwiseKernel`` pass."""
    t = np.dtype(I.dtype).type
    return _pointwise()["langevin"](I, B, Z, t(0.5 * step_size**2), t(sigma**2), t(step_size))


@functools.cache
def _pointwise():
    return {
        "gate": cupy.ElementwiseKernel("T B, bool delta", "T G", "G = B * (T)delta", "gcn_gate"),
        "langevin": cupy.ElementwiseKernel(
            "T I, T B, T Z, T half_eps2, T sigma2, T eps",
            "T out",
            "out = I - half_eps2 * (I / sigma2 - B) + eps * Z",
            "gcn_langevin",
        ),
    }


# ------------------------------------------------------------------------------ TF32

# cublasMath_t's CUBLAS_TF32_TENSOR_OP_MATH in cublas_api.h (CUDA 11 and later). CuPy's
# cublas module exports CUBLAS_DEFAULT_MATH (0) and CUBLAS_TENSOR_OP_MATH (1) only.
TF32_TENSOR_OP_MATH = 3


def cublas_library():
    """CuPy's low-level cuBLAS module (math modes, handles)."""
    from cupy_backends.cuda.libs import cublas

    return cublas


def cublas_handle():
    """The cuBLAS handle of the current device and thread."""
    return cupy.cuda.device.get_cublas_handle()


def cublas_math_mode():
    """The cuBLAS math mode of the current device and thread (0 default, 3 TF32)."""
    return cublas_library().getMathMode(cublas_handle())


def allow_tf32(enabled):
    """Let cuBLAS use TF32 tensor cores for float32 products (``enabled``) or not, on the
    current device and thread (CuPy keeps one cuBLAS handle per device and thread).
    Returns the previous math mode, for :func:`tf32` to restore."""
    lib = cublas_library()
    handle = cublas_handle()
    previous = lib.getMathMode(handle)
    if enabled:
        mode = getattr(lib, "CUBLAS_TF32_TENSOR_OP_MATH", TF32_TENSOR_OP_MATH)
    else:
        mode = lib.CUBLAS_DEFAULT_MATH
    lib.setMathMode(handle, mode)
    return previous


@contextlib.contextmanager
def tf32(enabled=True):
    """A block whose float32 products use TF32 (or not); the previous mode comes back after."""
    previous = allow_tf32(enabled)
    try:
        yield
    finally:
        cublas_library().setMathMode(cublas_handle(), previous)
