"""Sampling the generative ConvNet: Langevin dynamics (eq. 19) and descent to a local mode
(Proposition 2).

With the Gaussian reference ``q`` of variance ``sigma**2`` the energy is
``U(I) = ||I||^2 / (2 sigma^2) - f(I)``, and its negative gradient ``B(I) - I / sigma^2`` is
the reconstruction error of the auto-encoder ``I -> delta(I) -> B`` (Theorem 1).
"""

import numpy as np

from ._validate import positive_float, positive_int

__all__ = [
    "langevin",
    "descend_to_mode",
    "langevin_chains",
    "tempered_chains",
    "temperatures",
    "inner_window",
    "TEMPER_STEPS",
    "TEMPER_START",
    "TEMPER_STEP_SCALE",
]

# the tempered start of sampling from zero (gcn_numpy.zoo) and of a run's tempered restart
# (Learner._tempered_start):
TEMPER_STEPS = 100  # steps of the tempered start ...
TEMPER_START = 1e4  # ... from this temperature down to 1 ...
TEMPER_STEP_SCALE = 2.0  # ... at this multiple of the model's step size


def langevin_chains(net, I, n_steps, step_size, sigma, rng, B_top=None):
    """Langevin dynamics on a checked backend array, returning a backend array.

    The loop the learner runs: one bottom-up and one top-down pass per step (without
    ``f`` and ``alpha``, which the update does not need), the update of eq. (19) as one
    backend kernel. The noise is drawn from the NumPy Generator ``rng`` on every backend,
    so that it is a function of ``rng``'s state alone. ``B_top``: top coefficients for a
    score other than the net's own, as in :meth:`GenerativeConvNet.forward_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from gcn_numpy import GenerativeConvNet, Layer
    >>> net = GenerativeConvNet(1, [Layer(2, 3)], backend="numpy")
    >>> I = net.check_images(np.zeros((2, 1, 6, 6)))
    >>> langevin_chains(net, I, 3, 0.3, 1.0, np.random.default_rng(0)).shape
    (2, 1, 6, 6)
    """
    kernels = net.kernels
    for _ in range(n_steps):
        B = net.forward_backward(I, need_B=True, need_f=False, B_top=B_top)["B"]
        Z = kernels.standard_normal(rng, I.shape, net.dtype)
        I = kernels.langevin_step(I, B, Z, step_size, sigma)
    return I


def temperatures(n_steps, start):
    """The temperatures of a tempered start: ``start`` falling geometrically to 1 over
    ``n_steps`` steps (the last one above 1).

    Examples
    --------
    >>> temperatures(4, 1e4).round(1)
    array([10000.,  1000.,   100.,    10.])
    """
    return start ** (1.0 - np.arange(n_steps) / n_steps)


def tempered_chains(net, I, temps, step_size, sigma, rng, B_top=None):
    """A tempered start: one Langevin step at each temperature ``T`` of ``temps`` (see
    :func:`temperatures`), its noise scaled by ``sqrt(T)`` (simulated annealing on
    ``p^(1/T)``), on a checked backend array.

    Plain Langevin (eq. 19) from the mean image can settle in a metastable mode it cannot
    leave at ``T = 1`` (measured on learned textures: a flat, bright image within 30 steps,
    whose energy per pixel is far above the texture's); at a high temperature the chains
    first see a smoothed landscape and fall into the texture's basins as it cools. What
    follows the tempered start is plain Langevin dynamics, whose distribution is
    ``p(I; w)`` itself. ``B_top`` as in :func:`langevin_chains`.

    Examples
    --------
    >>> import numpy as np
    >>> from gcn_numpy import GenerativeConvNet, Layer
    >>> net = GenerativeConvNet(1, [Layer(2, 3)], backend="numpy", init_std=0.0)
    >>> I = net.check_images(np.zeros((2, 1, 12, 12)))
    >>> temps = temperatures(20, 100.0)
    >>> hot = tempered_chains(net, I, temps, 0.6, 1.0, np.random.default_rng(0))
    >>> bool(hot.std() > 1.0)  # still warmer than q after cooling to T = 1.3
    True
    """
    kernels = net.kernels
    for T in temps:
        B = net.forward_backward(I, need_B=True, need_f=False, B_top=B_top)["B"]
        Z = kernels.standard_normal(rng, I.shape, net.dtype) * net.dtype.type(np.sqrt(T))
        I = kernels.langevin_step(I, B, Z, step_size, sigma)
    return I


