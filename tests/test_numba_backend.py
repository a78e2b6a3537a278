"""The Numba backend against the float64 reference: every seam kernel on random layers
(kernels 1-7 and 15, strides 1-3, paddings 0-2), the texture net's layers and layers that
exercise the Winograd tiles' edges, each stride-1 layer through both algorithms (Winograd
and im2col), then whole nets on both tops; float64 to 1e-10 and float32 to 1e-5, relative
to the largest entry of the reference. float32 results are compared with the reference
run in float64 on the same float32-representable inputs and weights."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from conftest import random_architecture, random_net, rel_err

from gcn_numpy import GenerativeConvNet, Layer
from gcn_numpy import boundary as boundary_module
from gcn_numpy.backends import get_backend, reference
from gcn_numpy.backends.numba import blas, seam, sparse, threads, winograd, winograd_layers

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = (np.float64, np.float32)
TOPS = ("sum", "linear")

FIXED_CASES = [  # (N, C, K, H, W, kernel, stride, padding)
    (2, 3, 4, 30, 26, 15, 3, 2),  # the texture net's first layer, on a small image
    (3, 4, 3, 12, 9, 5, 1, 2),
    (1, 1, 1, 1, 1, 1, 1, 0),
    (3, 2, 5, 6, 5, 1, 1, 0),
    (2, 2, 3, 4, 9, 1, 3, 2),
]

WINOGRAD_CASES = [
    (2, 100, 64, 18, 18, 5, 1, 2),  # the texture net's second layer at 64 px
    (2, 64, 30, 18, 18, 3, 1, 2),  # its third layer (30 filters: 32 in the bottom-up products)
    (3, 5, 7, 11, 8, 5, 1, 0),  # odd and even map sizes: a last tile half outside the map
    (2, 3, 4, 9, 10, 4, 1, 3),  # even filters; top-down without padding of G (r - 1 - p = 0)
    (2, 4, 3, 7, 6, 2, 1, 2),  # padding beyond r - 1: the top-down cuts G's border off
    (1, 2, 3, 3, 4, 3, 1, 0),  # a 1 x 2 output map
    (2, 6, 17, 13, 13, 3, 1, 1),
    (1, 3, 62, 6, 7, 3, 1, 1),
    (2, 3, 5, 19, 17, 7, 2, 2),  # stride 2: 4 polyphase components of 4x4 filters
    (1, 4, 6, 14, 13, 15, 3, 2),  # the texture net's first layer: 9 components of 5x5
    (2, 5, 6, 7, 10, 3, 1, 1),  # 3x3: 4x4 tiles, the last ones partly outside the map
    (2, 6, 5, 8, 11, 5, 1, 2),  # 5x5: 3x3 tiles, the last ones partly outside the map
    (1, 3, 4, 23, 22, 15, 3, 1),  # 9 components of 5x5, 3x3 tiles, partial
    (1, 160, 140, 8, 9, 5, 1, 2),  # float32 on many channels: 2x2 tiles, both ways
    (1, 130, 12, 9, 7, 3, 1, 1),  # float32: 2x2 tiles bottom-up, 4x4 top-down
    (1, 100, 120, 9, 8, 5, 1, 2),  # float32: 3x3 tiles bottom-up, 2x2 top-down
    (1, 4, 5, 37, 35, 5, 1, 2),  # more tiles than a block holds (BLOCK_TILES): 3x3 tiles
    (1, 5, 4, 45, 41, 3, 1, 1),  # the same with 4x4 tiles
]


def _random_cases(seed):
    """Every layer of a random architecture from ``conftest``, with its input's shape."""
    rng = np.random.default_rng(seed)
    C, layers, (H, W) = random_architecture(rng)
    N = int(rng.integers(1, 4))
    cases = []
    for layer in layers:
        k, s, p = layer.kernel, layer.stride, layer.padding
        cases.append((N, C, layer.channels, H, W, k, s, p))
        H, W = reference.output_size(H, k, s, p), reference.output_size(W, k, s, p)
        C = layer.channels
    return cases


CASES = FIXED_CASES + WINOGRAD_CASES + [case for seed in range(4) for case in _random_cases(seed)]


def _winograd_applies(case):
    *_, k, s, _ = case
    return winograd_layers.applies(k, k, s)


# each case through im2col, and those that Winograd applies to through Winograd as well
ALGORITHM_CASES = [(case, "im2col") for case in CASES] + [
    (case, "winograd") for case in CASES if _winograd_applies(case)
]


