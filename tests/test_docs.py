"""The documentation's promises: the README links every notebook and shows the one command
that builds the site, CI runs that command and checks the pages it built, the check finds the
pages a reader would find broken, and the notebooks' display math is written so that MyST
reads it. (CI builds the site itself, in ``.ci/run``; building it here again would only double
the time.)"""

import doctest
import json
import re
import sys
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


# ------------------------------------------------------------------ the site's page check

sys.path.insert(0, str(ROOT / "docs" / "site" / "_ext"))
import htmlcheck  # noqa: E402  (docs/site/_ext: the check conf.py and .ci/run apply to the site)

# What notebook 02's page carried when eq. (16) was written `$$...$$` inside a list item.
BROKEN_02 = (
    '<li><p><strong>Top-down</strong> (eq. 16): starting from <span class="math notranslate '
    'nohighlight">\\(\\mathbf{B}^{(L)} = 1\\)</span>,\n$<span class="math notranslate '
    'nohighlight">\\(\\mathbf{B}^{(l-1)} = \\sum_k\\)</span><span class="math notranslate '
    'nohighlight">\\(\na deconvolution in which the filters \\)</span>\\mathbf{w}^{(l)}_{k,x}'
    "</p></li>"
)
GOOD_PAGE = (
    '<script defer src="../_static/mathjax/tex-svg-full.js"></script>'
    '<p>With <span class="math notranslate nohighlight">\\(\\mathbf{B}_{w,\\delta}\\)</span>,</p>'
    '<div class="math notranslate nohighlight">\\[f = \\alpha + \\langle I, B\\rangle \\tag{17}\\]'
    '</div><pre>print("$x$ \\\\frac")</pre><code>r"$\\delta$"</code>'
)


def test_htmlcheck_examples():
    failed, attempted = doctest.testmod(htmlcheck)
    assert attempted >= 5 and failed == 0


def test_htmlcheck_passes_a_good_page():
    assert htmlcheck.page_problems(GOOD_PAGE, mathjax_exists=lambda url: True) == []


def test_htmlcheck_finds_the_broken_list_item():
    problems = htmlcheck.page_problems(BROKEN_02)
    assert any("unrendered TeX $" in p for p in problems), problems
    assert any("\\mathbf" in p for p in problems), problems
    assert any("prose inside a formula: deconvolution in which" in p for p in problems), problems


@pytest.mark.parametrize(
    "page, problem",
    [
        ('<script src="https://cdn.jsdelivr.net/npm/mathjax@4/tex-chtml.js"></script>', "network"),
        ('<link rel="stylesheet" href="//fonts.example.org/a.css">', "network"),
        ('<p><span class="math">\\(x\\)</span></p>', "no local MathJax"),
        ('<script src="_static/mathjax/gone.js"></script><p class="math">\\(x\\)</p>', "not in"),
    ],
)
def test_htmlcheck_finds_pages_that_need_the_network(page, problem):
    problems = htmlcheck.page_problems(page, mathjax_exists=lambda url: "gone" not in url)
    assert any(problem in p for p in problems), problems


def test_ci_checks_the_built_pages():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    check = "python docs/site/_ext/htmlcheck.py docs/site/_build/html"
    assert check in ci and ci.index(check) > ci.index('eval "$docs_cmd"')
    conf = (ROOT / "docs" / "site" / "conf.py").read_text(encoding="utf-8")
    assert '"gcn_site"' in conf, "conf.py no longer loads the extension that checks each page"


def test_mathjax_is_shipped_with_its_license():
    conf = (ROOT / "docs" / "site" / "conf.py").read_text(encoding="utf-8")
    path = re.search(r'^mathjax_path = "([^"]+)"', conf, re.M).group(1)
    assert not re.match(r"[a-z]+:|//", path), "MathJax must come from the site, not a CDN"
    static = ROOT / "docs" / "site" / "_static"
    assert (static / path).is_file()
    assert "Apache License" in (static / path).parent.joinpath("LICENSE").read_text()


# ------------------------------------------------------------------ math markup of the notebooks


def display_math_problems(source):
    """Lines of a Markdown cell where MyST would not read ``$$`` as display math: a ``$$``
    that does not start its line, or a formula not set off by blank lines (as in a list item
    where it continues the item's text)."""
    lines = source.split("\n")
    problems = []
    for i, line in enumerate(lines):
        if "$$" not in line:
            continue
        if not line.lstrip().startswith("$$") or not line.rstrip().endswith("$$"):
            problems.append(f"line {i + 1}: $$ inside a line: {line.strip()[:60]}")
            continue
        before = lines[i - 1].strip() if i > 0 else ""
        after = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if before or after:
            problems.append(f"line {i + 1}: $$...$$ without a blank line around it")
    return problems


def test_display_math_problems_finds_a_formula_inside_a_paragraph():
    assert display_math_problems("text\n\n$$x = 1$$\n\nmore") == []
    assert display_math_problems("* item,\n\n  $$x = 1$$\n\n  more") == []
    assert len(display_math_problems("* item,\n  $$x = 1$$\n  more")) == 1
    assert len(display_math_problems("where $$x = 1$$ holds")) == 1


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_display_math_reads_in_myst(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = [
        f"cell {i}, {p}"
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "markdown"
        for p in display_math_problems("".join(cell["source"]))
    ]
    assert not problems, f"{path.name}: " + "; ".join(problems)
