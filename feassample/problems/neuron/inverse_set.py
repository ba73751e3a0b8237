"""``NeuronInverseSet``: the inputs whose unit activation lies in a band (paper §3.1–3.2,
eqs. 4–5), and ``neuron_intersection`` of several units of one model.

When the encoder is a layer path of the same model, the embedding is captured in the same
forward pass as the unit: one forward per step.
"""
from __future__ import annotations

import math
from typing import Callable, Hashable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ...core.bands import Bands
from ...core.problem import FeasibleSet, Measurement, SharedForward, _interval, _shape
from ..preprocessing import Preprocessing, model_preprocessing
from .layers import LayerProbe, _model_device, _model_dtype, resolve_layer
from .units import Unit, parse_unit, unit_reader


class NeuronInverseSet(SharedForward, FeasibleSet):
    """Inputs whose unit activation lies in ``[z1, z2]``: the inverse set of a neuron.

    Args:
        model: any ``torch.nn.Module`` (put in eval mode; its parameters are never modified,
            copied, or differentiated). A TorchScript module can be read at its output only.
        layer: dotted name of the layer from ``model.named_modules()`` (``"output"``: the
            model's own output), or a unit string ``"layer4:17"`` naming layer and unit.
        unit: ``int`` (a fully connected unit; on a layer with channels, the channel's spatial
            mean), ``(channel,)`` (a channel's spatial mean), ``(channel, y, x)`` (one position),
            or a Lucent-style string naming the layer too: ``"layer4:17"``, ``"layer4:17:3:3"``,
            ``"fc:243"`` (then ``layer`` may be omitted).
        z1, z2: the activation band (``-inf``/``inf`` for one side).
        generator: ``None`` (sample inputs directly, the valid box enforced by projection) or a
            module mapping codes ``(B, *code_shape)`` to inputs; its ``code_shape`` attribute (or
            the ``code_shape`` argument) gives the code shape; codes start from the generator's
            ``init_codes(n, generator, dtype, device)`` when it has one (its stated prior),
            else from N(0, I).
        encoder: a module (inputs -> features), a layer path of ``model`` (captured in the same
            forward pass), or ``None`` (diversity measured on the codes, the paper's eq. 13).
        input_shape: shape of one model input, e.g. ``(1, 16, 16)``; default: the generator's
            ``output_shape``, else the preprocessing's ``input_shape`` (required when neither).
        input_range: ``(lo, hi)`` of valid inputs (before normalization). Default: the
            preprocessing's, else the generator's ``output_range``. Required when sampling
            inputs directly and neither gives it; with a generator and no range anywhere the
            decoded inputs are not range-checked.
        preprocessing: a :class:`Preprocessing` (range, per-channel mean/std, input shape);
            default: ``model.preprocessing`` when the model carries one. Samples live in the
            unnormalized space; the problem normalizes them before the model.
        code_shape: code shape when the generator has no ``code_shape`` attribute.
        tol: feasibility tolerance.
        code_radius: keep codes in the ball ``||c|| <= code_radius`` (by projection), i.e. in the
            generator's typical set, where its outputs look natural (for codes from N(0, I) in
            ``q`` dimensions most mass has ``||c||`` near ``sqrt(q)``); ``None``: no limit.
        transforms: deterministic input transforms ``(B, *input_shape) -> (B, *input_shape)``
            (e.g. ``feassample.models.params.Shift``/``Rescale``); the set becomes the inputs
            whose activation is in the band under **every** transform: one constraint per
            transform, ``z1 <= f(T_t(x)) <= z2`` for all ``t``. ``None``: the input as it is.

    The model runs in its own dtype (e.g. float64 after ``model.double()``); inputs are cast to
    it and values and embeddings cast back to the dtype of the codes being sampled.
    """

    def __init__(self, model: nn.Module, layer: Optional[str] = None, unit: Optional[Unit] = None,
                 z1: Optional[float] = None, z2: Optional[float] = None, *,
                 generator: Optional[nn.Module] = None,
                 encoder: Union[None, str, nn.Module] = None,
                 input_shape: Optional[Sequence[int]] = None,
                 input_range: Optional[tuple[float, float]] = None,
                 preprocessing: Optional[Preprocessing] = None,
                 code_shape: Optional[Sequence[int]] = None, tol: float = 0.0,
                 code_radius: Optional[float] = None,
                 transforms: Optional[Sequence[Callable[[Tensor], Tensor]]] = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        layer, unit = self._layer_and_unit(layer, unit)
        ends = []
        for name, z in (("z1", z1), ("z2", z2)):
            if z is None:
                raise ValueError(f"{name} is required: the band is z1 <= activation <= z2")
            if getattr(z, "shape", None) == () and not getattr(z, "is_complex", lambda: False)() \
                    and getattr(getattr(z, "dtype", None), "kind", "f") in "iuf":
                z = z.item()  # a 0-d tensor or a numpy scalar
            if not isinstance(z, (int, float)) or isinstance(z, bool) or math.isnan(z):
                raise ValueError(f"{name} must be a number, got {z!r}")
            ends.append(z)
        z1, z2 = ends
        if z1 > z2:
            raise ValueError(f"z1 must be <= z2, got z1={z1} > z2={z2}")
        if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
            raise TypeError(f"preprocessing must be a feassample Preprocessing, got "
                            f"{type(preprocessing).__name__}")
        self.preprocessing = preprocessing or model_preprocessing(model)
        pre = self.preprocessing

        if input_shape is None and generator is not None:
            input_shape = getattr(generator, "output_shape", None)
        if input_shape is None:
            if pre is None or pre.input_shape is None:
                raise ValueError("input_shape is required (the shape of one model input without "
                                 "the batch, e.g. (3, 224, 224)): neither the model's "
                                 "preprocessing metadata nor a generator's output_shape gives it")
            input_shape = pre.input_shape
        self.input_shape = _shape("input_shape", input_shape)
        if pre is not None:
            pre.check_shape(self.input_shape)

        if generator is not None and not callable(generator):
            raise TypeError(f"generator must be a module mapping codes to inputs, got {generator!r}")
        if input_range is None and pre is not None:
            input_range = pre.input_range
        if input_range is None and generator is not None:
            input_range = getattr(generator, "output_range", None)
        if input_range is None and generator is None:
            raise ValueError("input_range=(lo, hi) is required when sampling inputs directly: the "
                             "valid range of the model's inputs (e.g. (0, 1) for images before "
                             "normalization); the model carries no preprocessing metadata that "
                             "gives it")
        if input_range is not None:
            self.input_range: Optional[tuple[float, float]] = _interval("input_range", input_range)
        else:
            self.input_range = None

        self.model = model.eval()
        self.layer, self.unit, self.z1, self.z2 = layer, unit, float(z1), float(z2)
        self.generator = generator.eval() if isinstance(generator, nn.Module) else generator
        self.encoder = encoder
        self.encoder_layer = encoder if isinstance(encoder, str) else None
        if encoder is not None and not isinstance(encoder, (str, nn.Module)) and not callable(encoder):
            raise TypeError(f"encoder must be a module, a layer path or None, got {encoder!r}")
        resolve_layer(model, layer)
        if self.encoder_layer is not None:
            resolve_layer(model, self.encoder_layer)
        self.embedding_space = "codes" if encoder is None else "inputs"
        self.dtype = _model_dtype(model) or torch.float32
        self.device = _model_device(model)
        if not self.dtype.is_floating_point:
            raise ValueError(f"the model's parameters are {self.dtype}, not floating point: "
                             f"sampling needs gradients (quantized models are not supported)")
        self.generator_dtype = (_model_dtype(generator) if isinstance(generator, nn.Module) else None) \
            or self.dtype

        if code_radius is not None and not (math.isfinite(code_radius) and code_radius > 0):
            raise ValueError(f"code_radius must be a positive number or None, got {code_radius!r}")
        if code_radius is not None and generator is None:
            raise ValueError("code_radius limits a generator's codes; without a generator use input_range")
        self.code_radius = None if code_radius is None else float(code_radius)
        if generator is None:
            self.code_shape = self.input_shape
            self.box = self.input_range
        else:
            shape = code_shape if code_shape is not None else getattr(generator, "code_shape", None)
            if shape is None:
                raise ValueError("a generator needs a code shape: give code_shape=... or set "
                                 "generator.code_shape")
            self.code_shape = tuple(int(s) for s in shape)
            self.box = None
            with torch.no_grad():
                probe_codes = torch.zeros((2, *self.code_shape), dtype=self.generator_dtype,
                                          device=self.device)
                try:
                    out = generator(probe_codes)
                except (RuntimeError, ValueError, TypeError) as err:
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    raise ValueError(f"the generator cannot decode codes of code_shape "
                                     f"{self.code_shape} (give code_shape=... matching the "
                                     f"generator's input): {first}") from None
            if not isinstance(out, Tensor) or out.dim() < 1 or out.shape[0] != 2:
                raise ValueError(f"the generator maps a batch of 2 codes {self.code_shape} to "
                                 f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}: "
                                 "it must return a tensor (B, *input_shape)")
            if tuple(out.shape[1:]) != self.input_shape:
                raise ValueError(f"the generator maps codes {self.code_shape} to outputs of shape "
                                 f"{tuple(out.shape[1:])}, but the model's input_shape is "
                                 f"{self.input_shape}")

        if transforms is not None:
            transforms = list(transforms)
            if not transforms or not all(callable(t) for t in transforms):
                raise ValueError("transforms must be a non-empty list of functions of a batch of "
                                 "inputs, or None")
        self.transforms = transforms
        for t in transforms or []:
            with torch.no_grad():
                shape = tuple(t(torch.zeros((1, *self.input_shape), dtype=self.dtype,
                                            device=self.device)).shape[1:])
            if shape != self.input_shape:
                raise ValueError(f"transform {t!r} maps inputs {self.input_shape} to {shape}: "
                                 f"transforms must keep the input shape")

        # Probe the layer shapes once, validating input_shape and the unit.
        needed = [layer] + ([self.encoder_layer] if self.encoder_layer else [])
        self._needs = tuple(dict.fromkeys(needed))
        self._probes: dict[tuple, LayerProbe] = {self._needs: LayerProbe(model, self._needs)}
        with torch.no_grad():
            try:
                seen = self._probes[self._needs](self._model_input(
                    torch.zeros((2, *self.input_shape), dtype=self.dtype, device=self.device)))
            except (RuntimeError, ValueError) as err:
                if isinstance(err, RuntimeError) and ("produced no output" in str(err)
                                                      or "not a tensor" in str(err)):
                    raise
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ValueError(f"the model cannot run on inputs of shape {self.input_shape} "
                                 f"(input_shape=...): {first}") from None
        batch = 2 * (len(self.transforms) if self.transforms else 1)  # every view is a row
        for name in self._needs:
            out = seen[name]
            if out.dim() < 1 or out.shape[0] != batch:
                raise ValueError(f"layer {name!r} returned shape {tuple(out.shape)} for a batch of {batch} "
                                 "inputs: its output has no batch dimension (a layer that reduces "
                                 "over the batch cannot be measured per sample)")
        self.layer_shape = tuple(seen[layer].shape[1:])
        self._read = unit_reader(unit, self.layer_shape, layer)
        views = len(self.transforms) if self.transforms else 1
        names = tuple(f"{layer}[{self._unit_name()}]" + (f" T{t}" if self.transforms else "")
                      for t in range(views))
        self.bands = Bands((self.z1,) * views, (self.z2,) * views, tol=tol, names=names)

    @staticmethod
    def _layer_and_unit(layer, unit) -> tuple[str, Union[int, tuple]]:
        """``(layer, unit)`` from the two arguments, either of which may be a unit string."""
        if isinstance(unit, str):
            named, idx = parse_unit(unit)
            if layer is not None and layer != named:
                raise ValueError(f"unit {unit!r} names layer {named!r} but layer={layer!r}: give "
                                 f"one of them")
            return named, idx
        if isinstance(layer, str) and ":" in layer and unit is None:
            return parse_unit(layer)
        if layer is None:
            raise ValueError("layer is required: a dotted name from model.named_modules(), or give "
                             "unit='layer:n' (e.g. unit='layer4:17')")
        if unit is None:
            raise ValueError(f"unit is required for layer {layer!r}: an int, (channel,), "
                             f"(channel, y, x) or a string like '{layer}:0'")
        return layer, unit

    def _unit_name(self) -> str:
        return ":".join(str(u) for u in self.unit) if isinstance(self.unit, tuple) else str(self.unit)

    def _model_input(self, x: Tensor) -> Tensor:
        """Inputs as the model takes them: in its dtype, each transform's view stacked
        ``(T * B, ...)``, normalized by the preprocessing."""
        x = x.to(self.dtype)
        if getattr(self, "transforms", None):
            x = torch.cat([t(x) for t in self.transforms], dim=0)
        return self.preprocessing.normalize(x) if self.preprocessing is not None else x

    def _values(self, layer_output: Tensor, batch: int) -> Tensor:
        """The unit's values ``(B, T)``: one column per transform (``T = 1`` without)."""
        read = self._read(layer_output)
        return read.view(-1, batch).T if self.transforms else read.unsqueeze(1)

    # -- the contract -------------------------------------------------------------------------
    def decode(self, codes: Tensor) -> Tensor:
        if self.generator is None:
            return codes
        return self.generator(codes.to(self.generator_dtype)).to(codes.dtype)

    # -- the shared-forward protocol (core.problem.SharedForward) ------------------------------
    def forward_key(self) -> tuple:
        """Members of an intersection on the same model, generator and preprocessing share one
        forward pass (a set with transforms sees other inputs: it runs its own)."""
        if self.transforms:
            return ("own", id(self))
        return (id(self.model), id(self.generator), id(self.preprocessing))

    def forward_needs(self) -> tuple[str, ...]:
        """The layers this set reads: its unit's layer, and the encoder layer if any."""
        return self._needs

    def run_forward(self, x: Tensor, needs: Sequence[Hashable]) -> dict[str, Tensor]:
        """Outputs of the layers ``needs`` for inputs ``x``: one forward pass, stopped early
        once every layer has been seen."""
        needs = tuple(needs)
        probe = self._probes.get(needs)
        if probe is None:
            probe = self._probes[needs] = LayerProbe(self.model, needs)
        return probe(self._model_input(x))

    def measure_from(self, seen: Mapping[Hashable, Tensor], x: Tensor) -> Measurement:
        """The measurement from captured layer outputs (shared by intersections)."""
        values = self._values(seen[self.layer], x.shape[0])
        if self.encoder_layer is not None:
            emb = seen[self.encoder_layer][:x.shape[0]]  # the first transform's view
        elif self.encoder is not None:
            emb = self.encoder(x.to(self.dtype))
        else:
            emb = None
        if emb is not None:
            emb = emb.reshape(emb.shape[0], -1).to(x.dtype)
        return Measurement(values.to(x.dtype), emb)

    def capture(self, x: Tensor) -> dict[str, Tensor]:
        """Outputs of the needed layers for inputs ``x`` (one forward pass, stopped early)."""
        return self.run_forward(x, self._needs)

    def measure(self, x: Tensor) -> Measurement:
        return self.measure_from(self.capture(x), x)

    def init_codes(self, n, generator, dtype=None, device="cpu"):
        """Draws from the prior on codes: uniform on the input range (no generator), else the
        generator's prior (``init_codes``, or N(0, I)), restricted to the code ball when
        ``code_radius`` is set: draws outside the ball are drawn again (a truncated law, the one
        ``log_prior`` states), never projected onto its surface."""
        if self.generator is None:
            return super().init_codes(n, generator, dtype, device)
        dtype = dtype or self.dtype
        prior = getattr(self.generator, "init_codes", None)

        def draw(count: int) -> Tensor:
            if callable(prior):
                return prior(count, generator, dtype=dtype, device=device)
            return torch.randn((count, *self.code_shape), generator=generator, dtype=dtype).to(device)

        codes = draw(n)
        if self.code_radius is not None:
            for _ in range(1000):
                outside = codes.flatten(1).norm(dim=1) > self.code_radius
                if not bool(outside.any()):
                    break
                codes[outside] = draw(int(outside.sum()))
        return self.project(codes)

    def project(self, codes: Tensor) -> Tensor:
        """Codes in the box (input space) or in the ball of radius ``code_radius``."""
        if self.code_radius is None:
            return super().project(codes)
        norms = codes.flatten(1).norm(dim=1).clamp(min=1e-12)
        scale = (self.code_radius / norms).clamp(max=1.0)
        return codes * scale.view((-1,) + (1,) * (codes.dim() - 1))

    def check(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """A fresh, complete forward pass of the model without gradients, plus the input range."""
        with torch.no_grad():
            x = self.decode(codes)
            seen = LayerProbe(self.model, [self.layer], stop_early=False)(self._model_input(x))
            values = self._values(seen[self.layer], x.shape[0]).to(codes.dtype)
            feasible = self.bands.feasible(values)
            if self.input_range is not None:
                flat = x.flatten(1)
                feasible &= ((flat >= self.input_range[0]) & (flat <= self.input_range[1])).all(1)
            if self.code_radius is not None:
                feasible &= codes.flatten(1).norm(dim=1) <= self.code_radius * (1 + 1e-5)
        return values, feasible

    def describe(self) -> str:
        return (f"NeuronInverseSet({type(self.model).__name__}.{self.layer}[{self._unit_name()}] in "
                f"[{self.z1:g}, {self.z2:g}], generator={'yes' if self.generator is not None else 'no'}, "
                f"encoder={self.encoder_layer or (type(self.encoder).__name__ if self.encoder is not None else 'codes')})")

    def config(self) -> dict:
        cfg = super().config()
        cfg.update(layer=self.layer, unit=list(self.unit) if isinstance(self.unit, tuple) else self.unit,
                   z1=self.z1, z2=self.z2, layer_shape=list(self.layer_shape),
                   input_range=list(self.input_range) if self.input_range is not None else None,
                   encoder=str(self.encoder_layer or self.encoder),
                   preprocessing=self.preprocessing.config() if self.preprocessing is not None else None)
        return cfg


def neuron_intersection(model: nn.Module, units, **common) -> FeasibleSet:
    """The intersection of the inverse sets of several units of one model, given as strings.

    Args:
        model: the model all units belong to.
        units: ``{"layer4:17": (z1, z2), "fc:243": (z1, z2)}`` or a list of
            ``("layer4:17", z1, z2)``.
        common: the other ``NeuronInverseSet`` arguments, shared by every member (one generator,
            one input range), e.g. ``input_shape=..., generator=...``.

    Returns:
        ``Intersection`` of the members (one forward pass per step for all of them).
    """
    from ..intersection import Intersection

    items = list(units.items()) if isinstance(units, dict) else list(units)
    if not items:
        raise ValueError("units is empty: give at least one 'layer:n' with its band")
    members = []
    for i, item in enumerate(items):
        if isinstance(units, dict):
            spec, band = item
        else:
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise ValueError(f"units[{i}] must be ('layer:n', z1, z2), got {item!r}")
            spec, band = item[0], item[1:]
        if not isinstance(band, (tuple, list)) or len(band) != 2:
            raise ValueError(f"the band of unit {spec!r} must be (z1, z2), got {band!r}")
        members.append(NeuronInverseSet(model, unit=spec, z1=band[0], z2=band[1], **common))
    return Intersection(members)
