"""The notebooks in ``notebooks/`` run top to bottom, within the time limits, and the figures
committed in them are not stale.

Each notebook is executed by nbclient in a kernel that runs this interpreter
(``sys.executable``), so it imports the same gcn_numpy, NumPy and PyTorch as the other tests,
whatever kernelspecs the machine has installed. A run fails on any cell error.

Staleness: the committed copy must hold the outputs of one top-to-bottom run (readers see the
figures without running anything), and every code cell that shows a figure there must still
draw one when re-executed; the number of figure cells must match.
"""

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TIME_LIMIT_S = 120  # the budget per notebook on a 2-core CPU
TOTAL_LIMIT_S = 360  # and for all of them together
DATA_LIMIT_BYTES = 1_000_000  # each file of learned weights in notebooks/data/
FIGURE = "image/png"
SECONDS = {}  # notebook name -> seconds of its run in this session


def kernel_manager(spec_root):
    """A kernel manager whose only kernelspec launches ipykernel with ``sys.executable``."""
    spec_dir = Path(spec_root) / "gcn-numpy-python"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (gcn_numpy tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(spec_root)])
    return KernelManager(kernel_name=spec_dir.name, kernel_spec_manager=specs)


def execute(path, spec_root, timeout=TIME_LIMIT_S):
    """Run the notebook at ``path`` in its own folder; returns ``(notebook, seconds)``."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        km=kernel_manager(spec_root),
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def figure_cells(nb):
    """``{index among code cells: number of PNG figures}`` for the cells that draw any."""
    counts = {
        i: sum(FIGURE in out.get("data", {}) for out in cell.outputs)
        for i, cell in enumerate(code_cells(nb))
    }
    return {i: n for i, n in counts.items() if n}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8, f"expected at least eight notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", sorted((NOTEBOOK_DIR / "data").glob("*")), ids=lambda p: p.name)
def test_weight_files_are_small(path):
    assert path.stat().st_size <= DATA_LIMIT_BYTES, f"{path.name} exceeds {DATA_LIMIT_BYTES} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs_of_one_run(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in code_cells(nb) if c.source.strip()]
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: commit it executed top to bottom in one run (execution counts {counts})"
    )
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: the committed outputs hold an error"
    assert figure_cells(nb), f"{path.name}: the committed notebook shows no figure"


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=lambda p: p.stem)
def executed(request, tmp_path_factory):
    """Each notebook executed once: ``(path, committed notebook, fresh notebook, seconds)``."""
    path = request.param
    committed = nbformat.read(path, as_version=4)
    fresh, seconds = execute(path, tmp_path_factory.mktemp("kernels"))
    SECONDS[path.name] = seconds
    return path, committed, fresh, seconds


def test_runs_within_time_limit(executed):
    path, _, _, seconds = executed
    assert seconds < TIME_LIMIT_S, f"{path.name} took {seconds:.0f} s (limit {TIME_LIMIT_S} s)"


def test_figures_are_not_stale(executed):
    path, committed, fresh, _ = executed
    assert figure_cells(fresh) == figure_cells(committed), (
        f"{path.name}: the figures drawn per cell changed; re-execute and commit the notebook "
        f"(committed {{cell: figures}}: {figure_cells(committed)}, now: {figure_cells(fresh)})"
    )


def test_all_notebooks_within_total_time():
    """Runs after the per-notebook tests (pytest keeps this file's order); skipped when only
    some notebooks were executed in this session."""
    missing = [p.name for p in NOTEBOOKS if p.name not in SECONDS]
    if missing:
        pytest.skip(f"not every notebook ran in this session: {', '.join(missing)}")
    total = sum(SECONDS.values())
    times = ", ".join(f"{name.split('_')[0]} {s:.0f} s" for name, s in sorted(SECONDS.items()))
    print(f"notebook run times: {times}; total {total:.0f} s")  # shown by pytest -rP
    assert total < TOTAL_LIMIT_S, f"notebooks took {total:.0f} s together ({times})"