def langevin(net, I, n_steps, step_size, sigma=1.0, rng=None):
    """Run ``n_steps`` of Langevin dynamics, eq. (19), on a batch of chains.

    ``I <- I - (eps^2 / 2) (I / sigma^2 - B(I)) + eps Z``, ``Z ~ N(0, 1)``: the drift is the
    reconstruction error of the auto-encoder, ``B(I)`` being computed top-down from the
    activation pattern ``delta(I)``.

    Parameters
    ----------
    net : GenerativeConvNet
    I : ndarray of shape (N, C, H, W)
        Starting images, one per chain (not modified).
    n_steps : int
    step_size : float
        ``eps``.
    sigma : float
        Standard deviation of the Gaussian reference distribution ``q``.
    rng : numpy.random.Generator, int or None
        Source of the noise ``Z``.

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The chains after ``n_steps`` steps.

    Examples
    --------
    With zero weights ``f = 0``: the chains sample the reference ``q``, white noise of
    variance ``sigma**2`` (up to the discretisation, which inflates it by about
    ``eps^2 / 4``):

    >>> import numpy as np
    >>> from gcn_numpy import GenerativeConvNet, Layer
    >>> net = GenerativeConvNet(1, [Layer(2, 3)], backend="numpy", init_std=0.0)
    >>> chains = langevin(net, np.zeros((64, 1, 16, 16)), 200, step_size=0.3, sigma=2.0, rng=0)
    >>> round(float(chains.std()), 1)
    2.0
    """
    n_steps = positive_int(n_steps, "n_steps", minimum=0)
    step_size = positive_float(step_size, "step_size")
    sigma = positive_float(sigma, "sigma")
    rng = np.random.default_rng(rng)
    I = net.check_images(I)
    return net.to_numpy(langevin_chains(net, I, n_steps, step_size, sigma, rng))


def descend_to_mode(net, I, sigma=1.0, step_size=None, max_steps=10_000, tol=1e-10):
    """Follow the deterministic part of eq. (19) to a local energy minimum (Proposition 2).

    The attractor dynamics ``I <- I - (eps^2 / 2) (I / sigma^2 - B(I))`` moves each image
    toward the mean ``B`` of its Gaussian piece. With the default step
    ``eps^2 / 2 = sigma^2`` each step *is* the auto-encoding ``I <- sigma^2 B(delta(I))``, so
    the dynamics stops exactly when the activation pattern stops changing: then the image
    is a fixed point, ``I = sigma^2 B_{w, delta(I)}``, an exact auto-encoding (eq. 20).
    Smaller steps (``step_size``) approach the mean of the current piece geometrically.

    Where ``f`` is convex in ``I`` (one layer, as in the prototype model, or non-negative
    weights above the first layer) ``f(J) >= f(I) + <J - I, B(I)>``, so the jump is a
    majorize-minimize step: ``U(B) <= U(I) - ||I - B||^2 / 2``, the energy falls at every
    step and the descent ends, after finitely many pieces, at an exact auto-encoding. For
    a general net ``f`` has concave kinks, the pattern may cycle (the Hopfield-like
    behaviour the paper mentions) and ``exact`` reports it.

    Parameters
    ----------
    net : GenerativeConvNet
    I : ndarray of shape (N, C, H, W)
        Starting images.
    sigma : float
    step_size : float or None
        ``eps``; ``None`` means ``eps = sqrt(2) sigma``, the jump to the piece's mean.
    max_steps : int
    tol : float
        Convergence when ``max |I - sigma^2 B| <= tol * max(1, max |I|)`` for every image.

    Returns
    -------
    mode : ndarray of shape (N, C, H, W)
        Where the descent stopped.
    exact : ndarray of bool, shape (N,)
        Whether each image auto-encodes exactly: its pattern ``delta`` is reproduced by
        ``sigma^2 B_{w, delta}``, i.e. ``B_{w,delta}`` lies in its own piece ``A(delta; w)``
        and the mode equals it to rounding (``tol``).

    Examples
    --------
    The prototype model is convex: every descent ends in an exact auto-encoding,
    ``I = B(delta(I))`` (eq. 20).

    >>> import numpy as np
    >>> from gcn_numpy import prototype_model
    >>> net = prototype_model(K=4, size=3, backend="numpy", seed=0, init_std=1.0)
    >>> start = np.random.default_rng(0).normal(size=(5, 1, 3, 3))
    >>> mode, exact = descend_to_mode(net, start)
    >>> bool(exact.all()), bool(np.allclose(mode, net.top_down(mode)[1]))
    (True, True)
    """
    sigma = positive_float(sigma, "sigma")
    if step_size is None:
        rate = 1.0
    else:
        rate = 0.5 * positive_float(step_size, "step_size") ** 2 / sigma**2
    max_steps = positive_int(max_steps, "max_steps")
    if rate > 1:
        raise ValueError("step_size overshoots the mean: need eps^2 / 2 <= sigma^2")
    xp = net.xp
    I = net.check_images(I)
    for step in range(max_steps + 1):
        reconstruction = sigma**2 * net.forward_backward(I, need_B=True, need_f=False)["B"]
        err = xp.abs(I - reconstruction).max(axis=(1, 2, 3))
        exact = err <= tol * xp.maximum(1.0, xp.abs(I).max(axis=(1, 2, 3)))
        if step == max_steps or bool(exact.all()):
            break
        I = I + rate * (reconstruction - I)
    return net.to_numpy(I), net.to_numpy(exact).astype(bool)


def inner_window(images, margin):
    """``images`` ``(N, C, H, W)`` less ``margin`` pixels along each edge: the window of a
    canvas that sampling returns when it runs the chains with a margin (the window's units
    read no boundary when ``margin`` is the receptive field).

    Examples
    --------
    >>> import numpy as np
    >>> inner_window(np.zeros((2, 1, 10, 12)), 3).shape
    (2, 1, 4, 6)
    >>> inner_window(np.zeros((2, 1, 10, 12)), 0).shape
    (2, 1, 10, 12)
    """
    m = int(margin)
    return images[:, :, m : images.shape[2] - m, m : images.shape[3] - m] if m else images
