"""notebooks/analysis.ipynb executes top to bottom against a smoke pipeline workdir (nbclient, a real kernel)."""

import os
import sys

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_pipeline import smoke_workdir  # noqa: E402  the same session workdir: run once, then skipped

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_analysis_notebook_executes(tmp_path_factory, monkeypatch):
    workdir, summary, _ = smoke_workdir(tmp_path_factory)
    monkeypatch.setenv("INSTRUCTGPT_WORKDIR", str(workdir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "analysis.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "| PPO-ptx |" in text and "RM pairwise accuracy" in text
    assert "**gold_heldout_by_family**" in text and "| lowercase |" in text  # the held-out family
    assert "SFT baseline draws per prompt: 1, their gold" in text and "gold - SFT draws: GPT" in text
    assert text.count("PROMPT:") == 3
    for name in ("GPT (step", "GPT prompted (step", "SFT (step", "PPO (step", "PPO-ptx (step"):
        assert name in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # training curves and the PPO plots
    assert f"{summary['policies']['ppo']['win_rate']:.3f}" in text
