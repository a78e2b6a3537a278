"""What the CuPy backend's tests share: the layer cases, the checks of one layer's kernels
and of whole nets against the float64 reference, and a NumPy Philox4x32-10 + Box-Muller,
the oracle of the device noise. ``test_cupy_cpu.py`` runs them on any machine (the kernels
compiled for the CPU), ``test_cupy_gpu.py`` on a GPU. The one test here checks that the cases
reach what the kernels' launch geometry makes hard.
"""

import functools
import json

import numpy as np
from conftest import KERNELS, rel_err

from gcn_numpy import GenerativeConvNet, Layer
from gcn_numpy.backends import cupy_gpu, reference
from gcn_numpy.presets import TrainConfig

TOL = {np.float64: 1e-10, np.float32: 1e-5}
TF32_TOL = 1e-2
DTYPES = (np.float64, np.float32)


def _random_case(rng):
    """(N, C, K, H, W, kernel, stride, padding), non-square, every output at least 1x1."""
    k, s, p = int(rng.choice(KERNELS)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
    H, W = (max(1, k - 2 * p) + int(rng.integers(0, 9)) for _ in range(2))
    N, C, K = (int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 6)))
    return N, C, K, H, W, k, s, p


# The paper's first layer: 100 filters 15x15 stride 3 on a 224 px color image, 72x72 maps.
PAPER_CASE = (2, 3, 100, 224, 224, 15, 3, 2)
FIXED_CASES = [  # the texture net's layers (scaled down) and the edge cases
    (2, 3, 4, 30, 26, 15, 3, 2),
    (2, 4, 3, 12, 9, 5, 1, 2),
    (1, 3, 2, 7, 8, 3, 1, 2),
    (3, 2, 5, 6, 5, 1, 1, 0),
    (1, 1, 1, 1, 1, 1, 1, 0),
    (2, 2, 3, 4, 9, 1, 3, 2),
    (1, 2, 2, 5, 5, 7, 2, 2),
    # maps of more than one block of pixels: 40x37 = 5 full blocks and a tail of 200
    (2, 3, 4, 40, 37, 3, 1, 1),
    # exactly one full block of output positions (16x16) over 18x18 inputs (a tail)
    (1, 2, 3, 18, 18, 3, 1, 0),
    # stride 2: 20x17 outputs (a tail of 84) from 41x35 inputs (5 blocks and a tail)
    (2, 2, 3, 41, 35, 4, 2, 1),
]
CASES = FIXED_CASES + [_random_case(np.random.default_rng(seed)) for seed in range(12)]


def output_hw(case):
    N, C, K, H, W, k, s, p = case
    return reference.output_size(H, k, s, p), reference.output_size(W, k, s, p)


def test_cases_reach_multi_block_maps_and_the_paper_layer():
    """Every kernel runs one thread per pixel in blocks of ``BLOCK``: the cases must give maps
    of several blocks with a partial last one, and an exact multiple."""
    block = cupy_gpu.BLOCK
    outputs = [np.prod(output_hw(c)) for c in CASES]
    inputs = [c[3] * c[4] for c in CASES]
    assert any(P > block and P % block for P in outputs), "no multi-block output map with a tail"
    assert any(P % block == 0 for P in outputs), "no output map of whole blocks"
    assert any(HW > block and HW % block for HW in inputs), "no multi-block input map"
    assert output_hw(PAPER_CASE) == (72, 72)


def case_arrays(case, dtype, seed):
    """Inputs of one layer, random and non-zero, rounded to ``dtype``."""
    N, C, K, H, W, k, s, p = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, C, H, W)).astype(dtype)
    Wt = (rng.normal(size=(K, C, k, k)) / np.sqrt(C * k * k)).astype(dtype)
    b = rng.uniform(-0.3, 0.3, size=K).astype(dtype)
    G = rng.normal(size=(N, K) + output_hw(case)).astype(dtype)
    return x, Wt, b, G


@functools.lru_cache(maxsize=4)
def _layer_reference(case, dtype, seed):
    """The reference's four results on :func:`case_arrays` in float64 (kept: the paper's
    layer takes seconds, and the float32 and TF32 checks share its inputs)."""
    N, C, K, H, W, k, s, p = case
    x, Wt, b, G = (a.astype(np.float64) for a in case_arrays(case, dtype, seed))
    return (
        reference.conv2d(x, Wt, s, p),
        reference.conv_relu(x, Wt, b, s, p),
        reference.conv_transpose(G, Wt, s, p, (H, W)),
        reference.conv_weight_grad(x, G, (k, k), s, p),
    )


def _written(a):
    """Fails on an output entry no kernel wrote: the tests poison fresh memory with 0xFF
    bytes, a NaN in either float type and a byte no bool array may hold."""
    a = np.asarray(a)
    if a.dtype == bool:
        assert a.reshape(-1).view(np.uint8).max(initial=0) <= 1, "bool output left unwritten"
    else:
        assert np.isfinite(a).all(), "output left unwritten (NaN from the poisoned memory)"
    return a