@pytest.fixture
def algorithm(request, monkeypatch):
    """``"default"`` (the backend's choice), or ``"im2col"`` or ``"winograd"`` forced on
    every pass of every layer (Winograd where it applies)."""
    if request.param == "im2col":
        monkeypatch.setattr(seam, "algorithm", lambda *_: "im2col")
    elif request.param == "winograd":
        monkeypatch.setattr(
            seam,
            "algorithm",
            lambda C, K, kh, kw, s, _: (
                "winograd" if winograd_layers.applies(kh, kw, s) else "im2col"
            ),
        )
    return request.param


def _layer_arrays(case, dtype):
    """Inputs of one layer, rounded to ``dtype``; ``G`` is zero where ``delta`` would be."""
    N, C, K, H, W, k, s, p = case
    rng = np.random.default_rng(sum(case))
    x = rng.normal(size=(N, C, H, W)).astype(dtype)
    W = (rng.normal(size=(K, C, k, k)) / np.sqrt(C * k * k)).astype(dtype)
    b = rng.uniform(-0.3, 0.3, size=K).astype(dtype)
    Ho, Wo = reference.output_size(H, k, s, p), reference.output_size(x.shape[3], k, s, p)
    G = (rng.normal(size=(N, K, Ho, Wo)) * (rng.random((N, K, Ho, Wo)) < 0.5)).astype(dtype)
    return x, W, b, G


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("case", "algorithm"), ALGORITHM_CASES, indirect=["algorithm"])
def test_conv_kernels_equal_reference(case, dtype, algorithm):
    *_, k, s, p = case
    x, W, b, G = _layer_arrays(case, dtype)
    x64, W64, b64, G64 = _f64(x, W, b, G)
    tol = TOL[dtype]

    r = seam.conv2d(x, W, s, p)
    r_ref = reference.conv2d(x64, W64, s, p)
    assert r.dtype == dtype and rel_err(r, r_ref) <= tol

    F, delta = seam.conv_relu(x, W, b, s, p)
    pre = r_ref + b64[:, None, None]
    assert F.dtype == dtype and delta.dtype == bool
    assert rel_err(F, np.maximum(pre, 0)) <= tol
    clear = np.abs(pre) > tol * np.abs(pre).max()  # float32 may flip units within rounding of 0
    assert np.array_equal(delta[clear], pre[clear] > 0)

    B = seam.conv_transpose(G, W, s, p, x.shape[2:])
    assert B.dtype == dtype and B.shape == x.shape
    assert rel_err(B, reference.conv_transpose(G64, W64, s, p, x.shape[2:])) <= tol

    dW, db = seam.conv_weight_grad(x, G, (k, k), s, p)
    dW_ref, db_ref = reference.conv_weight_grad(x64, G64, (k, k), s, p)
    assert dW.dtype == dtype and dW.shape == W.shape
    assert rel_err(dW, dW_ref) <= tol and rel_err(db, db_ref) <= tol


SILENT_CASES = [FIXED_CASES[0], FIXED_CASES[1], (3, 2, 6, 9, 8, 3, 2, 1), WINOGRAD_CASES[1]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("case", "algorithm"),
    [(case, alg) for case in SILENT_CASES for alg in ("im2col", "winograd")],
    indirect=["algorithm"],
)
@pytest.mark.parametrize("silent", ["one", "all but one"])
def test_silent_filters_are_skipped_exactly(case, dtype, algorithm, silent):
    """Filters with no active unit in an image, or in the whole batch, add nothing and get
    no gradient from it (one silent filter: the kernels take them all; all but one: the
    active one alone, :func:`seam.active_subset`)."""
    *_, k, s, p = case
    x, W, _, G = _layer_arrays(case, dtype)
    if silent == "one":
        G[0, ::2] = 0  # every other filter silent in the first image
        G[:, 1] = 0  # one filter silent in every image
    else:
        G[:, 1:] = 0
    G[-1] = 0  # a whole image without an active unit
    x64, W64, G64 = _f64(x, W, G)
    B = seam.conv_transpose(G, W, s, p, x.shape[2:])
    assert not B[-1].any()
    assert rel_err(B, reference.conv_transpose(G64, W64, s, p, x.shape[2:])) <= TOL[dtype]
    dW, db = seam.conv_weight_grad(x, G, (k, k), s, p)
    dW_ref, db_ref = reference.conv_weight_grad(x64, G64, (k, k), s, p)
    assert not dW[1].any() and db[1] == 0
    assert rel_err(dW, dW_ref) <= TOL[dtype] and rel_err(db, db_ref) <= TOL[dtype]
    G[:] = 0
    assert not seam.conv_transpose(G, W, s, p, x.shape[2:]).any()
    assert not any(a.any() for a in seam.conv_weight_grad(x, G, (k, k), s, p))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES[::2])
