"""The CuPy backend, checked without a GPU.

- always: the clear errors without CuPy or without a device, the launch limits, the TF32
  switch (against a stand-in for CuPy's cuBLAS module), the docstrings;
- with a C++ compiler: ``conv.cu`` itself, compiled for the CPU by a small harness that runs
  each kernel's grid thread by thread, driven by the backend's own wrappers (NumPy stands in
  for CuPy and cuBLAS, and fresh arrays are poisoned so that an unwritten output shows):
  every kernel against the reference, whole nets, the paper's first layer, the noise against
  a NumPy Philox, and the learner's resume and rollback on that noise;
- with nvcc: a PTX build of the float and double instantiations for Hopper.

The same checks on a device are in ``test_cupy_gpu.py``, which ``benchmarks/gpu_check.sh``
runs alone; nothing here needs to run again there.
"""

import ctypes
import shutil
import subprocess
import types

import numpy as np
import pytest
from conftest import rel_err
from test_cupy_cases import (
    CASES,
    DTYPES,
    PAPER_CASE,
    PHILOX_KAT,
    TOL,
    assert_noise_matches,
    boundary_net,
    case_arrays,
    check_float32_net,
    check_layer_kernels,
    check_nets_agree,
    check_resume_equals_uninterrupted,
    check_rollback_draws_new_noise,
    learner_config,
    learner_images,
    normal_from_seed,
    philox4x32_10,
    reference_copy,
)

from gcn_numpy import GenerativeConvNet, Layer
from gcn_numpy.backends import cupy_gpu, get_backend, reference

# ------------------------------------------------------------- without CuPy or device


def test_without_cupy_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setattr(cupy_gpu, "cupy", None)
    monkeypatch.setattr(cupy_gpu, "IMPORT_ERROR", "ModuleNotFoundError: No module named 'cupy'")
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
    monkeypatch.setattr(cupy_gpu, "load_libraries", missing)
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
    block = cupy_gpu.BLOCK
    assert cupy_gpu.grid(1, 1, 1) == ((1, 1, 1), (block, 1, 1))
    assert cupy_gpu.grid(block + 1, 7, 9) == ((2, 7, 9), (block, 1, 1))
    with pytest.raises(ValueError, match="too large"):
        cupy_gpu.grid(10, cupy_gpu.MAX_GRID_YZ + 1, 1)
    # the last block's idle threads count too: their int index must not overflow
    top = 2**31 - block
    assert cupy_gpu.grid(top, 1, 1)[0][0] * block - 1 <= 2**31 - 1
    with pytest.raises(ValueError, match="too large"):
        cupy_gpu.grid(top + 1, 1, 1)


@pytest.mark.parametrize(
    "name", ["conv2d", "conv_relu", "gate", "conv_transpose", "conv_weight_grad"]
)
def test_kernel_docstrings_name_their_reference_and_what_they_optimise(name):
    doc = getattr(cupy_gpu, name).__doc__
    assert f"reference.{name}" in doc
    assert "Optimised" in doc
    assert hasattr(reference, name)


# ------------------------------------------------------------------------------ TF32


class _FakeCublas:
    """CuPy 14's ``cupy_backends.cuda.libs.cublas`` as far as the TF32 switch uses it: the
    math-mode calls and the two constants it exports (it has no TF32 constant)."""

    CUBLAS_DEFAULT_MATH = 0
    CUBLAS_TENSOR_OP_MATH = 1

    def __init__(self, mode=0):
        self.modes = {"handle": mode}

    def getMathMode(self, handle):  # noqa: N802 -- CuPy's name
        return self.modes[handle]

    def setMathMode(self, handle, mode):  # noqa: N802
        self.modes[handle] = mode


@pytest.fixture
def fake_cublas(monkeypatch):
    lib = _FakeCublas()
    monkeypatch.setattr(cupy_gpu, "cublas_library", lambda: lib)
    monkeypatch.setattr(cupy_gpu, "cublas_handle", lambda: "handle")
    return lib


