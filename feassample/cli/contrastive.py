"""The Hydra app's ``problem=contrastive``: one contrastive explanation of a zoo digit
(``conf/problem/contrastive.yaml``, docs/contrastive.md), written into the run directory.

The settings are the fields of ``config.ContrastiveProblemSchema`` (their one definition); this
module loads the zoo's data and VAE, calls ``fs.explain_contrast`` and draws with
``viz_contrastive``.
"""
from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Union

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from .schemas import ContrastiveProblemSchema
from ..problems.contrastive.problem import CONSTRAINTS, ContrastSet
from ..core.result import atomic_write_bytes
from ..problems.contrastive.explain import explain_contrast
from ..problems.contrastive.fit import fit_codes
from ..viz.contrastive import save_explanation

#: the keys of a ``problem=contrastive`` node and their defaults, from the schema
CONFIG_DEFAULTS = {f.name: f.default for f in fields(ContrastiveProblemSchema)}
SPLITS = ("train", "test", "all")


def _settings(node: Any) -> dict:
    """The node's settings (a ``DictConfig``, a dict or an object), defaults filled in from
    ``ContrastiveProblemSchema``, types checked by it, unknown keys refused."""
    if isinstance(node, DictConfig):
        given = OmegaConf.to_container(node, resolve=True)
    elif hasattr(node, "items"):
        given = dict(node.items())
    else:
        given = dict(vars(node))
    unknown = sorted(set(given) - set(CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for problem=contrastive; valid: {sorted(CONFIG_DEFAULTS)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ContrastiveProblemSchema), given)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        where = f"problem.{key}" if key else "problem=contrastive"
        raise ValueError(f"{where}: {str(err).splitlines()[0]}") from None
    cfg = OmegaConf.to_container(merged, resolve=True)
    if cfg["split"] not in SPLITS:
        raise ValueError(f"problem.split must be 'train', 'test' or 'all', got {cfg['split']!r}")
    if cfg["constraints"] not in CONSTRAINTS:
        raise ValueError(f"problem.constraints must be one of {CONSTRAINTS}, got {cfg['constraints']!r}")
    return cfg


def _config_inputs(cfg: dict):
    """``(images, labels, index, vae, generator)`` of the zoo for the settings ``cfg``."""
    from ..models import digits_data, load_vae
    from ..models.digits import DigitsGenerator

    x, y = digits_data(cfg["split"])
    index = int(cfg["image_index"])
    if not 0 <= index < len(x):
        raise ValueError(f"problem.image_index={index} is outside the {cfg['split']} split "
                         f"(0..{len(x) - 1})")
    vae = load_vae(str(cfg["generator"]))
    return x, y, index, vae, DigitsGenerator(vae.decoder).eval()


def problem_from_config(node: Any, classifier: nn.Module) -> ContrastSet:
    """The ``ContrastSet`` of a ``problem=contrastive`` node (``z0`` fitted to the chosen image):
    what ``build.build_problem`` returns for it."""
    cfg = _settings(node)
    x, _, index, vae, generator = _config_inputs(cfg)
    image = x[index:index + 1]
    with torch.no_grad():
        order = classifier(image).argsort(1, descending=True)[0]
    t = int(order[0]) if cfg["true_class"] is None else int(cfg["true_class"])
    p = int(order[1]) if cfg["probe_class"] is None else int(cfg["probe_class"])
    if t == p:
        raise ValueError(f"problem.true_class and problem.probe_class must differ, got {t}")
    z0, delta, _ = fit_codes(generator, image, encoder=vae, seed=int(cfg["seed"]))
    return ContrastSet(classifier, generator, z0, delta, torch.tensor([t]), torch.tensor([p]),
                       margin=float(cfg["margin"]), tol=float(cfg["tol"]),
                       constraints=str(cfg["constraints"]))


def run_config(node: Any, classifier: nn.Module, out_dir: Union[str, Path]) -> dict:
    """One contrastive explanation from a ``problem=contrastive`` config node (see
    ``conf/problem/contrastive.yaml``), written into ``out_dir``: ``contrastive.png`` (the panel),
    ``contrastive.json`` (the numbers and the class-likelihood path) and ``metrics.json``.
    Returns the metrics (``status`` is ``"success"`` when the independent check passed, else
    ``"unsatisfied"``, with ``message`` saying why)."""
    t0 = time.perf_counter()
    cfg = _settings(node)
    x, y, index, vae, generator = _config_inputs(cfg)
    e = explain_contrast(classifier, generator, x[index], cfg["true_class"], cfg["probe_class"],
                         margin=float(cfg["margin"]), tol=float(cfg["tol"]),
                         constraints=str(cfg["constraints"]), encoder=vae,
                         max_outer=int(cfg["max_outer"]), restarts=int(cfg["restarts"]),
                         seed=int(cfg["seed"]))
    out = Path(out_dir)
    save_explanation(e, out, "contrastive")
    metrics = {"status": "success" if e.satisfied else "unsatisfied", "satisfied": e.satisfied,
               "message": e.message, "split": cfg["split"], "image_index": index,
               "label": int(y[index]), "generator": str(cfg["generator"]),
               **{k: v for k, v in e.summary().items() if k not in ("message", "satisfied", "stats")},
               "seed_steps": e.stats.get("seed_steps"), "model_evals": e.stats.get("model_evals"),
               "n_returned": 1, "feasible_fraction": 1.0 if e.satisfied else 0.0,
               "wall_s": round(time.perf_counter() - t0, 3)}
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write_bytes(out / "metrics.json", lambda fh: fh.write(text.encode()))  # a link: replaced
    return metrics


__all__ = ["CONFIG_DEFAULTS", "problem_from_config", "run_config"]
