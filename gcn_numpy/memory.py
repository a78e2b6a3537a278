"""How much memory a run needs, and how much the machine has: a run that cannot fit is
refused before it allocates anything.

What a pass of the net over a batch holds (:meth:`GenerativeConvNet.forward_backward`):
every layer's maps ``F^{(l)}`` and activation pattern ``delta^{(l)}`` (eqs. 13-14), kept
until the top-down half (eq. 16) has used them, and, one layer at a time, a few more maps
of that layer and the one below: the coefficients ``G^{(l)}``, ``B^{(l-1)}``, the padded
input, the kernels' temporaries. Langevin dynamics (eq. 19) holds the chains, their noise
and their next state beside one pass; a learning iteration (Algorithm 1) adds the observed
images' pass and the weight gradients. The estimate counts these arrays from the layers'
shapes, and adds what the backend keeps besides: compiled code (Numba's compiler when the
kernels are not yet in its cache), scratch per thread, earlier outputs kept for reuse.
``benchmarks/memory_estimate.py`` sets it beside the peak resident memory of real runs.
"""

import os

try:
    import resource
except ImportError:  # not on Windows: no ulimit
    resource = None
from dataclasses import dataclass

import numpy as np

from .boundary import layer_padding, map_size
from .layer import Layer
from .learning import chains_shape
from .model import GenerativeConvNet

__all__ = [
    "TooLarge",
    "pass_bytes",
    "langevin_bytes",
    "backend_bytes",
    "training_bytes",
    "available_bytes",
    "require",
    "check_training",
    "format_bytes",
    "HELP",
]

MB = 2**20
BACKEND_BYTES = {"numpy": 16 * MB, "numba": 384 * MB, "cupy": 64 * MB}  # see backend_bytes
WORK_MAPS = 3  # see pass_bytes
REUSED_BYTES = {"numba": 256 * MB}  # outputs kept for reuse: numba/memory.OUTPUTS_BYTES
SUMMARY_BYTES = 64  # per number of the chains: the summary's float64 copies and spectra
HEADROOM = 1.1  # what the arrays counted leave out (the allocator's own, temporaries of the
# outputs): a run with 4 chains on a 294 px canvas peaked 2% above the count
HELP = (
    "Memory: before it allocates anything, a run estimates the memory it needs (the chains "
    "and every layer's maps over their canvas, the training images' passes, the backend's "
    "scratch: gcn_numpy.memory) and stops with exit status 2 when that exceeds what the "
    "machine has available (MemAvailable, or a smaller cgroup or ulimit -v limit; for "
    "--backend cupy, the GPU's free memory); lower --chains, --synth-size or --size."
)


class TooLarge(ValueError):
    """A run too large for the memory available; the message says how much it needs, how
    much there is, and what to lower.

    Examples
    --------
    >>> try:
    ...     require(3 * 2**30, 2**30, "200 chains of 1024 x 1024 px", "--chains")
    ... except TooLarge as e:
    ...     print(e)  # doctest: +NORMALIZE_WHITESPACE
    200 chains of 1024 x 1024 px need about 3.0 GiB of memory, and this machine has
    1.0 GiB available; lower --chains
    """


@dataclass(frozen=True)
class _Net:
    """What the estimate needs of a net: its layers, boundary, backend and dtype."""

    layers: tuple
    boundary: str
    backend: str
    dtype: np.dtype


def _net(net, dtype, backend, boundary):
    if isinstance(net, GenerativeConvNet):
        return _Net(
            net.layers,
            boundary or net.boundary,
            backend or net.backend,
            np.dtype(dtype or net.dtype),
        )
    layers = tuple(Layer(**spec) if isinstance(spec, dict) else spec for spec in net)
    return _Net(layers, boundary or "zero", backend or "numba", np.dtype(dtype or np.float32))


def _sizes(net, shape):
    """Per layer, from the bottom: ``(input with its padding, output)`` in numbers per image."""
    _, C, H, W = shape
    sizes = []
    for layer in net.layers:
        before, after = layer_padding(layer, net.boundary)
        padded = C * (H + before + after) * (W + before + after)
        H, W, C = map_size(H, layer, net.boundary), map_size(W, layer, net.boundary), layer.channels
        sizes.append((padded, C * max(H, 0) * max(W, 0)))
    return sizes