def test_tf32_sets_mode_3_without_cupys_constant_and_restores(fake_cublas):
    assert not hasattr(fake_cublas, "CUBLAS_TF32_TENSOR_OP_MATH")
    with cupy_gpu.tf32():
        assert cupy_gpu.cublas_math_mode() == 3  # cublas_api.h: CUBLAS_TF32_TENSOR_OP_MATH
    assert cupy_gpu.cublas_math_mode() == 0
    fake_cublas.modes["handle"] = 1
    with pytest.raises(KeyError), cupy_gpu.tf32():
        raise KeyError("the block fails")
    assert cupy_gpu.cublas_math_mode() == 1, "the mode before the block comes back"
    assert cupy_gpu.allow_tf32(True) == 1
    with cupy_gpu.tf32(False):
        assert cupy_gpu.cublas_math_mode() == 0
    assert cupy_gpu.cublas_math_mode() == 3
    assert cupy_gpu.allow_tf32(False) == 3 and cupy_gpu.cublas_math_mode() == 0


def test_tf32_uses_cupys_constant_where_it_has_one(fake_cublas):
    fake_cublas.CUBLAS_TF32_TENSOR_OP_MATH = 33  # not the real value: shows which one is used
    cupy_gpu.allow_tf32(True)
    assert cupy_gpu.cublas_math_mode() == 33


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
    # the 32 x 32 -> 64-bit products of Philox compile to single wide multiplies
    normal_entry = text[text.index(f"{len('normal')}normalIfE") :]
    assert "mul.wide.u32" in normal_entry


# ----------------------------------------------------- conv.cu run on the CPU

HARNESS = r"""
// Runs the CUDA kernels of conv.cu on the CPU: every thread of the grid in turn.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <utility>

struct Dim3 { unsigned x = 1, y = 1, z = 1; };
static Dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#include "conv.cu"

static char expected[64];

// One letter per parameter: F/D/B pointer to float/double/bool; i int, u unsigned int,
// q long long, f float, d double.
template <typename A> constexpr char code() {
    using E = std::remove_cv_t<std::remove_pointer_t<A>>;
    if constexpr (std::is_pointer_v<A>)
        return std::is_same_v<E, float> ? 'F' : std::is_same_v<E, double> ? 'D'
             : std::is_same_v<E, bool> ? 'B' : '?';
    else
        return std::is_same_v<A, int> ? 'i' : std::is_same_v<A, unsigned int> ? 'u'
             : std::is_same_v<A, long long> ? 'q' : std::is_same_v<A, float> ? 'f'
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
_SCALARS = {
    np.int32: ("i", ctypes.c_int32),
    np.uint32: ("u", ctypes.c_uint32),
    np.int64: ("q", ctypes.c_int64),
    np.float32: ("f", ctypes.c_float),
    np.float64: ("d", ctypes.c_double),
}


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


class _PoisonedNumpy(types.ModuleType):
    """NumPy whose ``empty`` fills new arrays with 0xFF bytes (NaN in both float types, an
    impossible bool): the stand-in for a device memory pool whose blocks hold garbage."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float):
        a = np.empty(shape, dtype=dtype)
        a.reshape(-1).view(np.uint8)[:] = 0xFF
        return a


@pytest.fixture
def emulated(monkeypatch, cpu_kernels):
    """The cupy backend's wrappers with NumPy (poisoned) for CuPy, the CPU harness for the
    kernels, NumPy for cuBLAS and the reference for the two ElementwiseKernels."""
    monkeypatch.setattr(cupy_gpu, "xp", _PoisonedNumpy("numpy_poisoned"))
    monkeypatch.setattr(cupy_gpu, "launch", cpu_kernels)
    monkeypatch.setattr(cupy_gpu, "gemm", _numpy_gemm)
    cpu_kernels.launched.clear()
    return cupy_gpu


@pytest.fixture
def emulated_backend(monkeypatch, emulated):
    """:func:`emulated`, usable as ``backend="cupy"`` by the model and the learner."""
    monkeypatch.setattr(cupy_gpu, "check_available", lambda: None)
    for name in ("asarray", "to_numpy", "gate", "langevin_step"):
        monkeypatch.setattr(cupy_gpu, name, getattr(reference, name))
    return emulated