def check_layer_kernels(be, case, dtype, seed, to_np=np.asarray, put=np.asarray, tol=None):
    """Every convolution kernel of backend ``be`` against the reference on one layer."""
    N, C, K, H, W, k, s, p = case
    x, Wt, b, G = case_arrays(case, dtype, seed)
    r_ref, (F_ref, delta_ref), B_ref, (dW_ref, db_ref) = _layer_reference(case, dtype, seed)
    tol = TOL[dtype] if tol is None else tol

    def host(a):
        return _written(to_np(a))

    r = host(be.conv2d(put(x), put(Wt), s, p))
    assert r.dtype == dtype
    assert rel_err(r, r_ref) <= tol

    F, delta = (host(a) for a in be.conv_relu(put(x), put(Wt), put(b), s, p))
    assert F.dtype == dtype and delta.dtype == bool and F.shape == F_ref.shape
    assert rel_err(F, F_ref) <= tol
    pre = r_ref + b.astype(np.float64)[:, None, None]
    clear = np.abs(pre) > 10 * tol * np.abs(pre).max()  # a sign rounding cannot flip
    assert np.array_equal(delta[clear], delta_ref[clear])
    _, delta0 = be.conv_relu(put(x), put(Wt), put(np.zeros_like(b)), s, p)
    assert not host(delta0)[r_ref == 0].any(), "delta = 1(r + b > 0) is off where r + b = 0"

    B = host(be.conv_transpose(put(G), put(Wt), s, p, (H, W)))
    assert B.shape == (N, C, H, W) and B.dtype == dtype
    assert rel_err(B, B_ref) <= tol

    dW, db = (host(a) for a in be.conv_weight_grad(put(x), put(G), (k, k), s, p))
    assert dW.shape == dW_ref.shape and db.shape == db_ref.shape
    assert rel_err(dW, dW_ref) <= tol
    assert rel_err(db, db_ref) <= tol


def reference_copy(net):
    """A float64 NumPy-backend net with ``net``'s weights."""
    ref = GenerativeConvNet(
        net.in_channels,
        net.layers,
        top=net.top,
        image_size=net.image_size,
        backend="numpy",
        boundary=net.boundary,
    )
    ref.set_weights(net.weights)
    return ref


def boundary_net(boundary, top, backend, dtype=np.float64, seed=0):
    """A two-layer net with a stride, on a boundary other than zeros, random non-zero
    weights, and a batch of images (sizes even: a torus must fit the strides)."""
    from conftest import random_weights

    layers = [Layer(4, 5, stride=2, padding=2), Layer(3, 3, padding=1)]
    net = GenerativeConvNet(
        2, layers, top, (14, 10), backend=backend, dtype=dtype, boundary=boundary
    )
    rng = np.random.default_rng(seed)
    random_weights(net, rng)
    return net, rng.normal(size=(2, 2, 14, 10))


def check_nets_agree(net, ref, I, tol):
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


def _term_magnitudes(ref, out, deltas):
    """``f`` and ``alpha`` of a pinned pass summed over the absolute values of their terms.

    ``f`` and ``alpha`` add terms of both signs; float32 rounding is relative to the terms.
    """
    maps, B_layers = out["maps"], out["B_layers"]
    weights = ref.weights
    f_scale = np.abs(maps[-1] * B_layers[-1]).sum(axis=(1, 2, 3))
    alpha_scale = np.zeros_like(f_scale)
    if ref.top == "linear":
        f_scale = f_scale + abs(weights[-1][1][0])
        alpha_scale = alpha_scale + abs(weights[-1][1][0])
    for l in range(1, len(ref.layers) + 1):
        G = B_layers[l] * deltas[l - 1]
        alpha_scale = alpha_scale + np.abs(G).sum(axis=(2, 3)) @ np.abs(weights[l - 1][1])
    return f_scale, alpha_scale


def check_float32_net(net, I, tol=TOL[np.float32], max_flips=1e-3):
    """A float32 net against the float64 reference pinned to the float32 net's own pattern.

    A float32 net may flip the sign of a pre-activation within rounding of zero; comparing
    it with a float64 net that did not would test the flip, not the kernels. ``max_flips``
    bounds the fraction of units whose pattern differs from the float64 net's.
    """
    I = I.astype(np.float32).astype(np.float64)
    deltas = net.activation_pattern(I)
    ref = reference_copy(net)
    flips = sum(np.sum(a != b) for a, b in zip(deltas, ref.activation_pattern(I), strict=True))
    assert flips <= max_flips * sum(d.size for d in deltas), "patterns differ beyond rounding"
    want = ref.forward_backward(
        ref.check_images(I), need_grads=True, deltas=deltas, need_layers=True
    )
    f_scale, alpha_scale = _term_magnitudes(ref, want, deltas)
    assert np.max(np.abs(net.score(I) - want["f"])) <= tol * np.max(f_scale)
    alpha, B = net.top_down(I)
    assert rel_err(B, want["B"]) <= tol
    assert np.max(np.abs(alpha - want["alpha"])) <= tol * np.max(alpha_scale)
    n = I.shape[0]
    for (dW, db), (dW_ref, db_ref) in zip(net.weight_gradient(I), want["grads"], strict=True):
        assert rel_err(dW, dW_ref / n) <= tol
        assert rel_err(db, db_ref / n) <= tol


