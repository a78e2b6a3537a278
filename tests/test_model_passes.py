"""The options of ``forward_backward``: a given activation pattern, given top coefficients,
every layer's coefficients, skipped work; and the model's public accessors."""

import numpy as np
import pytest
from conftest import import_torch, random_net, rel_err, torch_score

from gcn_numpy import GenerativeConvNet, Layer
from gcn_numpy.backends.reference import conv2d
from gcn_numpy.boundary import clean_positions, layer_padding

TOPS = ("sum", "linear")
SEEDS = range(6)


def _flat(grads):
    return [g for pair in grads for g in pair]


@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", SEEDS)
def test_given_own_pattern_changes_nothing(seed, top):
    net, I = random_net(seed, top)
    J = net.check_images(I)
    free = net.forward_backward(J, need_grads=True)
    pinned = net.forward_backward(J, need_grads=True, deltas=free["deltas"])
    for key in ("f", "alpha", "B"):
        assert np.array_equal(free[key], pinned[key])
    for a, b in zip(_flat(free["grads"]), _flat(pinned["grads"]), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", SEEDS)
def test_given_pattern_is_the_linear_score_of_its_piece(seed, top):
    """With delta pinned to I's pattern, f on another image J is alpha_delta + <J, B_delta>
    (eq. 17) even where J's own pattern differs, and B_delta does not depend on J."""
    net, I = random_net(seed, top)
    rng = np.random.default_rng(seed)
    J = I + rng.normal(0.0, 3.0, size=I.shape)  # far enough to leave the piece
    deltas = net.activation_pattern(I)
    alpha, B = net.top_down(I)
    out = net.forward_backward(net.check_images(J), deltas=deltas)
    assert rel_err(out["B"], B) <= 1e-12 and rel_err(out["alpha"], alpha) <= 1e-12
    assert rel_err(out["f"], alpha + (J * B).sum(axis=(1, 2, 3))) <= 1e-10
    moved = any(
        not np.array_equal(a, b) for a, b in zip(deltas, net.activation_pattern(J), strict=True)
    )
    assert moved, "J stayed in I's piece: the test would prove nothing"
    # B_delta from the pattern alone: the image only gives the shapes
    only_B = net.forward_backward(net.check_images(np.zeros_like(I)), need_f=False, deltas=deltas)
    assert set(only_B) == {"deltas", "B"} and np.array_equal(only_B["B"], out["B"])


@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", SEEDS)
def test_pinned_gradient_is_the_gradient_of_the_linear_piece(seed, top):
    """Pinned to I's pattern, the weight gradient on J is autograd's of the piece-wise
    linear net whose ReLUs are replaced by the fixed 0/1 pattern."""
    torch = import_torch()
    net, I = random_net(seed, top)
    deltas = net.activation_pattern(I)
    J = I + np.random.default_rng(seed).normal(0.0, 3.0, size=I.shape)
    x = torch.tensor(J)
    params = [
        (torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
        for W, b in net.weights
    ]
    h = x
    for layer, (W, b), d in zip(net.layers, params, deltas, strict=False):
        h = torch.nn.functional.conv2d(h, W, b, stride=layer.stride, padding=layer.padding)
        h = h * torch.tensor(d, dtype=h.dtype)
    f = h.sum(dim=(1, 2, 3)) if top == "sum" else (h * params[-1][0]).sum(dim=(1, 2, 3))
    f = f + (params[-1][1][0] if top == "linear" else 0)
    expected = torch.autograd.grad(f.sum(), [p for pair in params for p in pair])
    got = net.forward_backward(net.check_images(J), need_grads=True, deltas=deltas)
    assert rel_err(got["f"], f.detach().numpy()) <= 1e-10
    for g, e in zip(_flat(got["grads"]), expected, strict=True):
        assert rel_err(g, e.numpy()) <= 1e-10


@pytest.mark.parametrize("seed", SEEDS)
def test_top_coefficients_weight_each_image(seed):
    """B_top = c_n per image gives sum_n c_n df(I_n)/dw and B = c_n df/dI_n."""
    torch = import_torch()
    net, I = random_net(seed, "sum")
    c = np.random.default_rng(seed).normal(size=len(I))
    f_t, x, params = torch_score(net, I)
    phi = (torch.tensor(c) * f_t).sum()
    flat = [p for pair in params for p in pair]
    expected = torch.autograd.grad(phi, [x] + flat)
    out = net.forward_backward(net.check_images(I), need_grads=True, B_top=c[:, None, None, None])
    assert rel_err(out["f"], c * f_t.detach().numpy()) <= 1e-10
    assert rel_err(out["B"], expected[0].numpy()) <= 1e-10
    for g, e in zip(_flat(out["grads"]), expected[1:], strict=True):
        assert rel_err(g, e.numpy()) <= 1e-10


@pytest.mark.parametrize("seed", SEEDS)
def test_top_coefficients_on_a_linear_top_skip_its_filter(seed):
    net, I = random_net(seed, "linear")
    w_top = net.weights[-1][0]
    out = net.forward_backward(net.check_images(I), need_grads=True, B_top=w_top)
    full = net.forward_backward(net.check_images(I), need_grads=True)
    assert len(out["grads"]) == len(net.layers)
    # phi = <w_top, F^(L)> is f without its bias b_top
    assert rel_err(out["f"], full["f"] - net.weights[-1][1][0]) <= 1e-10
    assert rel_err(out["B"], full["B"]) <= 1e-12
    for g, e in zip(_flat(out["grads"]), _flat(full["grads"][:-1]), strict=True):
        assert rel_err(g, e) <= 1e-12


@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("seed", SEEDS)
def test_every_layer_satisfies_eq15(seed, top):
    """f = alpha_l + <B^(l), F^(l) * I> at every layer l = 0..L."""
    net, I = random_net(seed, top)
    out = net.forward_backward(net.check_images(I), need_layers=True)
    L = len(net.layers)
    assert len(out["maps"]) == len(out["B_layers"]) == len(out["alphas"]) == L + 1
    for l in range(L + 1):
        value = out["alphas"][l] + (out["B_layers"][l] * out["maps"][l]).sum(axis=(1, 2, 3))
        assert rel_err(value, out["f"]) <= 1e-10, f"layer {l}"
    assert np.array_equal(out["B_layers"][0], out["B"])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_skipping_f_leaves_B_unchanged(backend):
    net, I = random_net(3, "sum", backend=backend)
    J = net.check_images(I)
    full = net.forward_backward(J)
    lean = net.forward_backward(J, need_f=False)
    assert "f" not in lean and "alpha" not in lean
    assert np.array_equal(lean["B"], full["B"])


def test_bad_patterns_raise_value_error():
    net, I = random_net(0, "sum")
    J = net.check_images(I)
    deltas = net.activation_pattern(I)
    with pytest.raises(ValueError, match="one per layer"):
        net.forward_backward(J, deltas=deltas[:-1] if len(deltas) > 1 else deltas * 2)
    bad = [d[:, :, :-1] if i == 0 else d for i, d in enumerate(deltas)]
    with pytest.raises(ValueError, match=r"deltas\[0\]"):
        net.forward_backward(J, deltas=bad)


def test_accessors():
    net = GenerativeConvNet(2, [Layer(3, 3), Layer(2, 3)], backend="numpy", dtype=np.float32)
    assert net.xp is np and net.kernels.name == "numpy"
    a = net.asarray([[1.0, 2.0]])
    assert a.dtype == np.float32 and isinstance(net.to_numpy(a), np.ndarray)
    new = [(W + 1, b - 1) for W, b in net.params]
    net.set_params(new)
    assert all(p[0] is n[0] for p, n in zip(net.params, new, strict=True))  # no copy


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p[:-1], "expected 2"),
        (lambda p: [(p[0][0][:1], p[0][1]), p[1]], r"params\[0\] W: expected shape"),
        (lambda p: [p[0], (p[1][0], p[1][1].astype(np.float64))], r"params\[1\] b"),
        (lambda p: [(p[0][0].tolist(), p[0][1]), p[1]], "numpy array"),
    ],
)
def test_set_params_checks(change, message):
    net = GenerativeConvNet(2, [Layer(3, 3), Layer(2, 3)], backend="numpy", dtype=np.float32)
    before = net.params
    with pytest.raises(ValueError, match=message):
        net.set_params(change(list(net.params)))
    assert net.params is before


