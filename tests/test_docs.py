"""The documentation's promises: the README links every notebook and shows the one command
that builds the site, and CI runs that command. (CI builds the site itself, in ``.ci/run``;
building it here again would only double the time.)"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS_COMMAND = "python -m sphinx -W --keep-going -b html docs/site docs/site/_build/html"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_readme_links_notebook(path):
    assert f"](notebooks/{path.name})" in README, f"README.md does not link notebooks/{path.name}"


def test_readme_shows_the_docs_build():
    assert re.search(r"^## Documentation", README, re.M), "README.md has no Documentation section"
    assert 'pip install -e ".[docs]"' in README
    assert DOCS_COMMAND in README, f"README.md does not show {DOCS_COMMAND!r}"


def test_ci_builds_the_docs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "docs_cmd=" in ci and DOCS_COMMAND in ci, ".ci/run does not build the site"
