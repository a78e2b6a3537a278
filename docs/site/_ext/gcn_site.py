"""The sources this site generates from the repository, and the check of what it built.

Sphinx reads only what lies under ``docs/site``; the repository's own files stay where a
reader of the repository finds them. Before reading, this extension writes (all ignored by
git, rewritten only where their text changed, so an unchanged page is not read again):

- ``notebooks/*.ipynb``: copies of ``notebooks/``, each with a line under its title that
  offers the real notebook for download and links its neighbours, plain mentions such as
  "notebook 05" made links, and long code cells that draw a figure collapsed (the myst-nb tag
  ``hide-input``; a cell tagged ``show-input`` in the notebook stays open). Outputs are the
  committed ones: nothing is executed.
- ``_generated/readme/NAME.md``: the README's text between ``<!-- site:NAME -->`` and
  ``<!-- /site:NAME -->``, headings raised so that its highest is a level-2 heading, and
  ``_generated/repo/...``: the Markdown files of ``docs/`` and ``benchmarks/`` that the site
  shows. In both, links to repository files become links to their pages on the site, images
  are copied under ``_generated/img/``, and a file named by its own path in the link text is
  named once.
- ``_generated/gallery.md`` and ``_generated/thumbs/*.png``: the notebook gallery of the
  landing page, its thumbnails cut from figures the notebooks already show.

After writing the pages it runs ``htmlcheck`` on them: each page that shows TeX MathJax never
typeset, or loads anything from the network, is a warning, so ``-W`` fails the build.
"""

import base64
import io
import json
import re
import shutil
from pathlib import Path

import htmlcheck
from sphinx.util import logging

logger = logging.getLogger(__name__)

SITE = Path(__file__).resolve().parents[1]
ROOT = SITE.parents[1]
GENERATED = SITE / "_generated"

# Repository Markdown files shown as pages of the site: repository path -> page (docname).
PAGES = {
    "docs/frame.md": "frame",
    "docs/convergence.md": "convergence",
    "docs/numba_design.md": "numba_design",
    "docs/reference.md": "reference",
    "docs/paper/results-paper.md": "results-paper",
    "docs/paper/results-cpu.md": "results-cpu",
    "benchmarks/results_cpu.md": "benchmarks",
}
README_PAGE = "install"  # where the README's own links to README.md land

# The gallery: a short title, one line, and which figure (0 = the notebook's first) makes the
# thumbnail, with the part of it to keep as (left, top, right, bottom) fractions. A notebook
# missing here still appears, under its own heading, with its first figure.
GALLERY = {
    "01_prototype_model": (
        "The prototype model in the plane",
        "Two-pixel images: Gaussian pieces cut by three lines, Langevin chains, and the local "
        "modes that reconstruct themselves (eqs. 7–10).",
        1,
        None,
    ),
    "02_theorem1_piecewise_gaussian": (
        "Theorem 1: piecewise Gaussian",
        "δ bottom-up and B top-down by hand, B = ∂f/∂I checked, and every piece along a line "
        "through image space counted.",
        1,
        None,
    ),
    "03_local_modes_autoencoding": (
        "Proposition 2: local modes auto-encode",
        "Exact auto-encodings for convex f; with signed weights, modes on piece boundaries, "
        "convex combinations of the pieces' means.",
        4,
        (0, 0, 0.5, 1),
    ),
    "04_learning_a_texture": (
        "Learning a texture",
        "Algorithm 1 on a brick image: samples over the iterations, how close they are to the "
        "training patch, and the filters.",
        3,
        None,
    ),
    "05_contrastive_divergence": (
        "Contrastive divergence",
        "Proposition 3 checked on a trained net, how often its premise holds, and Figure 3's "
        "reconstructions beside two baselines.",
        2,
        None,
    ),
    "06_discriminative_to_generative": (
        "From discriminative to generative",
        "Proposition 1: a texture-vs-noise classifier read as a generative ConvNet and sampled; "
        "the sign of log Z_c.",
        2,
        None,
    ),
    "07_pieces_of_a_learned_net": (
        "The pieces of a learned net",
        "A plane through image space coloured by activation pattern, and Langevin read as "
        "auto-encoding.",
        1,
        (0, 0, 0.5, 1),
    ),
    "08_cd_hopfield_memory": (
        "Contrastive divergence and Hopfield memory",
        "After one-step CD, are the training images fixed points or local modes, and do "
        "corrupted copies come back?",
        1,
        None,
    ),
    "09_layer_growing": (
        "Growing the net layer by layer",
        "Section 7's layer growing: the samples at the end of each stage as the receptive "
        "field widens, and growing against all layers at once on an equal budget.",
        0,
        None,
    ),
    "10_sigma_score_matching_chains": (
        "σ, score matching and the chains",
        "What σ² = 1 hides, one-step CD as score matching, and long runs of a learned "
        "model's own Langevin dynamics.",
        0,
        None,
    ),
}
THUMB_SIZE = (480, 300)  # pixels; shown at half that, so sharp on high-resolution screens
HIDE_INPUT_LINES = 15  # a code cell that draws a figure is collapsed from this many lines

LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")
# Text where nothing is rewritten: fenced code, inline code, math, links, HTML comments.
PROTECTED = re.compile(
    r"```.*?```|~~~.*?~~~|`[^`\n]+`|\$\$.*?\$\$|\$[^$\n]+\$|<!--.*?-->"
    r"|!?\[(?:[^\[\]]|\[[^\]]*\])*\]\([^)\s]*\)",
    re.S,
)
MENTION = re.compile(r"\b([Nn]otebooks?) (\d\d(?:(?:, | and |-|–)\d\d)*)\b")
FENCE = re.compile(r"^\s*(```|~~~)")


def _write(path, data):
    """Write ``data`` (str or bytes) to ``path`` unless it already holds exactly that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if not path.is_file() or path.read_bytes() != raw:
        path.write_bytes(raw)


def _notebooks():
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def _outside_protected(text, rewrite):
    """Apply ``rewrite`` to the parts of Markdown ``text`` that are not code, math or links."""
    out, last = [], 0
    for match in PROTECTED.finditer(text):
        out += [rewrite(text[last : match.start()]), match.group(0)]
        last = match.end()
    return "".join(out + [rewrite(text[last:])])


def _mention_links(text, target):
    """Make "notebook 05" and "notebooks 04, 05 and 08" links; ``target(number)`` or None."""

    def link(match):
        word, numbers = match.groups()
        parts = re.split(r"(, | and |-|–)", numbers)
        if any(target(p) is None for p in parts[::2]):
            return match.group(0)
        if len(parts) == 1:
            return f"[{word} {numbers}]({target(numbers)})"
        linked = [p if i % 2 else f"[{p}]({target(p)})" for i, p in enumerate(parts)]
        return f"{word} " + "".join(linked)

    return _outside_protected(text, lambda t: MENTION.sub(link, t))


def _notebook_target(prefix):
    names = {nb.stem[:2]: nb.name for nb in _notebooks()}
    return lambda number: f"{prefix}{names[number]}" if number in names else None


def _repo_link(source):
    """A function rewriting one Markdown link of the repository file ``source`` for the site."""

    def rewrite(match):
        bang, text, target = match.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return match.group(0)  # a web address or an anchor: unchanged
        path, _, anchor = target.partition("#")
        repo_path = (source.parent / path).resolve().relative_to(ROOT).as_posix()
        if bang:
            _write(GENERATED / "img" / repo_path, (ROOT / repo_path).read_bytes())
            return f"![{text}](/_generated/img/{repo_path})"
        page = PAGES.get(repo_path)
        if repo_path == "README.md":
            page = README_PAGE
        if page is not None or (repo_path.startswith("notebooks/") and path.endswith(".ipynb")):
            doc = f"/{page}.md" if page is not None else f"/{repo_path}"
            label = "" if text.strip("`") == repo_path else text  # empty: the page's title
            return f"[{label}]({doc}{'#' + anchor if anchor else ''})"
        if text.strip("`") == repo_path:
            return f"`{repo_path}`"  # a file of the repository that is no page: named once
        return f"{text} (`{repo_path}`)"

    return rewrite


def _site_markdown(text, source):
    """Markdown of the repository file ``source`` with its links made to work on the site."""
    link = _repo_link(source)

    def rewrite(match):
        if match.group(0).startswith("`"):
            code = match.group(0).strip("`")  # a file the site shows, named in code: linked
            return f"[{match.group(0)}](/{PAGES[code]}.md)" if code in PAGES else match.group(0)
        return link(match)

    spans = re.compile(f"{LINK.pattern}|`[^`\\n]+`")
    parts, last = [], 0
    for match in re.finditer(r"```.*?```|~~~.*?~~~", text, re.S):  # fenced code: as it is
        parts += [spans.sub(rewrite, text[last : match.start()]), match.group(0)]
        last = match.end()
    text = "".join(parts + [spans.sub(rewrite, text[last:])])
    return _mention_links(text, _notebook_target("/notebooks/"))


def _raise_headings(text):
    """Shift the ATX headings of ``text`` so that the highest is a level-2 heading."""
    lines, fenced, levels = text.split("\n"), False, []
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := re.match(r"(#{1,6}) ", line)):
            levels.append(len(m.group(1)))
    shift = min(levels, default=2) - 2
    out, fenced = [], False
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and shift > 0 and re.match(r"#{1,6} ", line):
            line = line[shift:]
        out.append(line)
    return "\n".join(out)


def _readme_sections():
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    names = re.findall(r"^<!-- site:([a-z-]+) -->$", text, re.M)
    for name in names:
        start, end = f"<!-- site:{name} -->", f"<!-- /site:{name} -->"
        if text.count(start) != 1 or text.count(end) != 1 or text.index(end) < text.index(start):
            raise RuntimeError(f"README.md: {start} needs exactly one {end} after it")
        section = text[text.index(start) + len(start) : text.index(end)].strip("\n") + "\n"
        page = _raise_headings(_site_markdown(section, readme))
        _write(GENERATED / "readme" / f"{name}.md", page)


def _repo_pages():
    for repo_path in PAGES:
        source = ROOT / repo_path
        text = source.read_text(encoding="utf-8")
        _write(GENERATED / "repo" / repo_path, _site_markdown(text, source))


def _figures(nb):
    return [
        out["data"]["image/png"]
        for cell in nb["cells"]
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]


def _thumbnail(nb, index, box, path):
    from PIL import Image  # an install requirement of gcn_numpy

    figures = _figures(nb)
    if not figures:
        return False
    data = figures[index] if index < len(figures) else figures[0]
    image = Image.open(io.BytesIO(base64.b64decode("".join(data)))).convert("RGB")
    if box is not None:
        w, h = image.size
        image = image.crop(tuple(round(f * s) for f, s in zip(box, (w, h, w, h), strict=True)))
    image.thumbnail(THUMB_SIZE, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", THUMB_SIZE, "white")
    canvas.paste(image, ((THUMB_SIZE[0] - image.width) // 2, (THUMB_SIZE[1] - image.height) // 2))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    _write(path, buffer.getvalue())
    return True


def _heading(nb):
    """The notebook's title (its first heading) without the leading number."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.search(r"^# (?:\d+\. )?(.+)$", "".join(cell["source"]), re.M)
            if m:
                return m.group(1).strip()
    return None


