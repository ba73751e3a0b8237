"""Throughput of ``fs.sample`` against the batch size (walkers ``k``) and torch threads, measured
side by side with the model's raw forward+backward throughput at the same batch.

For each model and each ``k`` (10 to 10,000) and thread count, one fresh subprocess runs
``fs.sample(problem, n=2k, k=k, seed=0, method="cover")`` (the covering walk) under a wall-clock
cap, then times the raw forward+backward of the same model on a batch of ``k`` random codes.
Columns:

* status, samples returned (of n = 2k), wall seconds (the whole call: seeds, burn-in, walk and
  the final certificate); seed steps and walk rounds done.
* evals/s: model evaluations (per-code forward+backward passes, ``stats["model_evals"]``) per
  wall second; samples/s: returned samples per wall second.
* raw fwd+bwd/s: codes per second of ``model(decode(c))`` plus the backward of the unit's batch
  sum to the codes, alone (best of a few repeats after a warm-up): the physical limit.
* samples/s / raw and evals/s / raw.
* overhead: ``1 - (time inside the model) / (wall time)``, over the walk's rounds (from the
  callback after the walk's initial evaluation to the last round) and over the whole call. The
  time inside the model is measured by wrapping the problem's ``decode``, ``measure`` and
  ``check`` and ``torch.autograd.grad``/``Tensor.backward`` with a clock (nested calls counted
  once; on CUDA each timed region synchronizes), which also counts the forward calls.
* peak RSS: ``ru_maxrss`` of the configuration's own process after sampling (CPU), or
  ``torch.cuda.max_memory_allocated`` (CUDA); "+" is the growth over the process after loading
  the model.

A configuration whose time or memory, extrapolated linearly from the previous batch size of the
same model and threads, exceeds the cap (or 60% of the machine's free memory) is skipped, with
the reason in the table; the issue's target configuration (the 64x64 ResNet at k = 1,000, first
thread count) always runs, under its own cap (``--target-cap``).

    python -m benchmarks.throughput                      # the full table (11-15 minutes on 2 cores)
    python -m benchmarks.throughput --quick              # a smoke run (under a minute or two)
    python -m benchmarks.throughput --device cuda        # the same on a GPU
    python -m benchmarks.throughput --write docs/benchmarks.md   # refresh the table in the doc
    python -m benchmarks.throughput --profile resnet64:1000      # cProfile of one configuration
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

import feassample as fs
from benchmarks import cpu_name, write_block

COLUMNS = ["model", "k", "threads", "status", "returned / n", "seed steps", "walk rounds", "wall s",
           "evals/s", "samples/s", "raw fwd+bwd/s", "samples/s / raw", "evals/s / raw",
           "overhead (walk)", "overhead (all)", "fwd calls", "peak MiB (+)"]


# -- a ResNet-18-shaped network with random weights (no torchvision) ---------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (1x1 conv when reshaped)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18Shape(nn.Module):
    """ResNet-18's shape: a 7x7 stem, BasicBlock x [2, 2, 2, 2] at 64-128-256-512 channels, 1000
    outputs (11.7 M parameters). Random weights; eval mode (batch norm with its initial stats)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for i, cout in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))


# -- the models of the table -------------------------------------------------------------------
def _slab(d: int, device: str):
    p = fs.LogisticHalfspace.random(d, 0.6, 0.8)

    w = p.w64.to(dtype=torch.float32, device=device)
    raw = (lambda k, gen: torch.rand(k, d, generator=gen).to(device),
           lambda x: torch.sigmoid(x @ w + p.c))
    return p, raw, f"fs.LogisticHalfspace.random({d}, 0.6, 0.8)"


def _hooked_unit(model: nn.Module, layer: str, x: torch.Tensor, read: Callable) -> torch.Tensor:
    """The unit of ``layer`` in a full ``model(x)``, read by our own forward hook."""
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, out: seen.update(out=out))
    try:
        model(x)
    finally:
        handle.remove()
    return read(seen["out"])


def _digits(device: str):
    from feassample.models import digits_neuron, load_classifier, load_generator

    model, G = load_classifier().to(device), load_generator().to(device)
    p = digits_neuron("classifier.fc2", 3, 8.0, 12.0, model=model, G=G)

    raw = (lambda k, gen: torch.randn(k, *p.code_shape, generator=gen).to(device),
           lambda c: _hooked_unit(model, "classifier.fc2", G(c), lambda out: out[:, 3]))
    return p, raw, "digits CNN `classifier.fc2[3]` in [8, 12] through the VAE decoder (code ball r = 4)"


