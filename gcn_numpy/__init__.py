"""gcn_numpy: the generative ConvNet of Xie, Lu, Zhu and Wu (ICML 2016) in NumPy.

An energy-based image model ``p(I; w) ~ exp[f(I; w)] q(I)`` with ``f`` a ReLU ConvNet and
``q`` Gaussian white noise. It is piecewise Gaussian (Theorem 1): on each piece the mean
``B`` is an auto-encoding, computed bottom-up (activation pattern ``delta``) and top-down
(deconvolution with the same filters as basis functions).
"""

from .model import GenerativeConvNet, Layer, prototype_model
from .sampling import descend_to_mode, langevin
from .zoo import load_model

__all__ = [
    "GenerativeConvNet",
    "Layer",
    "prototype_model",
    "langevin",
    "descend_to_mode",
    "load_model",
]
__version__ = "0.1.0"
