"""Learned models: the ones that ship with the package, and any training run's checkpoint.

A model file (``gcn_numpy/models/<name>.npz``) holds the learned weights, the training
configuration, the mean subtracted from the training images, a thumbnail of those images
and what is known of the run that made it (the command, its time, its metrics and its
drift test): everything needed to sample the model, reconstruct an image with it or
descend to one of its modes, and nothing of the training state. :func:`load_model` reads
those and the training command's ``checkpoint.npz`` alike.

Sampling (:meth:`LearnedModel.sample`) starts every chain at zero, the mean image, runs a
tempered start (:func:`gcn_numpy.sampling.tempered_chains`: the Langevin noise scaled by
``sqrt(T)``, ``T`` falling from 1e4 to 1) and then plain Langevin dynamics, eq. (19), at the
model's own step size and ``sigma``, on a canvas larger than the image it returns by the
model's margin on each side. What it returns is a sample of the model's marginal on the
inner window, after that many steps of its dynamics. A model can have a basin near zero,
far above its texture in energy, that the start from zero ends in and its dynamics do not
leave (measured on one model: 71 per pixel above, kept over 1500 steps; docs/convergence.md,
sixteenth round); ``init="both"`` runs the start from white noise beside it and keeps,
sample by sample, the chains of lower energy.
"""

import json
import os
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from . import data, memory
from ._validate import positive_int, temperature
from .learning import position_mask, synth_margin
from .model import GenerativeConvNet
from .presets import TrainConfig
from .sampling import (
    TEMPER_START,
    TEMPER_STEP_SCALE,
    TEMPER_STEPS,
    descend_to_mode,
    inner_window,
    langevin_chains,
    temperatures,
    tempered_chains,
)

__all__ = [
    "LearnedModel",
    "ModelError",
    "load_model",
    "list_models",
    "save_model",
    "model_path",
    "TEMPER_STEPS",
    "TEMPER_START",
]

MODELS = "models"
INITS = ("zeros", "noise", "both")  # the named starts of LearnedModel.sample


def _is(init, name):
    """Whether ``init`` (a name or an array) is the start ``name``."""
    return isinstance(init, str) and init == name


class ModelError(ValueError):
    """A model that cannot be used (unknown name, damaged file); the message says why.

    Examples
    --------
    >>> load_model("marble")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gcn_numpy.zoo.ModelError: no model 'marble'; shipped: ...
    """


def _models_dir():
    return resources.files("gcn_numpy") / MODELS


def model_path(name):
    """The file of the shipped model ``name``, or ``None``.

    Examples
    --------
    >>> model_path("no such model") is None
    True
    """
    path = _models_dir() / f"{name}.npz"
    return str(path) if path.is_file() else None


def list_models():
    """The shipped models as ``(name, info)`` pairs, sorted by name (``info``: what each
    file says of itself: what it learned, how it was made, its metrics).

    Examples
    --------
    >>> all(isinstance(name, str) and "learned" in info for name, info in list_models())
    True
    """
    folder = _models_dir()
    if not folder.is_dir():
        return []
    names = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".npz"))
    return [(name, load_model(name).info) for name in names]


