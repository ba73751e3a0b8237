"""CDeepEx contrastive explanations on the digits zoo: the paper's Figs. 3, 4 and 5.

For the first N test digits the classifier gets right (default 20), ask "why the true class and
not the second most likely one?", with the margin constraints (CDeepEx, eq. 2) and without them
(the xGEMs ablation). Every answer is certified by an independent float64 forward pass.

    .venv/bin/python examples/contrastive_digits.py            # 20 images, about a minute
    .venv/bin/python examples/contrastive_digits.py --count 100 --no-figures

writes docs/img/contrastive_digits.png (explanation panels: red = to be added, blue = to be
removed to move from the true to the probe class) and docs/img/contrastive_path.png (G(z) along
the optimization, and the mean class likelihood per iteration).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from feassample.models import digits_data, load_classifier, load_generator, load_vae
from feassample import explain_contrasts
from feassample.viz import new_figure, save_figure
from feassample.viz.contrastive import draw_panel, explanation_rgb, plot_paths

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
MARGIN, TOL = 0.1, 0.01


def run(count: int = 20):
    torch.set_num_threads(1)
    D, vae = load_classifier(), load_vae()
    G = load_generator()
    x, y = digits_data("test")
    with torch.no_grad():
        pred = D(x).argmax(1)
    idx = torch.nonzero(pred == y).flatten()[:count]
    out = {}
    for cons in ("cdeepex", "xgems"):
        t0 = time.perf_counter()
        out[cons] = explain_contrasts(D, G, x[idx], y[idx], None, encoder=vae, constraints=cons,
                                      margin=MARGIN, tol=TOL, seed=0)
        out[cons + "_s"] = time.perf_counter() - t0
    return idx, out


def report(idx, out) -> str:
    cd, xg = out["cdeepex"], out["xgems"]
    lines = ["| # | test index | true | probe | CDeepEx l_t - l_p | CDeepEx min(l_t, l_p) - max other | "
             "CDeepEx ok | xGEMs l_t - l_p | xGEMs min(l_t, l_p) - max other (class) | xGEMs ok |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k, (i, a, b) in enumerate(zip(idx.tolist(), cd, xg)):
        lines.append(f"| {k} | {i} | {a.true_class} | {a.probe_class} | {a.gap:+.1e} | {a.margin_min:.3f} | "
                     f"{'yes' if a.satisfied else 'NO'} | {b.gap:+.1e} | {b.margin_min:+.3f} ({b.top_other}) | "
                     f"{'yes' if b.satisfied else 'NO'} |")
    n = len(cd)
    lines.append("")
    lines.append(f"CDeepEx: {sum(e.satisfied for e in cd)}/{n} satisfied (|l_t - l_p| <= {TOL}, every "
                 f"other class >= {MARGIN} below both), {out['cdeepex_s']:.1f} s, restarts used: "
                 f"{cd[0].stats.get('restarts_used')}")
    lines.append(f"xGEMs:   {sum(e.equality_ok for e in xg)}/{n} reach l_t = l_p; margin violated on "
                 f"{sum(not e.margin_ok for e in xg)}/{n}; a third class above both on "
                 f"{sum(e.margin_min < 0 for e in xg)}/{n}; {out['xgems_s']:.1f} s")
    for e in cd:
        if not e.satisfied:
            lines.append(f"  CDeepEx {e.true_class} vs {e.probe_class}: {e.message}")
    return "\n".join(lines)


def figures(idx, out, img_dir: Path = IMG, rows: int = 8) -> list[Path]:
    cd, xg = out["cdeepex"], out["xgems"]
    bad = [k for k, e in enumerate(xg) if not e.margin_ok]
    good = [k for k in range(len(cd)) if k not in bad]
    pick = (bad + good)[:rows]

    # Figs. 3-4: input, G(z0), then G(ze) and the explanation with and without the margin
    fig = new_figure(figsize=(10.2, 1.75 * len(pick)))
    axes = fig.subplots(len(pick), 6, squeeze=False)
    for r, k in enumerate(pick):
        a, b = cd[k], xg[k]
        draw_panel(a, axes[r, :4])
        axes[r, 0].set_title(f"test #{int(idx[k])}: {a.true_class} not {a.probe_class}?", fontsize=7)
        axes[r, 2].set_title(f"CDeepEx G(ze): p{a.true_class}={float(a.class_probs[a.true_class]):.2f} "
                             f"p{a.probe_class}={float(a.class_probs[a.probe_class]):.2f}", fontsize=6.5)
        axes[r, 3].set_title("CDeepEx explanation", fontsize=7)
        axes[r, 4].imshow(b.generated.reshape(b.generated.shape[-2:]).numpy(), cmap="gray_r",
                          vmin=0, vmax=1, interpolation="nearest")
        third = f", p{b.top_other}={float(b.class_probs[b.top_other]):.2f}" if not b.margin_ok else ""
        axes[r, 4].set_title(f"xGEMs G(ze): p{b.true_class}={float(b.class_probs[b.true_class]):.2f}"
                             f"{third}", fontsize=6.5, color="k" if b.margin_ok else "#b00000")
        axes[r, 5].imshow(explanation_rgb(b.explanation, b.input).numpy(), interpolation="nearest")
        axes[r, 5].set_title("xGEMs explanation", fontsize=7)
        for ax in axes[r]:
            ax.set_axis_off()
    fig.suptitle("Why the true class, not the probe (2nd most likely)? red: add, blue: remove "
                 "(to move true -> probe)", fontsize=9)
    p1 = save_figure(fig, img_dir / "contrastive_digits.png", dpi=100)

    # Fig. 5: (a) G(z) along the path for one image where xGEMs lets a third class win;
    # (b) mean class likelihood along the path over all images, (c) over the xGEMs failures
    k = bad[0] if bad else 0
    G = load_generator()
    steps = [0, 25, 50, 100, 200, 400, 700, len(cd[k].code_path) - 1]
    fig = new_figure(figsize=(11, 5.6))
    grid = fig.add_gridspec(3, len(steps), height_ratios=[1, 1, 2.6])
    for r, (name, e) in enumerate((("CDeepEx", cd[k]), ("xGEMs", xg[k]))):
        with torch.no_grad():
            imgs = G(e.code_path[steps])
        for c, s in enumerate(steps):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(imgs[c, 0].numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            pr = e.path[s]
            top = int(pr.argmax())
            ax.set_title(f"{name} it {s}\np{e.true_class}={float(pr[e.true_class]):.2f} "
                         f"p{e.probe_class}={float(pr[e.probe_class]):.2f}"
                         + (f" p{top}={float(pr[top]):.2f}" if top not in (e.true_class, e.probe_class) else ""),
                         fontsize=6)
            ax.set_axis_off()
    ax_all = fig.add_subplot(grid[2, : len(steps) // 2])
    plot_paths({"CDeepEx": cd, "xGEMs": xg}, ax=ax_all, title=f"all {len(cd)} images")
    ax_bad = fig.add_subplot(grid[2, len(steps) // 2:])
    if bad:
        plot_paths({"CDeepEx": [cd[i] for i in bad], "xGEMs": [xg[i] for i in bad]}, ax=ax_bad,
                   title=f"the {len(bad)} images where xGEMs violates the margin")
    fig.suptitle(f"(a) G(z) along the optimization, test #{int(idx[k])} ({cd[k].true_class} not "
                 f"{cd[k].probe_class}?); (b) mean class likelihood per iteration", fontsize=9)
    p2 = save_figure(fig, img_dir / "contrastive_path.png", dpi=100)
    return [p1, p2]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)
    idx, out = run(args.count)
    print(report(idx, out))
    if not args.no_figures:
        for p in figures(idx, out):
            print(f"wrote {p}")


if __name__ == "__main__":
    main()
