"""The update rules of learning: the release's clipped gradient ascent, and Adam.

Each rule turns the weights and the gradient of the log-likelihood, ``H_obs - H_syn`` per
layer (eq. 21), into new weights. A rule says whether its step is bounded
(``step_bounded``): then no gradient, however large, moves a weight by more than a fixed
multiple of the learning rate, and the learner's spike test leaves it alone
(:meth:`gcn_numpy.learning.Learner.step`).
"""

import numpy as np

__all__ = ["ReleaseRule", "Adam", "make_rule", "RULES", "CLIP_MODES"]

CLIP_MODES = ("abs", "signed")


class ReleaseRule:
    """The update rule of the original release (plain gradient ascent).

    Per parameter array: rescale ``g`` so that ``max |g| <= clip`` (``clip_mode="abs"``,
    maximum likelihood) or so that the signed ``max g <= clip`` (``"signed"``, the release's
    test for contrastive divergence); weights get weight decay; biases get ``bias_lr_mult``
    times the learning rate and no decay; then ``v <- momentum v + lr (g - decay w)`` and
    ``w <- w + v``.

    Examples
    --------
    >>> import numpy as np
    >>> rule = ReleaseRule(clip=20.0, weight_decay=0.0)
    >>> params, grads = [(np.zeros(2), np.zeros(1))], [(np.array([40.0, -10.0]), np.ones(1))]
    >>> new, _ = rule.update(params, grads, rule.init_state(params, np), lr=0.1, xp=np)
    >>> new[0][0], new[0][1]  # g rescaled to max |g| = 20; biases at twice the rate
    (array([ 2. , -0.5]), array([0.2]))
    """

    def __init__(
        self, clip=20.0, weight_decay=1e-4, bias_lr_mult=2.0, momentum=0.0, clip_mode="abs"
    ):
        if clip_mode not in CLIP_MODES:
            raise ValueError(f"unknown clip_mode {clip_mode!r}; choose abs or signed")
        self.clip, self.weight_decay = clip, weight_decay
        self.bias_lr_mult, self.momentum, self.clip_mode = bias_lr_mult, momentum, clip_mode

    @property
    def step_bounded(self):
        """Whether no gradient can move a weight by more than ``lr * clip`` (besides the
        decay): the ``"abs"`` clip with a finite ``clip``. The signed clip of CD bounds
        only the largest positive entry."""
        return self.clip_mode == "abs" and bool(np.isfinite(self.clip))

    def init_state(self, params, xp):
        return [xp.zeros_like(a) for pair in params for a in pair]

    def update(self, params, grads, state, lr, xp):
        new_params, new_state, i = [], [], 0
        for (W, b), (gW, gb) in zip(params, grads, strict=True):
            pair = []
            for w, g, is_bias in ((W, gW, False), (b, gb, True)):
                peak = g.max() if self.clip_mode == "signed" else xp.abs(g).max()
                g = g * xp.minimum(1.0, self.clip / xp.maximum(peak, 1e-30)).astype(g.dtype)
                rate = lr * (self.bias_lr_mult if is_bias else 1.0)
                step = g if is_bias else g - self.weight_decay * w
                v = self.momentum * state[i] + rate * step
                pair.append(w + v)
                new_state.append(v)
                i += 1
            new_params.append(tuple(pair))
        return new_params, new_state


class Adam:
    """Adam (Kingma and Ba) for gradient *ascent*, with the release's weight decay.

    Examples
    --------
    >>> import numpy as np
    >>> rule = Adam(weight_decay=0.0)
    >>> params, grads = [(np.zeros(2), np.zeros(1))], [(np.array([5.0, -0.1]), np.ones(1))]
    >>> new, _ = rule.update(params, grads, rule.init_state(params, np), lr=0.01, xp=np)
    >>> new[0][0].round(6)  # the first step is lr times the sign of the gradient
    array([ 0.01, -0.01])
    """

    step_bounded = True  # each step is at most about lr (1 - beta1) / sqrt(1 - beta2) per entry

    def __init__(self, weight_decay=1e-4, beta1=0.9, beta2=0.999, eps=1e-8):
        self.weight_decay, self.beta1, self.beta2, self.eps = weight_decay, beta1, beta2, eps

    def init_state(self, params, xp):
        zeros = [xp.zeros_like(a) for pair in params for a in pair]
        return [xp.zeros(1, dtype=params[0][0].dtype)] + zeros + [z.copy() for z in zeros]

    def update(self, params, grads, state, lr, xp):
        n = 2 * len(params)
        t = state[0] + 1
        m_all, v_all = state[1 : 1 + n], state[1 + n :]
        new_params, new_m, new_v, i = [], [], [], 0
        for (W, b), (gW, gb) in zip(params, grads, strict=True):
            pair = []
            for w, g, is_bias in ((W, gW, False), (b, gb, True)):
                if not is_bias:
                    g = g - self.weight_decay * w
                m = self.beta1 * m_all[i] + (1 - self.beta1) * g
                v = self.beta2 * v_all[i] + (1 - self.beta2) * g * g
                m_hat = m / (1 - self.beta1**t)
                v_hat = v / (1 - self.beta2**t)
                pair.append(w + lr * m_hat / (xp.sqrt(v_hat) + self.eps))
                new_m.append(m)
                new_v.append(v)
                i += 1
            new_params.append(tuple(pair))
        return new_params, [t] + new_m + new_v


RULES = {  # the update rules by name: make_rule and the command line's --optimizer
    "release": lambda c: ReleaseRule(
        c.clip, c.weight_decay, c.bias_lr_mult, c.momentum, c.clip_mode
    ),
    "adam": lambda c: Adam(c.weight_decay),
}


def make_rule(config):
    """The update rule a :class:`~gcn_numpy.presets.TrainConfig` asks for (:data:`RULES`).

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> rule = make_rule(get_preset("cd-paper"))
    >>> type(rule).__name__, rule.clip, rule.clip_mode, rule.momentum
    ('ReleaseRule', 1.0, 'signed', 0.9)
    """
    if config.optimizer not in RULES:
        raise ValueError(
            f"unknown optimizer {config.optimizer!r}; choose one of {', '.join(RULES)}"
        )
    return RULES[config.optimizer](config)