@dataclass
class LearnedModel:
    """A learned generative ConvNet with what it needs to be used.

    Attributes
    ----------
    net : GenerativeConvNet
    config : TrainConfig
        The configuration it was learned with (step size, sigma, margin, boundary).
    mean : ndarray of shape (C,)
        The mean subtracted from its training images (model units = pixels - mean).
    info : dict
        What is known of how it was made (shipped models: name, what it learned, the
        command, the run's metrics; a training checkpoint: its run's ``summary.json``
        under ``"summary"``, drift test included, where the folder holds it).
    thumbnail : ndarray of uint8 or None
        Its training images, small.

    Examples
    --------
    >>> model = load_model("grass", backend="numpy")
    >>> model.margin, model.size  # a texture model: any canvas, a margin of 19 px
    (19, None)
    >>> model.to_pixels(np.zeros((1, 1, 2, 2))).dtype
    dtype('uint8')
    """

    net: GenerativeConvNet
    config: TrainConfig
    mean: np.ndarray
    info: dict = field(default_factory=dict)
    thumbnail: np.ndarray = None

    @property
    def margin(self):
        """Pixels each side of the canvas that sampling runs but does not return."""
        return synth_margin(self.config)

    @property
    def size(self):
        """The fixed image size of an object model (linear top), ``None`` for a texture."""
        return self.net.image_size

    def canvas(self, size):
        """The side of the canvas the chains run on to return ``size`` pixels."""
        if self.size is not None:
            if size not in (None, self.size[0]):
                raise ModelError(
                    f"an object model samples at its training size, {self.size[0]} px, not {size}"
                )
            return self.size[0]
        return int(size) + 2 * self.margin

    def sample(
        self,
        n=1,
        size=None,
        steps=200,
        seed=0,
        init="zeros",
        progress=None,
        temper_steps=TEMPER_STEPS,
        temper_start=TEMPER_START,
    ):
        """``n`` samples of ``size x size`` pixels (texture models: any size the net
        accepts; object models: their training size), as model-unit arrays ``(n, C, size,
        size)``. ``init``: ``"zeros"`` (the mean image), ``"noise"`` (white noise of the
        training images' standard deviation, as far as it is known: 40 grey levels
        otherwise), ``"both"`` or an array of model units ``(n, C, H, W)`` of the canvas's
        size. The tempered start (``temper_steps`` steps, ``T`` falling geometrically from
        ``temper_start`` to 1; 0 steps: none) precedes ``steps`` plain Langevin
        steps from zeros; both run on the chains' whole canvas, whose ``f`` sums the top
        positions the model learned its synthesized side with (``synthesized_positions``,
        ``positions_tolerance``). ``"both"`` runs the chains from zeros and from noise
        (each exactly as its own ``init`` with this seed) and keeps, sample by sample, the
        one whose canvas has the lower energy ``U = ||I||^2 / (2 sigma^2) - f(I)``, the
        higher density under the model (:meth:`lower_energy`). ``progress(done, total)``
        is called along the way. Same seed, same result.

        Which tempered start finds the texture depends on the model: on 30 learned models
        of three textures, a cooler, slower or longer start found it on some where the
        default did not and lost it on others (docs/convergence.md, eighteenth round: the
        default reached 0.8x a held-out crop's closeness on 23, 200 steps from T = 1000 on
        20)."""
        cfg, net = self.config, self.net
        temper_steps = positive_int(temper_steps, "temper_steps", minimum=0)
        temper_start = temperature(temper_start, "temper_start")
        side = self.canvas(size if size is not None else cfg.size)
        shape = (n, net.in_channels, side, side)
        net.layer_shapes(side, side)  # a canvas below the receptive field: one line
        memory.require(  # a canvas beyond the memory: refused before anything is allocated
            memory.langevin_bytes(net, shape) + memory.backend_bytes(net.backend),
            memory.available_bytes(net.backend),
            f"the chains of {n} sample{'s' if n > 1 else ''} on a {side} x {side} px canvas",
            "--n or --size",
        )
        if isinstance(init, str) and init not in INITS:
            raise ModelError(f"unknown init {init!r}; choose zeros, noise, both or an image")
        if not isinstance(init, str):
            init = np.asarray(init, dtype=np.float64)
            if init.shape != shape:
                raise ModelError(f"the initial images have shape {init.shape}, need {shape}")
        starts = ("zeros", "noise") if _is(init, "both") else (init,)
        tempers = [temper_steps if _is(s, "zeros") else 0 for s in starts]  # zeros only
        lengths = [steps + t for t in tempers]
        I = None
        for k, start in enumerate(starts):
            offset = sum(lengths[:k])
            tick = None
            if progress is not None:

                def tick(done, offset=offset):
                    progress(offset + done, sum(lengths))

            J = self._chains(shape, start, steps, seed, tick, tempers[k], temper_start)
            I = J if I is None else self.lower_energy(I, J)
        return inner_window(net.to_numpy(I), self.margin if self.size is None else 0)

    def _chains(self, shape, init, steps, seed, progress, temper, temper_start):
        """The chains of :meth:`sample` from one start (backend array, the whole canvas):
        ``temper`` tempered steps from ``temper_start`` down, then ``steps`` plain ones."""
        cfg, net = self.config, self.net
        rng = np.random.default_rng(seed)
        if _is(init, "zeros"):
            start = np.zeros(shape)
        elif _is(init, "noise"):
            start = self.info.get("data_std", 40.0) * rng.standard_normal(shape)
        else:
            start = init
        I = net.check_images(start)
        B_top = self._top_mask(shape[-1])
        total, done = temper + steps, 0
        schedule = temperatures(temper, temper_start)
        chunk = 25
        while done < total:
            k = min(chunk, total - done)
            if done < temper:
                k = min(k, temper - done)
                I = tempered_chains(
                    net,
                    I,
                    schedule[done : done + k],
                    TEMPER_STEP_SCALE * cfg.step_size,
                    cfg.sigma,
                    rng,
                    B_top=B_top,
                )
            else:
                I = langevin_chains(net, I, k, cfg.step_size, cfg.sigma, rng, B_top=B_top)
            done += k
            if progress is not None:
                progress(done)
        return I

    def _top_mask(self, side):
        """The top positions ``f`` sums on a canvas of ``side`` px (None: every one)."""
        cfg = self.config
        return position_mask(
            self.net, cfg.synthesized_positions, side, side, cfg.positions_tolerance
        )[0]

    def lower_energy(self, a, b):
        """Sample by sample, whichever of the canvases ``a`` and ``b`` (backend or NumPy
        arrays of the same shape ``(n, C, H, W)``, model units) has the lower energy ``U(I)
        = ||I||^2 / (2 sigma^2) - f(I)`` under the model, ``f`` summing the top positions
        its synthesized side learned with; ties keep ``a``. Of two chains that end in
        different basins, the one of higher density under the model; of two in one basin,
        the one relaxed further (measured: chains from noise end 6-102 per pixel above
        chains of the same texture from the tempered start after 200 steps, and a basin
        near zero lay 71 above the texture, docs/convergence.md, sixteenth round).

        Examples
        --------
        >>> import numpy as np
        >>> m = load_model("gravel", backend="numpy")
        >>> a = np.zeros((2, m.net.in_channels, 40, 40))
        >>> b = a.copy(); b[1] = 1e3  # far out under q
        >>> bool(np.array_equal(m.lower_energy(a, b), a))
        True
        """
        net = self.net
        a, b = net.check_images(a), net.check_images(b)
        B_top = self._top_mask(a.shape[-1])
        U_a, U_b = (net.energy(x, self.config.sigma, B_top=B_top) for x in (a, b))
        pick = net.asarray((U_b < U_a).reshape(-1, 1, 1, 1))
        return net.xp.where(pick, b, a)

    def reconstruct(self, images):
        """Theorem 1's auto-encoding of images in model units ``(N, C, H, W)``: the mean of
        each one's Gaussian piece, ``sigma^2 B(delta(I))`` (eq. 17-18)."""
        I = self.net.check_images(images)
        B = self.net.forward_backward(I, need_B=True, need_f=False)["B"]
        return self.net.to_numpy(self.config.sigma**2 * B)

    def mode(self, images, max_steps=2000):
        """The local mode reached from each image by the deterministic part of eq. (19)
        (Proposition 2), and whether it auto-encodes exactly."""
        return descend_to_mode(self.net, images, sigma=self.config.sigma, max_steps=max_steps)

    def to_pixels(self, x):
        """Model units to uint8 pixels (the mean added back)."""
        return data.to_uint8(x, self.mean)

    def from_pixels(self, images):
        """uint8 or 0-255 images ``(N, C, H, W)`` to model units."""
        return np.asarray(images, dtype=np.float64) - self.mean[None, :, None, None]


