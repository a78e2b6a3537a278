"""One layer of the generative ConvNet: ``N_l`` filters ``kernel x kernel``, a stride and a
padding, followed by ReLU (eq. 1). :class:`gcn_numpy.model.GenerativeConvNet` stacks them;
:mod:`gcn_numpy.boundary` says what each one sees beyond the edge of its input."""

from dataclasses import dataclass

from ._validate import positive_int

__all__ = ["Layer"]


@dataclass(frozen=True)
class Layer:
    """One convolutional layer followed by ReLU, eq. (1).

    Parameters
    ----------
    channels : int
        Number of filters ``N_l`` (output channels).
    kernel : int
        Filter size; filters are ``kernel x kernel`` (the local support ``S_l``).
    stride : int
        Sub-sampling step.
    padding : int
        Zero padding added on each side of the input before filtering.

    Examples
    --------
    >>> Layer(100, kernel=15, stride=3, padding=2)  # the release's first texture layer
    Layer(channels=100, kernel=15, stride=3, padding=2)
    >>> Layer(0, kernel=3)
    Traceback (most recent call last):
    ...
    ValueError: Layer channels must be an integer >= 1, got 0
    """

    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        positive_int(self.channels, "Layer channels")
        positive_int(self.kernel, "Layer kernel")
        positive_int(self.stride, "Layer stride")
        positive_int(self.padding, "Layer padding", minimum=0)
