"""Figures are drawn without touching matplotlib's global state: no backend switch, no pyplot
figure left open, every PNG written by ``viz.save_figure``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from feassample import viz

# Run in a fresh interpreter: the user's backend is chosen before feassample is imported; the
# old code forced "Agg" on the first drawing.
SCRIPT = r"""
import json, sys
from pathlib import Path
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
import torch
torch.set_num_threads(1)
import feassample as fs
from feassample import viz
from feassample.viz.contrastive import plot_paths

out = Path(sys.argv[1])
p = fs.LogisticHalfspace.random(d=2, z1=0.6, z2=0.9, w_seed=0)
s = fs.sample(p, n=30, k=5, seed=0)
viz.plot_run(p, s, out / "run.png")
viz.sample_rows([("a", s), ("b", s)], out / "rows.png")

class E:  # the fields plot_paths reads
    def __init__(self, t, p):
        self.true_class, self.probe_class = t, p
        self.path = torch.softmax(torch.randn(50, 4), 1)

plot_paths({"A": [E(0, 1), E(2, 3)]}, out / "paths.png")
print(json.dumps({"backend": matplotlib.get_backend(), "figures": plt.get_fignums()}))
"""


def test_drawing_keeps_the_users_backend_and_leaves_no_pyplot_figure(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"backend": "svg", "figures": []}
    for name in ("run.png", "rows.png", "paths.png"):
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000, name


def test_save_figure_writes_a_png_of_the_requested_size(tmp_path):
    fig = viz.new_figure(figsize=(2.0, 1.0))
    fig.subplots().imshow(torch.rand(4, 4).numpy())
    path = viz.save_figure(fig, tmp_path / "deep" / "f.png", dpi=50)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # PNG header: width and height, big-endian, at bytes 16..24 (2 x 1 inches at 50 dpi)
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (100, 50)


def test_no_library_module_switches_the_backend_or_uses_pyplot():
    root = Path(viz.__file__).resolve().parent
    offenders = [str(f.relative_to(root)) for f in root.rglob("*.py")
                 if "matplotlib.use(" in f.read_text() or "import matplotlib.pyplot" in f.read_text()]
    assert offenders == []


def test_the_overlap_heatmap_labels_each_cell_as_the_matrix_says(tmp_path):
    import math

    from feassample.viz.analysis import overlap_figure, plot_overlap
    matrix = {"runs": ["a", "b", "c"], "inside": [[10, 4, 0], [4, 8, None], [0, None, 5]],
              "log_prob": [[0.0, math.log(0.4), -math.inf], [math.log(0.5), 0.0, None], [-math.inf, None, 0.0]],
              "log_prob_se": [[0.0, 0.25, math.inf], [0.2, 0.0, None], [math.inf, None, 0.0]]}
    fig = overlap_figure(matrix)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in fig.axes[0].texts}
    assert texts[(0, 1)] == "0.4\n± 0.1"                    # P(b | a) = 0.4, SE 0.4 x 0.25
    assert texts[(1, 0)] == "0.5\n± 0.1"
    assert texts[(0, 2)] == texts[(2, 0)] == "0\n(no row)"
    assert (1, 2) not in texts and (2, 1) not in texts      # different codes: no number, a grey cell
    assert texts[(0, 0)] == "1\n± 0"
    out = plot_overlap(matrix, tmp_path / "o.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no run"):
        overlap_figure({"runs": []})
