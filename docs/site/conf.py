"""Sphinx configuration of the gcn_numpy documentation site.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs/site docs/site/_build/html

The build is offline: no intersphinx inventories, no notebook execution (myst-nb renders
the outputs committed in ``notebooks/``, which CI re-executes in ``tests/test_notebooks.py``).
Before reading the sources, this file copies the notebooks into ``notebooks/`` here and
writes ``_generated/README.md``, the README with its repository-relative links made to work
on the site; both are rebuilt on every run and ignored by git.
"""

import re
import shutil
import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent
ROOT = SITE.parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout's gcn_numpy

import gcn_numpy  # noqa: E402

project = "gcn_numpy"
author = "the gcn_numpy authors"
copyright = "2026, the gcn_numpy authors"
release = version = gcn_numpy.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "_generated", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# Notebooks: render the committed outputs, never execute (CI runs them in the test suite).
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# API reference from the NumPy-style docstrings.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_typehints = "none"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"gcn_numpy {version}"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_theme_options = {"navigation_with_keys": True}


# ------------------------------------------------------------------ generated sources

LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def _site_link(match):
    """Rewrite one Markdown link of the README for ``index.md``, which includes it."""
    bang, text, target = match.groups()
    if re.match(r"[a-z]+:", target) or target.startswith("#"):
        return match.group(0)  # a web address or an anchor: unchanged
    path = target.split("#")[0]
    if path.startswith("notebooks/") and path.endswith(".ipynb"):
        return f"[{text}]({path})"  # the notebook's page on this site
    if bang:
        return f"![{text}](../../{path})"  # an image of the repository
    return f"{text} (`{path}`)"  # any other file of the repository: named, not linked


def _generate_sources():
    notebooks = SITE / "notebooks"
    shutil.rmtree(notebooks, ignore_errors=True)
    notebooks.mkdir()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy2(nb, notebooks / nb.name)
    generated = SITE / "_generated"
    generated.mkdir(exist_ok=True)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (generated / "README.md").write_text(LINK.sub(_site_link, readme), encoding="utf-8")


_generate_sources()


def _skip_named_tuple_fields(app, what, name, obj, skip, options):
    """Leave out the fields of named tuples (the Numba backend's plans and scratch): their
    class docstrings name them, and documented one by one, fields such as ``C``, ``K`` or
    ``rows`` would become the link targets of those words in every shape of the API."""
    if what == "class" and type(obj).__name__ == "_tuplegetter":
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_named_tuple_fields)
