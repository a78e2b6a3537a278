"""Memory of the Numba kernels: outputs reused once let go, scratch kept per layer, the
filters' transforms remembered, and the channels-last order of every map.

A Langevin chain asks for the same shapes at every step, twenty times per learning
iteration. New memory costs more than its size: each page of it faults on first touch, and
memory that NumPy freed after a call may go back to the system and fault again at the next.
So the kernels keep what they wrote into and worked in:

- :func:`output`: the memory of an earlier output of the same shape, once nothing outside
  holds any view of it (its reference count says so), else new memory (kept for later);
- :func:`reused`: each layer's per-thread scratch arrays, lent for one call and given back;
- :func:`remembered`: a transform of the filters, kept while the filters stay the same bit
  for bit;
- :func:`release_scratch` frees the first two.

Maps are ``(N, C, H, W)`` arrays as in :mod:`gcn_numpy.backends.reference`; those the
kernels return are channels last in memory, an ``(N, H, W, C)`` C-contiguous array seen
through ``transpose(0, 3, 1, 2)`` (:func:`shaped`), and :func:`channels_last` hands the
kernels that order without a copy where an array already has it: one layer's output goes
into the next layer's kernels as it is. docs/numba_design.md has the measurements.
"""

import collections
import contextlib
import sys
import threading

import numpy as np
from numba import njit

__all__ = [
    "OUTPUTS_BYTES",
    "output",
    "reused",
    "remembered",
    "release_scratch",
    "kept",
    "float_dtype",
    "channels_last",
    "shaped",
]

OUTPUTS_BYTES = 2**28  # output memory kept at most, in all
OUTPUTS_PER_KEY = 8  # a pass holds up to 3 maps of one shape at once (F, G, B of a layer)
SPARE_KEYS = 64  # layers whose scratch is kept: 3 passes x 3 layers x a few sizes and dtypes
SPARE_PER_KEY = 16  # scratch sets kept per layer: the threads of a few callers at once
FILTERS_KEPT = 16  # filter transforms remembered
FEW_CHANNELS = 16  # channels_last copies maps of this many channels at most by a compiled loop

_SPARE = collections.OrderedDict()  # key -> [scratch not in use, ...], recent last
_OUTPUTS = collections.OrderedDict()  # (shape, dtype) -> [memory of outputs], recent last
_FILTERS = collections.OrderedDict()  # key -> [(filters, transform)], recent last
_LOCK = threading.Lock()  # of _SPARE and _OUTPUTS
_FILTERS_LOCK = threading.Lock()


# ------------------------------------------------------------------------- outputs


def _holders(kept_arrays, i):
    return sys.getrefcount(kept_arrays[i])


_UNHELD = _holders([np.empty(0)], 0)  # the count of an array that only its list holds


