"""The CuPy backend on a CUDA device, against the float64 NumPy reference.

Skipped without CuPy or a device; ``GCN_REQUIRE_GPU=1`` turns the skips into failures.
``benchmarks/gpu_check.sh`` runs this file alone: nothing here compiles Numba kernels (the
reference nets are ``backend="numpy"``) and the CPU-side checks stay in ``test_cupy_cpu.py``.

Tolerances: float64 1e-10; float32 1e-5 and TF32 1e-2, both against a float64 reference
pinned to the float32 net's own activation pattern. The kernels run with the memory pool's
fresh blocks poisoned (0xFF bytes, NaN), so an output a kernel fails to write shows.
``test_gpu_small_case_for_the_sanitizer`` runs every kernel once on small shapes, without
the memory pool, for ``compute-sanitizer --tool memcheck``.
"""

import dataclasses
import os

import numpy as np
import pytest
import test_cupy_cases as cases
from conftest import random_net, rel_err

from gcn_numpy import GenerativeConvNet, Layer
from gcn_numpy.backends import cupy_gpu, get_backend, reference
from gcn_numpy.learning import Learner


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


@pytest.fixture
def be(cp):
    return get_backend("cupy")


@pytest.fixture
def poisoned(cp):
    """Every allocation in the test comes from a fresh pool and is filled with 0xFF bytes
    first (NaN in float32 and float64, an impossible bool), on the current stream."""
    pool = cp.cuda.MemoryPool()

    def malloc(size):
        mem = pool.malloc(size)
        if size:
            stream = cp.cuda.get_current_stream().ptr
            cp.cuda.runtime.memsetAsync(mem.ptr, 0xFF, size, stream)
        return mem

    with cp.cuda.using_allocator(malloc):
        yield
    pool.free_all_blocks()


def test_gpu_poisoned_pool_fills_new_arrays(cp, poisoned):
    a = cp.empty((1000,), dtype=cp.float32)
    d = cp.empty((1000,), dtype=bool)
    assert bool(cp.isnan(a).all()) and int(d.view(cp.uint8).min()) == 0xFF


# ------------------------------------------------------------------------ kernels


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("case", cases.CASES)
def test_gpu_kernels_equal_reference(cp, be, poisoned, case, dtype):
    cases.check_layer_kernels(be, case, dtype, sum(case), to_np=cp.asnumpy, put=cp.asarray)


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_gpu_paper_layer_equals_reference(cp, be, poisoned, dtype):
    """100 filters 15x15 stride 3 on 224 px, N = 2: 72x72 maps, 21 blocks per map."""
    cases.check_layer_kernels(be, cases.PAPER_CASE, dtype, 3, to_np=cp.asnumpy, put=cp.asarray)


def test_gpu_paper_layer_with_tf32_within_1e_2(cp, be):
    with be.tf32():
        cases.check_layer_kernels(
            be,
            cases.PAPER_CASE,
            np.float32,
            3,
            to_np=cp.asnumpy,
            put=cp.asarray,
            tol=cases.TF32_TOL,
        )


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_gpu_gate_and_langevin_equal_reference(cp, be, poisoned, dtype):
    rng = np.random.default_rng(5)
    I, B, Z = (rng.normal(size=(3, 2, 17, 19)).astype(dtype) for _ in range(3))
    delta = rng.random(size=I.shape) < 0.5
    G = be.gate(cp.asarray(B), cp.asarray(delta))
    assert G.dtype == dtype
    assert rel_err(cp.asnumpy(G), reference.gate(B.astype(np.float64), delta)) <= cases.TOL[dtype]
    top = np.broadcast_to(B[:1], B.shape)  # the linear top gates a broadcast view
    G = be.gate(cp.broadcast_to(cp.asarray(B[:1]), B.shape), cp.asarray(delta))
    assert rel_err(cp.asnumpy(G), reference.gate(top.astype(np.float64), delta)) <= cases.TOL[dtype]
    for eps, sigma in ((0.3, 1.0), (0.05, 2.5)):
        got = be.langevin_step(*(cp.asarray(a) for a in (I, B, Z)), eps, sigma)
        want = reference.langevin_step(*(a.astype(np.float64) for a in (I, B, Z)), eps, sigma)
        assert got.dtype == dtype and rel_err(cp.asnumpy(got), want) <= cases.TOL[dtype]


def test_gpu_asarray_and_to_numpy(cp, be):
    host = np.arange(24.0).reshape(2, 3, 4)
    dev = be.asarray(host, np.float32)
    assert isinstance(dev, cp.ndarray) and dev.dtype == np.float32 and dev.flags.c_contiguous
    view = be.asarray(dev.transpose(2, 0, 1), np.float64)
    assert view.flags.c_contiguous and np.array_equal(be.to_numpy(view), host.transpose(2, 0, 1))


