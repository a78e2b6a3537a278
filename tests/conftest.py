"""Shared helpers: random nets with non-zero weights and biases, and error measures."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from gcn_numpy import GenerativeConvNet, Layer

KERNELS = (1, 2, 3, 4, 5, 6, 7, 15)
MAX_IMAGE = 40


def rel_err(a, b):
    """Largest absolute difference relative to the largest entry of the reference ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b))
    assert scale > 0, "reference is all zeros: the comparison would prove nothing"
    return np.max(np.abs(a - b)) / scale


def random_architecture(rng, max_layers=4, boundary="zero"):
    """Random layers (1-4, kernels 1-7 and 15, strides 1-3, paddings 0-2) and an image
    size a little above the receptive field, at most ``MAX_IMAGE`` pixels (for a circular
    boundary: a multiple of the strides' product)."""
    while True:
        n_layers = int(rng.integers(1, max_layers + 1))
        layers = [
            Layer(
                int(rng.integers(1, 6)),
                kernel=int(rng.choice(KERNELS)),
                stride=int(rng.integers(1, 4)),
                padding=int(rng.integers(0, 3)),
            )
            for _ in range(n_layers)
        ]
        probe = GenerativeConvNet(1, layers, boundary=boundary)
        need = probe.min_image_size()[0]
        if boundary == "circular":
            step = int(np.prod([layer.stride for layer in layers]))
            sizes = [n for n in range(step, MAX_IMAGE + 1, step) if n >= 4]
            if sizes:
                H, W = (int(rng.choice(sizes)) for _ in range(2))
                return int(rng.integers(1, 4)), layers, (H, W)
        elif need <= MAX_IMAGE - 6:
            H, W = need + int(rng.integers(0, 7)), need + int(rng.integers(0, 7))
            if boundary in ("reflect", "symmetric"):  # maps larger than the padding they mirror
                H, W = H + 6, W + 6
            try:
                probe.layer_shapes(H, W)
            except ValueError:
                continue
            return int(rng.integers(1, 4)), layers, (H, W)


def random_weights(net, rng):
    """Non-zero weights scaled by fan-in and biases of both signs, so that a fair share of
    units is active at every layer (an all-zero pattern would make every test trivial)."""
    weights = []
    for W, b in net.weights:
        fan_in = np.prod(W.shape[1:])
        W = rng.normal(0.0, 1.5 / np.sqrt(fan_in), size=W.shape)
        b = rng.uniform(0.05, 0.5, size=b.shape) * rng.choice([-1.0, 1.0], size=b.shape)
        b[0] = abs(b[0])
        weights.append((W, b))
    net.set_weights(weights)
    return net


def random_net(seed, top="sum", backend="numpy", dtype=np.float64, max_layers=4, boundary="zero"):
    """A random net, its weights and a batch of images on which nothing is trivially 0:
    every layer has active units, ``B`` is non-zero for every image and every layer's
    weight gradient is non-zero."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        C, layers, (H, W) = random_architecture(rng, max_layers, boundary)
        net = GenerativeConvNet(
            C,
            layers,
            top=top,
            image_size=(H, W),
            backend=backend,
            dtype=dtype,
            seed=seed,
            boundary=boundary,
        )
        random_weights(net, rng)
        I = rng.normal(0.0, 1.0, size=(int(rng.integers(1, 4)), C, H, W))
        alive = [d.any(axis=(1, 2, 3)).all() for d in net.activation_pattern(I)]
        _, B = net.top_down(I)
        reaches_image = np.abs(B).max(axis=(1, 2, 3)).min() > 0
        learns = all(np.abs(dW).max() > 0 for dW, _ in net.weight_gradient(I))
        if all(alive) and reaches_image and learns:
            return net, I
    raise RuntimeError("could not draw a net with active units in every layer")


def import_torch():
    """PyTorch, the test oracle; skipped where it is missing, except in CI, which sets
    ``GCN_REQUIRE_TORCH=1`` because a skipped oracle proves nothing."""
    if os.environ.get("GCN_REQUIRE_TORCH"):
        import torch

        return torch
    return pytest.importorskip("torch")


def _mirror(torch, p, n):
    """Indices of a length-``n`` axis padded by ``p`` on both sides, the edge repeated."""
    i = torch.arange(-p, n + p) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def torch_score(net, I):
    """A PyTorch float64 copy of ``net``: returns ``(f, I_tensor, params)`` with grads on."""
    import_torch()
    import torch
    import torch.nn.functional as F

    x = torch.tensor(I, dtype=torch.float64, requires_grad=True)
    params = [
        (
            torch.tensor(W, dtype=torch.float64, requires_grad=True),
            torch.tensor(b, dtype=torch.float64, requires_grad=True),
        )
        for W, b in net.weights
    ]
    h = x
    for layer, (W, b) in zip(net.layers, params, strict=False):
        if net.boundary == "zero":
            h = F.relu(F.conv2d(h, W, b, stride=layer.stride, padding=layer.padding))
            continue
        if net.boundary == "circular":  # the periodic extension, however many periods
            total = max(layer.kernel - layer.stride, 0)
            rows = torch.arange(-(total // 2), h.shape[2] + total - total // 2) % h.shape[2]
            cols = torch.arange(-(total // 2), h.shape[3] + total - total // 2) % h.shape[3]
            h = h[:, :, rows][:, :, :, cols]
        elif net.boundary == "reflect":
            p = layer.padding
            h = F.pad(h, (p, p, p, p), mode="reflect")
        else:  # symmetric: PyTorch has no such mode; the mirror built by indexing
            p = layer.padding
            rows, cols = (_mirror(torch, p, n) for n in h.shape[2:])
            h = h[:, :, rows][:, :, :, cols]
        h = F.relu(F.conv2d(h, W, b, stride=layer.stride))
    if net.top == "sum":
        f = h.sum(dim=(1, 2, 3))
    else:
        W, b = params[-1]
        f = (h * W).sum(dim=(1, 2, 3)) + b[0]
    return f, x, params


# A training run at a few pixels: the small CPU net (the default preset is larger), three
# chains of 16 px, two Langevin steps an iteration, no drift test; each test file adds its
# backend and iterations.
TINY_RUN = [
    "--preset",
    "texture",
    "--size",
    "16",
    "--chains",
    "3",
    "--langevin-steps",
    "2",
    "--drift-steps",
    "0",
    "--quiet",
]


def run_cli(*args, cwd, timeout=600):
    """``python -m gcn_numpy.train *args`` in a subprocess, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "gcn_numpy.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def npz_arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def assert_resumes_bit_for_bit(config, images, split, total):
    """A learner stopped after ``split`` iterations and resumed from its ``state_dict``
    ends after ``total`` iterations exactly where an uninterrupted one does."""
    from gcn_numpy.learning import Learner

    whole, part = Learner(config, images), Learner(config, images)
    for _ in range(total):
        whole.step()
    for _ in range(split):
        part.step()
    resumed = Learner(config, images)
    resumed.load_state_dict(part.state_dict())
    for _ in range(total - split):
        resumed.step()
    sa, sb = whole.state_dict(), resumed.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert np.array_equal(sa[key], sb[key]), key