def _resnet(size: int, device: str):
    torch.manual_seed(0)
    model = ResNet18Shape().to(device).eval()
    read = lambda out: out[:, 0].flatten(1).mean(1)  # noqa: E731  (channel 0's spatial mean)
    # A wide band: its middle half (the seeds' target) holds twice the largest deviation from
    # the median seen on 128 random inputs, so the seeding phase is short and the run measures
    # the walk (a band that random inputs rarely hit costs hundreds of seeding steps instead).
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        v = _hooked_unit(model, "layer4", torch.rand(128, 3, size, size, generator=gen).to(device), read)
    mid, spread = float(v.median()), float((v - v.median()).abs().max())
    z1, z2 = mid - 4 * spread, mid + 4 * spread
    p = fs.NeuronInverseSet(model, "layer4", (0,), z1, z2, input_shape=(3, size, size), input_range=(0.0, 1.0))

    raw = (lambda k, gen: torch.rand(k, 3, size, size, generator=gen).to(device),
           lambda x: _hooked_unit(model, "layer4", x, read))
    return p, raw, (f"ResNet-18-shaped net (random weights) at {size}x{size}, `layer4` channel 0 "
                    f"(spatial mean) in [{z1:.3g}, {z2:.3g}], pixels in [0, 1]")


MODELS = {
    "slab784": lambda device: _slab(784, device),
    "slab3072": lambda device: _slab(3072, device),
    "digits": _digits,
    "resnet64": lambda device: _resnet(64, device),
    "resnet224": lambda device: _resnet(224, device),
}
TARGET = ("resnet64", 1000)  # where issue 14 sets its targets
LABELS = {"slab784": "slab d=784", "slab3072": "slab d=3072", "digits": "digits CNN via VAE",
          "resnet64": "ResNet-18 64x64", "resnet224": "ResNet-18 224x224"}


# -- the clock around the model ----------------------------------------------------------------
class ModelClock:
    """Seconds spent inside the model (forward and backward) and forward calls, while installed.

    Wraps ``problem.decode``, ``problem.measure``, ``problem.check`` (on the instance) and
    ``torch.autograd.grad``/``torch.Tensor.backward`` (process-wide) with a timer; nested timed
    calls (``check`` calling ``decode``) count once."""

    def __init__(self, problem, device: str) -> None:
        self.problem, self.cuda = problem, device.startswith("cuda")
        self.seconds, self.forward_calls, self.forward_rows, self._depth = 0.0, 0, 0, 0
        self._saved: list = []

    def _timed(self, fn, forward: bool):
        def wrapper(*args, **kwargs):
            if self._depth:
                return fn(*args, **kwargs)
            if forward:
                self.forward_calls += 1
                if args and isinstance(args[0], torch.Tensor):
                    self.forward_rows += args[0].shape[0]
            if self.cuda:
                torch.cuda.synchronize()
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.cuda:
                    torch.cuda.synchronize()
                self.seconds += time.perf_counter() - t0
                self._depth -= 1
        return wrapper

    def __enter__(self) -> "ModelClock":
        for name in ("decode", "measure", "check"):
            fn = getattr(self.problem, name)
            setattr(self.problem, name, self._timed(fn, forward=name != "decode"))
        for owner, name in ((torch.autograd, "grad"), (torch.Tensor, "backward")):
            fn = getattr(owner, name)
            self._saved.append((owner, name, fn))
            setattr(owner, name, self._timed(fn, forward=False))
        return self

    def __exit__(self, *exc) -> None:
        for name in ("decode", "measure", "check"):
            del self.problem.__dict__[name]
        for owner, name, fn in self._saved:
            setattr(owner, name, fn)


class Rounds:
    """A callback: wall and model seconds of the walk's rounds; stops the run past ``cap`` s."""

    def __init__(self, clock: ModelClock, cap: float) -> None:
        self.clock, self.cap, self.t0 = clock, cap, time.perf_counter()
        self.seed_steps = self.walk_rounds = 0
        self.walk_start: Optional[tuple] = None
        self.walk_end: Optional[tuple] = None
        self.capped = False

    def __call__(self, phase: str, state, *_info) -> None:
        now = (time.perf_counter(), self.clock.seconds)
        if phase == "cover":
            self.walk_rounds += 1
            self.walk_end = now
        elif phase == "seeds":  # the walk starts where the seed phase's last step ended
            self.seed_steps += 1
            self.walk_start = now
        if phase in ("seeds", "cover") and not self.capped and now[0] - self.t0 > self.cap:
            self.capped = True
            raise KeyboardInterrupt  # the library's Ctrl-C path: returns what it has, status "interrupted"


