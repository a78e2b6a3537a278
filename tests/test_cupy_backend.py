"""The CuPy backend against the float64 reference.

Three groups, so that what can be checked without a GPU is checked everywhere:

- always: the clear errors without CuPy or without a device;
- with a C++ compiler (and nvcc): ``conv.cu`` itself, compiled for the CPU by a small
  harness that runs each kernel's grid thread by thread, driven by the backend's own
  wrappers (NumPy stands in for CuPy and cuBLAS); and a PTX build of the float and double
  instantiations for Hopper;
- with CuPy and a CUDA device: every seam function and whole nets on the GPU, float64 to
  1e-10 and float32 to 1e-5. ``GCN_REQUIRE_GPU=1`` turns the skips into failures.
"""

import ctypes
import os
import shutil
import subprocess
import types

import numpy as np
import pytest
from conftest import KERNELS, random_net, rel_err

from gcn_numpy import GenerativeConvNet, Layer
from gcn_numpy.backends import cupy_gpu, get_backend, reference

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = (np.float64, np.float32)


def _random_case(rng):
    """(N, C, K, H, W, kernel, stride, padding), non-square, every output at least 1x1."""
    k, s, p = int(rng.choice(KERNELS)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
    H, W = (max(1, k - 2 * p) + int(rng.integers(0, 9)) for _ in range(2))
    N, C, K = (int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 6)))
    return N, C, K, H, W, k, s, p


FIXED_CASES = [  # the texture net's layers (scaled down) and the edge cases
    (2, 3, 4, 30, 26, 15, 3, 2),
    (2, 4, 3, 12, 9, 5, 1, 2),
    (1, 3, 2, 7, 8, 3, 1, 2),
    (3, 2, 5, 6, 5, 1, 1, 0),
    (1, 1, 1, 1, 1, 1, 1, 0),
    (2, 2, 3, 4, 9, 1, 3, 2),
    (1, 2, 2, 5, 5, 7, 2, 2),
]
CASES = FIXED_CASES + [_random_case(np.random.default_rng(seed)) for seed in range(12)]


def _case_arrays(case, dtype, seed):
    """Inputs of one layer, rounded to ``dtype``, and the reference's float64 copies."""
    N, C, K, H, W, k, s, p = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, C, H, W)).astype(dtype)
    Wt = (rng.normal(size=(K, C, k, k)) / np.sqrt(C * k * k)).astype(dtype)
    b = rng.uniform(-0.3, 0.3, size=K).astype(dtype)
    Ho, Wo = reference.output_size(H, k, s, p), reference.output_size(W, k, s, p)
    G = rng.normal(size=(N, K, Ho, Wo)).astype(dtype)
    return x, Wt, b, G


def _check_layer_kernels(be, case, dtype, seed, to_np=np.asarray, put=np.asarray):
    """Every convolution kernel of backend ``be`` against the reference on one layer."""
    N, C, K, H, W, k, s, p = case
    x, Wt, b, G = _case_arrays(case, dtype, seed)
    x64, W64, b64, G64 = (a.astype(np.float64) for a in (x, Wt, b, G))
    tol = TOL[dtype]

    r = to_np(be.conv2d(put(x), put(Wt), s, p))
    r_ref = reference.conv2d(x64, W64, s, p)
    assert r.dtype == dtype
    assert rel_err(r, r_ref) <= tol

    F, delta = (to_np(a) for a in be.conv_relu(put(x), put(Wt), put(b), s, p))
    F_ref, delta_ref = reference.conv_relu(x64, W64, b64, s, p)
    assert F.dtype == dtype and delta.dtype == bool and F.shape == F_ref.shape
    assert rel_err(F, F_ref) <= tol
    pre = r_ref + b64[:, None, None]
    clear = np.abs(pre) > 10 * tol * np.abs(pre).max()  # a sign rounding cannot flip
    assert np.array_equal(delta[clear], delta_ref[clear])
    _, delta0 = be.conv_relu(put(x), put(Wt), put(np.zeros_like(b)), s, p)
    assert not to_np(delta0)[r_ref == 0].any(), "delta = 1(r + b > 0) is off where r + b = 0"

    B = to_np(be.conv_transpose(put(G), put(Wt), s, p, (H, W)))
    assert B.shape == (N, C, H, W) and B.dtype == dtype
    assert rel_err(B, reference.conv_transpose(G64, W64, s, p, (H, W))) <= tol

    dW, db = (to_np(a) for a in be.conv_weight_grad(put(x), put(G), (k, k), s, p))
    dW_ref, db_ref = reference.conv_weight_grad(x64, G64, (k, k), s, p)
    assert dW.shape == dW_ref.shape and db.shape == db_ref.shape
    assert rel_err(dW, dW_ref) <= tol
    assert rel_err(db, db_ref) <= tol