@pytest.mark.parametrize("seed", SEEDS)
def test_circular_boundary_makes_f_invariant_to_circular_shifts(seed):
    """On a torus, shifting the image by the strides' product shifts every map: f is the
    same, and B shifts with the image."""
    net, I = random_net(seed, "sum", boundary="circular")
    step = int(np.prod([layer.stride for layer in net.layers]))
    J = np.roll(I, (step, -2 * step), axis=(2, 3))
    assert rel_err(net.score(J), net.score(I)) <= 1e-12
    B_shifted = np.roll(net.top_down(I)[1], (step, -2 * step), axis=(2, 3))
    assert rel_err(net.top_down(J)[1], B_shifted) <= 1e-12


@pytest.mark.parametrize("seed", SEEDS)
def test_clean_positions_do_not_see_the_boundary(seed):
    """Top units marked clean have the same value whatever the padding holds (zeros or a
    mirror image), and some unit that is not clean changes."""
    zero, I = random_net(seed, "sum", boundary="reflect")
    reflect = GenerativeConvNet(
        zero.in_channels, zero.layers, image_size=zero.image_size, boundary="reflect"
    )
    zero = GenerativeConvNet(zero.in_channels, zero.layers, image_size=zero.image_size)
    rng = np.random.default_rng(seed)
    weights = [
        (rng.normal(size=W.shape), rng.uniform(0.1, 0.5, size=b.shape)) for W, b in zero.weights
    ]
    zero.set_weights(weights)
    reflect.set_weights(weights)
    clean = zero.clean_positions(*I.shape[2:])[-1]
    assert np.array_equal(clean, reflect.clean_positions(*I.shape[2:])[-1])
    top = [
        net.forward_backward(net.check_images(I), need_layers=True)["maps"][-1]
        for net in (zero, reflect)
    ]
    assert np.array_equal(top[0][:, :, clean], top[1][:, :, clean])
    if not clean.all():
        assert not np.array_equal(top[0][:, :, ~clean], top[1][:, :, ~clean])