def _resolve(name_or_path):
    """The file ``name_or_path`` names: an existing file; else a shipped model of that name
    (so that a folder called ``gravel`` beside the user does not hide the shipped
    ``gravel``); else a run folder's ``checkpoint.npz``; else ``None``."""
    if os.path.isfile(name_or_path):
        return name_or_path
    shipped = model_path(name_or_path)
    if shipped is not None:
        return shipped
    checkpoint = os.path.join(name_or_path, "checkpoint.npz")
    return checkpoint if os.path.isfile(checkpoint) else None


def load_model(name_or_path, backend="numba", dtype=None):
    """A shipped model by name, a model file, or a training run's ``checkpoint.npz`` (or the
    run's folder).

    Parameters
    ----------
    name_or_path : str
    backend : str
        The backend to run it on (``"numba"``, ``"numpy"``, ``"cupy"``).
    dtype : {None, "float32", "float64"}
        The net's floating type; ``None``: the one it was learned in. Float64 serves
        measurements finer than float32's rounding (the weights are stored in float32).

    Returns
    -------
    LearnedModel

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from gcn_numpy import GenerativeConvNet, Layer
    >>> from gcn_numpy.presets import TrainConfig
    >>> config = TrainConfig(layers=[{"channels": 2, "kernel": 3, "stride": 1, "padding": 1}])
    >>> net = GenerativeConvNet(1, config.layer_objects(), backend="numpy", seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.npz")
    >>> save_model(path, net, config, np.array([128.0]), {"learned": "nothing"})
    >>> model = load_model(path, backend="numpy")
    >>> model.sample(n=2, size=8, steps=3).shape
    (2, 1, 8, 8)
    >>> load_model(path, backend="numpy", dtype="float64").net.dtype
    dtype('float64')
    """
    if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    path = _resolve(str(name_or_path))
    if path is None:
        shipped = ", ".join(name for name, _ in list_models()) or "none"
        raise ModelError(
            f"no model {name_or_path!r}; shipped: {shipped}; or give a model file or a "
            "training run's checkpoint.npz"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {key: z[key] for key in z.files}
    except Exception as e:  # a damaged or foreign file: one line
        raise ModelError(f"cannot read model {path}: {e}") from None
    try:
        model = _from_state(state, backend, dtype)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
        what = f"lacks the entry {e}" if isinstance(e, KeyError) else f"does not fit ({e})"
        raise ModelError(f"model {path} {what}") from None
    if "info" not in state:  # a training checkpoint: its run's summary, drift test included
        summary = _run_summary(path, state)
        if summary is not None:
            model.info["summary"] = summary
    return model


def _run_summary(checkpoint, state):
    """The ``summary.json`` beside a training checkpoint, where it is that checkpoint's
    (its ``iterations`` those the checkpoint holds; an interrupted run's folder may keep an
    earlier run's summary), else ``None``."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "summary.json")
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or "iteration" not in state:
        return None
    return summary if summary.get("iterations") == int(state["iteration"]) else None


def _from_state(state, backend, dtype=None):
    config = TrainConfig.from_dict(json.loads(str(state["config"])))
    mean = np.asarray(state["mean"], dtype=np.float64)
    n_layers = int(state["n_layers"]) if "n_layers" in state else len(config.layers)
    n_params = int(state["n_params"]) if "n_params" in state else n_layers
    if "obs" in state:
        image_hw = tuple(state["obs"].shape[2:])
    else:
        image_hw = tuple(int(v) for v in state["image_size"])
    net = GenerativeConvNet(
        len(mean),
        config.layer_objects()[:n_layers],
        top=config.top,
        image_size=image_hw if config.top == "linear" else None,
        backend=backend,
        dtype=np.dtype(dtype or config.dtype),
        boundary=config.boundary,
    )
    net.set_weights([(state[f"W{i}"], state[f"b{i}"]) for i in range(n_params)])
    info = json.loads(str(state["info"])) if "info" in state else {"learned": "a training run"}
    info.setdefault("data_std", _data_std(state, mean))
    thumbnail = state.get("thumbnail")
    if thumbnail is None and "obs" in state:
        thumbnail = data.to_uint8(state["obs"][:4], mean)
    return LearnedModel(net, config, mean, info, thumbnail)


def _data_std(state, mean):
    if "obs" in state:
        return float(np.asarray(state["obs"]).std())
    return 40.0


def save_model(path, net, config, mean, info, thumbnail=None, image_size=None):
    """Write a model file: the weights, the configuration, the mean, ``info`` (JSON) and a
    uint8 ``thumbnail`` of the training images (see :func:`load_model`).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from gcn_numpy import GenerativeConvNet
    >>> config = TrainConfig(layers=[{"channels": 2, "kernel": 3, "stride": 1, "padding": 1}])
    >>> net = GenerativeConvNet(1, config.layer_objects(), backend="numpy", seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.npz")
    >>> save_model(path, net, config, np.array([128.0]), {"learned": "nothing"})
    >>> sorted(np.load(path).files)[:4]
    ['W0', 'b0', 'config', 'image_size']
    """
    arrays = {
        "config": np.array(json.dumps(config.to_dict())),
        "mean": np.asarray(mean, dtype=np.float64),
        "n_layers": np.array(len(net.layers)),
        "n_params": np.array(len(net.params)),
        "info": np.array(json.dumps(info)),
        "image_size": np.array(image_size or net.image_size or (config.size, config.size)),
    }
    for i, (W, b) in enumerate(net.weights):
        arrays[f"W{i}"], arrays[f"b{i}"] = W.astype(np.float32), b.astype(np.float32)
    if thumbnail is not None:
        arrays["thumbnail"] = np.asarray(thumbnail, dtype=np.uint8)
    np.savez_compressed(path, **arrays)


def model_from_run(run_dir, name, learned, command=""):
    """A model file's contents from a finished training run's folder (its checkpoint, its
    summary and its first training images): ``(net, config, mean, info, thumbnail)``, as
    :func:`save_model` takes them."""
    model = load_model(os.path.join(run_dir, "checkpoint.npz"), backend="numpy")
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    info = {
        "name": name,
        "learned": learned,
        "size": f"{model.config.size} px"
        + (f", {len(model.mean)} channels" if len(model.mean) > 1 else ""),
        "made": command,
        "summary": summary,
        "data_std": model.info.get("data_std"),
    }
    return model.net, model.config, model.mean, info, model.thumbnail
