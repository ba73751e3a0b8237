"""Paper Fig. 1 on the digits zoo: samples of one output unit at six activation bands.

The unit is classifier.fc2[3], the logit of the digit "3" (on real test "3"s it ranges over
about 5..19; on other digits it is mostly negative). Each row: 10 of 500 samples, spread over
the band, titled with their logit.

    .venv/bin/python examples/digits_bands.py        # writes docs/img/digits_bands.png
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

import feassample as fs
from feassample.models import load_classifier, load_generator
from feassample.models.neurons import digits_neuron
from feassample.viz import sample_rows

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "digits_bands.png"
BANDS = [(16.0, 18.0), (12.0, 14.0), (8.0, 10.0), (4.0, 6.0), (0.0, 2.0), (-4.0, -2.0)]


def main(n: int = 500, out: Path = OUT) -> list:
    torch.set_num_threads(1)
    model, G = load_classifier(), load_generator()
    rows, table = [], ["| band | status | n | seed steps | walk steps | model evals | wall s |",
                       "|---|---|---|---|---|---|---|"]
    for z1, z2 in BANDS:
        q = digits_neuron("classifier.fc2", 3, z1, z2, model=model, G=G)
        t0 = time.perf_counter()
        s = fs.sample(q, n=n, k=10, seed=0, method="walk", band_step=None)  # the paper's walk, as published
        wall = time.perf_counter() - t0
        rows.append((f"[{z1:g}, {z2:g}]", s))
        table.append(f"| [{z1:g}, {z2:g}] | {s.status} | {len(s)} | {s.stats['seed_steps']} | "
                     f"{s.stats['rounds']} | {s.n_evals} | {wall:.2f} |")
    sample_rows(rows, out, title="classifier.fc2[3] (logit of '3') at six bands, 10 of 500 samples per row")
    print("\n".join(table))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
