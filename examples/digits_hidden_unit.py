"""Paper Fig. 3 on the digits zoo: a hidden convolutional unit at two activation bands.

The unit is channel C of features.conv2 at the centre position (4, 4) of its 8x8 map, with
bands taken from the unit's distribution over real test digits: a typical band (the 50th to
70th percentile) and a high one (95th to 99.5th).

    .venv/bin/python examples/digits_hidden_unit.py  # writes docs/img/digits_hidden_unit.png
"""
from __future__ import annotations

from pathlib import Path

import torch

import feassample as fs
from feassample.models import digits_data, load_classifier, load_generator
from feassample.models.neurons import digits_neuron
from feassample.problems.neuron import LayerProbe
from feassample.viz import sample_rows

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "digits_hidden_unit.png"
CHANNEL, POS = 5, (4, 4)


def bands_from_data(model) -> list[tuple[float, float]]:
    x, _ = digits_data("test")
    with torch.no_grad():
        act = LayerProbe(model, ["features.conv2"])(x)["features.conv2"][:, CHANNEL, POS[0], POS[1]]
    q = torch.quantile(act, torch.tensor([0.5, 0.7, 0.95, 0.995]))
    return [(round(float(q[0]), 2), round(float(q[1]), 2)), (round(float(q[2]), 2), round(float(q[3]), 2))]


def main(n: int = 500, out: Path = OUT):
    torch.set_num_threads(1)
    model, G = load_classifier(), load_generator()
    rows = []
    for z1, z2 in bands_from_data(model):
        q = digits_neuron("features.conv2", (CHANNEL, *POS), z1, z2, model=model, G=G)
        s = fs.sample(q, n=n, k=10, seed=0, method="walk", band_step=None)  # the paper's walk, as published
        print(f"[{z1}, {z2}]: {s.summary()}")
        rows.append((f"conv2[{CHANNEL},{POS[0]},{POS[1]}]\nin [{z1:g}, {z2:g}]", s))
    sample_rows(rows, out, title=f"hidden unit features.conv2 channel {CHANNEL} at ({POS[0]}, {POS[1]}): typical vs high band")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