def _title(path, nb):
    return GALLERY.get(path.stem, (None,))[0] or _heading(nb) or path.stem


def _gallery(notebooks):
    cards = []
    for path, nb in notebooks:
        title = _title(path, nb)
        _, summary, index, box = GALLERY.get(path.stem, (None, "", 0, None))
        thumb = GENERATED / "thumbs" / f"{path.stem}.png"
        image = ""
        if _thumbnail(nb, index, box, thumb):
            image = f"[![{title}](_generated/thumbs/{path.stem}.png)](notebooks/{path.name})\n\n"
        cards.append(
            f":::{{container}} nb-card\n{image}"
            f"**[{path.stem[:2]} · {title}](notebooks/{path.name})**\n\n{summary}\n:::\n"
        )
    _write(GENERATED / "gallery.md", "::::{container} nb-gallery\n" + "\n".join(cards) + "::::\n")


def _header(i, notebooks):
    """The line under a notebook's title: its download, its neighbours."""
    path, _ = notebooks[i]
    items = [f"{{download}}`Download {path.name} <../../../notebooks/{path.name}>`"]
    if i > 0:
        prev, nb = notebooks[i - 1]
        items.append(f"← [{prev.stem[:2]} · {_title(prev, nb)}]({prev.name})")
    if i + 1 < len(notebooks):
        nxt, nb = notebooks[i + 1]
        items.append(f"[{nxt.stem[:2]} · {_title(nxt, nb)}]({nxt.name}) →")
    return ":::{container} nb-header\n" + " · ".join(items) + "\n:::\n"


def _site_notebook(i, notebooks):
    """The copy of a notebook that the site renders (outputs untouched)."""
    _, nb = notebooks[i]
    nb = json.loads(json.dumps(nb))  # a copy
    target = _notebook_target("")
    first = True
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            source = _mention_links(source, target)
            if first and (m := re.search(r"^# .*$", source, re.M)):
                source = f"{source[: m.end()]}\n\n{_header(i, notebooks)}{source[m.end() :]}"
                first = False
            cell["source"] = source
        elif cell["cell_type"] == "code":
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            draws = any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
            long = source.count("\n") + 1 >= HIDE_INPUT_LINES
            if draws and long and "show-input" not in tags and "hide-input" not in tags:
                tags.append("hide-input")
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def generate_sources(app=None, config=None):
    """Write every generated source (see the module's docstring)."""
    notebooks = [(p, json.loads(p.read_text(encoding="utf-8"))) for p in _notebooks()]
    copies = SITE / "notebooks"
    copies.mkdir(exist_ok=True)
    for stale in set(copies.glob("*.ipynb")) - {copies / p.name for p, _ in notebooks}:
        stale.unlink()
    for i, (path, _) in enumerate(notebooks):
        _write(copies / path.name, _site_notebook(i, notebooks))
    shutil.rmtree(GENERATED / "readme", ignore_errors=True)
    _readme_sections()
    _repo_pages()
    _gallery(notebooks)


def check_pages(app, exception):
    """Warn about every page with unrendered TeX or a network load (``-W``: an error)."""
    if exception is not None or app.builder.format != "html":
        return
    for problem in htmlcheck.site_problems(app.outdir):
        logger.warning("htmlcheck: %s", problem)


def setup(app):
    app.connect("config-inited", generate_sources)
    app.connect("build-finished", check_pages)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
