"""Paper Figs. 4-5 on the digits zoo: intersections of inverse sets.

Fig. 4: two output units of the same layer, the logits of "3" and of "5", each alone and both at
once, all in [4, 8]. Fig. 5: a hidden unit (features.conv2 channel 5 at the centre, in its high
band [3.3, 4.0]) intersected with an output unit (the logit of "3" in [8, 12]). All members of
an intersection share one forward pass of the classifier per step.

    .venv/bin/python examples/digits_intersections.py   # writes docs/img/digits_intersections.png
"""
from __future__ import annotations

from pathlib import Path

import torch

import feassample as fs
from feassample.models import load_classifier, load_generator
from feassample.models.neurons import digits_neuron
from feassample.viz import sample_rows

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "digits_intersections.png"


def main(n: int = 500, out: Path = OUT):
    torch.set_num_threads(1)
    model, G = load_classifier(), load_generator()
    unit = lambda layer, u, z1, z2: digits_neuron(layer, u, z1, z2, model=model, G=G)
    three, five = unit("classifier.fc2", 3, 4.0, 8.0), unit("classifier.fc2", 5, 4.0, 8.0)
    hidden, out3 = unit("features.conv2", (5, 4, 4), 3.3, 4.0), unit("classifier.fc2", 3, 8.0, 12.0)
    cases = [("fc2[3] in [4, 8]", three), ("fc2[5] in [4, 8]", five),
             ("fc2[3] and fc2[5]\nboth in [4, 8]", fs.Intersection([three, five])),
             ("conv2[5,4,4] in [3.3, 4]", hidden),
             ("conv2[5,4,4] in [3.3, 4]\nand fc2[3] in [8, 12]", fs.Intersection([hidden, out3]))]
    rows = []
    for label, problem in cases:
        s = fs.sample(problem, n=n, k=10, seed=0, method="walk", band_step=None)  # the paper's walk
        print(f"{label.replace(chr(10), ' ')}: {s.summary()}")
        rows.append((label, s))
    sample_rows(rows, out, title="intersections of inverse sets (titles: the constrained values)")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