def _status_mib(key: str) -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak(device: str) -> float:
    """Start measuring the peak afresh; returns the memory in use now (MiB)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    try:  # Linux: writing 5 to clear_refs resets this process's peak resident set (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now = _status_mib("VmRSS")
    return now if now is not None else _peak_mib(device)


def _peak_mib(device: str) -> float:
    """Peak memory since ``_reset_peak``: CUDA allocations, else this process's peak resident set
    (VmHWM; where /proc is missing, ``ru_maxrss``, which also counts the model's loading)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def raw_rate(raw, k: int, device: str, seconds: float = 1.0, reps: int = 5) -> float:
    """Codes per second of one forward+backward of the model's unit alone: ``raw = (inputs,
    unit)``, timed ``unit(x)`` plus the gradient of its batch sum to ``x`` (best of at most
    ``reps`` repeats after a warm-up, fewer once they add up to ``seconds``)."""
    inputs, unit = raw
    gen = torch.Generator().manual_seed(5)
    best, spent, i = math.inf, 0.0, 0
    while i <= reps and (i < 2 or spent < seconds):  # a warm-up, then 1 to ``reps`` timed
        x = inputs(k, gen).requires_grad_(True)  # drawn outside the timed region
        _sync(device)
        t0 = time.perf_counter()
        torch.autograd.grad(unit(x).sum(), x)
        _sync(device)
        dt = time.perf_counter() - t0
        if i > 0:  # the first repeat warms up
            best = min(best, dt)
            spent += dt
        i += 1
    return k / best


def run_one(name: str, k: int, threads: int, device: str, cap: float) -> dict:
    """One configuration, in this process: the sampler, then the raw forward+backward."""
    torch.set_num_threads(threads)
    logging.getLogger("feassample").setLevel(logging.ERROR)
    problem, raw, described = MODELS[name](device)
    base = _reset_peak(device)
    clock = ModelClock(problem, device)
    rounds = Rounds(clock, cap)
    with clock:
        t0 = time.perf_counter()
        s = fs.sample(problem, n=2 * k, k=k, seed=0, method="cover", device=device, callbacks=[rounds])
        _sync(device)
        wall = time.perf_counter() - t0
    peak = _peak_mib(device)
    row = {"model": name, "described": described, "k": k, "threads": threads, "status": s.status, "returned": len(s), "n": 2 * k,
           "capped": rounds.capped, "seed_steps": rounds.seed_steps, "walk_rounds": rounds.walk_rounds,
           "wall": wall, "evals": int(s.n_evals), "model_s": clock.seconds,
           "fwd_calls": clock.forward_calls, "fwd_rows": clock.forward_rows, "peak_mib": peak,
           "peak_over_base_mib": peak - base}
    if rounds.walk_start and rounds.walk_end and rounds.walk_end[0] > rounds.walk_start[0]:
        wt = rounds.walk_end[0] - rounds.walk_start[0]
        row["walk_overhead"] = 1 - (rounds.walk_end[1] - rounds.walk_start[1]) / wt
        row["round_s"] = wt / max(rounds.walk_rounds, 1)
    row["overhead"] = 1 - clock.seconds / wall
    row["raw"] = raw_rate(raw, k, device)
    return row


# -- the table ---------------------------------------------------------------------------------
def _f(v, fmt: str) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _g(v: float) -> str:
    return "—" if v is None or not math.isfinite(v) else (f"{v:,.0f}" if v >= 100 else f"{v:.3g}")


def cells(r: dict) -> list[str]:
    if "skipped" in r:
        return [LABELS[r["model"]], str(r["k"]), str(r["threads"]), f"skipped: {r['skipped']}"] + \
            [""] * (len(COLUMNS) - 4)
    sps, eps = r["returned"] / r["wall"], r["evals"] / r["wall"]
    status = r["status"] + (" (capped)" if r["capped"] else "")
    return [LABELS[r["model"]], str(r["k"]), str(r["threads"]), status, f"{r['returned']} / {r['n']}",
            str(r["seed_steps"]), str(r["walk_rounds"]), _g(r["wall"]), _g(eps), _g(sps),
            _g(r["raw"]), f"1/{r['raw'] / sps:.3g}" if sps > 0 else "0", f"{eps / r['raw']:.2f}",
            _f(100 * r["walk_overhead"], ".0f") + "%" if "walk_overhead" in r else "—",
            f"{100 * r['overhead']:.0f}%", str(r["fwd_calls"]),
            f"{r['peak_mib']:,.0f} (+{r['peak_over_base_mib']:,.0f})"]


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets at batch 1,000 on the ResNet-size network, reported (not asserted)."""
    (name, k), out = TARGET, []
    for r in rows:
        if r["model"] != name or r["k"] != k:
            continue
        if "skipped" in r:
            out.append(f"{LABELS[name]}, k = {k}, threads = {r['threads']}: not measured ({r['skipped']})")
            continue
        ov = r.get("walk_overhead")
        ok = ov is not None and ov < 0.10
        out.append(f"{LABELS[name]}, k = {k}, threads = {r['threads']}: sampler overhead "
                   f"{_f(100 * ov if ov is not None else None, '.1f')}% of a walk round "
                   f"({'met' if ok else 'missed'}: target < 10%)")
        sps = r["returned"] / r["wall"]
        ratio = r["raw"] / sps if sps > 0 else math.inf
        out.append(f"{LABELS[name]}, k = {k}, threads = {r['threads']}: samples/s is 1/{ratio:.3g} of raw "
                   f"fwd+bwd/s ({'met' if ratio <= 2 else 'missed'}: target within 2x); model "
                   f"evaluations/s are {r['evals'] / r['wall'] / r['raw']:.2f} of raw")
    return out


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"{cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, Python {platform.python_version()}"


def _free_mib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.inf


def _skip_reason(prev: Optional[dict], k: int, cap: float, left: float, device: str) -> Optional[str]:
    """Why ``k`` should not run, extrapolating linearly from the last measured batch ``prev``."""
    if left <= 0:
        return "the run's total time budget was spent"
    if prev is None:
        return None
    if "skipped" in prev:
        return "a smaller batch was skipped"
    scale = k / prev["k"]
    if prev["capped"]:
        return f"k = {prev['k']} already ran into its cap"
    if prev["wall"] * scale > cap:
        return f"would take about {prev['wall'] * scale:.0f} s (from k = {prev['k']}), over the cap of {cap:.0f} s"
    if not device.startswith("cuda"):
        need = prev["peak_over_base_mib"] * scale
        if need > 0.6 * _free_mib():
            return f"about {need / 1024:.0f} GiB of memory (from k = {prev['k']}), over 60% of the free memory"
    return None


def run_suite(models: list[str], batches: list[int], threads: list[int], device: str, cap: float,
              total: float, target_cap: float) -> list[dict]:
    """Every configuration in its own subprocess, smaller batches of every model first (so the
    time budget cuts the largest batches); the issue's target configuration (the 64x64 ResNet at
    k = 1000, first thread count) runs with ``target_cap`` whatever the skip rules say. Returns the
    rows sorted by model, threads and k."""
    rows, last, t_start = [], {}, time.perf_counter()
    for k in sorted(batches):
        for name in models:
            for th in threads:
                left = total - (time.perf_counter() - t_start)
                if (name, k) == TARGET and th == threads[0] and target_cap > 0:
                    reason, cap_here = None, target_cap
                else:
                    reason = _skip_reason(last.get((name, th)), k, cap, left, device)
                    cap_here = max(min(cap, left), 5.0)
                if reason:
                    row = {"model": name, "k": k, "threads": th, "skipped": reason}
                else:
                    row = _run_subprocess(name, k, th, device, cap_here)
                rows.append(row)
                print("| " + " | ".join(cells(row)) + " |", flush=True)
                last[(name, th)] = row
    order = {m: i for i, m in enumerate(models)}
    return sorted(rows, key=lambda r: (order[r["model"]], r["threads"], r["k"]))


def _run_subprocess(name: str, k: int, th: int, device: str, cap: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--one", f"{name}:{k}:{th}",
           "--device", device, "--cap", str(cap)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * cap + 120,
                              cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        return {"model": name, "k": k, "threads": th, "skipped": "the subprocess ran past 3 x cap"}
    last = done.stdout.strip().splitlines()[-1:] or [""]
    if done.returncode != 0 or not last[0].startswith("{"):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": name, "k": k, "threads": th, "skipped": f"failed: {tail[:120]}"}
    return json.loads(last[0])


def profile(spec: str, device: str, threads: int, cap: float) -> None:
    """cProfile of one configuration (``name:k``), the 25 largest cumulative and own times."""
    import cProfile
    import pstats

    name, k = spec.split(":")
    prof = cProfile.Profile()
    prof.enable()
    row = run_one(name, int(k), threads, device, cap)
    prof.disable()
    print(json.dumps(row))
    st = pstats.Stats(prof).strip_dirs()
    st.sort_stats("cumulative").print_stats(30)
    st.sort_stats("tottime").print_stats(25)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated, default all: " + ",".join(MODELS))
    parser.add_argument("--batches", default=None, help="walkers k (batch sizes), comma-separated "
                        "(default 10,100,1000,10000)")
    parser.add_argument("--threads", default=None, help="torch thread counts, comma-separated (default 1,2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--cap", type=float, default=150.0, help="wall seconds per configuration (default 150)")
    parser.add_argument("--total", type=float, default=660.0,
                        help="wall seconds for the whole table, the target configuration aside (default 660)")
    parser.add_argument("--target-cap", type=float, default=300.0,
                        help="wall seconds for the issue's target configuration, the 64x64 ResNet at "
                        "k = 1000 on the first thread count, which runs whatever the skip rules say "
                        "(default 300; 0: no exception)")
    parser.add_argument("--tag", default="throughput", help="--write replaces the block between "
                        "<!-- TAG:start --> and <!-- TAG:end -->")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: slab d=784 and the 64x64 ResNet, k = 10 and 100, 1 thread "
                        "(--models, --batches, --threads still apply)")
    parser.add_argument("--write", default=None, help="replace the table in this markdown file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # name:k:threads (a subprocess)
    parser.add_argument("--profile", default=None, metavar="NAME:K", help="cProfile one configuration")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.one:
        name, k, th = args.one.split(":")
        print(json.dumps(run_one(name, int(k), int(th), args.device, args.cap)), flush=True)
        return ""
    if args.profile:
        profile(args.profile, args.device, int((args.threads or "1").split(",")[0]), args.cap)
        return ""
    quick = args.quick
    args.models = args.models or ("slab784,resnet64" if quick else ",".join(MODELS))
    args.batches = args.batches or ("10,100" if quick else "10,100,1000,10000")
    args.threads = args.threads or ("1" if quick else "1,2")
    if quick:
        args.cap, args.total, args.target_cap = min(args.cap, 30.0), min(args.total, 120.0), 0.0
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    try:
        batches = [int(b) for b in args.batches.split(",")]
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        parser.error("--batches and --threads must be comma-separated integers")
    if any(b < 1 for b in batches) or any(t < 1 for t in threads):
        parser.error("--batches and --threads must be positive")
    torch.set_num_threads(1)
    given = list(argv if argv is not None else sys.argv[1:])
    if "--write" in given:  # the command as a reader would rerun it, without the doc refresh
        i = given.index("--write")
        del given[i:i + 2]
    command = " ".join(["python -m benchmarks.throughput"] + [a for a in given if not a.startswith("--write=")])
    head = (f"Command: `{command.strip()}`; device {args.device}; machine: {machine(args.device)}; "
            f"n = 2k, seed 0, method `cover` (the default); cap {args.cap:.0f} s per configuration"
            + (f" ({args.target_cap:.0f} s for the target configuration)" if args.target_cap else "") + ".")
    print(head + "\n", flush=True)
    print("| " + " | ".join(COLUMNS) + " |\n" + "|" + "---|" * len(COLUMNS), flush=True)
    t0 = time.perf_counter()
    rows = run_suite(models, batches, threads, args.device, args.cap, args.total, args.target_cap)
    total = time.perf_counter() - t0
    described = {r["model"]: r["described"] for r in rows if "described" in r}
    parts = [head, "", "Models: " + "; ".join(f"{LABELS[m]}: {d}" for m, d in described.items()) + ".", "",
             table(rows), "", "Targets (issue 14): " + "; ".join(targets(rows) or ["ResNet-18 64x64 at k = 1000 not in this run"]) + ".",
             "", f"Total wall time: {total:.0f} s."]
    out = "\n".join(parts)
    print("\n" + "\n".join(parts[2:]))
    if args.write:
        write_block(args.write, args.tag, out)
    return out


if __name__ == "__main__":
    main()
