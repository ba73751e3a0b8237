"""budget="auto" vs the fixed 9.5 on the two-piece set (n=300, k=10, seeds 0-9): `python -m benchmarks.auto_budget` (docs/coverage.md)."""
import math, logging, torch
torch.set_num_threads(1)
logging.disable(logging.WARNING)
import feassample as fs
from benchmarks import coverage
case = coverage.cases()["two_pieces"]
big = case.exact(20000, torch.Generator().manual_seed(99))
p = float(case.pieces(big).double().mean()); sd = math.sqrt(p * (1 - p) / 300)
print(f"exact share {p:.3f}, iid sd {sd:.3f}")
print("| seed | fixed evals/sample | fixed R-hat max | fixed share z | auto passes | auto thin | auto evals/sample | auto R-hat max | auto share z | stop |")
for seed in range(10):
    a = fs.sample(case.problem, n=300, k=10, seed=seed, method="cover")
    b = fs.sample(case.problem, n=300, k=10, seed=seed, method="cover", options={"budget": "auto"})
    za = (float(case.pieces(a.codes).double().mean()) - p) / sd
    zb = (float(case.pieces(b.codes).double().mean()) - p) / sd
    print(f"| {seed} | {a.stats['evals_per_sample']:.1f} | {a.stats['rhat_max']:.3f} | {za:+.1f} | {b.stats['budget_rounds']} | {b.stats['thin']} | {b.stats['evals_per_sample']:.1f} | {b.stats['rhat_max']:.3f} | {zb:+.1f} | {b.stats['budget_stop']} |", flush=True)
