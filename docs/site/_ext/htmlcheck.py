"""Checks of the built site that a reader would otherwise find first.

A page fails when its text shows TeX that was never typeset, or when it loads a script,
stylesheet, font or image from the network (the site must work offline: on a train, on a
cluster node)::

    python docs/site/_ext/htmlcheck.py docs/site/_build/html

Unrendered TeX is looked for in the text a reader sees: everything outside the elements
MathJax typesets (class ``math``), code and printed output (``pre``, ``code``), scripts and
styles. There, ``$``, ``\\(``, ``\\[`` and any TeX control word (``\\mathbf``, ``\\frac``, ...)
mean that a formula reached the page as source. The site's own build (``conf.py``) runs the
same check after writing the pages, as warnings that ``-W`` turns into errors.
"""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

# Elements whose text is not prose: typeset math, code, printed output, scripts.
SKIP_TAGS = {"script", "style", "pre", "code", "kbd", "samp", "textarea", "svg", "math"}
SKIP_CLASSES = {"math", "highlight"}
VOID_TAGS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip
# Attributes through which a page loads something (not links the reader may follow).
LOADING = {
    "script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src",
    "video": "src", "audio": "src", "embed": "src", "object": "data",
}  # fmt: skip
NETWORK = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)
RAW_TEX = re.compile(r"\$|\\[()\[\]]|\\[A-Za-z]{2,}")
# Inside a formula, three words in a row (outside \text{...}) are prose that a stray ``$``
# pulled into the math.
TEXT_IN_MATH = re.compile(r"\\(?:text\w*|mathrm|operatorname|mbox|hbox)\s*\{[^{}]*\}|\\[A-Za-z]+")
WORDS = re.compile(r"(?<![A-Za-z])[A-Za-z]{2,}(?:\s+[A-Za-z]{2,}){2,}(?![A-Za-z])")
# MathJax's own stylesheet links and a data: URI are local; only these schemes load locally.
LOCAL_SCHEMES = re.compile(r"^\s*(?:data|blob|file):", re.I)


class _PageScan(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []  # (tag, skips) of the open elements
        self.skipping = 0  # how many open elements hide their text
        self.text = []  # (line, text) outside math and code
        self.loads = []  # (line, tag, url) of what the page loads
        self.math = 0  # elements MathJax typesets
        self.in_math = 0  # how many open elements are math
        self.formulas = []  # (line, TeX) of each math element

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag in LOADING and attrs.get(LOADING[tag]):
            rel = (attrs.get("rel") or "").lower()
            if tag != "link" or rel not in {"canonical", "alternate", "search", "next", "prev"}:
                self.loads.append((self.getpos()[0], tag, attrs[LOADING[tag]]))
        if "math" in classes:
            self.math += 1
            if not self.in_math:
                self.formulas.append((self.getpos()[0], ""))
        if tag in VOID_TAGS:
            return
        skips = tag in SKIP_TAGS or bool(classes & SKIP_CLASSES)
        self.stack.append((tag, skips, "math" in classes))
        self.skipping += skips
        self.in_math += "math" in classes

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID_TAGS or all(t != tag for t, _, _ in self.stack):
            return  # a stray end tag: nothing to close
        while self.stack:
            open_tag, skips, math = self.stack.pop()
            self.skipping -= skips
            self.in_math -= math
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self.in_math:
            line, tex = self.formulas[-1]
            self.formulas[-1] = (line, tex + data)
        if not self.skipping and data.strip():
            self.text.append((self.getpos()[0], data))


def page_problems(html, mathjax_exists=None):
    r"""What is wrong with one HTML page, as ``["line N: ...", ...]`` (empty when nothing).

    Parameters
    ----------
    html : str
        The page.
    mathjax_exists : callable or None
        Given the ``src`` of a script whose name contains ``mathjax``, whether that file is part
        of the site; ``None`` skips that check (a page checked on its own).

    Returns
    -------
    list of str
        One line per problem: TeX outside math elements, prose inside them, anything loaded
        from the network, math on a page that loads no MathJax of its own.

    Examples
    --------
    >>> page_problems(r'<p>a <span class="math">\(\mathbf{I}\)</span> is fine</p>')
    []
    >>> print(*page_problems(r'<li>$$\mathbf{B} = 1$$</li>'))
    line 1: unrendered TeX $ in: $$\mathbf{B} = 1$$
    >>> print(*page_problems(r'<p><span class="math">\( are the basis functions \)</span></p>'))
    line 1: prose inside a formula: are the basis functions
    >>> print(*page_problems('<script src="https://cdn.example.org/mathjax/tex-svg.js"></script>'))
    line 1: <script> loads https://cdn.example.org/mathjax/tex-svg.js from the network
    """
    scan = _PageScan()
    scan.feed(html)
    scan.close()
    problems = []
    for line, text in scan.text:
        match = RAW_TEX.search(text)
        if match:
            snippet = " ".join(text.split())[:80]
            problems.append(f"line {line}: unrendered TeX {match.group(0)} in: {snippet}")
    for line, tex in scan.formulas:
        match = WORDS.search(TEXT_IN_MATH.sub(" ", tex))
        if match:
            problems.append(f"line {line}: prose inside a formula: {match.group(0)}")
    mathjax = []
    for line, tag, url in scan.loads:
        if NETWORK.match(url):
            problems.append(f"line {line}: <{tag}> loads {url} from the network")
        elif tag == "script" and "mathjax" in url.lower() and not LOCAL_SCHEMES.match(url):
            mathjax.append((line, url))
    if mathjax_exists is not None:
        for line, url in mathjax:
            if not mathjax_exists(url):
                problems.append(f"line {line}: MathJax script {url} is not in the site")
        if scan.math and not mathjax:
            problems.append(f"{scan.math} math elements but no local MathJax script")
    return problems


def site_problems(outdir):
    r"""``page_problems`` of every HTML page under ``outdir``, each line prefixed by the page.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "a.html").write_text(r'<p>\frac{1}{2}</p>')
    ...     print(*site_problems(d))
    a.html: line 1: unrendered TeX \frac in: \frac{1}{2}
    """
    outdir = Path(outdir)
    problems = []
    for page in sorted(outdir.rglob("*.html")):
        rel = page.relative_to(outdir).as_posix()
        if rel.startswith(("_static/", "_sources/", "_downloads/", "_images/")):
            continue  # files the site serves, not pages of it

        def exists(url, page=page):
            return (page.parent / url.split("?")[0].split("#")[0]).resolve().is_file()

        html = page.read_text(encoding="utf-8")
        problems += [f"{rel}: {p}" for p in page_problems(html, mathjax_exists=exists)]
    return problems


def main(argv=None):
    """Check the site built in ``argv[0]``; prints each problem, returns 1 if there are any."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0], "index.html").is_file():
        print("usage: python docs/site/_ext/htmlcheck.py BUILT_SITE_DIR", file=sys.stderr)
        return 2
    problems = site_problems(argv[0])
    for problem in problems:
        print(problem)
    pages = sum(1 for _ in Path(argv[0]).rglob("*.html"))
    print(f"htmlcheck: {pages} pages, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