def test_poisoned_numpy_shows_an_unwritten_output():
    a = _PoisonedNumpy("p").empty((2, 3), dtype=np.float32)
    d = _PoisonedNumpy("p").empty((2,), dtype=bool)
    assert np.isnan(a).all() and d.view(np.uint8).max() == 0xFF


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_kernels_on_cpu_equal_reference(emulated, case, dtype):
    check_layer_kernels(emulated, case, dtype, seed=sum(case))
    assert set(emulated.launch.launched) == set(cupy_gpu.KERNELS) - {"normal"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_paper_layer_on_cpu_kernels_equals_reference(emulated, dtype):
    """100 filters 15x15 stride 3 on 224 px, N = 2: 72x72 maps, 21 blocks per map."""
    check_layer_kernels(emulated, PAPER_CASE, dtype, seed=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("seed", range(4))
def test_nets_on_cpu_kernels_equal_reference(emulated_backend, seed, top, dtype):
    """Whole nets through the model, with the wrappers and kernels of the cupy backend."""
    from conftest import random_net

    net, I = random_net(seed, top, backend="cupy", dtype=dtype)
    if dtype == np.float32:
        check_float32_net(net, I)
    else:
        check_nets_agree(net, reference_copy(net), I, TOL[dtype])


@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("boundary", ("circular", "reflect", "symmetric"))
def test_boundary_nets_on_cpu_kernels_equal_reference(emulated_backend, boundary, top):
    """The padding and folding the model does above the kernels, with the backend's arrays."""
    net, I = boundary_net(boundary, top, backend="cupy")
    check_nets_agree(net, reference_copy(net), I, TOL[np.float64])


# ----------------------------------------------------------------- column reuse


def _float64_case(case):
    return (a.astype(np.float64) for a in case_arrays(case, np.float64, seed=sum(case)))


def test_weight_gradient_reuses_the_forward_columns_inside_the_block(emulated):
    x, Wt, b, G = _float64_case((2, 3, 4, 11, 9, 3, 2, 1))
    want = reference.conv_weight_grad(x, G, (3, 3), 2, 1)
    launched = emulated.launch.launched

    def grad_equals_reference(x, G, stride):
        dW, db = cupy_gpu.conv_weight_grad(x, G, (3, 3), stride, 1)
        dW_ref, db_ref = reference.conv_weight_grad(x, G, (3, 3), stride, 1)
        return rel_err(dW, dW_ref) <= 1e-12 and rel_err(db, db_ref) <= 1e-12

    with cupy_gpu.reusing_columns():
        cupy_gpu.conv_relu(x, Wt, b, 2, 1)
        n = launched.count("im2col")
        dW, db = cupy_gpu.conv_weight_grad(x, G, (3, 3), 2, 1)
        assert launched.count("im2col") == n, "the forward pass's columns were built again"
        assert rel_err(dW, want[0]) <= 1e-12 and rel_err(db, want[1]) <= 1e-12
        assert grad_equals_reference(x, G, 2)
        assert launched.count("im2col") == n + 1, "a column matrix is used once, then dropped"
        cupy_gpu.conv2d(x, Wt, 2, 1)
        assert grad_equals_reference(x.copy(), G, 2)  # equal values, another array
        assert launched.count("im2col") == n + 3
        G1 = np.random.default_rng(1).normal(size=(2, 4, 11, 9))
        assert grad_equals_reference(x, G1, 1)  # the same array, another geometry
        assert launched.count("im2col") == n + 4
    cupy_gpu.conv2d(x, Wt, 2, 1)
    n = launched.count("im2col")
    cupy_gpu.conv_weight_grad(x, G, (3, 3), 2, 1)
    assert launched.count("im2col") == n + 1, "outside the block nothing is kept"


def test_reusing_columns_keeps_at_most_limit_matrices(emulated):
    x, Wt, b, G = _float64_case((1, 2, 3, 6, 6, 3, 1, 1))
    xs = [x + i for i in range(4)]
    with cupy_gpu.reusing_columns(limit=2):
        for xi in xs:
            cupy_gpu.conv2d(xi, Wt, 1, 1)
        n = emulated.launch.launched.count("im2col")
        for xi in xs:
            cupy_gpu.conv_weight_grad(xi, G, (3, 3), 1, 1)
        assert emulated.launch.launched.count("im2col") == n + 2  # the two oldest went


# ------------------------------------------------------------------------ the noise


@pytest.mark.parametrize(("counter", "key", "expected"), PHILOX_KAT)
def test_numpy_philox_gives_random123s_known_answers(counter, key, expected):
    words = philox4x32_10([np.array([c], dtype=np.uint32) for c in counter], key)
    assert [int(w[0]) for w in words] == list(expected)


def test_noise_formula_is_standard_normal_and_white():
    from scipy import stats

    z = normal_from_seed(2**63 + 12345, 200_001)
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.std() - 1) < 5 / np.sqrt(z.size)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # the two members of a pair and neighbouring pairs are uncorrelated
    for lag in (1, 2):
        assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < 5 / np.sqrt(z.size)
    other = normal_from_seed(2**63 + 12346, 1000)
    assert abs(np.corrcoef(z[:1000], other)[0, 1]) < 0.15  # another seed, another stream


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 2 * cupy_gpu.BLOCK, 2 * cupy_gpu.BLOCK + 3, 5001])
def test_noise_kernel_on_cpu_equals_the_numpy_formula(emulated, n, dtype):
    for seed in (0, 1, 2**32 - 1, 2**32, 0xDEADBEEF12345678, 2**64 - 1):
        z = cupy_gpu.normal_from_seed(seed, (n,), dtype)
        assert z.dtype == dtype and z.shape == (n,)
        assert_noise_matches(z, seed)  # also: every element written (NaN otherwise)


