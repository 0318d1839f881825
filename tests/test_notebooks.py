"""The notebooks execute top to bottom in FAST mode (tiny data and models) and are stored clean."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["ablation_context.ipynb", "ablation_unet_family.ipynb", "receptive_field.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_fast_mode(name, tmp_path, monkeypatch):
    book = nbformat.read(REPO / "notebooks" / name, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs"
    monkeypatch.setenv("FAST", "1")
    monkeypatch.setenv("SEGLAB_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    client = nbclient.NotebookClient(
        book,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO / "notebooks")}},
    )
    client.execute()
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