# ------------------------------------------------------------- without CuPy or device


def test_without_cupy_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setattr(cupy_gpu, "cupy", None)
    monkeypatch.setattr(cupy_gpu, "_IMPORT_ERROR", "ModuleNotFoundError: No module named 'cupy'")
    with pytest.raises(RuntimeError, match=r"needs CuPy.*pip install 'gcn_numpy\[gpu\]'"):
        get_backend("cupy")
    with pytest.raises(RuntimeError, match="No module named 'cupy'"):
        GenerativeConvNet(1, [Layer(2, 3)], backend="cupy")


def _fake_cupy(get_device_count):
    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def _no_driver():
    raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")


@pytest.mark.parametrize("get_device_count", [_no_driver, lambda: 0])
def test_without_device_the_error_says_so(monkeypatch, get_device_count):
    monkeypatch.setattr(cupy_gpu, "cupy", _fake_cupy(get_device_count))
    with pytest.raises(RuntimeError, match="needs a CUDA device.*no CUDA device"):
        get_backend("cupy")


def test_without_cuda_libraries_the_error_says_how_to_install(monkeypatch):
    def missing():
        raise ImportError('Failure finding "libcublasLt.so.13"')

    monkeypatch.setattr(cupy_gpu, "cupy", _fake_cupy(lambda: 1))
    monkeypatch.setattr(cupy_gpu, "_load_libraries", missing)
    with pytest.raises(RuntimeError, match=r"libcublasLt.*pip install 'cupy-cuda13x\[ctk\]'"):
        get_backend("cupy")


def test_this_machine_gets_the_backend_or_a_clear_error():
    """The real state of this machine, whichever it is."""
    try:
        import cupy
    except ImportError:
        cupy = None
    try:
        has_device = cupy is not None and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_device = False
    if has_device:
        assert get_backend("cupy").xp is cupy
        return
    expected = "pip install 'gcn_numpy\\[gpu\\]'" if cupy is None else "no CUDA device"
    with pytest.raises(RuntimeError, match=expected):
        GenerativeConvNet(1, [Layer(2, 3)], backend="cupy")
    assert get_backend("numpy").name == "numpy"  # the other backends stay usable


def test_grid_checks_the_cuda_limits():
    assert cupy_gpu._grid(1, 1, 1) == ((1, 1, 1), (cupy_gpu.BLOCK, 1, 1))
    assert cupy_gpu._grid(cupy_gpu.BLOCK + 1, 7, 9) == ((2, 7, 9), (cupy_gpu.BLOCK, 1, 1))
    with pytest.raises(ValueError, match="too large"):
        cupy_gpu._grid(10, cupy_gpu.MAX_GRID_YZ + 1, 1)
    with pytest.raises(ValueError, match="too large"):
        cupy_gpu._grid(2**31, 1, 1)


# ------------------------------------------------------- conv.cu compiled for Hopper