def test_noise_shape_and_empty_draws(emulated):
    z = cupy_gpu.normal_from_seed(5, (3, 2, 5), np.float32)
    assert_noise_matches(z, 5)
    assert cupy_gpu.normal_from_seed(5, (0, 3), np.float64).shape == (0, 3)
    with pytest.raises(TypeError, match="float32 or float64"):
        cupy_gpu.normal_from_seed(5, (2,), np.float16)


def test_standard_normal_is_a_function_of_the_rng_state(emulated):
    """What resume and rollback rely on: the same NumPy state gives the same noise, each
    call takes exactly one 64-bit draw, and the stream goes on between calls."""
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    a = cupy_gpu.standard_normal(rng, (3, 4, 5), np.float64)
    b = cupy_gpu.standard_normal(rng, (3, 4, 5), np.float64)
    assert not np.array_equal(a, b)
    after_two = rng.bit_generator.state
    rng.bit_generator.state = state  # a rollback
    assert np.array_equal(cupy_gpu.standard_normal(rng, (3, 4, 5), np.float64), a)
    seed = np.random.default_rng(7).integers(0, 2**64, dtype=np.uint64)
    assert_noise_matches(a, seed)
    twin = np.random.default_rng(7)
    twin.integers(0, 2**64, dtype=np.uint64, size=2)
    assert twin.bit_generator.state == after_two, "one 64-bit draw per call, no more"
    empty = np.random.default_rng(7)
    cupy_gpu.standard_normal(empty, (0,), np.float32)
    assert empty.bit_generator.state != np.random.default_rng(7).bit_generator.state


# ------------------------------------------------------- the learner on that noise


def test_learner_resume_equals_an_uninterrupted_run(emulated_backend):
    whole = check_resume_equals_uninterrupted(learner_config(), learner_images())
    assert len(whole.net.layers) == 2 and np.abs(whole.net.to_numpy(whole.chains)).max() > 0


def test_learner_rollback_draws_new_noise_reproducibly(emulated_backend, monkeypatch):
    check_rollback_draws_new_noise(monkeypatch, np.asarray)
