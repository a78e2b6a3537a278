"""Sphinx configuration of the gcn_numpy documentation site.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs/site docs/site/_build/html

The build and the site are offline: no intersphinx inventories, no notebook execution (myst-nb
renders the outputs committed in ``notebooks/``, which CI re-executes in
``tests/test_notebooks.py``), MathJax served from ``_static/mathjax`` (MathJax 3.2.2, SVG
output: no font files to fetch, so formulas render from ``file://`` in any browser). The
local extension ``_ext/gcn_site.py`` writes the sources this site takes from the repository
(the notebooks, README sections, ``docs/*.md``, the gallery) and checks every page it built
for unrendered TeX and network loads.
"""

import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent
ROOT = SITE.parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout's gcn_numpy
sys.path.insert(0, str(SITE / "_ext"))

import gcn_numpy  # noqa: E402

project = "gcn_numpy"
author = "the gcn_numpy authors"
copyright = "2026, the gcn_numpy authors"
release = version = gcn_numpy.__version__

extensions = [
    "gcn_site",
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "_generated", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# Notebooks: render the committed outputs, never execute (CI runs them in the test suite).
nb_execution_mode = "off"
nb_merge_streams = True
nb_code_prompt_show = "Show the code"
nb_code_prompt_hide = "Hide the code"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Mathematics: the MathJax shipped in _static (its LICENSE beside it), never a CDN.
mathjax_path = "mathjax/tex-svg-full.js"
mathjax3_config = {"svg": {"fontCache": "global"}}

# API reference: one page per public module of gcn_numpy, found at build time (autosummary,
# recursive), from the NumPy-style docstrings; defaults as written in the source.
autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}  # members: see _templates/autosummary
autodoc_typehints = "none"
autodoc_preserve_defaults = True
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"gcn_numpy {version}"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_theme_options = {"navigation_with_keys": True}
# The "view source" link would offer the site's own copy of a notebook as text; each notebook
# page offers the real .ipynb instead. The sources stay copied for the search's snippets.
html_show_sourcelink = False


def _skip_named_tuple_fields(app, what, name, obj, skip, options):
    """Leave out the fields of named tuples (the Numba backend's plans and scratch): their
    class docstrings name them, and documented one by one, fields such as ``C``, ``K`` or
    ``rows`` would become the link targets of those words in every shape of the API."""
    if what == "class" and type(obj).__name__ == "_tuplegetter":
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_named_tuple_fields)