# -------------------------------------------------------------------------- noise


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_gpu_noise_equals_the_numpy_formula(cp, be, poisoned, dtype):
    for shape in [(1,), (7,), (2 * cupy_gpu.BLOCK + 3,), (3, 5, 33, 17), (4, 3, 96, 96)]:
        for seed in (0, 2**32 + 5, 2**64 - 1):
            z = be.normal_from_seed(seed, shape, dtype)
            assert isinstance(z, cp.ndarray) and z.dtype == dtype and z.shape == shape
            cases.assert_noise_matches(cp.asnumpy(z), seed)


@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_gpu_standard_normal_is_a_function_of_the_rng_state(cp, be, dtype):
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    a = be.standard_normal(rng, (3, 5, 7), dtype)
    b = be.standard_normal(rng, (3, 5, 7), dtype)
    assert isinstance(a, cp.ndarray) and a.dtype == dtype and a.shape == (3, 5, 7)
    assert not cp.array_equal(a, b), "the stream goes on between calls"
    rng.bit_generator.state = state  # a rollback, or a resume from a checkpoint
    assert cp.array_equal(be.standard_normal(rng, (3, 5, 7), dtype), a)
    assert cp.array_equal(be.standard_normal(np.random.default_rng(7), (3, 5, 7), dtype), a)
    big = cp.asnumpy(be.standard_normal(np.random.default_rng(9), (1001, 1001), dtype))
    assert abs(big.mean()) < 5e-3 and abs(big.std() - 1) < 5e-3


# ------------------------------------------------------------------------- TF32


def test_gpu_tf32_switch_sets_reads_back_and_restores(cp, be):
    from cupy_backends.cuda.libs import cublas

    handle = cp.cuda.device.get_cublas_handle()
    before = cublas.getMathMode(handle)
    with be.tf32():
        assert cublas.getMathMode(handle) == be.TF32_TENSOR_OP_MATH
        with be.tf32(False):
            assert cublas.getMathMode(handle) == cublas.CUBLAS_DEFAULT_MATH
        assert cublas.getMathMode(handle) == be.TF32_TENSOR_OP_MATH
    assert cublas.getMathMode(handle) == before