def pass_bytes(net, batch_shape, dtype=None, backend=None, boundary=None, grads=False):
    """Bytes that one bottom-up and top-down pass allocates over a batch (not counting the
    batch itself): the maps and activation patterns of every layer, and ``WORK_MAPS``
    more maps of the largest layer's input and output (the coefficients, the padded input,
    the kernels' temporaries; with ``grads``, one more for the weight gradient's).

    Parameters
    ----------
    net : GenerativeConvNet, or sequence of gcn_numpy.layer.Layer (or dicts of its fields)
        A net, or its layers alone (then ``boundary`` "zero", backend "numba" and float32
        unless given).
    batch_shape : tuple (N, C, H, W)
        Images or chains of any size, e.g. a sampler's ``N`` samples on a large canvas.
    dtype, backend, boundary : optional
        Override the net's.
    grads : bool
        Whether the pass also computes the weight gradient (learning) or only ``B``
        (Langevin dynamics, sampling).

    Returns
    -------
    int

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> layers = get_preset("texture").layer_objects()
    >>> round(pass_bytes(layers, (8, 1, 96, 96), "float32") / 2**20, 1)  # `texture`'s chains
    20.8
    """
    net = _net(net, dtype, backend, boundary)
    sizes = _sizes(net, batch_shape)
    itemsize = net.dtype.itemsize
    kept = sum(out for _, out in sizes) * (itemsize + 1)  # F^(l) and delta^(l) (bool)
    work = WORK_MAPS + (1 if grads else 0)
    largest = max(padded + out for padded, out in sizes) * itemsize * work
    return int(batch_shape[0] * (kept + largest))


def langevin_bytes(net, batch_shape, dtype=None, backend=None, boundary=None):
    """Bytes that Langevin dynamics (eq. 19) on a batch of chains ``(N, C, H, W)``
    allocates: the chains, the state being updated, its noise and its next state, one pass
    without weight gradients (:func:`pass_bytes`), and the outputs the backend keeps for
    reuse. What sampling needs: ``N`` samples on an ``H x W`` canvas of any size from a
    learned net take ``langevin_bytes(net, (N, C, H, W)) + backend_bytes(net.backend)``,
    to be given to :func:`require` with :func:`available_bytes` of the net's backend, which
    refuses a sampling run that cannot fit. Parameters as for :func:`pass_bytes`.

    Examples
    --------
    >>> from gcn_numpy import GenerativeConvNet, Layer
    >>> net = GenerativeConvNet(1, [Layer(32, 7, stride=2, padding=2)], backend="numpy")
    >>> langevin_bytes(net, (16, 1, 512, 512)) // 2**20  # 16 samples of 512 x 512 px
    1273
    """
    spec = _net(net, dtype, backend, boundary)
    chains = int(np.prod(batch_shape)) * spec.dtype.itemsize
    one_pass = pass_bytes(spec.layers, batch_shape, spec.dtype, spec.backend, spec.boundary)
    return _with_reuse(4 * chains + one_pass, spec.backend)


def _with_reuse(live, backend):
    """``live`` bytes of arrays, and beside them the memory of earlier outputs that the
    backend keeps for reuse (Numba: at most 256 MiB, outputs of up to 64 MiB)."""
    return live + min(REUSED_BYTES.get(backend, 0), live)


def backend_bytes(backend):
    """What a backend takes besides the arrays of the passes: Numba's compiler (on a first
    run, before its cache has the kernels) and its per-thread scratch; NumPy's and
    Matplotlib's temporary buffers. Measured (``benchmarks/results_memory.md``): the
    `texture` run's peak rose 400 MiB above the memory before it with an empty Numba cache,
    235 MiB with the kernels cached, 25 MiB on the NumPy backend; the GPU's figure is not
    measured (CuPy's context and cuBLAS's workspace).

    Examples
    --------
    >>> backend_bytes("numba") // 2**20
    384
    """
    return BACKEND_BYTES.get(backend, BACKEND_BYTES["numpy"])


def _training(config, image_shape):
    """``(total, chains, observed)``: the bytes of :func:`training_bytes`, and those of the
    chains' and the observed images' passes within it."""
    net = _net(config.layers, config.dtype, config.backend, config.boundary)
    chains = chains_shape(config, image_shape)
    itemsize = net.dtype.itemsize
    n_chains, n_obs = int(np.prod(chains)), int(np.prod(image_shape))
    chain_pass = pass_bytes(net.layers, chains, net.dtype, net.backend, net.boundary, grads=True)
    obs_pass = pass_bytes(net.layers, image_shape, net.dtype, net.backend, net.boundary, True)
    kept = n_obs * (itemsize + 2 * 8)  # the observed images, and as read and centred (float64)
    step = _with_reuse(4 * n_chains * itemsize + chain_pass + obs_pass, net.backend) * HEADROOM
    end = SUMMARY_BYTES * n_chains  # float64 copies, spectra, pictures of the samples
    total = int(backend_bytes(net.backend) + kept + max(step, end))
    return total, 4 * n_chains * itemsize + chain_pass, obs_pass + kept


def training_bytes(config, image_shape):
    """Bytes a training run of ``config`` (:class:`~gcn_numpy.presets.TrainConfig`) on
    training images of ``image_shape`` ``(M, C, H, W)`` needs at its peak, besides what
    the process holds already: a learning iteration's Langevin dynamics on the chains and
    its passes over the chains and the observed images with weight gradients (with the
    whole net: the last stage of a grown one), or the summary at the end, whichever is
    larger; what the backend keeps (:func:`backend_bytes`); the training images.

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> training_bytes(get_preset("texture"), (1, 1, 64, 64)) // 2**20
    500
    >>> training_bytes(get_preset("texture-one-chain"), (1, 1, 112, 112)) // 2**20  # the default
    440
    """
    return _training(config, image_shape)[0]


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this system
        return None


