"""Adjoint identities of the backend seam: the top-down deconvolution and the weight
gradient are the transposes of the bottom-up convolution."""

import numpy as np
import pytest
from conftest import rel_err

from gcn_numpy.backends import get_backend, reference
from gcn_numpy.boundary import sources

CASES = [  # (C, K, H, W, kernel, stride, padding)
    (1, 1, 5, 5, 1, 1, 0),
    (2, 3, 9, 7, 3, 1, 1),
    (3, 4, 11, 12, 5, 2, 2),
    (2, 5, 20, 17, 15, 3, 2),
    (3, 2, 10, 10, 4, 3, 0),
    (1, 3, 6, 8, 2, 2, 1),
    (2, 2, 3, 3, 1, 1, 2),
]


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose_is_adjoint_of_conv2d(case):
    C, K, H, W, k, s, p = case
    rng = np.random.default_rng(sum(case))
    x = rng.normal(size=(2, C, H, W))
    Wt = rng.normal(size=(K, C, k, k))
    r = reference.conv2d(x, Wt, s, p)
    y = rng.normal(size=r.shape)
    lhs = np.sum(r * y)
    rhs = np.sum(x * reference.conv_transpose(y, Wt, s, p, (H, W)))
    assert abs(lhs - rhs) <= 1e-12 * np.sum(np.abs(r * y))


@pytest.mark.parametrize("case", CASES)
def test_weight_grad_is_adjoint_of_conv2d_in_weights(case):
    C, K, H, W, k, s, p = case
    rng = np.random.default_rng(10 + sum(case))
    x = rng.normal(size=(3, C, H, W))
    Wt = rng.normal(size=(K, C, k, k))
    r = reference.conv2d(x, Wt, s, p)
    y = rng.normal(size=r.shape)
    dW, db = reference.conv_weight_grad(x, y, (k, k), s, p)
    assert abs(np.sum(r * y) - np.sum(Wt * dW)) <= 1e-12 * np.sum(np.abs(r * y))
    assert rel_err(db, y.sum(axis=(0, 2, 3))) <= 1e-14


def test_conv_relu_pattern_and_response():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 9, 9))
    Wt, b = rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    F, delta = reference.conv_relu(x, Wt, b, 2, 1)
    pre = reference.conv2d(x, Wt, 2, 1) + b[:, None, None]
    assert delta.dtype == bool and np.array_equal(delta, pre > 0)
    assert delta.any() and not delta.all()
    assert np.array_equal(F, np.maximum(pre, 0))


def test_get_backend_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("jax")


@pytest.mark.parametrize(("boundary", "mode"), [("circular", "wrap"), ("reflect", "reflect"),
                                                ("symmetric", "symmetric")])  # fmt: skip
@pytest.mark.parametrize(("before", "after"), [(2, 2), (1, 3), (0, 2)])
def test_pad_maps_is_numpys_padding_and_fold_maps_its_adjoint(boundary, mode, before, after):
    """The reference's ``pad_maps`` on a boundary's sources is NumPy's ``np.pad`` in the same
    mode; ``fold_maps`` is its transpose, and gated by ``delta`` it is ``gate`` of it."""
    rng = np.random.default_rng(before + 3 * after)
    x = rng.normal(size=(2, 3, 5, 6))
    rows, cols = (sources(before, after, n, boundary) for n in x.shape[2:])
    padded = reference.pad_maps(x, rows, cols)
    widths = ((0, 0), (0, 0), (before, after), (before, after))
    assert np.array_equal(padded, np.pad(x, widths, mode=mode))
    y = rng.normal(size=padded.shape)
    folded = reference.fold_maps(y, rows, cols, before, (5, 6))
    assert abs(np.sum(padded * y) - np.sum(x * folded)) <= 1e-12 * np.sum(np.abs(padded * y))
    delta = rng.random(x.shape) < 0.5
    gated = reference.fold_maps(y, rows, cols, before, (5, 6), delta)
    assert np.array_equal(gated, reference.gate(folded, delta)) and gated.any()
