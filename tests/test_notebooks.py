"""The notebooks in notebooks/ run top to bottom in their quick mode and show what they promise.

Each notebook runs with ``GEOCISS_NOTEBOOK_QUICK=1`` in a fresh ``python3`` kernel of this very
interpreter (a kernelspec written for the test, first on ``JUPYTER_PATH``, so a user's own
``python3`` kernel cannot stand in), with a temporary working folder. A cell error fails the test.
Then the outputs of the cells tagged ``table``, ``maps`` and ``chart`` are checked, and a probe
cell appended by the test reads the notebook's final state (its table, the files it wrote).
"""

import base64
import io
import json
import os
import sys
from pathlib import Path

import matplotlib.image
import nbformat
import pytest
import rasterio
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PROBE = "__probe__ = "


@pytest.fixture
def quick_kernel(tmp_path, monkeypatch):
    """Quick mode, inline figures, one thread, a ``python3`` kernelspec of ``sys.executable``."""
    jupyter = tmp_path / "jupyter"
    write_kernel_spec(jupyter / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("GEOCISS_NOTEBOOK_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # a non-inline backend would hide figures
    # one torch thread per kernel: with pytest -n 2 on 2 shared cores, torch's default (one
    # thread per core, spin-waiting) made the tiny trainings about 7x slower (105 s -> 15 s)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    work = tmp_path / "work"
    work.mkdir()
    return work


def execute(name, work, probe):
    """Run a notebook in ``work``; return it and the JSON that the probe expression printed."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    probe_cell = f"import json\nprint({PROBE!r} + json.dumps({probe}))"
    nb.cells.append(nbformat.v4.new_code_cell(probe_cell))
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    kernel_python = nb.cells[0].outputs[0]["text"].strip()
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    printed = nb.cells[-1].outputs[0]["text"]
    return nb, json.loads(printed.split(PROBE, 1)[1])


def tagged(nb, tag):
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


def figure(cell):
    """The figure a cell displayed, decoded (rows, columns, channels)."""
    pngs = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1, f"expected one figure, got {len(pngs)}"
    return matplotlib.image.imread(io.BytesIO(base64.b64decode(pngs[0])), format="png")


def shown_text(cell):
    data = [o["data"] for o in cell.outputs if "data" in o]
    return "".join(d["text/plain"] for d in data if "text/plain" in d)


def test_quickstart(quick_kernel):
    probe = (
        "{'index': list(table.index), 'columns': list(table.columns),"
        " 'values': table.fillna(-1).to_numpy().tolist(),"
        " 'maps': {m: str(p) for m, p in maps.items()}}"
    )
    nb, state = execute("quickstart.ipynb", quick_kernel, probe)

    # the demo's story (geociss.demo): three base classes, then tree; car and clutter left out
    rows = ["step 0 (before tree)", "step 1: finetune", "step 1: mib"]
    assert state["index"] == rows
    classes = ["impervious surfaces", "building", "low vegetation", "tree"]
    assert state["columns"] == ["old", "new", "all", *classes]
    assert all(v == -1 or 0 <= v <= 100 for row in state["values"] for v in row)
    assert state["values"][0][1] == -1  # no tree mIoU before tree is learned
    assert state["values"][0][6] == -1  # nor a tree IoU
    assert all(r in shown_text(tagged(nb, "table")) for r in rows)
    runs = quick_kernel / "quickstart-quick" / "runs"
    for method in ("finetune", "mib"):
        assert (runs / f"{method}-add-tree" / "step1" / "bundle.safetensors").is_file()

    assert set(state["maps"]) == {"finetune", "mib"}
    for method, path in state["maps"].items():
        tif = quick_kernel / path
        with rasterio.open(tif) as src:
            assert src.crs is not None and src.colormap(1)[3][:3] == (0, 255, 0)  # tree
            assert set(src.read(1).ravel().tolist()) <= set(range(len(classes)))
        assert tif.with_suffix(".qml").is_file(), method

    assert figure(tagged(nb, "scene")).shape[1] > 500
    maps = figure(tagged(nb, "maps"))  # image, ground truth, fine-tune, MiB side by side
    assert maps.shape[1] > 3 * maps.shape[0]


def test_comparison(quick_kernel):
    probe = (
        "{'cells': [list(i) for i in results.index],"
        " 'of_joint': results['all / joint'].fillna(-1).tolist()}"
    )
    nb, state = execute("comparison.ipynb", quick_kernel, probe)

    cells = [["notebook-quick", "4-1", m] for m in ("finetune", "mib", "joint")]
    assert state["cells"] == cells
    assert state["of_joint"][2] == pytest.approx(1.0)
    runs = quick_kernel / "comparison-quick" / "runs"
    assert (runs / "mib_notebook-quick_4-1_s0" / "step1" / "bundle.safetensors").is_file()
    assert all(m in shown_text(tagged(nb, "table")) for m in ("finetune", "mib", "joint"))
    assert figure(tagged(nb, "chart")).shape[0] > 100


@pytest.mark.parametrize("name", ["quickstart.ipynb", "comparison.ipynb"])
def test_notebooks_are_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"