# ------------------------------------------------------------------- the learner


def learner_config(**changes):
    """A small learning run on the cupy backend: two layers grown one by one, 3 chains."""
    config = TrainConfig(
        layers=[
            {"channels": 4, "kernel": 5, "stride": 2, "padding": 2},
            {"channels": 3, "kernel": 3, "stride": 1, "padding": 1},
        ],
        chains=3,
        langevin_steps=3,
        iterations=2,  # per layer stage: 4 in all, growing once
        lr=0.01,
        backend="cupy",
        dtype="float64",
        seed=4,
    )
    for name, value in changes.items():
        setattr(config, name, value)
    return config


def learner_images():
    return np.random.default_rng(0).uniform(-60, 60, size=(1, 3, 16, 16))


def assert_states_equal(a, b):
    assert set(a) == set(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), f"state {key!r} differs"


# ------------------------------------------------------------ the noise, in NumPy

# Random123's known answers for Philox4x32-10 (tests/kat_vectors): counter, key, output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]
_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_LOW = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter, key):
    """Philox4x32-10 of four arrays of 32-bit counter words under the key ``(k0, k1)``."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = (int(k) for k in key)
    for round_ in range(10):
        if round_:
            k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
        p0, p1 = np.uint64(_M0) * c0, np.uint64(_M1) * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0),
            p1 & _LOW,
            (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1),
            p0 & _LOW,
        )
    return tuple(c.astype(np.uint32) for c in (c0, c1, c2, c3))


def normal_from_seed(seed, n):
    """The ``n`` float64 values of the device noise for ``seed`` (``conv.cu``'s formula)."""
    seed = int(seed)
    t = np.arange((n + 1) // 2, dtype=np.uint64)
    zeros = np.zeros_like(t)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    words = philox4x32_10((t & _LOW, t >> np.uint64(32), zeros, zeros), key)
    a, b, c, d = (w.astype(np.float64) for w in words)
    u1 = (np.floor(a / 32) * 2**26 + np.floor(b / 64) + 1) * 2.0**-53
    u2 = (np.floor(c / 32) * 2**26 + np.floor(d / 64)) * 2.0**-53
    radius, angle = np.sqrt(-2 * np.log(u1)), 2 * np.pi * u2
    z = np.empty(2 * t.size)
    z[0::2], z[1::2] = radius * np.cos(angle), radius * np.sin(angle)
    return z[:n]


def assert_noise_matches(got, seed):
    """Device (or harness) noise of any shape and float type against the NumPy formula:
    the same numbers up to the last bits of log, sin and cos."""
    got = np.asarray(got)
    want = normal_from_seed(seed, got.size).reshape(got.shape)
    if got.dtype == np.float64:
        assert np.max(np.abs(got - want), initial=0) <= 1e-13
    else:  # the double rounded: off by at most one float ulp where libms differ
        assert np.all(np.abs(got - want) <= np.spacing(np.abs(want).astype(np.float32)))


def check_rollback_draws_new_noise(monkeypatch, to_numpy):
    """After a non-finite iteration the learner keeps its weights and chains but not the
    rng's past: the next attempt draws new device noise, as on the CPU backends (no
    replay); and since the noise is a function of the NumPy rng's state alone, a second
    identical run draws exactly the same noise."""
    from gcn_numpy.learning import Learner

    runs, draw = [], cupy_gpu.standard_normal
    for _ in range(2):
        draws = []

        def recorded(rng, shape, dtype, draws=draws):
            state = json.dumps(rng.bit_generator.state)
            z = draw(rng, shape, dtype)
            draws.append((state, to_numpy(z)))
            return z

        monkeypatch.setattr(cupy_gpu, "standard_normal", recorded)
        learner = Learner(learner_config(), learner_images())
        update, updates = learner.rule.update, []

        def fails_once(params, grads, state, lr, xp, update=update, updates=updates):
            new_params, new_state = update(params, grads, state, lr, xp)
            updates.append(lr)
            if len(updates) == 2:
                new_params = [(W * np.nan, b) for W, b in new_params]
            return new_params, new_state

        learner.rule.update = fails_once
        rolled = [bool(learner.step()["rollback"]) for _ in range(3)]
        assert rolled == [False, True, False] and learner.iteration == 2
        assert updates[2] == updates[1] / 2  # the learning rate was halved
        states = [state for state, _ in draws]
        assert len(set(states)) == len(states), "an rng state was drawn from twice: a replay"
        runs.append(draws)
    for (s0, z0), (s1, z1) in zip(*runs, strict=True):
        assert s0 == s1 and np.array_equal(z0, z1)