def output(shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype`` for a kernel's output: the memory
    of an earlier output of the same shape once nothing outside holds it any longer, else
    new memory (kept for later, at most :data:`OUTPUTS_BYTES` in all).

    Safety: the array handed out is a view of the kept one, and every NumPy view of it,
    direct or not, holds a reference to the kept array (its ``base``); its reference count
    is back to what the keeper alone gives only when no view of it is alive anywhere. Any
    other holder (a traceback, a view kept by the caller) keeps it out of use.

    Examples
    --------
    >>> a = output((2, 3), np.float32)
    >>> pointer = a.__array_interface__["data"][0]
    >>> del a  # let go: the next output of that shape takes its memory
    >>> output((2, 3), np.float32).__array_interface__["data"][0] == pointer
    True
    """
    dtype = np.dtype(dtype)
    key = (tuple(shape), dtype.str)
    with _LOCK:
        kept_arrays = _OUTPUTS.get(key, [])
        for i in range(len(kept_arrays)):
            if _holders(kept_arrays, i) == _UNHELD:
                _OUTPUTS.move_to_end(key)
                return kept_arrays[i].view()
    a = np.empty(shape, dtype=dtype)
    if a.nbytes <= OUTPUTS_BYTES // 4:
        with _LOCK:
            kept_arrays = _OUTPUTS.setdefault(key, [])
            if len(kept_arrays) < OUTPUTS_PER_KEY:
                kept_arrays.append(a)
            _OUTPUTS.move_to_end(key)
            total = sum(b.nbytes for arrays in _OUTPUTS.values() for b in arrays)
            while total > OUTPUTS_BYTES:
                _, dropped = _OUTPUTS.popitem(last=False)
                total -= sum(b.nbytes for b in dropped)
    return a.view()


# ------------------------------------------------------------------------- scratch


@contextlib.contextmanager
def reused(key, make, count):
    """``count`` sets of scratch arrays ``make()``, given back for the next call with the
    same ``key`` when the block ends (none kept where ``key`` is None).

    ``key`` must determine everything about the arrays that the kernels rely on: their
    shapes, and, for arrays whose borders are zeros that the kernels never write (the
    padded and split inputs), the region they do write: the input's shape, padding and
    stride. A set is used by one call at a time; callers on several threads each take
    their own.

    Examples
    --------
    >>> with reused(("example",), lambda: np.zeros(3), 2) as sets:
    ...     first = [id(a) for a in sets]
    >>> with reused(("example",), lambda: np.zeros(3), 2) as sets:
    ...     [id(a) for a in sets] == first
    True
    """
    owned = []
    if key is not None:
        with _LOCK:
            spare = _SPARE.get(key, [])
            owned = spare[:count]
            del spare[:count]
    owned += [make() for _ in range(count - len(owned))]
    try:
        yield owned
    finally:
        if key is not None:
            with _LOCK:
                spare = _SPARE.setdefault(key, [])
                spare.extend(owned[: SPARE_PER_KEY - len(spare)])
                _SPARE.move_to_end(key)
                while len(_SPARE) > SPARE_KEYS:
                    _SPARE.popitem(last=False)


def release_scratch():
    """Free the memory kept between calls: scratch arrays (:func:`reused`: a few MB per
    layer and size, at most :data:`SPARE_KEYS` layers and sizes) and the memory of outputs
    no longer in use (:func:`output`, at most :data:`OUTPUTS_BYTES`).

    Examples
    --------
    >>> release_scratch()
    >>> kept()
    (0, 0)
    """
    with _LOCK:
        _SPARE.clear()
        _OUTPUTS.clear()


def kept():
    """``(output_bytes, scratch_sets)``: the bytes of output memory kept for reuse and the
    number of scratch sets kept, in all (what :func:`release_scratch` frees).

    Examples
    --------
    >>> release_scratch()
    >>> a = output((4, 5), np.float64)
    >>> kept()
    (160, 0)
    """
    with _LOCK:
        outputs = sum(a.nbytes for arrays in _OUTPUTS.values() for a in arrays)
        return outputs, sum(len(sets) for sets in _SPARE.values())


# ------------------------------------------------------------ remembered transforms


@njit(cache=True, nogil=True)
def _same_bits_flat(a, b):
    same = True
    for i in range(a.size):  # no early exit: one vector loop
        same &= a[i] == b[i]
    return same


def _same_bits(a, b):
    """Whether two C-contiguous float arrays of one shape and dtype are equal bit for bit
    (without ``np.array_equal``'s temporary array)."""
    bits = np.int32 if a.dtype.itemsize == 4 else np.int64
    return _same_bits_flat(a.reshape(-1).view(bits), b.reshape(-1).view(bits))


def remembered(key, W, make):
    """``make()``, a transform of the filters ``W``, remembered for the last two filters
    of each ``key`` (which must hold ``W``'s shape and dtype and all else the transform
    depends on). An entry is used only for filters equal to the ones it was made from, bit
    for bit: a copy of them is kept, so that filters changed in place are not mistaken
    for the old ones.

    Examples
    --------
    >>> W = np.ones((2, 2))
    >>> first = remembered(("example", W.shape, W.dtype.str), W, lambda: W.sum())
    >>> W[0, 0] = 5.0  # changed in place: made again
    >>> float(remembered(("example", W.shape, W.dtype.str), W, lambda: W.sum()))
    8.0
    """
    with _FILTERS_LOCK:
        for W_seen, transform in _FILTERS.get(key, ()):
            if _same_bits(W_seen, W):
                _FILTERS.move_to_end(key)
                return transform
    transform = make()
    with _FILTERS_LOCK:
        _FILTERS[key] = [(W.copy(), transform)] + _FILTERS.get(key, [])[:1]
        _FILTERS.move_to_end(key)
        while len(_FILTERS) > FILTERS_KEPT:
            _FILTERS.popitem(last=False)
    return transform


# ------------------------------------------------------------------- channels last


def float_dtype(*arrays):
    """The dtype the kernels compute ``arrays`` in: float32 or float64, else TypeError.

    Examples
    --------
    >>> float_dtype(np.zeros(2, np.float32), np.zeros(2, np.float32))
    dtype('float32')
    """
    dtype = np.result_type(*arrays)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"the numba backend computes in float32 or float64, not {dtype}")
    return dtype


def channels_last(a, dtype):
    """``a`` ``(N, C, H, W)`` as a C-contiguous ``(N, H, W, C)`` array of ``dtype``: a view
    where ``a`` is already channels last in memory (a kernel's output), else a copy into
    :func:`output` memory (images of few channels by a compiled loop that reads them in
    their order, which is faster there than NumPy's copy; maps of many channels by NumPy).

    Examples
    --------
    >>> a = np.arange(6.0).reshape(1, 2, 1, 3)
    >>> channels_last(a, np.float64)[0, 0]
    array([[0., 3.],
           [1., 4.],
           [2., 5.]])
    >>> b = shaped(channels_last(a, np.float64))
    >>> channels_last(b, np.float64).base is not None  # already in that order: a view
    True
    """
    a = np.asarray(a)
    last = a.transpose(0, 2, 3, 1)
    if last.dtype == dtype and last.flags.c_contiguous:
        return last
    copy = output(last.shape, dtype)
    floats = (np.float32, np.float64)
    if a.shape[1] <= FEW_CHANNELS and a.dtype in floats and copy.dtype in floats:
        _copy_channels_last(a, copy)
    else:
        copy[...] = last
    return copy


@njit(cache=True, nogil=True)
def _copy_channels_last(a, out):
    """``out[n, i, j, c] = a[n, c, i, j]``, read in the order of ``a``'s channels."""
    N, C, H, W = a.shape
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    out[n, i, j, c] = a[n, c, i, j]


def shaped(last):
    """The ``(N, C, H, W)`` view of a channels-last ``(N, H, W, C)`` array.

    Examples
    --------
    >>> shaped(np.zeros((2, 5, 7, 3))).shape
    (2, 3, 5, 7)
    """
    return last.transpose(0, 3, 1, 2)