def test_sparse_coefficients_take_one_window_each(monkeypatch, case, dtype):
    """A mostly zero ``G`` (a trained net's top layer) through the sparse kernels, one
    window per coefficient (forced here on every ``G``): the reference's results, gated or
    not."""
    monkeypatch.setattr(seam, "SPARSE_SHARE", 1.0)
    *_, k, s, p = case
    x, W, _, G = _layer_arrays(case, dtype)
    rng = np.random.default_rng(k + s)
    G *= rng.random(G.shape) < 0.03
    G[0, :, G.shape[2] // 2, G.shape[3] // 2] = 1.5  # at least one window on the image
    x64, W64, G64 = _f64(x, W, G)
    delta = rng.random(x.shape) < 0.5
    B = seam.conv_transpose(G, W, s, p, x.shape[2:])
    B_ref = reference.conv_transpose(G64, W64, s, p, x.shape[2:])
    assert rel_err(B, B_ref) <= TOL[dtype]
    gated = seam.conv_transpose(G, W, s, p, x.shape[2:], delta)
    assert np.array_equal(gated, seam.gate(B, delta))
    dW, db = seam.conv_weight_grad(x, G, (k, k), s, p)
    dW_ref, db_ref = reference.conv_weight_grad(x64, G64, (k, k), s, p)
    assert rel_err(dW, dW_ref) <= TOL[dtype] and rel_err(db, db_ref) <= TOL[dtype]


@pytest.mark.parametrize("N", [9, 17])
def test_sparse_results_do_not_depend_on_the_threads(monkeypatch, N):
    x, W, _, G = _layer_arrays((N, 3, 4, 13, 11, 3, 1, 1), np.float64)
    G *= np.random.default_rng(N).random(G.shape) < 0.03
    assert 0 < sparse.nonzero_share(G, 1.0) <= seam.SPARSE_SHARE  # the sparse path

    def run():
        return [
            seam.conv_transpose(G, W, 1, 1, x.shape[2:]),
            *seam.conv_weight_grad(x, G, (3, 3), 1, 1),
        ]

    outputs = []
    for n_threads in (1, 2, 3):
        monkeypatch.setattr(threads, "thread_count", lambda n=n_threads: n)
        outputs.append(run())
    monkeypatch.setattr(threads, "each_task", _reversed_tasks)
    outputs.append(run())
    for other in outputs[1:]:
        for a, b_ in zip(outputs[0], other, strict=True):
            assert np.array_equal(a, b_)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("case", "algorithm"), ALGORITHM_CASES[::3], indirect=["algorithm"])
