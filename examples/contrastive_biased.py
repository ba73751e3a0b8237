"""The CDeepEx paper's biased-data experiment (its Fig. 6) on the digits: "why not 8?".

The classifier ``digits_cnn_square8`` was trained with a 3x3 white square stamped near the top-left
corner of every training "8" (``feassample/models/biased.py``); the generator
``digits_vae_square8`` is a VAE trained on the same biased training images (the paper's generator
is trained on the classifier's data, so it can draw the square). For 20 clean test digits that are
not 8s, we ask "why your class, not 8?". The explanation's added part (red: G(ze) > G(z0)) should
sit on the square. Control: the same question, generator and images with the zoo's unbiased
classifier ``digits_cnn``.

    .venv/bin/python examples/contrastive_biased.py        # about a minute; docs/img/contrastive_biased.png
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from feassample.models import digits_data, load_classifier
from feassample.models.biased import (BIASED_CLASS, bias_metrics, load_biased_classifier,
                                      load_biased_generator, load_biased_vae, square_mask)
from feassample import explain_contrasts
from feassample.viz import new_figure, save_figure
from feassample.viz.contrastive import explanation_rgb

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "contrastive_biased.png"


def pick_images(D, count: int = 20, seed: int = 0):
    """``count`` clean test digits other than 8 that ``D`` classifies correctly (seeded draw)."""
    x, y = digits_data("test")
    with torch.no_grad():
        pred = D(x).argmax(1)
    idx = torch.nonzero((pred == y) & (y != BIASED_CLASS)).flatten()
    g = torch.Generator().manual_seed(seed)
    idx = idx[torch.randperm(len(idx), generator=g)[:count]]
    return idx, x[idx], y[idx]


def square_fraction(explanations) -> torch.Tensor:
    """Per explanation: the fraction of the added mass ``sum max(G(ze) - G(z0), 0)`` that lies
    inside the square."""
    m = square_mask().flatten()
    fr = []
    for e in explanations:
        a = e.added.flatten()
        fr.append(float(a[m].sum() / a.sum().clamp(min=1e-12)))
    return torch.tensor(fr)


def run(count: int = 20):
    torch.set_num_threads(1)
    Db, Dc = load_biased_classifier(), load_classifier()
    vae, G = load_biased_vae(), load_biased_generator()
    idx, x, y = pick_images(Db, count)
    res = {}
    for name, D in (("biased", Db), ("clean", Dc)):
        t0 = time.perf_counter()
        res[name] = explain_contrasts(D, G, x, y, [BIASED_CLASS] * len(y), encoder=vae, seed=0)
        res[name + "_s"] = time.perf_counter() - t0
    return idx, res, bias_metrics(Db)


def report(idx, res, metrics) -> str:
    area = float(square_mask().float().mean())
    lines = [f"biased classifier: test accuracy {metrics['test_accuracy']:.4f} on biased test data "
             f"(squares on the 8s), {metrics['clean_test_accuracy']:.4f} on clean test data; clean 8s "
             f"called 8: {metrics['clean_test_recall_8']:.3f}; other digits with the square called 8: "
             f"{metrics['others_with_square_called_8']:.3f}", "",
             f"square area fraction {area:.4f} ({int(square_mask().sum())} of 256 pixels)", "",
             "| classifier | satisfied | added mass in square: mean | median | min | mean / area | s |",
             "|---|---|---|---|---|---|---|"]
    for name in ("biased", "clean"):
        es, f = res[name], square_fraction(res[name])
        lines.append(f"| {name} | {sum(e.satisfied for e in es)}/{len(es)} | {f.mean():.3f} | "
                     f"{f.median():.3f} | {f.min():.3f} | {f.mean() / area:.1f}x | {res[name + '_s']:.1f} |")
    fb, fc = square_fraction(res["biased"]), square_fraction(res["clean"])
    lines.append("")
    lines.append(f"per image, biased: {[round(v, 2) for v in fb.tolist()]}")
    lines.append(f"per image, clean:  {[round(v, 2) for v in fc.tolist()]}")
    lines.append(f"biased > clean on {int((fb > fc).sum())}/{len(fb)} images")
    for name in ("biased", "clean"):
        for e, i in zip(res[name], idx.tolist()):
            if not e.satisfied:
                lines.append(f"  {name} test #{i} ({e.true_class} not 8?): {e.message}")
    return "\n".join(lines)


def figure(idx, res, path: Path = OUT, rows: int = 6) -> Path:
    from matplotlib.patches import Rectangle

    from feassample.models.biased import SQUARE_AT, SQUARE_SIZE

    def square(ax):
        ax.add_patch(Rectangle((SQUARE_AT - 0.5, SQUARE_AT - 0.5), SQUARE_SIZE, SQUARE_SIZE,
                               fill=False, ec="#2a9d8f", lw=1.2, ls="--"))

    fb, fc = square_fraction(res["biased"]), square_fraction(res["clean"])
    fig = new_figure(figsize=(8.6, 1.75 * (rows + 1)))
    axes = fig.subplots(rows + 1, 5)
    for r in range(rows):
        b, c = res["biased"][r], res["clean"][r]
        for ax, img, title in ((axes[r, 0], b.input, f"test #{int(idx[r])}: {b.true_class} not 8?"),
                               (axes[r, 1], b.reconstruction, "G(z0)"),
                               (axes[r, 2], b.generated,
                                f"G(ze), biased D: p8={float(b.class_probs[8]):.2f}")):
            ax.imshow(img.reshape(img.shape[-2:]).numpy(), cmap="gray_r", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(title, fontsize=7)
        axes[r, 3].imshow(explanation_rgb(b.explanation, b.input).numpy(), interpolation="nearest")
        axes[r, 3].set_title(f"biased D: {fb[r]:.0%} of red in square", fontsize=7)
        axes[r, 4].imshow(explanation_rgb(c.explanation, c.input).numpy(), interpolation="nearest")
        axes[r, 4].set_title(f"clean D (control): {fc[r]:.0%}", fontsize=7)
        for ax in axes[r, 3:]:
            square(ax)
    # mean added map over all images
    for col, name in ((3, "biased"), (4, "clean")):
        mean_added = torch.stack([e.added.reshape(16, 16) for e in res[name]]).mean(0)
        ax = axes[rows, col]
        ax.imshow(mean_added.numpy(), cmap="Reds", vmin=0, interpolation="nearest")
        ax.set_title(f"mean added (red) map, {name} D,\n{len(res[name])} images", fontsize=7)
        square(ax)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle("Why not 8? A classifier trained with a square on every 8 (red: add, blue: remove; "
                 "dashed: the square)", fontsize=9)
    return save_figure(fig, path, dpi=100)


def main() -> None:
    idx, res, metrics = run()
    print(report(idx, res, metrics))
    print(f"wrote {figure(idx, res)}")


if __name__ == "__main__":
    main()
