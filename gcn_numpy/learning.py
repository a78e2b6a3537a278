"""Learning the generative ConvNet: Algorithm 1, layer growing, contrastive divergence.

Maximum likelihood (eq. 21) ascends ``L(w)`` with gradient ``H_obs - H_syn``: the mean of
``df/dw`` over the observed images minus its mean over synthesized images, which the
Langevin dynamics (eq. 19) keeps drawing from the current model (persistent chains,
started at 0, the mean image). Contrastive divergence starts the chains at the observed
images instead and runs few steps; by Proposition 3 it then learns to reconstruct them.

Everything here runs on the net's backend arrays (``xp``): on the GPU a learning iteration
makes no host round trip until its metrics are read at the end.
"""

import collections
import json

import numpy as np

from .model import GenerativeConvNet, energy_from_score
from .rules import make_rule
from .sampling import (
    TEMPER_STEP_SCALE,
    inner_window,
    langevin_chains,
    temperatures,
    tempered_chains,
)

__all__ = [
    "Learner",
    "chains_shape",
    "DivergenceError",
    "POSITIONS",
    "position_mask",
    "receptive_field",
    "synth_margin",
]

METRICS = ("f_obs", "f_syn", "energy", "grad_norm", "recon_error")
POSITIONS = ("all", "clean")  # which top positions f sums: every one, or those free of
# the boundary (their receptive field inside the image, up to positions_tolerance pixels)


def position_mask(net, positions, H, W, tolerance=0):
    """``(B_top, count)`` for the top positions that ``f`` sums on an ``H x W`` canvas:
    ``(None, None)`` for ``positions="all"`` (every one); for ``"clean"``, the mask of
    the ``count`` positions whose receptive field leaves the canvas by at most
    ``tolerance`` pixels (:meth:`GenerativeConvNet.clean_positions`), as the net's
    ``B_top`` (a backend array ``(1, 1, h, w)``): ``f = sum over those positions``, and
    the top-down pass starts from it. Learning (each side of ``H``), the drift test and
    the sampling command use the same rule, so that they sample one model.

    Examples
    --------
    >>> from gcn_numpy import GenerativeConvNet, Layer
    >>> net = GenerativeConvNet(1, [Layer(2, 3, padding=1)], backend="numpy")
    >>> position_mask(net, "clean", 6, 6)[1], position_mask(net, "clean", 6, 6, 1)[1]
    (16, 36)
    """
    if positions not in POSITIONS:
        raise ValueError(f"unknown positions {positions!r}; choose one of {', '.join(POSITIONS)}")
    if positions == "all":
        return None, None
    mask = net.clean_positions(H, W, tolerance)[-1]
    if not mask.any():
        raise ValueError(
            f"no top-map position of a {H}x{W} image is free of the boundary: the "
            "receptive field is larger than the image"
        )
    return net.asarray(mask[None, None]), int(mask.sum())


class DivergenceError(FloatingPointError):
    """Learning diverged (non-finite values or gradient spikes) several iterations in a
    row; the learner's state is the last good one.

    Examples
    --------
    A Langevin step far too large makes every attempt non-finite:

    >>> import numpy as np
    >>> from gcn_numpy.presets import get_preset
    >>> config = get_preset("texture")
    >>> config.backend, config.chains, config.step_size = "numpy", 2, 1e150
    >>> learner = Learner(config, np.random.default_rng(0).normal(size=(1, 1, 32, 32)))
    >>> [bool(learner.step()["rollback"]) for _ in range(2)]  # undone, learning rate halved
    [True, True]
    >>> try:
    ...     learner.step()
    ... except DivergenceError as e:
    ...     print(str(e)[:65])
    non-finite values in Langevin sampling or learning at iteration 1
    >>> learner.iteration  # the state is the last good one
    0
    """