def test_gated_deconvolution_is_the_gate_of_the_deconvolution(case, dtype, algorithm):
    """``conv_transpose(..., delta)`` gates each image as it comes out: bit for bit
    ``gate(conv_transpose(...), delta)``, in both backends."""
    *_, k, s, p = case
    x, W, _, G = _layer_arrays(case, dtype)
    delta = np.random.default_rng(k).random(x.shape) < 0.5
    for be in (seam, reference):
        B = be.conv_transpose(G, W, s, p, x.shape[2:])
        gated = be.conv_transpose(G, W, s, p, x.shape[2:], delta)
        assert np.array_equal(gated, be.gate(B, delta))
        assert np.array_equal(gated, np.where(delta, B, 0 * B))
    with pytest.raises(ValueError, match="delta of shape"):
        seam.conv_transpose(G, W, s, p, x.shape[2:], delta[:, :, 1:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_kernels_equal_reference(dtype):
    rng = np.random.default_rng(3)
    I, B, Z = (rng.normal(size=(3, 2, 7, 5)).astype(dtype) for _ in range(3))
    delta = rng.random(B.shape) < 0.5
    G = seam.gate(B, delta)
    assert G.dtype == dtype and np.array_equal(G, reference.gate(B, delta))
    out = seam.langevin_step(I, B, Z, 0.3, 1.7)
    assert out.dtype == dtype
    expected = reference.langevin_step(*_f64(I, B, Z), 0.3, 1.7)
    assert rel_err(out, expected) <= TOL[dtype]
    # B channels last in memory (as conv_transpose returns it): the same numbers, and the
    # new images in that order too, for the next step's first layer
    B_last = np.ascontiguousarray(B.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out_last = seam.langevin_step(I, B_last, Z, 0.3, 1.7)
    assert np.array_equal(out_last, out)
    assert out_last.transpose(0, 2, 3, 1).flags.c_contiguous
    assert np.array_equal(seam.langevin_step(out_last, B_last, Z, 0.3, 1.7),
                          seam.langevin_step(out, B, Z, 0.3, 1.7))  # fmt: skip
    draws = seam.standard_normal(np.random.default_rng(5), (4, 3), dtype)
    assert np.array_equal(draws, reference.standard_normal(np.random.default_rng(5), (4, 3), dtype))


@pytest.mark.parametrize("case", CASES[:8])
def test_adjoint_identities(case):
    """``conv_transpose`` and ``conv_weight_grad`` are the transposes of ``conv2d``."""
    x, W, _, G = _layer_arrays(case, np.float64)
    *_, k, s, p = case
    r = seam.conv2d(x, W, s, p)
    scale = np.sum(np.abs(r * G))
    B = seam.conv_transpose(G, W, s, p, x.shape[2:])
    assert abs(np.sum(r * G) - np.sum(x * B)) <= 1e-12 * scale
    dW, db = seam.conv_weight_grad(x, G, (k, k), s, p)
    assert abs(np.sum(r * G) - np.sum(W * dW)) <= 1e-12 * scale
    assert rel_err(db, G.sum(axis=(0, 2, 3))) <= 1e-14


def _reversed_tasks(count, run, scratch, key=None, then=None):
    """``threads.each_task`` on one thread, the tasks taken last first (new scratch), BLAS
    on one thread as in ``each_task`` (a threaded BLAS takes another path, whose sums
    round differently)."""
    own = scratch()
    with blas.single_threaded():
        for i in reversed(range(count)):
            run(i, own)
        for j in reversed(range(then[0] if then else 0)):
            then[1](j)


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"], indirect=True)
@pytest.mark.parametrize("N", [9, 17])
def test_results_do_not_depend_on_the_threads(monkeypatch, algorithm, N):
    """Bit for bit the same results on 1 to 4 threads, whatever the machine's cores (the
    pool's size is forced), and with the images taken in the opposite order: each output is
    computed by one thread, and the weight gradient is summed in an order that does not
    depend on which thread took which image (:func:`threads.chunks`)."""
    x, W, b, G = _layer_arrays((N, 3, 4, 13, 11, 5, 1, 2), np.float64)

    def run():
        return [
            *seam.conv_relu(x, W, b, 1, 2),
            seam.conv_transpose(G, W, 1, 2, x.shape[2:]),
            *seam.conv_weight_grad(x, G, (5, 5), 1, 2),
        ]

    outputs = []
    for n_threads in (1, 2, 3, 4):
        monkeypatch.setattr(threads, "thread_count", lambda n=n_threads: n)
        outputs += [run(), run()]  # and run to run on the same threads
    monkeypatch.setattr(threads, "each_task", _reversed_tasks)
    outputs.append(run())
    for other in outputs[1:]:
        for a, b_ in zip(outputs[0], other, strict=True):
            assert np.array_equal(a, b_)


BY_BLOCKS_CASES = [  # one or two large images: more blocks of tile rows than one (BLOCK_TILES)
    (1, 3, 4, 60, 57, 5, 1, 2),  # 3x3 tiles
    (2, 5, 6, 47, 50, 3, 1, 1),  # 4x4 tiles
    (1, 2, 5, 101, 97, 7, 2, 3),  # stride 2: polyphase components, the phases put back
    (1, 3, 6, 130, 121, 15, 3, 2),  # the texture net's first layer
    (1, 8, 4, 150, 140, 7, 1, 3),  # im2col: many blocks of output rows (BLOCK_BYTES)
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", BY_BLOCKS_CASES)
@pytest.mark.parametrize("n_threads", [3, 4])
@pytest.mark.parametrize("algorithm", ["winograd", "im2col"], indirect=True)
def test_one_image_over_the_threads_equals_reference(monkeypatch, case, dtype, n_threads,
                                                     algorithm):  # fmt: skip
    """Fewer images than threads: each image's tile rows (Winograd) or blocks of output rows
    (im2col's bottom-up pass) go over the threads (Winograd: with shared input and outputs,
    ``winograd_layers._each_image_by_blocks``, which the test sees being taken for both
    passes), and the results equal the float64 reference, with every filter active and with
    some filters silent (the top-down pass then gathers the active ones)."""
    monkeypatch.setattr(threads, "thread_count", lambda: n_threads)
    taken = []
    by_blocks = winograd_layers._each_image_by_blocks
    monkeypatch.setattr(
        winograd_layers,
        "_each_image_by_blocks",
        lambda *args: taken.append(args[0]) or by_blocks(*args),
    )
    *_, k, s, p = case
    x, W, b, G = _layer_arrays(case, dtype)
    G[:, 1:3] = 0  # two silent filters
    x64, W64, b64, G64 = _f64(x, W, b, G)
    tol = TOL[dtype]
    F, delta = seam.conv_relu(x, W, b, s, p)
    pre = reference.conv2d(x64, W64, s, p) + b64[:, None, None]
    assert rel_err(F, np.maximum(pre, 0)) <= tol
    clear = np.abs(pre) > tol * np.abs(pre).max()
    assert np.array_equal(delta[clear], pre[clear] > 0)
    B = seam.conv_transpose(G, W, s, p, x.shape[2:])
    assert rel_err(B, reference.conv_transpose(G64, W64, s, p, x.shape[2:])) <= tol
    gated = seam.conv_transpose(G, W, s, p, x.shape[2:], delta=x > 0)
    assert np.array_equal(gated, np.where(x > 0, B, 0))
    by_winograd = algorithm == "winograd" and winograd_layers.applies(k, k, s)
    assert len(taken) == (3 if by_winograd else 0)  # up, down, down gated


@pytest.mark.parametrize("case", BY_BLOCKS_CASES)
@pytest.mark.parametrize("algorithm", ["winograd", "im2col"], indirect=True)
def test_one_image_over_the_threads_is_bit_for_bit_the_same(monkeypatch, case, algorithm):
    """The same bits on 1 to 4 threads and with the blocks taken last first: each thread
    computes whole blocks, the same blocks as one thread does."""
    *_, k, s, p = case
    x, W, b, G = _layer_arrays(case, np.float32)

    def run():
        return [*seam.conv_relu(x, W, b, s, p), seam.conv_transpose(G, W, s, p, x.shape[2:])]

    outputs = []
    for n_threads in (1, 2, 3, 4):
        monkeypatch.setattr(threads, "thread_count", lambda n=n_threads: n)
        outputs += [run(), run()]
    monkeypatch.setattr(threads, "each_task", _reversed_tasks)
    outputs.append(run())
    for other in outputs[1:]:
        for a, b_ in zip(outputs[0], other, strict=True):
            assert np.array_equal(a, b_)


def test_single_threaded_holds_one_thread_until_the_last_block_ends():
    """Two threads in :func:`single_threaded` at once, the first one leaving first: the
    count stays 1 until the second one leaves, and then it is the count from before both."""
    functions = blas.thread_functions()
    if functions is None:
        pytest.skip("SciPy's BLAS exports no OpenBLAS thread setter here")
    get, set_ = functions
    before = get()
    outer = max(2, before)
    set_(outer)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with blas.single_threaded():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with blas.single_threaded():
            second_in.set()
            first_out.wait(10)
            seen["inside"] = get()

    try:
        threads = [threading.Thread(target=f) for f in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert seen["inside"] == 1
        assert get() == outer
    finally:
        set_(before)


def test_blas_thread_count_is_restored():
    functions = blas.thread_functions()
    if functions is None:
        pytest.skip("SciPy's BLAS exports no OpenBLAS thread setter here")
    get, _ = functions
    before = get()
    x, W, _, _ = _layer_arrays(FIXED_CASES[1], np.float32)
    seam.conv2d(x, W, 1, 2)
    assert get() == before


def test_remembered_filter_transforms_follow_weights_changed_in_place():
    """The Winograd filter transforms are remembered between calls: weights changed in
    place (as an optimiser may) must give the new responses, not the remembered ones."""
    x, W, b, G = _layer_arrays(WINOGRAD_CASES[0], np.float64)
    for _ in range(3):
        W[0, :, 1, 2] += 0.5
        F = seam.conv_relu(x, W, b, 1, 2)[0]
        B = seam.conv_transpose(G, W, 1, 2, x.shape[2:])
        pre = reference.conv2d(x, W, 1, 2) + b[:, None, None]
        assert rel_err(F, np.maximum(pre, 0)) <= TOL[np.float64]
        assert rel_err(B, reference.conv_transpose(G, W, 1, 2, x.shape[2:])) <= TOL[np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_gemm_equals_numpy(dtype, trans_a, trans_b, beta):
    """Sub-matrices with leading dimensions past their columns, both orientations, and
    ``beta``: 0 must not read ``C`` (NaN there stays out of the result)."""
    rng = np.random.default_rng(7)
    m, n, k, pad = 5, 4, 3, 2
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    A = rng.normal(size=(a_shape[0], a_shape[1] + pad)).astype(dtype)
    B = rng.normal(size=(b_shape[0], b_shape[1] + pad)).astype(dtype)
    C = rng.normal(size=(m, n + pad)).astype(dtype)
    if beta == 0:
        C[:, :n] = np.nan
    op_a = A[:, : a_shape[1]].T if trans_a else A[:, : a_shape[1]]
    op_b = B[:, : b_shape[1]].T if trans_b else B[:, : b_shape[1]]
    expected = C.copy()
    expected[:, :n] = 1.5 * (op_a.astype(np.float64) @ op_b) + (0 if beta == 0 else beta * C[:, :n])
    ld_a, ld_b, ld_c = A.shape[1], B.shape[1], C.shape[1]
    blas.gemm(
        trans_a, trans_b, m, n, k, 1.5, A.ravel(), ld_a, B.ravel(), ld_b, beta, C.ravel(), ld_c
    )
    assert rel_err(C, expected) <= TOL[dtype]
    with pytest.raises(ValueError, match="reaches past"):
        short = A.ravel()[: -pad - 1]  # the last row of A one number short
        blas.gemm(
            trans_a, trans_b, m, n, k, 1.0, short, ld_a, B.ravel(), ld_b, 0.0, C.ravel(), ld_c
        )


@pytest.mark.parametrize(("m", "r"), sorted(winograd.POINTS))
def test_winograd_matrices_compute_the_correlation(m, r):
    """``V_m^T [(V_r g) * (V_n^{-T} d)]`` is the correlation of ``d`` with ``g``, and
    ``V_r^T [(V_m g) * (V_n^{-T} d)]`` that with an m-tap ``g`` (the weight gradient)."""
    BT, AT, GW, GG, AW = winograd.matrices(r, np.float64, m)
    rng = np.random.default_rng(r)
    d, g, gm = rng.normal(size=m + r - 1), rng.normal(size=r), rng.normal(size=m)
    assert np.allclose(AT @ ((GW @ g) * (BT @ d)), [d[i : i + r] @ g for i in range(m)])
    assert np.allclose(AW @ ((GG @ gm) * (BT @ d)), [d[u : u + m] @ gm for u in range(r)])


def test_every_filter_size_has_its_tile_points():
    for r in winograd.KERNELS:
        assert (winograd.tile_size(r), r) in winograd.POINTS
    with pytest.raises(ValueError, match="filters of size"):
        winograd.tile_size(6)
    # float32 keeps 2x2 tiles past its channel limit, for accuracy; float64 never needs to
    for r, limit in winograd.LARGE_TILE_CHANNELS.items():
        large = winograd.TILES[r]
        assert winograd.tile_size(r, limit, np.float32) == large
        assert winograd.tile_size(r, limit + 1, np.float32) == 2
        assert winograd.tile_size(r, 10_000, np.float64) == large


def test_numba_is_the_default_backend():
    net = GenerativeConvNet(1, [Layer(2, kernel=3)])
    assert net.backend == "numba" and get_backend("numba") is seam


def _pair(seed, top, dtype):
    """A numba net of ``dtype``, the numpy float64 net with the same weights, and images
    that ``dtype`` represents exactly."""
    net, I = random_net(seed, top, backend="numba", dtype=dtype)
    ref = GenerativeConvNet(
        net.in_channels, net.layers, top=top, image_size=net.image_size, backend="numpy"
    )
    ref.set_weights(net.weights)
    return net, ref, I.astype(dtype)


def _pre_activations(ref, I):
    """Pre-activations ``r + b`` of every layer of the float64 reference, bottom-up."""
    pres, x = [], I.astype(np.float64)
    for layer, (W, b) in zip(ref.layers, ref.weights, strict=False):
        pre = reference.conv2d(x, W, layer.stride, layer.padding) + b[:, None, None]
        pres.append(pre)
        x = np.maximum(pre, 0)
    return pres


@pytest.mark.parametrize("algorithm", ["default", "winograd"], indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", range(6))
def test_whole_net_equals_reference(seed, top, dtype, algorithm):
    net, ref, I = _pair(seed, top, dtype)
    tol = TOL[dtype]
    deltas = net.activation_pattern(I)
    for delta, pre in zip(deltas, _pre_activations(ref, I), strict=True):
        # a float32 unit may flip only where the exact pre-activation is within rounding of 0
        clear = np.abs(pre) > tol * np.abs(pre).max()
        assert delta.dtype == bool and np.array_equal(delta[clear], pre[clear] > 0)
    assert rel_err(net.score(I), ref.score(I)) <= tol

    # B, alpha and the gradients are piecewise constant in delta: compare on numba's piece
    alpha, B = net.top_down(I)
    alpha_ref, B_ref = ref.top_down(I, deltas=deltas)
    assert B.dtype == dtype and rel_err(B, B_ref) <= tol
    assert rel_err(alpha, alpha_ref) <= tol
    pinned = ref.forward_backward(ref.check_images(I), need_grads=True, deltas=deltas)
    grads_ref = [(dW / len(I), db / len(I)) for dW, db in pinned["grads"]]
    for (dW, db), (dW_ref, db_ref) in zip(net.weight_gradient(I), grads_ref, strict=True):
        assert rel_err(dW, dW_ref) <= tol and rel_err(db, db_ref) <= tol


def test_without_jit_the_kernels_still_agree():
    """``NUMBA_DISABLE_JIT=1`` runs the kernels as Python: a tiny net, both tops."""
    script = textwrap.dedent(
        """
        import numba, numpy as np
        from gcn_numpy import GenerativeConvNet, Layer
        from gcn_numpy.backends.numba import seam
        assert numba.config.DISABLE_JIT
        seam.WINOGRAD_MIN_PAIRS_GRADIENT = seam.WINOGRAD_MIN_PAIRS = 0
        seam.WINOGRAD_MIN_INPUTS = 0  # both algorithms on the tiny layers
        layers = [Layer(2, kernel=3, stride=2, padding=1), Layer(2, kernel=2)]
        rng = np.random.default_rng(0)
        I = rng.normal(size=(2, 1, 7, 6))
        for top in ("sum", "linear"):
            nets = [GenerativeConvNet(1, layers, top=top, image_size=(7, 6), backend=b)
                    for b in ("numba", "numpy")]
            weights = [(rng.normal(size=W.shape), rng.uniform(0.1, 0.5, size=b.shape))
                       for W, b in nets[0].weights]
            for net in nets:
                net.set_weights(weights)
            (a, B), (a_ref, B_ref) = (net.top_down(I) for net in nets)
            g, g_ref = (net.weight_gradient(I) for net in nets)
            assert np.abs(B_ref).max() > 0
            assert np.allclose(B, B_ref, rtol=0, atol=1e-12 * np.abs(B_ref).max())
            assert np.allclose(a, a_ref, rtol=1e-12)
            for (dW, db), (dW_ref, db_ref) in zip(g, g_ref):
                assert np.allclose(dW, dW_ref, rtol=0, atol=1e-12 * np.abs(dW_ref).max())
                assert np.allclose(db, db_ref, rtol=1e-12)
        print("ok")
        """
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_learning_on_numba_is_reproducible_run_to_run():
    from gcn_numpy import data
    from gcn_numpy.learning import Learner
    from gcn_numpy.presets import get_preset

    obs = data.prepare(data.load_images([data.texture_path("brick")], 96)[:, :, 24:72, 24:72])[0]
    runs = []
    for _ in range(2):
        config = get_preset("texture")
        config.size, config.chains, config.synth_scale = 48, 8, 1.0
        learner = Learner(config, obs)
        runs.append([learner.step()["f_syn"] for _ in range(20)])
        runs.append(learner.state_dict()["chains"])
    assert runs[0] == runs[2]
    assert np.array_equal(runs[1], runs[3])


@pytest.mark.parametrize("layout", ["channels first", "channels last"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", ["reflect", "symmetric", "circular"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_threads", [1, 8])
def test_pad_and_fold_maps_equal_the_reference(monkeypatch, seed, boundary, dtype, layout,
                                               n_threads):  # fmt: skip
    """The compiled padding and its adjoint, bit for bit what the reference computes
    (:func:`reference.pad_maps`, :func:`reference.fold_maps`: the same sums in the same
    order), gated as :func:`gate` gates; on 8 threads, more than images, each image's rows
    go over the threads (:func:`threads.image_parts`)."""
    monkeypatch.setattr(threads, "thread_count", lambda: n_threads)
    rng = np.random.default_rng(seed)
    N, C, H, W = (int(v) for v in rng.integers(1, 5, size=4) + np.array([0, 0, 3, 3]))
    before = int(rng.integers(0, 3))
    after = before if boundary != "circular" else int(rng.integers(0, 3))
    x = rng.normal(size=(N, C, H, W)).astype(dtype)
    if layout == "channels last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    rows, cols = (boundary_module.sources(before, after, n, boundary) for n in (H, W))
    padded = seam.pad_maps(x, rows, cols)
    assert padded.dtype == dtype
    assert np.array_equal(padded, reference.pad_maps(x, rows, cols))
    a = rng.normal(size=padded.shape).astype(dtype)
    delta = rng.random((N, C, H, W)) < 0.5
    folded = reference.fold_maps(a, rows, cols, before, (H, W))
    assert np.array_equal(seam.fold_maps(a, rows, cols, before, (H, W)), folded)
    gated = seam.fold_maps(a, rows, cols, before, (H, W), delta)
    assert np.array_equal(gated, seam.gate(folded, delta))


def test_pad_and_fold_maps_reject_bad_sources():
    x = np.zeros((1, 2, 4, 4))
    rows = boundary_module.sources(1, 1, 4, "reflect")
    with pytest.raises(ValueError, match="indices below 4"):
        seam.pad_maps(x, rows + 1, rows)
    with pytest.raises(ValueError, match="padded from"):
        seam.fold_maps(np.zeros((1, 2, 6, 6)), rows, rows, 3, (4, 4))
    with pytest.raises(ValueError, match="themselves"):
        seam.fold_maps(np.zeros((1, 2, 6, 6)), rows[::-1].copy(), rows, 1, (4, 4))
    with pytest.raises(ValueError, match="delta of shape"):
        seam.fold_maps(np.zeros((1, 2, 6, 6)), rows, rows, 1, (4, 4), np.ones((1, 2, 4, 3)))


@pytest.mark.parametrize("boundary", ["reflect", "symmetric", "circular"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(3))
def test_padded_boundaries_equal_reference(seed, dtype, boundary):
    """Whole nets with a boundary other than zeros (padded by :func:`seam.pad_maps`,
    folded by :func:`seam.fold_maps`) against the float64 reference net, which pads
    and folds with :func:`reference.pad_maps` and :func:`reference.fold_maps`."""
    net, I = random_net(seed, "sum", backend="numba", dtype=dtype, boundary=boundary)
    ref = GenerativeConvNet(
        net.in_channels, net.layers, image_size=net.image_size, boundary=boundary
    )
    ref.set_weights(net.weights)
    I = I.astype(dtype)
    deltas = net.activation_pattern(I)
    tol = TOL[dtype]
    alpha, B = net.top_down(I)
    alpha_ref, B_ref = ref.top_down(I, deltas=deltas)
    assert rel_err(B, B_ref) <= tol and rel_err(alpha, alpha_ref) <= tol
    pinned = ref.forward_backward(ref.check_images(I), need_grads=True, deltas=deltas)
    grads_ref = [(dW / len(I), db / len(I)) for dW, db in pinned["grads"]]
    for (dW, db), (dW_ref, db_ref) in zip(net.weight_gradient(I), grads_ref, strict=True):
        assert rel_err(dW, dW_ref) <= tol and rel_err(db, db_ref) <= tol


@pytest.mark.parametrize("n_threads", [1, 2, 3, 4])
def test_each_task_runs_then_tasks_after_every_task(monkeypatch, n_threads):
    """Every task once, each thread with its own scratch; the ``then`` tasks once each,
    none before the last task has ended; an error in a task reaches the caller, after
    every thread has stopped, and no thread waits forever."""
    monkeypatch.setattr(threads, "thread_count", lambda: n_threads)
    lock, done, then_seen, seen = threading.Lock(), [], [], set()

    def run(i, own):
        time.sleep(0.002 * (i % 3))  # tasks of different lengths
        with lock:
            done.append(i)
            seen.add((threading.get_ident(), id(own)))

    def then(j):
        with lock:
            then_seen.append((j, len(done)))

    threads.each_task(9, run, object, then=(3, then))
    assert sorted(done) == list(range(9))
    assert sorted(j for j, _ in then_seen) == [0, 1, 2] and all(n == 9 for _, n in then_seen)
    assert len({own for _, own in seen}) == len({t for t, _ in seen}) <= n_threads

    def failing(i, own):
        if i == 4:
            raise RuntimeError("task 4")
        run(i, own)

    done.clear()
    then_seen.clear()
    with pytest.raises(RuntimeError, match="task 4"):
        threads.each_task(9, failing, object, then=(2, then))
    ended = list(done)
    time.sleep(0.02)  # no thread still at work
    assert 4 not in done and done == ended
