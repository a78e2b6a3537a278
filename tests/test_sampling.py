"""Langevin dynamics (eq. 19), descent to local modes (Proposition 2) and the one-step
contrastive divergence gradient (Proposition 3)."""

import numpy as np
import pytest
from conftest import random_net, rel_err

from gcn_numpy import GenerativeConvNet, Layer, prototype_model
from gcn_numpy.drift import drift_test
from gcn_numpy.sampling import descend_to_mode, langevin, langevin_chains


def test_langevin_with_zero_weights_samples_the_gaussian_reference():
    """w = 0 gives f = 0 and p = q = N(0, sigma^2). The discretised dynamics is then the
    AR(1) chain I <- (1 - eps^2 / (2 sigma^2)) I + eps Z, whose stationary variance is
    sigma^2 / (1 - eps^2 / (4 sigma^2)): the O(eps^2) bias of the Euler step."""
    net = prototype_model(K=3, size=4)
    net.set_weights([(np.zeros((3, 1, 4, 4)), np.zeros(3))])
    sigma, eps = 2.0, 0.5
    chains = langevin(net, np.zeros((4000, 1, 4, 4)), 300, eps, sigma=sigma, rng=0)
    expected_var = sigma**2 / (1 - eps**2 / (4 * sigma**2))
    assert abs(chains.mean()) < 0.03 * sigma
    assert abs(chains.var() / expected_var - 1) < 0.03
    # white: neighbouring pixels uncorrelated
    corr = np.corrcoef(chains[:, 0, :, :-1].ravel(), chains[:, 0, :, 1:].ravel())[0, 1]
    assert abs(corr) < 0.03


def test_langevin_step_is_eq19_with_the_top_down_B():
    net, I = random_net(5)
    sigma, eps = 1.5, 0.2
    given = I.copy()
    out = langevin(net, I, 1, eps, sigma=sigma, rng=np.random.default_rng(7))
    Z = np.random.default_rng(7).standard_normal(I.shape)
    _, B = net.top_down(I)
    expected = I - eps**2 / 2 * (I / sigma**2 - B) + eps * Z
    assert rel_err(out, expected) <= 1e-12
    assert np.array_equal(I, given)  # the input was not modified


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_steps": -1}, "n_steps"),
        ({"n_steps": 1.5}, "n_steps"),
        ({"step_size": 0}, "step_size"),
        ({"sigma": -1}, "sigma"),
        ({"step_size": float("nan")}, "step_size"),
    ],
)
def test_langevin_rejects_bad_arguments(kwargs, message):
    net, I = random_net(0)
    args = {"n_steps": 1, "step_size": 0.1} | kwargs
    with pytest.raises(ValueError, match=message):
        langevin(net, I, **args)


def convex_net(seed, in_channels=2, layers=None):
    """A net whose f is convex in I: non-negative weights above the first layer make f a
    non-negative sum of convex, non-decreasing ReLUs of convex functions. Then
    U = ||I||^2 / 2 - f has its local minima inside pieces (no concave kinks of f to
    trap the descent), and the jump I <- B(delta(I)) majorizes-minimizes U."""
    layers = layers or [Layer(6, 3, stride=2, padding=1), Layer(4, 3, padding=1)]
    net = GenerativeConvNet(in_channels, layers, seed=seed, init_std=0.3)
    rng = np.random.default_rng(seed)
    net.set_weights(
        [
            (W if l == 0 else np.abs(W), rng.uniform(-0.5, 0.5, size=b.shape))
            for l, (W, b) in enumerate(net.weights)
        ]
    )
    return net, rng


@pytest.mark.parametrize("sigma", [1.0, 0.7])
@pytest.mark.parametrize("seed", range(6))
def test_descent_reaches_an_exact_auto_encoding(seed, sigma):
    """Proposition 2: a local mode satisfies I = sigma^2 B_{w, delta(I)} exactly, and the
    reconstruction's own pattern is delta (B lies in its piece A(delta; w))."""
    net, rng = convex_net(seed)
    I = rng.normal(size=(4, 2, 10, 10))
    mode, exact = descend_to_mode(net, I, sigma=sigma)
    assert exact.all()
    _, B = net.top_down(mode)
    assert np.abs(B).max() > 0
    assert rel_err(mode, sigma**2 * B) <= 1e-10
    pattern = net.activation_pattern(mode)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(pattern, net.activation_pattern(sigma**2 * B), strict=True)
    )
    # the energy gradient I / sigma^2 - B vanishes: a stationary point, and it is a
    # minimum because the energy is the convex quadratic of eq. (18) inside the piece
    grad = mode / sigma**2 - B
    assert np.abs(grad).max() <= 1e-10 * max(1.0, np.abs(mode).max())


