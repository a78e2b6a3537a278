"""Theorem 1 and the hand-written backprop of the float64 reference, against autograd and
finite differences, on random nets (1-4 layers, kernels 1-7 and 15, strides 1-3,
paddings 0-2, both tops, non-zero weights and biases)."""

import numpy as np
import pytest
from conftest import import_torch, random_net, rel_err, torch_score

from gcn_numpy import GenerativeConvNet, Layer, prototype_model

SEEDS = range(12)

TOPS = ("sum", "linear")
PADDED = ("circular", "reflect", "symmetric")  # boundaries other than the release's zeros


def _same_pattern(net, I, J):
    return all(
        np.array_equal(a, b)
        for a, b in zip(net.activation_pattern(I), net.activation_pattern(J), strict=True)
    )


@pytest.mark.parametrize("boundary", ("zero",) + PADDED)
@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", SEEDS)
def test_score_B_and_weight_gradient_equal_torch_autograd(seed, top, boundary):
    """f, B = df/dI (Theorem 1's top-down pass) and the weight gradient against PyTorch
    autograd, with the release's zero padding and PyTorch's own circular and reflecting
    padding modes; and f = alpha + <I, B> (eq. 17)."""
    torch = import_torch()
    net, I = random_net(seed, top, boundary=boundary)
    f_t, x, params = torch_score(net, I)
    flat = [p for pair in params for p in pair]
    dfdI, *expected = torch.autograd.grad(f_t.sum(), [x] + flat)
    assert rel_err(net.score(I), f_t.detach().numpy()) <= 1e-12
    alpha, B = net.top_down(I)
    assert rel_err(B, dfdI.numpy()) <= 1e-10
    assert rel_err(alpha + (I * B).sum(axis=(1, 2, 3)), net.score(I)) <= 1e-10
    got = [g * len(I) for pair in net.weight_gradient(I) for g in pair]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == tuple(e.shape)
        assert rel_err(g, e.numpy()) <= 1e-10


def _directional_fd(fun, x, v, h):
    return (fun(x + h * v) - fun(x - h * v)) / (2 * h)


@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", SEEDS)
def test_B_matches_finite_differences(seed, top):
    net, I = random_net(seed, top)
    rng = np.random.default_rng(1000 + seed)
    _, B = net.top_down(I)
    for _ in range(3):
        V = rng.normal(size=I.shape)
        h = 1e-4
        while not (_same_pattern(net, I, I + h * V) and _same_pattern(net, I, I - h * V)):
            h /= 4
        fd = _directional_fd(net.score, I, V, h)
        exact = (B * V).sum(axis=(1, 2, 3))
        assert rel_err(fd, exact) <= 1e-7


@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", SEEDS)
def test_weight_gradient_matches_finite_differences(seed, top):
    net, I = random_net(seed, top)
    rng = np.random.default_rng(2000 + seed)
    w0 = net.weights
    grads = net.weight_gradient(I)
    directions = [(rng.normal(size=W.shape), rng.normal(size=b.shape)) for W, b in w0]

    def mean_score(t):
        net.set_weights(
            [(W + t * dW, b + t * db) for (W, b), (dW, db) in zip(w0, directions, strict=True)]
        )
        return net.score(I).mean(), net.activation_pattern(I)

    f0, pattern0 = mean_score(0.0)
    h = 1e-5
    while True:
        fp, pp = mean_score(h)
        fm, pm = mean_score(-h)
        same = all(
            np.array_equal(a, b) and np.array_equal(a, c)
            for a, b, c in zip(pattern0, pp, pm, strict=True)
        )
        if same:
            break
        h /= 4
    net.set_weights(w0)
    exact = sum(
        np.sum(g * d)
        for pair_g, pair_d in zip(grads, directions, strict=True)
        for g, d in zip(pair_g, pair_d, strict=True)
    )
    fd = (fp - fm) / (2 * h)
    assert abs(fd - exact) <= 1e-6 * max(1.0, abs(exact))


@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", SEEDS)
def test_theorem1_piecewise_linear_score_and_gaussian_energy(seed, top):
    net, I = random_net(seed, top)
    rng = np.random.default_rng(3000 + seed)
    alpha, B = net.top_down(I)
    # eq. (17): f(I) = alpha + <I, B>
    assert rel_err(alpha + (I * B).sum(axis=(1, 2, 3)), net.score(I)) <= 1e-10
    V = rng.normal(size=I.shape)
    checked = 0
    for t in (1e-2, -5e-3, 1e-3, -1e-4, 1e-5, -1e-6):
        J = I + t * V
        if not _same_pattern(net, I, J):
            continue
        checked += 1
        # on the piece of I, f is exactly linear along I + tV ...
        assert rel_err(net.score(J), alpha + (J * B).sum(axis=(1, 2, 3))) <= 1e-10
        # ... and the energy is the Gaussian ||J - B||^2 / 2 - (alpha + ||B||^2 / 2), eq. (18)
        quadratic = ((J - B) ** 2).sum(axis=(1, 2, 3)) / 2 - (
            alpha + (B * B).sum(axis=(1, 2, 3)) / 2
        )
        assert rel_err(net.energy(J), quadratic) <= 1e-10
    assert checked >= 1, "every step left the piece: the identity was never checked"