def _clean_by_counting(layers, boundary, H, W):
    """The clean units counted directly: a unit is clean when all ``k x k`` inputs it
    reads are clean units of the layer below (padding is not)."""
    clean, masks = np.ones((1, 1, H, W)), []
    for layer in layers:
        before, after = layer_padding(layer, boundary)
        padded = np.pad(clean, ((0, 0), (0, 0), (before, after), (before, after)))
        count = conv2d(padded, np.ones((1, 1, layer.kernel, layer.kernel)), layer.stride, 0)
        clean = (count > layer.kernel**2 - 0.5).astype(np.float64)
        masks.append(clean[0, 0].astype(bool))
    return masks


@pytest.mark.parametrize("seed", range(40))
def test_clean_positions_and_their_tolerance_on_random_nets(seed):
    """Every layer's clean units equal those counted input by input; with a tolerance of
    ``X`` pixels (a multiple of the strides' product), the top units equal the clean units
    of the image grown by ``X`` on each side, where the same units sit ``X / S`` further in."""
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(rng.integers(1, 4)):
        k = int(rng.integers(1, 6))
        layers.append(Layer(2, k, stride=int(rng.integers(1, 4)), padding=int(rng.integers(0, k))))
    boundary = ("zero", "reflect", "symmetric", "circular")[seed % 4]
    S = int(np.prod([l.stride for l in layers]))
    H, W = (S * int(rng.integers(8, 20)) for _ in range(2))
    masks = clean_positions(layers, boundary, H, W)
    expected = _clean_by_counting(layers, boundary, H, W)
    assert len(masks) == len(layers)
    for m, e in zip(masks, expected, strict=True):
        assert m.shape == e.shape and np.array_equal(m, e)
    if boundary == "circular":  # a grown torus's maps do not line up with the image's
        return
    X = S * int(rng.integers(1, 4))
    top = clean_positions(layers, boundary, H, W, tolerance=X)[-1]
    grown = _clean_by_counting(layers, boundary, H + 2 * X, W + 2 * X)[-1]
    d, (h, w) = X // S, top.shape
    assert np.array_equal(top, grown[d : d + h, d : d + w])
    assert clean_positions(layers, boundary, H, W, tolerance=10**6)[-1].all()
    with pytest.raises(ValueError, match="tolerance"):
        clean_positions(layers, boundary, H, W, tolerance=-1)


def test_circular_boundary_needs_sizes_divisible_by_the_strides():
    net = GenerativeConvNet(1, [Layer(2, 5, stride=2)], boundary="circular", backend="numpy")
    assert net.layer_shapes(8, 6) == [(2, 4, 3)]
    with pytest.raises(ValueError, match="divisible by the stride"):
        net.layer_shapes(9, 8)
    with pytest.raises(ValueError, match="unknown boundary"):
        GenerativeConvNet(1, [Layer(2, 3)], boundary="mirror")


@pytest.mark.parametrize("boundary", ("symmetric", "reflect", "circular", "zero"))
@pytest.mark.parametrize("kernels", ((3,), (5,), (5, 3), (7, 5, 3)))
def test_symmetric_boundary_covers_every_pixel_equally(kernels, boundary):
    """With all-ones filters and every unit active, B(x) counts the paths from the top to
    pixel x. With odd kernels, stride 1 and padding (k - 1) / 2, the mirror that repeats the
    edge gives every pixel the interior's count, as the torus does; the mirror behind the
    edge and zero padding do not (the edge row is read by fewer windows)."""
    layers = [Layer(1, k, padding=k // 2) for k in kernels]
    net = GenerativeConvNet(1, layers, boundary=boundary, backend="numpy", dtype="float64")
    net.set_weights([(np.ones((1, 1, k, k)), np.full(1, 1e6)) for k in kernels])
    _, B = net.top_down(np.random.default_rng(0).normal(size=(1, 1, 24, 24)))
    interior = np.prod([k * k for k in kernels])
    assert B[0, 0, 12, 12] == interior
    uniform = boundary in ("symmetric", "circular")
    assert np.array_equal(B, np.full_like(B, interior)) == uniform
