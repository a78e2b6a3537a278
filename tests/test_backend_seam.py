"""The seam written as code: every backend module implements :class:`Backend`, with the
reference's signatures."""

import importlib
import inspect

import pytest

from gcn_numpy.backends import BACKENDS, MODULES, Backend, reference

SEAM = sorted(
    name
    for name, value in vars(Backend).items()
    if not name.startswith("_") and inspect.isfunction(value)
)
ATTRIBUTES = sorted(Backend.__annotations__)


def _module(name):
    """The backend's module, imported without its availability check (CuPy may be absent)."""
    return importlib.import_module(MODULES[name])


def _parameters(fn):
    return [
        (p.name, p.kind, p.default is inspect.Parameter.empty)
        for p in inspect.signature(fn).parameters.values()
        if p.name != "self"
    ]


def test_the_seam_lists_every_kernel_the_reference_implements():
    assert set(SEAM) == set(reference.__all__) - {"name", "xp", "output_size"}
    assert ATTRIBUTES == ["name", "xp"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", SEAM)
def test_backend_implements_the_seam_with_its_signature(backend, kernel):
    module = _module(backend)
    assert callable(getattr(module, kernel, None)), f"{backend} lacks {kernel}"
    assert _parameters(getattr(module, kernel)) == _parameters(getattr(Backend, kernel))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_names_itself(backend):
    module = _module(backend)
    assert module.name == backend
    assert hasattr(module, "xp")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_available_backends_are_instances_of_the_protocol(backend):
    from gcn_numpy.backends import get_backend

    assert isinstance(get_backend(backend), Backend)


@pytest.mark.parametrize("backend", ["numba", "cupy"])
@pytest.mark.parametrize(
    "kernel", ["conv2d", "conv_relu", "gate", "conv_transpose", "conv_weight_grad"]
)
def test_fast_kernels_point_back_to_the_reference(backend, kernel):
    doc = inspect.getdoc(getattr(_module(backend), kernel)) or ""
    assert f"reference.{kernel}" in doc, f"{backend}.{kernel} does not name the reference"