def chains_shape(config, image_shape):
    """The shape of the chains a :class:`Learner` of ``config`` keeps for training images
    of ``image_shape`` ``(M, C, H, W)``: one per observed image for CD, else ``chains`` on
    the canvas ``synth_size``, or the training size times ``synth_scale`` rounded to a
    multiple of the strides' product on a torus (``boundary="circular"``), plus the
    ``synth_margin`` on each side (see :attr:`Learner.margin`).

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> chains_shape(get_preset("texture"), (1, 1, 64, 64))  # 1.5 x 64 + 2 x 19 margin
    (8, 1, 134, 134)
    """
    M, C, H, W = image_shape
    if config.mode == "cd":
        return (M, C, H, W)
    if config.synth_size:
        H = W = config.synth_size
    else:  # a canvas of the chosen scale that the net's strides divide
        step = 1
        if config.boundary == "circular":
            step = int(np.prod([layer["stride"] for layer in config.layers]))
        H, W = (max(step, step * round(n * config.synth_scale / step)) for n in (H, W))
    m = synth_margin(config)
    return (config.chains, C, H + 2 * m, W + 2 * m)


def synth_margin(config):
    """Pixels on each side of the chains' canvas that the samples leave out: the
    configuration's ``synth_margin``, where ``"rf"`` is the receptive field of a top unit of
    its whole net (:func:`receptive_field`).

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> synth_margin(get_preset("texture")), synth_margin(get_preset("object-paper"))
    (19, 0)
    """
    m = config.synth_margin
    return receptive_field(config.layer_objects()) if m == "rf" else int(m)