def test_kernels_compile_to_ptx_for_float_and_double(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: cannot compile conv.cu")
    instances = ", ".join(
        f"(void*)&{k}<{t}>" for k in cupy_gpu.KERNELS for t in cupy_gpu.CTYPES.values()
    )
    (tmp_path / "conv.cu").write_text(cupy_gpu.kernel_source())
    src = tmp_path / "instances.cu"
    src.write_text(f'#include "conv.cu"\nvoid* gcn_instances[] = {{{instances}}};\n')
    ptx = tmp_path / "conv.ptx"
    cmd = [nvcc, "-ptx", "-arch=sm_90", "-std=c++17", "--Werror", "all-warnings"]
    subprocess.run(cmd + ["-o", str(ptx), str(src)], check=True)
    text = ptx.read_text()
    for k in cupy_gpu.KERNELS:
        for t in "fd":
            assert f"{len(k)}{k}I{t}E" in text, f"no PTX entry for {k}<{t}>"
    double_entry = text[text.index(f"{len('col2im')}col2imIdE") :]
    assert "add.f64" in double_entry or "add.rn.f64" in double_entry


# ----------------------------------------------------- conv.cu run on the CPU

HARNESS = r"""
// Runs the CUDA kernels of conv.cu on the CPU: every thread of the grid in turn.
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <utility>

struct Dim3 { unsigned x = 1, y = 1, z = 1; };
static Dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#include "conv.cu"

static char expected[64];

// One letter per parameter: F/D/B pointer to float/double/bool, i int, f float, d double.
template <typename A> constexpr char code() {
    using E = std::remove_cv_t<std::remove_pointer_t<A>>;
    if constexpr (std::is_pointer_v<A>)
        return std::is_same_v<E, float> ? 'F' : std::is_same_v<E, double> ? 'D'
             : std::is_same_v<E, bool> ? 'B' : '?';
    else
        return std::is_same_v<A, int> ? 'i' : std::is_same_v<A, float> ? 'f'
             : std::is_same_v<A, double> ? 'd' : '?';
}

template <typename... A, std::size_t... I>
static void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <typename... A>
static int run(void (*kernel)(A...), const char* sig, const unsigned* g, const unsigned* b,
               void** args) {
    const char want[] = {code<A>()..., '\0'};
    std::snprintf(expected, sizeof expected, "%s", want);
    if (std::strcmp(sig, want) != 0) return 2;
    gridDim = {g[0], g[1], g[2]};
    blockDim = {b[0], b[1], b[2]};
    for (blockIdx.z = 0; blockIdx.z < g[2]; ++blockIdx.z)
    for (blockIdx.y = 0; blockIdx.y < g[1]; ++blockIdx.y)
    for (blockIdx.x = 0; blockIdx.x < g[0]; ++blockIdx.x)
    for (threadIdx.z = 0; threadIdx.z < b[2]; ++threadIdx.z)
    for (threadIdx.y = 0; threadIdx.y < b[1]; ++threadIdx.y)
    for (threadIdx.x = 0; threadIdx.x < b[0]; ++threadIdx.x)
        call(kernel, args, std::index_sequence_for<A...>{});
    return 0;
}

extern "C" const char* expected_signature() { return expected; }

extern "C" int launch(const char* name, const char* sig, const unsigned* g, const unsigned* b,
                      void** args) {
%ENTRIES%
    return 1;
}
"""

_ARG_CODES = {np.dtype(np.float32): "F", np.dtype(np.float64): "D", np.dtype(bool): "B"}
_SCALARS = {np.int32: ("i", ctypes.c_int32), np.float32: ("f", ctypes.c_float)}
_SCALARS[np.float64] = ("d", ctypes.c_double)


@pytest.fixture(scope="module")
def cpu_kernels(tmp_path_factory):
    """``launch(kernel, dtype, grid, block, args)`` running ``conv.cu`` on the CPU, with the
    argument checks a GPU would not make: C-contiguity and each parameter's C type."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to run conv.cu on the CPU")
    build = tmp_path_factory.mktemp("conv_cpu")
    entries = "\n".join(
        f'    if (!std::strcmp(name, "{k}<{t}>")) return run(&{k}<{t}>, sig, g, b, args);'
        for k in cupy_gpu.KERNELS
        for t in cupy_gpu.CTYPES.values()
    )
    (build / "conv.cu").write_text(cupy_gpu.kernel_source())
    (build / "harness.cpp").write_text(HARNESS.replace("%ENTRIES%", entries))
    lib_path = build / "conv_cpu.so"
    cmd = [cxx, "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Werror"]
    subprocess.run(cmd + ["-o", str(lib_path), str(build / "harness.cpp")], check=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.expected_signature.restype = ctypes.c_char_p
    launched = []

    def launch(kernel, dtype, grid, block, args):
        sig, values = "", []
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, f"{kernel}: non-contiguous array argument"
                assert a.dtype in (np.dtype(dtype), np.dtype(bool)), f"{kernel}: {a.dtype}"
                sig += _ARG_CODES[a.dtype]
                values.append(ctypes.c_void_p(a.ctypes.data))
            else:
                letter, ctype = _SCALARS[type(a)]
                sig += letter
                values.append(ctype(a))
        pointers = (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values))
        dims = [(ctypes.c_uint * 3)(*d) for d in (grid, block)]
        name = f"{kernel}<{cupy_gpu.CTYPES[np.dtype(dtype)]}>"
        rc = lib.launch(name.encode(), sig.encode(), *dims, pointers)
        assert rc != 1, f"no kernel {name}"
        assert rc == 0, f"{name} called with ({sig}), expects ({lib.expected_signature()})"
        launched.append(kernel)

    launch.launched = launched
    return launch


def _numpy_gemm(a, b, trans_a=False, trans_b=False):
    assert a.flags.c_contiguous and b.flags.c_contiguous  # cuBLAS gets them without copies
    return np.ascontiguousarray((a.T if trans_a else a) @ (b.T if trans_b else b))


@pytest.fixture
def emulated(monkeypatch, cpu_kernels):
    """The cupy backend's wrappers with NumPy for CuPy, the CPU harness for the kernels."""
    monkeypatch.setattr(cupy_gpu, "xp", np)
    monkeypatch.setattr(cupy_gpu, "_launch", cpu_kernels)
    monkeypatch.setattr(cupy_gpu, "_gemm", _numpy_gemm)
    cpu_kernels.launched.clear()
    return cupy_gpu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_kernels_on_cpu_equal_reference(emulated, case, dtype):
    _check_layer_kernels(emulated, case, dtype, seed=sum(case))
    assert set(emulated._launch.launched) == set(cupy_gpu.KERNELS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("seed", range(4))
def test_nets_on_cpu_kernels_equal_reference(monkeypatch, emulated, seed, top, dtype):
    """Whole nets through the model, with the wrappers and kernels of the cupy backend."""
    monkeypatch.setattr(cupy_gpu, "check_available", lambda: None)
    for name in ("asarray", "to_numpy", "gate"):
        monkeypatch.setattr(cupy_gpu, name, getattr(reference, name))
    net, I = random_net(seed, top, backend="cupy", dtype=dtype)
    if dtype == np.float32:
        _check_float32_net(net, I, seed)
        return
    ref = GenerativeConvNet(
        net.in_channels, net.layers, top=top, image_size=net.image_size, seed=seed
    )
    ref.set_weights(net.weights)
    _check_nets_agree(net, ref, I, TOL[dtype])


def _check_nets_agree(net, ref, I, tol):
    assert rel_err(net.score(I), ref.score(I)) <= tol
    alpha, B = net.top_down(I)
    alpha_ref, B_ref = ref.top_down(I)
    assert rel_err(B, B_ref) <= tol
    assert rel_err(alpha, alpha_ref) <= tol
    for got, want in zip(net.activation_pattern(I), ref.activation_pattern(I), strict=True):
        assert np.array_equal(got, want)
    for (dW, db), (dW_ref, db_ref) in zip(
        net.weight_gradient(I), ref.weight_gradient(I), strict=True
    ):
        assert rel_err(dW, dW_ref) <= tol
        assert rel_err(db, db_ref) <= tol


# ------------------------------------------------------------------------ on the GPU


@pytest.fixture(scope="module")
def cp():
    """CuPy with a usable device, or a skip saying which is missing."""
    try:
        import cupy
    except ImportError:
        reason = "CuPy not installed"
    else:
        try:
            if cupy.cuda.runtime.getDeviceCount() > 0:
                return cupy
            reason = "no CUDA device"
        except Exception as exc:
            reason = f"no CUDA device ({exc})"
    if os.environ.get("GCN_REQUIRE_GPU"):
        pytest.fail(f"GCN_REQUIRE_GPU is set but the GPU tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_gpu_kernels_equal_reference(cp, case, dtype):
    be = get_backend("cupy")
    _check_layer_kernels(be, case, dtype, sum(case), to_np=cp.asnumpy, put=cp.asarray)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_gate_and_langevin_equal_reference(cp, dtype):
    be = get_backend("cupy")
    rng = np.random.default_rng(5)
    I, B, Z = (rng.normal(size=(3, 2, 7, 9)).astype(dtype) for _ in range(3))
    delta = rng.random(size=I.shape) < 0.5
    G = be.gate(cp.asarray(B), cp.asarray(delta))
    assert G.dtype == dtype
    assert rel_err(cp.asnumpy(G), reference.gate(B.astype(np.float64), delta)) <= TOL[dtype]
    top = np.broadcast_to(B[:1], B.shape)  # the linear top gates a broadcast view
    G = be.gate(cp.broadcast_to(cp.asarray(B[:1]), B.shape), cp.asarray(delta))
    assert rel_err(cp.asnumpy(G), reference.gate(top.astype(np.float64), delta)) <= TOL[dtype]
    for eps, sigma in ((0.3, 1.0), (0.05, 2.5)):
        got = be.langevin_step(*(cp.asarray(a) for a in (I, B, Z)), eps, sigma)
        want = reference.langevin_step(*(a.astype(np.float64) for a in (I, B, Z)), eps, sigma)
        assert got.dtype == dtype and rel_err(cp.asnumpy(got), want) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_standard_normal_is_seeded_by_the_numpy_rng(cp, dtype):
    be = get_backend("cupy")
    a = be.standard_normal(np.random.default_rng(7), (3, 5, 7), dtype)
    b = be.standard_normal(np.random.default_rng(7), (3, 5, 7), dtype)
    c = be.standard_normal(np.random.default_rng(8), (3, 5, 7), dtype)
    assert isinstance(a, cp.ndarray) and a.dtype == dtype and a.shape == (3, 5, 7)
    assert cp.array_equal(a, b) and not cp.array_equal(a, c)
    rng = np.random.default_rng(9)
    first, second = (be.standard_normal(rng, (1001, 1001), dtype) for _ in range(2))
    assert not cp.array_equal(first, second)  # the stream goes on, it is not reseeded
    assert abs(float(first.mean())) < 5e-3 and abs(float(first.std()) - 1) < 5e-3


def test_gpu_asarray_and_to_numpy(cp):
    be = get_backend("cupy")
    host = np.arange(24.0).reshape(2, 3, 4)
    dev = be.asarray(host, np.float32)
    assert isinstance(dev, cp.ndarray) and dev.dtype == np.float32 and dev.flags.c_contiguous
    view = be.asarray(dev.transpose(2, 0, 1), np.float64)
    assert view.flags.c_contiguous and np.array_equal(be.to_numpy(view), host.transpose(2, 0, 1))


@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("seed", range(8))
def test_gpu_float64_nets_equal_reference(cp, seed, top):
    net, I = random_net(seed, top, backend="cupy")
    assert all(isinstance(W, cp.ndarray) for W, _ in net.params)
    ref = GenerativeConvNet(
        net.in_channels, net.layers, top=top, image_size=net.image_size, seed=seed
    )
    ref.set_weights(net.weights)
    _check_nets_agree(net, ref, I, TOL[np.float64])


def _pinned_reference(net, I, deltas):
    """Float64 reference passes of ``net``'s weights on ``I`` with the activation pattern
    fixed to ``deltas``: a dict of ``f``, ``alpha``, ``B`` and the batch-mean ``grads``,
    with ``f_scale`` and ``alpha_scale``, the same sums taken over absolute values.

    A float32 net may flip the sign of a pre-activation within rounding of zero; comparing
    it with a float64 net that did not would test the flip, not the kernels. And ``f`` and
    ``alpha`` are sums of terms of both signs: float32 rounding is relative to the terms.
    """
    weights = [(W.astype(np.float64), b.astype(np.float64)) for W, b in net.weights]
    maps = [I]
    for layer, (W, b), d in zip(net.layers, weights, deltas, strict=False):
        pre = reference.conv2d(maps[-1], W, layer.stride, layer.padding) + b[:, None, None]
        maps.append(pre * d)
    N = I.shape[0]
    grads = []
    if net.top == "sum":
        f = f_scale = maps[-1].sum(axis=(1, 2, 3))
        B, alpha, alpha_scale = np.ones_like(maps[-1]), np.zeros(N), np.zeros(N)
    else:
        w_top, b_top = weights[-1]
        f = (maps[-1] * w_top).sum(axis=(1, 2, 3)) + b_top[0]
        f_scale = np.abs(maps[-1] * w_top).sum(axis=(1, 2, 3)) + abs(b_top[0])
        B = np.broadcast_to(w_top, maps[-1].shape)
        alpha, alpha_scale = np.full(N, b_top[0]), np.full(N, abs(b_top[0]))
        grads.append((maps[-1].sum(axis=0, keepdims=True) / N, np.ones(1)))
    for l in range(len(net.layers), 0, -1):
        layer, (W, b) = net.layers[l - 1], weights[l - 1]
        G = reference.gate(B, deltas[l - 1])
        alpha = alpha + G.sum(axis=(2, 3)) @ b
        alpha_scale = alpha_scale + np.abs(G).sum(axis=(2, 3)) @ np.abs(b)
        dW, db = reference.conv_weight_grad(
            maps[l - 1], G, W.shape[2:], layer.stride, layer.padding
        )
        grads.append((dW / N, db / N))
        B = reference.conv_transpose(G, W, layer.stride, layer.padding, maps[l - 1].shape[2:])
    return dict(f=f, f_scale=f_scale, alpha=alpha, alpha_scale=alpha_scale, B=B, grads=grads[::-1])


def _check_float32_net(net, I, seed):
    """A float32 net against the float64 reference pinned to the float32 net's pattern."""
    I = I.astype(np.float32).astype(np.float64)
    deltas = net.activation_pattern(I)
    ref = GenerativeConvNet(
        net.in_channels, net.layers, top=net.top, image_size=net.image_size, seed=seed
    )
    ref.set_weights(net.weights)
    flips = sum(np.sum(a != b) for a, b in zip(deltas, ref.activation_pattern(I), strict=True))
    assert flips <= 1e-3 * sum(d.size for d in deltas), "patterns differ beyond rounding"
    want = _pinned_reference(net, I, deltas)
    tol = TOL[np.float32]
    assert np.max(np.abs(net.score(I) - want["f"])) <= tol * np.max(want["f_scale"])
    alpha, B = net.top_down(I)
    assert rel_err(B, want["B"]) <= tol
    assert np.max(np.abs(alpha - want["alpha"])) <= tol * np.max(want["alpha_scale"])
    for (dW, db), (dW_ref, db_ref) in zip(net.weight_gradient(I), want["grads"], strict=True):
        assert rel_err(dW, dW_ref) <= tol
        assert rel_err(db, db_ref) <= tol


@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("seed", range(8))
def test_gpu_float32_nets_equal_reference(cp, seed, top):
    _check_float32_net(*random_net(seed, top, backend="cupy", dtype=np.float32), seed)


SPIN = r"""
extern "C" __global__ void spin(long long cycles) {
    const long long start = clock64();
    while (clock64() - start < cycles) {}
}
"""


@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_learning_iteration_never_waits_for_the_device(cp, dtype, top):
    """Langevin steps and the gradients, as the learner runs them, with no host round trip.

    The device is kept busy for about a second by a spinning kernel queued first; the
    iteration is queued behind it. Had anything in the iteration waited for the device
    (a copy to the host, a synchronization), the spinning kernel would be done when the
    iteration returns.
    """
    layers = [Layer(8, 7, stride=2, padding=2), Layer(6, 3, padding=1)]
    net = GenerativeConvNet(3, layers, top, (24, 20), backend="cupy", dtype=dtype)
    be, rng = net._be, np.random.default_rng(0)
    obs = net.check_images(np.random.default_rng(1).normal(size=(1, 3, 24, 20)))
    spin = cp.RawKernel(SPIN, "spin")

    def iteration(chains):
        for _ in range(3):
            B = net.forward_backward(chains, need_B=True)["B"]
            Z = be.standard_normal(rng, chains.shape, dtype)
            chains = be.langevin_step(chains, B, Z, 0.3, 1.0)
        grads = net.forward_backward(obs, need_B=False, need_grads=True)["grads"]
        return chains, grads + net.forward_backward(chains, need_B=False, need_grads=True)["grads"]

    def queued_behind_spin(work):
        busy = cp.cuda.Event()
        spin((1,), (1,), (np.int64(2**31),))  # 2**31 cycles: a second or two
        busy.record()
        out = work()
        return busy.done, out

    chains = be.asarray(np.zeros((4, 3, 24, 20)), dtype)
    iteration(chains)  # compiles the kernels and fills the memory pool
    spin_done, (chains, grads) = queued_behind_spin(lambda: iteration(chains))
    assert not spin_done, "the learning iteration waited for the device"
    assert all(isinstance(g, cp.ndarray) for pair in grads for g in pair)
    # the check can fail: a copy to the host does wait
    spin_done, _ = queued_behind_spin(lambda: cp.asnumpy(chains))
    assert spin_done