def test_gpu_tf32_products_round_their_factors(cp, be):
    """The switch takes effect: a float32 product loses about three decimal digits."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 2048, 2048))
    want = a @ b
    A, B = (cp.asarray(m, dtype=cp.float32) for m in (a, b))
    fp32 = rel_err(cp.asnumpy(be.gemm(A, B)), want)
    with be.tf32():
        tf32 = rel_err(cp.asnumpy(be.gemm(A, B)), want)
    assert fp32 < 1e-5
    assert 10 * fp32 < tf32 < 1e-2


# --------------------------------------------------------------------------- nets


@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("seed", range(8))
def test_gpu_float64_nets_equal_reference(cp, seed, top):
    net, I = random_net(seed, top, backend="cupy")
    assert all(isinstance(W, cp.ndarray) for W, _ in net.params)
    cases.check_nets_agree(net, cases.reference_copy(net), I, cases.TOL[np.float64])


@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("seed", range(8))
def test_gpu_float32_nets_equal_reference(cp, seed, top):
    cases.check_float32_net(*random_net(seed, top, backend="cupy", dtype=np.float32))


@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("seed", range(4))
def test_gpu_tf32_nets_within_1e_2(cp, be, seed, top):
    net, I = random_net(seed, top, backend="cupy", dtype=np.float32)
    with be.tf32():  # TF32 rounds to 10-bit mantissas: more units within rounding of zero
        cases.check_float32_net(net, I, tol=cases.TF32_TOL, max_flips=1e-2)


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("boundary", ("circular", "reflect", "symmetric"))
def test_gpu_boundary_nets_equal_reference(cp, boundary, top, dtype):
    """Padding and folding above the kernels (cupy.pad, in-place adds on device views)."""
    net, I = cases.boundary_net(boundary, top, backend="cupy", dtype=dtype)
    if dtype == np.float32:
        cases.check_float32_net(net, I)
    else:
        cases.check_nets_agree(net, cases.reference_copy(net), I, cases.TOL[np.float64])


def test_gpu_column_reuse_gives_the_same_gradient(cp, be):
    net, I = random_net(3, "sum", backend="cupy", dtype=np.float64)
    I = net.check_images(I)
    want = net.forward_backward(I, need_B=False, need_grads=True)["grads"]
    with be.reusing_columns():
        got = net.forward_backward(I, need_B=False, need_grads=True)["grads"]
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            assert rel_err(cp.asnumpy(a), cp.asnumpy(b)) <= 1e-13


SPIN = r"""
extern "C" __global__ void spin(long long cycles) {
    const long long start = clock64();
    while (clock64() - start < cycles) {}
}
"""


@pytest.mark.parametrize("top", ("sum", "linear"))
@pytest.mark.parametrize("dtype", cases.DTYPES)
def test_gpu_learning_iteration_never_waits_for_the_device(cp, dtype, top):
    """Langevin steps and the gradients, as the learner runs them, with no host round trip.

    The device is kept busy for about a second by a spinning kernel queued first; the
    iteration is queued behind it. Had anything in the iteration waited for the device
    (a copy to the host, a synchronization), the spinning kernel would be done when the
    iteration returns.
    """
    layers = [Layer(8, 7, stride=2, padding=2), Layer(6, 3, padding=1)]
    net = GenerativeConvNet(3, layers, top, (24, 20), backend="cupy", dtype=dtype)
    kernels, rng = net.kernels, np.random.default_rng(0)
    obs = net.check_images(np.random.default_rng(1).normal(size=(1, 3, 24, 20)))
    spin = cp.RawKernel(SPIN, "spin")

    def iteration(chains):
        for _ in range(3):
            B = net.forward_backward(chains, need_B=True, need_f=False)["B"]
            Z = kernels.standard_normal(rng, chains.shape, dtype)
            chains = kernels.langevin_step(chains, B, Z, 0.3, 1.0)
        grads = net.forward_backward(obs, need_B=False, need_grads=True)["grads"]
        return chains, grads + net.forward_backward(chains, need_B=False, need_grads=True)["grads"]

    def queued_behind_spin(work):
        busy = cp.cuda.Event()
        spin((1,), (1,), (np.int64(2**31),))  # 2**31 cycles: a second or two
        busy.record()
        out = work()
        return busy.done, out

    chains = net.asarray(np.zeros((4, 3, 24, 20)))
    iteration(chains)  # compiles the kernels and fills the memory pool
    spin_done, (chains, grads) = queued_behind_spin(lambda: iteration(chains))
    assert not spin_done, "the learning iteration waited for the device"
    assert all(isinstance(g, cp.ndarray) for pair in grads for g in pair)
    # the check can fail: a copy to the host does wait
    spin_done, _ = queued_behind_spin(lambda: cp.asnumpy(chains))
    assert spin_done


# ------------------------------------------------------------------------ learner


def test_gpu_learner_step_equals_the_numpy_backend_given_the_same_noise(cp, monkeypatch):
    """``Learner.step`` on the device (Langevin, gradients, update rule, growing, metrics)
    against the float64 reference backend, both fed the NumPy backend's noise."""

    def numpy_noise(rng, shape, dtype):
        return cp.asarray(reference.standard_normal(rng, shape, dtype))

    monkeypatch.setattr(cupy_gpu, "standard_normal", numpy_noise)
    config = cases.learner_config()
    gpu = Learner(config, cases.learner_images())
    cpu = Learner(dataclasses.replace(config, backend="numpy"), cases.learner_images())
    for _ in range(4):
        got, want = gpu.step(), cpu.step()
        assert isinstance(gpu.chains, cp.ndarray)
        for key in want:
            assert abs(got[key] - want[key]) <= 1e-8 * max(1.0, abs(want[key])), key
    assert len(gpu.net.layers) == 2
    got, want = gpu.state_dict(), cpu.state_dict()
    for key in want:
        if want[key].dtype.kind == "f":
            assert np.allclose(got[key], want[key], rtol=1e-8, atol=1e-10), key
        else:
            assert np.array_equal(got[key], want[key]), key


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_gpu_learner_resume_equals_an_uninterrupted_run(cp, dtype):
    cases.check_resume_equals_uninterrupted(
        cases.learner_config(dtype=dtype), cases.learner_images()
    )


def test_gpu_learner_rollback_draws_new_noise_reproducibly(cp, monkeypatch):
    cases.check_rollback_draws_new_noise(monkeypatch, cp.asnumpy)


# ------------------------------------------------------------------ the sanitizer


def test_gpu_small_case_for_the_sanitizer(cp, be):
    """Every kernel once, in both types, on shapes with partial blocks, each array its own
    cudaMalloc (no memory pool), so that ``compute-sanitizer --tool memcheck`` sees an
    access past any array's end. ``gpu_check.sh`` runs this test alone under it."""
    case = (2, 3, 4, 19, 17, 5, 2, 2)  # 9x9 outputs: one partial block per map
    with cp.cuda.using_allocator(None):
        for dtype in cases.DTYPES:
            cases.check_layer_kernels(be, case, dtype, 1, to_np=cp.asnumpy, put=cp.asarray)
            z = be.normal_from_seed(3, (3, 3, 19, 17), dtype)  # odd size: a lone last element
            cases.assert_noise_matches(cp.asnumpy(z), 3)
            I, B = (cp.asarray(a, dtype=dtype) for a in np.ones((2, 2, 3, 5, 7)))
            delta = cp.asarray(np.arange(I.size).reshape(I.shape) % 3 == 0)
            assert cp.asnumpy(be.gate(B, delta)).sum() == np.count_nonzero(cp.asnumpy(delta))
            be.langevin_step(I, B, z[:2, :, :5, :7].copy(), 0.3, 1.0)
        with be.tf32():
            cases.check_layer_kernels(
                be, case, np.float32, 1, to_np=cp.asnumpy, put=cp.asarray, tol=cases.TF32_TOL
            )
    cp.cuda.Device().synchronize()
