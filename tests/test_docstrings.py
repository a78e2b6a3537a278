"""Every public function and class (what a module's ``__all__`` exports) has a numpydoc
docstring with an ``Examples`` section; pytest runs those examples as doctests
(``--doctest-modules`` over the package, see setup.cfg)."""

import importlib
import inspect

import pytest

MODULES = [
    "gcn_numpy",
    "gcn_numpy.model",
    "gcn_numpy.layer",
    "gcn_numpy.sampling",
    "gcn_numpy.learning",
    "gcn_numpy.rules",
    "gcn_numpy.drift",
    "gcn_numpy.zoo",
    "gcn_numpy.sample",
    "gcn_numpy.presets",
    "gcn_numpy.data",
    "gcn_numpy.metrics",
    "gcn_numpy.summary",
    "gcn_numpy.plots",
    "gcn_numpy.boundary",
    "gcn_numpy.checkpoint",
    "gcn_numpy.memory",
    "gcn_numpy.train",
    "gcn_numpy.backends",
    "gcn_numpy.backends.reference",
    *(
        f"gcn_numpy.backends.numba.{name}"
        for name in ("seam", "im2col", "winograd", "winograd_layers", "sparse", "padding")
    ),
    *(f"gcn_numpy.backends.numba.{name}" for name in ("pointwise", "threads", "memory", "blas")),
]


def _public(module_name):
    module = importlib.import_module(module_name)
    assert hasattr(module, "__all__"), f"{module_name} does not say what it exports"
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{module_name}.{name}", obj


PUBLIC = sorted({qual: obj for m in MODULES for qual, obj in _public(m)}.items())


def test_the_public_api_is_listed():
    names = [q for q, _ in PUBLIC]
    for expected in ("gcn_numpy.GenerativeConvNet", "gcn_numpy.learning.Learner"):
        assert expected in names


@pytest.mark.parametrize("qualname, obj", PUBLIC, ids=[q for q, _ in PUBLIC])
def test_public_names_have_examples(qualname, obj):
    doc = inspect.getdoc(obj) or ""
    assert "Examples\n--------" in doc, f"{qualname} has no numpydoc Examples section"
    assert ">>> " in doc.split("Examples\n--------", 1)[1], f"{qualname}: Examples is empty"
