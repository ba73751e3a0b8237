"""The coverage suite runs end to end on its smallest setting and reports every target."""
from benchmarks import coverage


def test_the_coverage_suite_reports_each_target_per_case_and_method():
    text = coverage.main(["--cases", "two_pieces", "--methods", "cover,rejection", "--seeds", "1",
                          "--n", "100", "--draws", "2"])
    assert "| two pieces | cover | 0 | success | 1 |" in text
    assert "| two pieces | rejection | 0 | success | 1 |" in text
    for target in ("rms z <= 1.3", "NN ratio >= 0.9", "fill ratio <= 1.05", "energy ratio <= 1.3",
                   "piece share within 3 SD", "evals/sample <= 30"):
        assert text.count(target) == 2, target


def test_an_exact_sample_meets_its_own_targets():
    """The metrics are calibrated: rejection (exact) sampling keeps the share and the NN ratio."""
    case = coverage.cases()["two_pieces"]
    row = coverage.measure(case, "rejection", n=300, k=10, seed=3, draws=3)
    assert abs(row["share_sd"]) < 3 and 0.85 < row["nn_ratio"] < 1.15 and row["energy_ratio"] < 2


def test_a_coarse_coverage_floor_on_a_curved_set_and_a_set_in_two_pieces():
    """Pinned on the fast cases with the default method (``smc``: its levels on the shell, its
    rejection mode on the two pieces, 46% of the cube), far below what the suite measures (shell:
    NN ratio >= 0.97, energy ratio <= 1.6; two pieces: shares within 2.4 SD, over 10 seeds,
    docs/coverage.md), and far above the walk's failures there (shell NN ratio 0.45, energy ratio
    12.9; two pieces: shares off by 13 SD). The levels on two pieces: tests/core/test_smc.py."""
    available = coverage.cases()
    shell = coverage.measure(available["shell"], "smc", n=300, k=10, seed=4, draws=3)
    assert shell["certified"] == 1.0 and shell["nn_ratio"] >= 0.6 and shell["energy_ratio"] <= 4.0
    pieces = coverage.measure(available["two_pieces"], "smc", n=300, k=10, seed=4, draws=3)
    assert pieces["certified"] == 1.0 and abs(pieces["share_sd"]) <= 4.0 and pieces["nn_ratio"] >= 0.75
