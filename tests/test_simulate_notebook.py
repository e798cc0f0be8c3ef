"""The what-if notebook runs from top to bottom (so it never rots).

Needs the notebook test dependencies (nbclient, nbformat, ipykernel); without them the test
is skipped with the reason. It executes in ``examples/`` like a user who opened it there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "what_if.ipynb"


def test_what_if_notebook_executes() -> None:
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel")
    pytest.importorskip("pandas", reason="the notebook uses the frames extra (pandas)")
    pytest.importorskip("matplotlib", reason="the notebook uses the plot extra (matplotlib)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    text = "\n".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    )
    assert "replay of" in text and "compare A=" in text
    assert "releases:" in text