class Learner:
    """Algorithm 1 (or CD-k) on a set of observed images, one :meth:`step` per iteration.

    Parameters
    ----------
    config : TrainConfig
    images : ndarray of shape (M, C, H, W)
        Observed images in model units: intensities 0-255 with the mean subtracted.

    Attributes
    ----------
    net : GenerativeConvNet
        The current net: with ``config.grow`` it has one layer per stage reached.
    chains : backend array of shape (chains, C, h, w)
        The synthesized images (persistent for maximum likelihood; for CD the last
        one-step samples, one per observed image).
    iteration : int
        Learning iterations done.
    rollbacks : int
        Iterations undone because they diverged (see :meth:`step`).

    Examples
    --------
    A few iterations of Algorithm 1 on a small crop of the shipped gravel texture:

    >>> import numpy as np
    >>> from gcn_numpy import data
    >>> from gcn_numpy.presets import get_preset
    >>> config = get_preset("texture")
    >>> config.backend, config.size, config.chains, config.iterations = "numpy", 32, 2, 3
    >>> images, mean = data.prepare(data.load_training_images(config))
    >>> learner = Learner(config, images)
    >>> learner.chains.shape  # 1.5 x the training image, and a 19 px margin each side
    (2, 1, 86, 86)
    >>> learner.samples().shape
    (2, 1, 48, 48)
    >>> metrics = [learner.step() for _ in range(learner.total_iterations)]
    >>> sorted(metrics[-1])
    ['energy', 'f_obs', 'f_syn', 'grad_norm', 'lr', 'recon_error', 'rollback']
    >>> bool(metrics[-1]["f_obs"] > metrics[-1]["f_syn"])  # the chains lag behind the data
    True
    """

    SPIKE_FACTOR = 100.0  # a gradient norm this many times its recent median is a spike
    HISTORY = 50  # iterations of the current stage whose gradient norms give the median
    MIN_HISTORY = 100  # no spike test in a stage's first 100 iterations: there the chains
    # catch up with the data, and the gradient norm grows 20-100x over 20 iterations of the
    # default run, and 2e4x within one iteration on brick (iteration 46) before the run
    # recovers on its own and ends with the best brick samples measured
    MAX_ROLLBACKS = 3  # in a row: then stop
    RUNAWAY = 10.0  # chains beyond this many times the training images' largest |value|
    # have left the data behind: under a bounded step the weights move slowly into an
    # energy the Langevin dynamics cannot hold, and the chains grow by 1.1-1.7x per
    # iteration (the release's object recipe with 4 chains at 64 px: pixel std 49 at
    # iteration 1616, 1.5e8 at 1800) while every value stays finite

    def __init__(self, config, images):
        self.config = config
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (M, C, H, W), got {images.shape}")
        config.validate()
        self.window = self._window(config, images.shape[2:])
        self.n_layers_total = len(config.layers)
        self.total_iterations = config.iterations * (self.n_layers_total if config.grow else 1)
        self.rule = make_rule(config)
        self.rng = np.random.default_rng(config.seed)
        self.iteration = 0
        self.lr = self._stage_lr(1)
        self.rollbacks, self.rollbacks_in_a_row = 0, 0
        self.grad_history = collections.deque(maxlen=self.HISTORY)
        self._masks = {}  # (net, canvas) -> the clean top positions, see _mask
        self.net = self._build_net(1 if config.grow else self.n_layers_total, images)
        self.obs = self.net.check_images(images)
        self._runaway = self.RUNAWAY * max(float(np.abs(images).max()), 1.0)
        self.opt_state = self.rule.init_state(self.net.params, self.net.xp)
        self.chains = self._initial_chains()

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _window(config, hw):
        """The side in pixels of the observed window (``observed_window``), or ``None``."""
        fraction = config.observed_window
        if fraction is None:
            return None
        if config.mode != "ml":
            raise ValueError("observed_window is for maximum likelihood (mode='ml') only")
        if isinstance(fraction, bool) or not (
            isinstance(fraction, (int, float, np.number)) and 0 < fraction <= 1
        ):
            raise ValueError(
                f"observed_window must be a fraction of the image side in (0, 1], got {fraction!r}"
            )
        return max(1, round(fraction * min(hw)))

    def _build_net(self, n_layers, images):
        cfg = self.config
        C, H, W = images.shape[1:]
        if cfg.top == "linear" and (cfg.synth_size not in (None, H) or cfg.synth_scale != 1):
            raise ValueError(
                "synth_size needs the convolutional (sum) top: a linear top "
                "filter is tied to the training image size"
            )
        return GenerativeConvNet(
            C,
            cfg.layer_objects()[:n_layers],
            top=cfg.top,
            image_size=(H, W) if cfg.top == "linear" else None,
            backend=cfg.backend,
            dtype=np.dtype(cfg.dtype),
            seed=cfg.seed + n_layers,  # new layers are drawn apart from the Langevin noise
            init_std=cfg.init_std,
            boundary=cfg.boundary,
        )

    @property
    def margin(self):
        """Pixels on each side of the chains' canvas that the samples leave out
        (``synth_margin``; ``"rf"``: the receptive field of a top unit, see
        :func:`receptive_field`)."""
        return synth_margin(self.config)

    def samples(self):
        """The synthesized images the run returns, as a NumPy array: the chains, less
        ``margin`` pixels along each edge. With a margin every returned pixel is farther
        from the canvas edge than a top unit sees, so no unit that reads it reads the
        boundary; the returned images are samples of the model's marginal distribution
        on the inner window of the larger canvas the chains run on."""
        return inner_window(self.net.to_numpy(self.chains), self.margin)

    def _initial_chains(self):
        obs = self.obs
        if self.config.mode == "cd":
            return obs.copy()
        shape = chains_shape(self.config, obs.shape)
        m = self.margin  # samples below the receptive field are an error, with or without one
        self.net.layer_shapes(shape[2] - 2 * m, shape[3] - 2 * m)
        return self.net.xp.zeros(shape, dtype=self.net.dtype)  # Algorithm 1, line 2: mean image

    def _grow(self):
        """Add the next layer (section 7): lower layers keep their filters and go on
        learning; a ``"linear"`` top gets a new filter sized for the new top map."""
        old = self.net
        new = self._build_net(len(old.layers) + 1, self.obs)
        n_conv = len(old.layers)
        new.set_params(old.params[:n_conv] + new.params[n_conv:])
        self.net = new
        self.lr = self._stage_lr(n_conv + 1)  # a halving after a rollback ends with its stage
        self.grad_history.clear()
        self.opt_state = self.rule.init_state(new.params, new.xp)
        if self.config.restart_chains:  # the release: every stage's chains start at zero
            self.chains = self._initial_chains()

    def _stage_lr(self, n_layers):
        """The learning rate of the stage with ``n_layers`` layers (halved at each new one)."""
        rate = self.config.learning_rate()
        return rate * self.config.lr_decay_per_layer ** (n_layers - 1) if self.config.grow else rate

    def _annealed_iterations(self):
        return max(0, round(self.config.anneal * self.config.iterations))

    def _anneal_factor(self):
        """The factor of the learning rate at this iteration: 1, except over the last
        ``anneal`` fraction of the final stage, where it falls linearly to ``1 / n`` at the
        last iteration (``n`` iterations annealed). With the rate going to zero the weights
        settle and the persistent chains, moved by an ever smaller change of the energy,
        come to equilibrium under it: the stochastic approximation of Younes (1999) that
        Algorithm 1 rests on asks for decreasing steps."""
        n = self._annealed_iterations()
        left = self.total_iterations - self.iteration  # this iteration and those after it
        return 1.0 if n <= 0 or left > n else left / n

    def _grow_if_due(self):
        """Grow the net to the layers of the current stage (idempotent: an iteration rolled
        back at the start of a stage does not grow it twice)."""
        cfg = self.config
        if not cfg.grow:
            return
        due = min(self.n_layers_total, 1 + self.iteration // cfg.iterations)
        while len(self.net.layers) < due:
            self._grow()

    # ---------------------------------------------------------------- learning

    def _mask(self, images, positions):
        """``(B_top, count)`` of :func:`position_mask` for one side of ``H`` (its
        ``positions`` setting, the configuration's ``positions_tolerance``), made once per
        net and canvas on the backend's device."""
        if positions != "clean":
            return None, None
        key = (self.net, images.shape[2:])
        cache = self._masks
        if key not in cache:
            tolerance = self.config.positions_tolerance
            mask = position_mask(self.net, positions, *images.shape[2:], tolerance)
            for old in [k for k in cache if k[0] is not self.net]:  # a grown net's are stale
                del cache[old]
            cache[key] = mask
        return cache[key]

    def _observed_mask(self, obs):
        return self._mask(obs, self.config.observed_positions)

    def _synthesized_mask(self, syn):
        return self._mask(syn, self.config.synthesized_positions)

    def _positions(self, images, summed=None):
        """Per parameter array pair, the size of the map it acts on: each conv layer's
        own output map (the release's normalisation), 1 for a linear top's single
        filter. When ``f`` sums only ``summed`` of the top map's positions, each size is
        scaled by that fraction."""
        shapes = self.net.layer_shapes(*images.shape[2:])
        sizes = [h * w for _, h, w in shapes]
        if summed is not None:
            sizes = [n * summed / sizes[-1] for n in sizes]
        return sizes + ([1] if self.net.top == "linear" else [])

    def _summed_top_positions(self, images, summed=None):
        """How many top-map positions ``f`` sums: 1 for the linear top (one filter over
        the whole map), the masked count, or the whole map."""
        if self.net.top == "linear":
            return 1
        if summed is not None:
            return summed
        _, h, w = self.net.layer_shapes(*images.shape[2:])[-1]
        return h * w

    def observed_batch(self):
        """The observed images of this iteration: the training images themselves, or with
        ``observed_window`` a window of that fraction of their side at a random place in
        each (one draw from the learner's generator per image and axis). A texture's
        statistics do not depend on where the window lies, but the units along the
        window's edge see its boundary (the padding); with the whole image they see the
        same few pixels every iteration, which the chains may copy at their own edges. A
        moving window averages the edge over the image (measured in docs/frame.md: it
        did not lower the frame score on the shipped textures; off by default)."""
        crop = self.window
        if crop is None:
            return self.obs
        M, C, H, W = self.obs.shape
        ys = self.rng.integers(0, H - crop + 1, size=M)
        xs = self.rng.integers(0, W - crop + 1, size=M)
        windows = [
            self.obs[i, :, y : y + crop, x : x + crop]
            for i, (y, x) in enumerate(zip(ys, xs, strict=True))
        ]
        return self.net.xp.stack(windows)

    def synthesize(self):
        """Line 4 of Algorithm 1: ``L`` Langevin steps (eq. 19) from the persistent chains,
        or, for contrastive divergence, from the observed images. Returns the new chains
        (the learner's state is not changed)."""
        cfg = self.config
        start = self.obs if cfg.mode == "cd" else self._chain_starts()
        return langevin_chains(
            self.net,
            start,
            cfg.langevin_steps,
            cfg.step_size,
            cfg.sigma,
            self.rng,
            B_top=self._synthesized_mask(start)[0],
        )

    def _chain_starts(self):
        """The persistent chains this iteration starts from: with ``rejuvenate = R``, at
        every R-th iteration one chain (in turn) starts again at zero, the mean image,
        except over the last ``rejuvenate_stop`` fraction of the final stage, so that the
        final chains have all had time to come back to the texture. A model learned from
        old chains alone is free where no chain goes, and the dynamics from zero can
        settle in a mode the data never had (measured: a flat bright image, in 30 steps);
        chains that start again keep the way from zero in the negative phase (the replay
        buffer of Du and Mordatch, 2019; the rejuvenation of Nijkamp et al., 2020). With
        ``rejuvenate_keep = K`` the first K chains are left alone and the restarts go to
        the others in turn: persistent chains beside chains that keep starting again."""
        R, t = self.config.rejuvenate, self.iteration
        if t == self._tempered_restart_iteration():
            return self._tempered_start(self.chains)
        quiet = round(self.config.rejuvenate_stop * self.config.iterations)
        if not R or t == 0 or t % R or t >= self.total_iterations - quiet:
            return self.chains
        start = self.chains.copy()
        keep = self.config.rejuvenate_keep  # chains 0 .. keep-1 are never restarted
        k = keep + (t // R - 1) % (start.shape[0] - keep)
        if self.config.rejuvenate_from == "noise":  # white noise of the data's spread
            scale = float(self.net.to_numpy(self.obs.std()))
            noise = self.net.kernels.standard_normal(self.rng, start[k].shape, self.net.dtype)
            start[k] = noise * self.net.dtype.type(scale)
        elif self._rejuvenate_tempered():  # the sampling command's start
            start[k : k + 1] = self._tempered_start(start[k : k + 1])
        else:
            start[k] = 0
        return start

    def _rejuvenate_tempered(self):
        """Whether a chain rejuvenated now starts from the tempered start: with
        ``rejuvenate_from="tempered"``, from stage ``rejuvenate_tempered_stage`` on (the
        number of layers of a grown net; one stage without growing). A tempered chain of a
        barely learned net can run away (measured: one run in eleven stopped by the
        divergence guard at its 21st iteration, docs/convergence.md). With
        ``"alternate"``, from that stage on the restarts take the two starts in turn: the
        one at iteration ``jR`` is tempered for even ``j``, at zero for odd ``j`` (with an
        even number of chains, each chain so keeps one kind of restart). The learning
        then sees both the modes the sampling command's start finds and the way from
        zero; measured, tempered restarts alone left the gravel model's samples from zero
        13-14 grey levels too bright (docs/convergence.md, eighth round)."""
        cfg = self.config
        stage = len(self.net.layers) if cfg.grow else 1
        if cfg.rejuvenate_from not in ("tempered", "alternate"):
            return False
        if stage < cfg.rejuvenate_tempered_stage:
            return False
        return cfg.rejuvenate_from == "tempered" or (self.iteration // cfg.rejuvenate) % 2 == 0

    def _tempered_restart_iteration(self):
        """The iteration at which every chain starts again by a tempered start
        (``tempered_restart``: that last fraction of the final stage left), or ``None``.

        Examples
        --------
        >>> from gcn_numpy.presets import TrainConfig
        >>> config = TrainConfig(size=16, iterations=300, tempered_restart=0.5, grow=False)
        >>> Learner(config, np.zeros((1, 1, 16, 16)))._tempered_restart_iteration()
        150
        """
        fraction = self.config.tempered_restart
        if not fraction or self.config.mode != "ml":
            return None
        return self.total_iterations - round(fraction * self.config.iterations)

    def _tempered_start(self, like):
        """Chains of the shape of ``like`` from zero through a tempered start
        (``temper_steps`` steps, T from ``temper_start`` down to 1, at twice the step size;
        by default the sampling command's start, 100 steps from 1e4, ``gcn_numpy.sample``):
        every chain at the tempered restart, one chain at a time when rejuvenated chains
        start ``"tempered"``. Chains carried through the whole run keep
        the large-scale brightness their content settled into, each its own: the eight
        chains' means of a gravel run spread 3-5x more than real crops' do, and across
        runs the frame score goes with the spread (docs/convergence.md). Chains that start
        again from the model's own tempered dynamics, while the rate still moves, spread
        about as real crops do."""
        cfg = self.config
        zero = self.net.xp.zeros_like(like)
        B_top = self._synthesized_mask(zero)[0]
        temps = temperatures(cfg.temper_steps, cfg.temper_start)
        step = TEMPER_STEP_SCALE * cfg.step_size
        return tempered_chains(self.net, zero, temps, step, cfg.sigma, self.rng, B_top=B_top)

    def statistics(self, syn, obs):
        """Line 5 of Algorithm 1: one pass over the observed images of the iteration
        (``obs``, :meth:`observed_batch`) and one over the synthesized ones, each with its
        scores and its batch sum of ``df/dw``; for CD the observed pass also gives ``B``,
        the reconstruction."""
        net, cd = self.net, self.config.mode == "cd"
        obs_out = net.forward_backward(
            obs, need_B=cd, need_grads=True, B_top=self._observed_mask(obs)[0]
        )
        syn_out = net.forward_backward(
            syn, need_B=False, need_grads=True, B_top=self._synthesized_mask(syn)[0]
        )
        return obs_out, syn_out

    def gradient(self, obs_out, syn_out, syn, obs):
        """``H_obs - H_syn`` of eq. (21) as the release normalises it: for each layer, each
        side is a mean over its images and over the positions of that layer's own output
        map (the observed and synthesized maps differ when the chains' canvas is larger;
        a linear top's filter has one position)."""
        n_obs, n_syn = obs.shape[0], syn.shape[0]
        sizes_obs = self._positions(obs, self._observed_mask(obs)[1])
        sizes_syn = self._positions(syn, self._synthesized_mask(syn)[1])
        grads = []
        for (gWo, gbo), (gWs, gbs), m_obs, m_syn in zip(
            obs_out["grads"], syn_out["grads"], sizes_obs, sizes_syn, strict=True
        ):
            a, c = 1.0 / (n_obs * m_obs), 1.0 / (n_syn * m_syn)
            grads.append((gWo * a - gWs * c, gbo * a - gbs * c))
        return grads

    def _metrics(self, obs_out, syn_out, syn, grads, params, obs):
        """The iteration's metrics and whether everything stayed finite, in one host read:
        ``[f_obs, f_syn, energy, grad_norm, recon_error, max |chains|, finite]``."""
        cfg, net, xp = self.config, self.net, self.net.xp
        energy = energy_from_score(syn, syn_out["f"], cfg.sigma)
        grad_norm = xp.sqrt(sum((g * g).sum() for pair in grads for g in pair))
        if cfg.mode == "cd":
            recon = xp.abs(cfg.sigma**2 * obs_out["B"] - self.obs).mean()
        else:
            recon = xp.zeros((), dtype=net.dtype)
        finite = xp.isfinite(syn).all()
        chain_max = xp.abs(syn).max()
        for W, b in params:
            finite = finite & xp.isfinite(W).all() & xp.isfinite(b).all()
        # scores per top-map position, comparable between canvases of different sizes
        f_obs = obs_out["f"].mean() / self._summed_top_positions(obs, self._observed_mask(obs)[1])
        f_syn = syn_out["f"].mean() / self._summed_top_positions(
            syn, self._synthesized_mask(syn)[1]
        )
        values = [f_obs, f_syn, energy.mean(), grad_norm, recon, chain_max, finite]
        return net.to_numpy(xp.stack([xp.asarray(v, dtype=xp.float64) for v in values]))

    def _problem(self, values):
        """Why the iteration with these metrics must be rolled back, or ``None``."""
        if not values[-1]:
            return "non-finite values in Langevin sampling or learning"
        if values[-2] > self._runaway:
            return (
                f"chains ran away: |value| up to {float(values[-2]):.3g}, over "
                f"{self.RUNAWAY:g} x the training images' largest"
            )
        if self.rule.step_bounded:  # a spike of the raw gradient cannot make a large step
            return None
        grad_norm = float(values[METRICS.index("grad_norm")])
        stage_start = (len(self.net.layers) - 1) * self.config.iterations if self.config.grow else 0
        if self.iteration - stage_start >= self.MIN_HISTORY:
            median = float(np.median(self.grad_history))
            if grad_norm > self.SPIKE_FACTOR * median:
                return (
                    f"gradient norm {grad_norm:.3g} above {self.SPIKE_FACTOR:g} x its median "
                    f"{median:.3g} over the last {len(self.grad_history)} iterations"
                )
        return None

    def step(self):
        """One learning iteration; returns its metrics: ``f_obs`` and ``f_syn`` (mean scores
        per position of the top map), ``energy`` (mean over the chains), ``grad_norm``,
        ``recon_error`` (CD: mean ``|sigma^2 B - I|``, 0-255 units), ``lr`` (the learning
        rate it used) and ``rollback`` (the reason it was undone, or ``""``).

        Lines 4-6 of Algorithm 1: :meth:`synthesize`, :meth:`statistics` and
        :meth:`gradient`, then ``w <- w + eta (H_obs - H_syn)`` by the update rule.

        Divergence: when the iteration produces non-finite values, chains that ran away
        (beyond ``RUNAWAY`` times the training images' largest absolute value), or, under
        an update rule whose step is not bounded (``rule.step_bounded`` false: the signed
        clip of CD, no clip), a gradient norm above ``SPIKE_FACTOR`` times its median over
        the stage's last ``HISTORY`` iterations, its result is dropped (weights, chains and
        optimizer stay as they were), the learning rate is halved for the rest of the
        stage, and the next call draws new noise (the random generator is not rewound, so
        seeded runs stay reproducible). After ``MAX_ROLLBACKS`` in a row,
        :class:`DivergenceError` is raised instead; the state is still the last good one.
        """
        self._grow_if_due()
        lr = self.lr * self._anneal_factor()
        with np.errstate(all="ignore"):  # overflow is caught below, as a rollback
            obs = self.observed_batch()
            syn = self.synthesize()
            obs_out, syn_out = self.statistics(syn, obs)
            grads = self.gradient(obs_out, syn_out, syn, obs)
            params, opt_state = self.rule.update(
                self.net.params, grads, self.opt_state, lr, self.net.xp
            )
            values = self._metrics(obs_out, syn_out, syn, grads, params, obs)
        metrics = dict(zip(METRICS, (float(v) for v in values[: len(METRICS)]), strict=True))
        metrics["lr"] = lr
        problem = self._problem(values)
        if problem:
            self.rollbacks_in_a_row += 1
            self.rollbacks += 1
            if self.rollbacks_in_a_row >= self.MAX_ROLLBACKS:
                raise DivergenceError(
                    f"{problem} at iteration {self.iteration + 1}, "
                    f"{self.rollbacks_in_a_row} times in a row (learning rate now {lr:.3g}); "
                    "try a smaller --step-size or --lr"
                )
            self.lr = 0.5 * self.lr
            metrics["rollback"] = problem
            return metrics
        self.net.set_params(params)
        self.opt_state, self.chains = opt_state, syn
        self.iteration += 1
        self.rollbacks_in_a_row = 0
        self.grad_history.append(metrics["grad_norm"])
        metrics["rollback"] = ""
        return metrics

    def reconstruct(self, images=None):
        """The auto-encoding ``I -> delta(I) -> sigma^2 B_{w, delta}`` (Theorem 1) of the
        observed images (or ``images``), as a NumPy array."""
        I = self.obs if images is None else self.net.check_images(images)
        B = self.net.forward_backward(I, need_B=True, need_f=False)["B"]
        return self.net.to_numpy(self.config.sigma**2 * B)

    # -------------------------------------------------------------- checkpoint

    def state_dict(self):
        """The complete learning state as NumPy arrays (a JSON string for the generator)."""
        to_np = self.net.to_numpy
        state = {
            "iteration": np.array(self.iteration),
            "n_layers": np.array(len(self.net.layers)),
            "lr": np.array(self.lr),
            "chains": to_np(self.chains),
            "rng": np.array(json.dumps(self.rng.bit_generator.state)),
            "n_params": np.array(len(self.net.params)),
            "n_opt": np.array(len(self.opt_state)),
            "grad_history": np.array(self.grad_history, dtype=np.float64),
            "rollbacks": np.array([self.rollbacks, self.rollbacks_in_a_row]),
        }
        for i, (W, b) in enumerate(self.net.params):
            state[f"W{i}"], state[f"b{i}"] = to_np(W), to_np(b)
        for i, a in enumerate(self.opt_state):
            state[f"opt{i}"] = to_np(a)
        return state

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output. ``ValueError`` saying what does not fit the
        configuration (a missing entry, a shape, a dtype, a net of another size); then the
        learner is unchanged."""
        try:
            n_layers = _scalar(state, "n_layers", int)
            if not 1 <= n_layers <= self.n_layers_total:
                raise ValueError(
                    f"it holds a net of {n_layers} layers, the configuration has "
                    f"{self.n_layers_total}"
                )
            net = self._build_net(n_layers, self.obs)
            n_params = _scalar(state, "n_params", int)
            weights = [(_floats(state, f"W{i}"), _floats(state, f"b{i}")) for i in range(n_params)]
            net.set_weights(weights)
            template = self.rule.init_state(net.params, net.xp)
            n_opt = _scalar(state, "n_opt", int)
            opt_state = [_floats(state, f"opt{i}") for i in range(n_opt)]
            if [a.shape for a in opt_state] != [a.shape for a in template]:
                raise ValueError("its optimizer state does not match the update rule")
            chains = _floats(state, "chains")
            if chains.shape != tuple(self.chains.shape):
                raise ValueError(
                    f"its chains have shape {chains.shape}, expected {tuple(self.chains.shape)}"
                )
            if not np.all(np.isfinite(chains)):
                raise ValueError("its chains hold non-finite values")
            rng_state = json.loads(str(state["rng"]))
            probe = np.random.default_rng()
            probe.bit_generator.state = rng_state  # raises on a foreign state
            iteration = _scalar(state, "iteration", int)
            lr = _scalar(state, "lr", float)
            history = _floats(state, "grad_history") if "grad_history" in state else []
            rollbacks = state.get("rollbacks", np.zeros(2, dtype=int))
        except KeyError as e:
            raise ValueError(f"it lacks the entry {e}") from None
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"an entry is malformed ({e})") from None
        self.net = net
        self.opt_state = [net.asarray(a) for a in opt_state]
        self.chains = net.asarray(chains)
        self.rng.bit_generator.state = rng_state
        self.iteration, self.lr = iteration, lr
        self.grad_history = collections.deque(np.asarray(history).tolist(), maxlen=self.HISTORY)
        self.rollbacks, self.rollbacks_in_a_row = (int(n) for n in np.asarray(rollbacks)[:2])


def receptive_field(layers):
    """The side in pixels of the window of the image that one unit of the top layer reads.

    Examples
    --------
    >>> from gcn_numpy.presets import TEXTURE_NET
    >>> receptive_field(TEXTURE_NET)  # 15 + 4 x 3 + 2 x 3
    33
    """
    side, step = 1, 1
    for layer in layers:
        side += (layer.kernel - 1) * step
        step *= layer.stride
    return side


def _scalar(state, key, kind):
    a = np.asarray(state[key])
    if a.shape != () or a.dtype.kind not in "iuf":
        raise ValueError(f"its entry {key!r} is not a number")
    return kind(a)


def _floats(state, key):
    a = np.asarray(state[key])
    if a.dtype.kind not in "fiu":
        raise ValueError(f"its entry {key!r} holds {a.dtype}, not numbers")
    return a