def test_energy_uses_sigma():
    net, I = random_net(0)
    f = net.score(I)
    assert rel_err(net.energy(I, sigma=2.0), (I**2).sum(axis=(1, 2, 3)) / 8 - f) <= 1e-12


def test_prototype_model_mean_is_sum_of_active_filters():
    """eq. (9): on the piece of delta, B = sum_k delta_k w_k and alpha = sum_k delta_k b_k."""
    net = prototype_model(K=6, size=5, seed=3, init_std=0.5)
    rng = np.random.default_rng(4)
    net.set_weights([(net.weights[0][0], rng.normal(size=6))])
    I = rng.normal(size=(4, 1, 5, 5))
    ((W, b),) = net.weights
    delta = net.activation_pattern(I)[0][:, :, 0, 0]
    assert delta.any() and not delta.all()
    alpha, B = net.top_down(I)
    assert rel_err(B, np.einsum("nk,kchw->nchw", delta, W)) <= 1e-12
    assert rel_err(alpha, delta @ b) <= 1e-12


def test_layer_shapes_follow_conv2d_rule():
    net = GenerativeConvNet(
        3, [Layer(100, 15, stride=3, padding=2), Layer(64, 5, padding=2), Layer(30, 3, padding=2)]
    )
    assert net.layer_shapes(224, 224) == [(100, 72, 72), (64, 72, 72), (30, 74, 74)]
    assert net.layer_shapes(64, 48) == [(100, 18, 13), (64, 18, 13), (30, 20, 15)]
    assert net.min_image_size() == (11, 11)


def test_weights_round_trip_and_init():
    net = GenerativeConvNet(
        2, [Layer(4, 3), Layer(5, 3, stride=2)], top="linear", image_size=(11, 11), seed=7
    )
    shapes = [(W.shape, b.shape) for W, b in net.weights]
    assert shapes == [((4, 2, 3, 3), (4,)), ((5, 4, 3, 3), (5,)), ((1, 5, 4, 4), (1,))]
    W0 = net.weights[0][0]
    assert 0.005 < W0.std() < 0.02 and all(np.all(b == 0) for _, b in net.weights)
    same = GenerativeConvNet(
        2, [Layer(4, 3), Layer(5, 3, stride=2)], top="linear", image_size=(11, 11), seed=7
    )
    assert np.array_equal(same.weights[0][0], W0)
    ws = [(W * 2, b + 1) for W, b in net.weights]
    net.set_weights(ws)
    for (W, b), (W2, b2) in zip(net.weights, ws, strict=True):
        assert np.array_equal(W, W2) and np.array_equal(b, b2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda n: n.score(np.zeros((1, 2, 12, 12))), "channels"),
        (lambda n: n.score(np.zeros((1, 3, 4, 4))), "receptive field"),
        (lambda n: n.score(np.zeros((3, 12, 12))), r"\(N, C, H, W\)"),
        (lambda n: n.score(np.full((1, 3, 12, 12), np.nan)), "non-finite"),
        (lambda n: n.top_down(np.full((1, 3, 12, 12), np.inf)), "non-finite"),
        (lambda n: n.set_weights(n.weights[:1]), "pairs"),
        (lambda n: n.set_weights([(np.zeros((4, 3, 3, 3)), np.zeros(4))] + n.weights[1:]), "shape"),
        (
            lambda n: n.set_weights([(np.full((4, 3, 5, 5), np.nan), np.zeros(4))] + n.weights[1:]),
            "non-finite",
        ),
        (lambda n: n.energy(np.zeros((1, 3, 12, 12)), sigma=0), "sigma"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    net = GenerativeConvNet(3, [Layer(4, 5, stride=2), Layer(2, 3)])
    with pytest.raises(ValueError, match=message):
        call(net)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "tensorflow"}, "unknown backend"),
        ({"top": "max"}, "unknown top"),
        ({"top": "linear"}, "image_size"),
        ({"image_size": (4, 4)}, "receptive field"),
        ({"dtype": np.int32}, "dtype"),
        ({"in_channels": 0}, "in_channels"),
        ({"layers": []}, "at least one"),
    ],
)
def test_bad_construction_raises_value_error(kwargs, message):
    args = {"in_channels": 3, "layers": [Layer(4, 5, stride=2), Layer(2, 3)]} | kwargs
    with pytest.raises(ValueError, match=message):
        GenerativeConvNet(**args)


def test_linear_top_rejects_other_image_sizes():
    net = GenerativeConvNet(1, [Layer(3, 3)], top="linear", image_size=(8, 8))
    with pytest.raises(ValueError, match="image_size"):
        net.score(np.zeros((1, 1, 9, 8)))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_layer_raises_value_error(bad):
    with pytest.raises(ValueError, match="Layer"):
        Layer(bad, 3)
