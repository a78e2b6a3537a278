"""The argument checks shared by the model, the sampler and the command line."""

from numbers import Integral, Real

import numpy as np


def positive_int(value, what, minimum=1):
    """``value`` as an ``int`` if it is an integer ``>= minimum``, else ``ValueError``.

    Examples
    --------
    >>> positive_int(3, "steps")
    3
    >>> positive_int(0, "steps", minimum=0)
    0
    >>> positive_int(2.5, "steps")
    Traceback (most recent call last):
    ...
    ValueError: steps must be an integer >= 1, got 2.5
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def positive_float(value, what):
    """``value`` as a ``float`` if it is a finite number ``> 0``, else ``ValueError``.

    Examples
    --------
    >>> positive_float(0.3, "step_size")
    0.3
    >>> positive_float(float("nan"), "sigma")
    Traceback (most recent call last):
    ...
    ValueError: sigma must be a positive number, got nan
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not (np.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def temperature(value, what):
    """``value`` as a ``float`` if it is a finite temperature ``>= 1``, else ``ValueError``
    (a tempered start's first temperature: ``T = 1`` is plain Langevin dynamics).

    Examples
    --------
    >>> temperature(1e4, "temper_start")
    10000.0
    >>> temperature(0.5, "temper_start")
    Traceback (most recent call last):
    ...
    ValueError: temper_start must be a temperature >= 1, got 0.5
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not (np.isfinite(value) and value >= 1)
    ):
        raise ValueError(f"{what} must be a temperature >= 1, got {value!r}")
    return float(value)