def test_descent_lowers_the_energy_step_by_step_and_small_steps_also_end_exact():
    net, rng = convex_net(1, in_channels=1, layers=[Layer(5, 3, padding=1), Layer(3, 3)])
    I = rng.normal(size=(3, 1, 8, 8))
    energies = [net.energy(I)]
    for k in range(1, 6):
        energies.append(net.energy(descend_to_mode(net, I, max_steps=k)[0]))
    assert np.all(np.diff(energies, axis=0) <= 1e-12)
    assert np.all(energies[-1] < energies[0])
    slow, exact = descend_to_mode(net, I, step_size=0.6, tol=1e-12)
    assert exact.all()
    assert rel_err(slow, net.top_down(slow)[1]) <= 1e-10


def _flat(grads):
    return np.concatenate([g.ravel() for pair in grads for g in pair])


def _set_flat(net, base, direction, t):
    out, k = [], 0
    for W, b in base:
        pair = []
        for a in (W, b):
            pair.append(a + t * direction[k : k + a.size].reshape(a.shape))
            k += a.size
        out.append(tuple(pair))
    net.set_weights(out)


@pytest.mark.parametrize("seed", range(4))
def test_proposition3_cd_gradient_is_proportional_to_reconstruction_gradient(seed):
    """Proposition 3: with delta unchanged by the step, E[df/dw(I_obs) - df/dw(I_syn)] =
    -(eps^2 / 4) d/dw ||I_obs - B_{w,delta}||^2 (sigma = 1). The noise is averaged over
    antithetic pairs (Z, -Z), keeping only pairs whose two samples stay in the piece."""
    net, I = random_net(seed, max_layers=3)
    I = I[:1]
    rng = np.random.default_rng(100 + seed)
    pattern = net.activation_pattern(I)
    _, B = net.top_down(I)
    g_obs = _flat(net.weight_gradient(I))

    def one_step(eps, z):
        return I - eps**2 / 2 * (I - B) + eps * z

    def stays(syn):
        return all(
            np.array_equal(a, b) for a, b in zip(pattern, net.activation_pattern(syn), strict=True)
        )

    eps = 0.1  # small enough that most steps keep the activation pattern
    while np.mean([stays(one_step(eps, rng.standard_normal(I.shape))) for _ in range(10)]) < 0.7:
        eps /= 2
    cd, kept = np.zeros_like(g_obs), 0
    for _ in range(40):
        Z = rng.standard_normal(I.shape)
        if stays(one_step(eps, Z)) and stays(one_step(eps, -Z)):
            for z in (Z, -Z):
                cd += g_obs - _flat(net.weight_gradient(one_step(eps, z)))
                kept += 1
    assert kept >= 20, "the noise left the piece too often to test the proposition"
    cd /= kept

    # gradient of the reconstruction error R(w) = ||I - B_{w,delta}||^2 by central
    # differences along random directions, delta held (and checked) fixed
    base = net.weights
    ratios = []
    for _ in range(3):
        direction = rng.normal(size=g_obs.size)
        h = 1e-5
        values = []
        for t in (h, -h):
            _set_flat(net, base, direction, t)
            assert all(
                np.array_equal(a, b)
                for a, b in zip(pattern, net.activation_pattern(I), strict=True)
            )
            values.append(np.sum((I - net.top_down(I)[1]) ** 2))
        net.set_weights(base)
        recon_dir = (values[0] - values[1]) / (2 * h)
        ratios.append((cd @ direction) / recon_dir)
    assert np.allclose(ratios, -(eps**2) / 4, rtol=1e-5)


def test_drift_test_runs_the_dynamics_of_the_top_positions_it_is_given():
    """With ``B_top`` (the positions f sums), the drift test's chains are Langevin's on that
    f and its energy is ``||I||^2 / (2 sigma^2) - f`` with that f, per pixel."""
    net = GenerativeConvNet(
        1,
        [Layer(3, 5, stride=2, padding=2), Layer(2, 3, padding=1)],
        backend="numpy",
        dtype=np.float64,
        seed=2,
        init_std=0.3,
        boundary="reflect",
    )
    start = 20 * np.random.default_rng(0).normal(size=(2, 1, 20, 20))
    training = np.random.default_rng(1).normal(size=(1, 1, 20, 20))
    mask = net.clean_positions(20, 20)[-1][None, None]
    assert 0 < mask.sum() < mask.size
    records, final = drift_test(net, start, training, steps=10, rng=4, B_top=mask)
    expected = langevin_chains(
        net, net.check_images(start), 10, 0.3, 1.0, np.random.default_rng(4), B_top=mask
    )
    assert np.allclose(final, expected, rtol=1e-12, atol=1e-12)
    _, unmasked = drift_test(net, start, training, steps=10, rng=4)
    assert not np.allclose(final, unmasked)
    f = net.forward_backward(net.check_images(start), need_B=False, B_top=mask)["f"]
    energy = (0.5 * (start**2).sum(axis=(1, 2, 3)) - f) / start[0].size
    assert np.isclose(records[0]["energy"], energy.mean(), rtol=1e-12)