def _read_number(path, key=None):
    """The number in a cgroup file (``None`` for "max" or a missing file); with ``key``,
    the value on that key's line."""
    try:
        with open(path) as f:
            for line in f:
                words = line.split()
                if key is None or (words and words[0] == key):
                    return int(words[-1]) if words[-1].isdigit() else None
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room(root="/sys/fs/cgroup", proc="/proc/self/cgroup"):
    """What this process's control group (and every group above it) still allows: its
    limit less its usage, page cache that can be dropped (inactive files) not counted as
    used; ``None`` without a limit. cgroup v2 (``memory.max``) and v1
    (``memory.limit_in_bytes``)."""
    try:
        with open(proc) as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    rooms = []
    for _, controllers, path in (parts for parts in lines if len(parts) == 3):
        if controllers == "":
            base, files = root, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base = os.path.join(root, "memory")
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        folder = os.path.join(base, path.strip("/"))
        while True:
            limit = _read_number(os.path.join(folder, files[0]))
            used = _read_number(os.path.join(folder, files[1]))
            if limit is not None and used is not None and limit < 2**60:
                cache = _read_number(os.path.join(folder, "memory.stat"), files[2]) or 0
                rooms.append(max(0, limit - used + min(cache, used)))
            if os.path.normpath(folder) == os.path.normpath(base):
                break
            folder = os.path.dirname(folder)
    return min(rooms) if rooms else None


def _address_space_room():
    """What ``ulimit -v`` (RLIMIT_AS) still allows this process, ``None`` without one."""
    if resource is None:
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    size = _read_number("/proc/self/status", "VmSize:")  # kB
    return max(0, limit - (size or 0) * 1024)


def _gpu_free():
    try:
        import cupy

        return int(cupy.cuda.runtime.memGetInfo()[0])
    except Exception:  # no CuPy, no device: the backend's own check says so
        return None


def available_bytes(backend="numpy"):
    """The memory a run may still take, in bytes, ``None`` when unknown: the system's
    ``MemAvailable`` (``/proc/meminfo``; ``os.sysconf`` elsewhere), or less where this
    process's cgroup (a container, a batch job) or ``ulimit -v`` leaves less; for the
    ``"cupy"`` backend, the GPU's free memory.

    Examples
    --------
    >>> available_bytes() > 0
    True
    """
    if backend == "cupy":
        return _gpu_free()
    known = [
        room
        for room in (_meminfo_available(), _cgroup_room(), _address_space_room())
        if room is not None
    ]
    return min(known) if known else None


def format_bytes(n):
    """``n`` bytes for a person: three digits and a binary unit.

    Examples
    --------
    >>> format_bytes(3 * 2**30), format_bytes(2.5 * 2**40), format_bytes(1000)
    ('3.0 GiB', '2.5 TiB', '1000 B')
    """
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def require(needed, available, what, lower, where="this machine"):
    """Raise :class:`TooLarge` when ``needed`` bytes exceed ``available`` (``None``: not
    known, nothing is refused): ``what`` needs about so much, ``where`` has so much, lower
    the options ``lower``.

    Examples
    --------
    >>> require(2**20, 2**30, "a small run", "--chains")  # fits: nothing happens
    """
    if available is not None and needed > available:
        raise TooLarge(
            f"{what} need about {format_bytes(needed)} of memory, and {where} has "
            f"{format_bytes(available)} available; lower {lower}"
        )


def check_training(config, image_shape):
    """Refuse (:class:`TooLarge`) a training run of ``config`` on images of
    ``image_shape`` whose :func:`training_bytes` exceed :func:`available_bytes`, naming
    the options that lower it most: the chains' (``--chains``, ``--synth-size``) or the
    training images' (``--size``). Sizes the net cannot take are left to the learner to
    report.

    Examples
    --------
    >>> from gcn_numpy.presets import get_preset
    >>> config = get_preset("texture")
    >>> config.chains = 10**6
    >>> try:
    ...     check_training(config, (1, 1, 64, 64))
    ... except TooLarge as e:
    ...     print(e)  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    1000000 chains of 134 x 134 px and 1 training image of 64 x 64 px need about 6.8 TiB
    of memory, and this machine has ... available; lower --chains, --synth-size or --size
    """
    try:
        needed, chains_part, observed_part = _training(config, image_shape)
    except ValueError:  # a canvas below the receptive field, a torus the strides do not fit
        return
    M, _, H, W = image_shape
    N, _, h, w = chains_shape(config, image_shape)
    images = f"{M} training image{'s' if M > 1 else ''} of {H} x {W} px"
    fewer = " or give fewer images" if M > 1 else ""
    if config.mode == "cd":
        what, lower = f"contrastive divergence on {images}", f"--size{fewer}"
    else:
        what = f"{N} chains of {h} x {w} px and {images}"
        canvas = (
            "--chains or --synth-size" if config.synth_size else "--chains, --synth-size or --size"
        )
        lower = canvas if chains_part >= observed_part else f"--size{fewer}"
    where = "the GPU" if config.backend == "cupy" else "this machine"
    require(needed, available_bytes(config.backend), what, lower, where)
