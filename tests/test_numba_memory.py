"""The Numba backend's memory kept between calls: scratch arrays per layer
(:func:`memory.reused`) and the memory of outputs nothing holds any more
(:func:`memory.output`). Results must be bit for
bit those of fresh memory, whatever ran before and on whichever thread; an output must
never be handed out again while any view of it is alive."""

import threading

import numpy as np
import pytest
from test_numba_backend import _layer_arrays

from gcn_numpy.backends.numba import memory, seam

# (N, C, K, H, W, kernel, stride, padding): Winograd and im2col layers, each input shape
# with several kernels, strides or paddings (their split inputs' zero borders differ)
LAYERS = (
    [(3, 12, 8, 13, 11, k, 1, p) for k, p in ((5, 2), (5, 0), (3, 1), (3, 2))]
    + [(2, 3, 6, 20, 17, k, s, p) for k, s, p in ((15, 3, 2), (7, 2, 1))]
    + [(3, 2, 5, 9, 9, 3, 1, p) for p in (1, 0)]  # im2col (few channels)
)


def _pointer(a):
    return a.__array_interface__["data"][0]


def _all_passes(case, silence=()):
    """Every kernel of one layer on its random arrays, with the filters ``silence``
    silent in the whole batch (their ``G`` zero: the kernels then work on fewer filters)."""
    x, W, b, G = _layer_arrays(case, np.float32)
    G[:, list(silence)] = 0
    *_, k, s, p = case
    F, delta = seam.conv_relu(x, W, b, s, p)
    return [
        np.array(F),
        np.array(delta),
        np.array(seam.conv_transpose(G, W, s, p, x.shape[2:])),
        *seam.conv_weight_grad(x, G, (k, k), s, p),
        np.array(seam.gate(F, delta)),
    ]


def test_kept_memory_gives_the_results_of_fresh_memory():
    """Each layer's results with every kept array freed before each call, then the layers
    called in a shuffled order, twice, with and without silent filters, on kept memory:
    bit for bit the same."""
    fresh = {}
    for case in LAYERS:
        for silence in ((), (0, 2)):
            memory.release_scratch()
            fresh[case, silence] = _all_passes(case, silence)
    order = list(fresh) * 2
    np.random.default_rng(0).shuffle(order)
    for case, silence in order:
        for a, b in zip(fresh[case, silence], _all_passes(case, silence), strict=True):
            assert np.array_equal(a, b)


def test_an_output_is_reused_only_once_no_view_of_it_is_alive():
    memory.release_scratch()
    x, W, b, _ = _layer_arrays(LAYERS[0], np.float32)
    *_, s, p = LAYERS[0]
    F, delta = seam.conv_relu(x, W, b, s, p)
    first = _pointer(F)
    del F, delta
    F, delta = seam.conv_relu(x, W, b, s, p)
    assert _pointer(F) == first  # its memory, once free, is taken again

    kept = F[1, 2:]  # a view of a view: it holds the memory as well
    before = kept.copy()
    del F, delta
    for _ in range(3):
        F, _delta = seam.conv_relu(-x, W, b, s, p)
        assert not np.shares_memory(F, kept)
    assert np.array_equal(kept, before)


def test_concurrent_callers_get_their_own_memory():
    """Four threads of the caller running the same layer's kernels at once, each on its
    own inputs: each gets what it gets alone."""
    case = LAYERS[0]
    inputs = [[a * (1 + i) for a in _layer_arrays(case, np.float32)] for i in range(4)]
    *_, k, s, p = case

    def run(x, W, b, G):
        F, delta = seam.conv_relu(x, W, b, s, p)
        B = seam.conv_transpose(G, W, s, p, x.shape[2:])
        dW, db = seam.conv_weight_grad(x, G, (k, k), s, p)
        return [np.array(F), np.array(B), dW, db]

    alone = [run(*arrays) for arrays in inputs]
    errors, barrier = [], threading.Barrier(len(inputs))

    def caller(i):
        barrier.wait()
        for _ in range(10):
            got = run(*inputs[i])
            if not all(np.array_equal(a, b) for a, b in zip(alone[i], got, strict=True)):
                errors.append(i)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_kept_output_memory_stays_within_its_bound(monkeypatch):
    memory.release_scratch()
    monkeypatch.setattr(memory, "OUTPUTS_BYTES", 40_000)
    held = [memory.output((n, 100), np.float32) for n in range(1, 30)]
    kept, _ = memory.kept()
    assert 0 < kept <= 40_000
    assert all(a.shape == (n, 100) for n, a in enumerate(held, 1))
    with memory.reused(("test",), lambda: np.empty(1), 1):
        pass
    assert memory.kept()[1] == 1
    memory.release_scratch()
    assert memory.kept() == (0, 0)


@pytest.mark.parametrize("count", [1, 3])
def test_scratch_sets_are_not_shared_while_in_use(count):
    memory.release_scratch()
    key = ("test", count)
    with memory.reused(key, lambda: [np.empty(1)], count) as outer:
        with memory.reused(key, lambda: [np.empty(1)], count) as inner:
            assert not {id(a) for a in outer} & {id(a) for a in inner}
        with memory.reused(key, lambda: [np.empty(1)], count) as again:
            assert {id(a) for a in again} == {id(a) for a in inner}
