"""Paired differences with t intervals, and Holm's correction."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments import statistics_report


def test_paired_difference_matches_hand_computation():
  # Differences 0.5, 1.0, 0.5: mean 2/3, sd sqrt(1/12), se 1/6, t = 4 with
  # 2 degrees of freedom; t_{0.975, 2} = 4.302652729911275 (tables).
  diff = statistics_report.paired_difference({0: 1.0, 1: 2.0, 2: 3.5},
                                             {0: 0.5, 1: 1.0, 2: 3.0})
  assert diff["seeds"] == [0, 1, 2] and diff["n"] == 3 and diff["df"] == 2
  assert diff["mean"] == pytest.approx(2 / 3, rel=1e-12)
  assert diff["sd"] == pytest.approx(math.sqrt(1 / 12), rel=1e-12)
  assert diff["se"] == pytest.approx(1 / 6, rel=1e-12)
  assert diff["t"] == pytest.approx(4.0, rel=1e-12)
  half = 4.302652729911275 / 6
  assert diff["ci"] == pytest.approx([2 / 3 - half, 2 / 3 + half], rel=1e-9)
  assert diff["verdict"] == "tie"  # the interval contains 0


@pytest.mark.parametrize("seed", range(4))
def test_paired_difference_matches_scipy_ttest_rel(seed):
  rng = np.random.default_rng(seed)
  n = 3 + seed
  a = rng.normal(80, 1, n)
  b = a - rng.normal(0.5 * seed, 0.4, n)
  diff = statistics_report.paired_difference(dict(enumerate(a)), dict(enumerate(b)))
  reference = stats.ttest_rel(a, b)
  interval = reference.confidence_interval(0.95)
  assert diff["t"] == pytest.approx(reference.statistic, rel=1e-9)
  assert diff["p"] == pytest.approx(reference.pvalue, rel=1e-9)
  assert diff["ci"] == pytest.approx([interval.low, interval.high], rel=1e-9)
  assert diff["df"] == reference.df
  expected = ("better" if interval.low > 0 else "worse" if interval.high < 0
              else "tie")
  assert diff["verdict"] == expected


def test_paired_difference_uses_only_the_shared_seeds():
  a = {0: 90.0, 1: 91.0, 2: 92.0, 3: 50.0}  # seed 3: a's alone
  b = {0: 89.0, 1: 89.5, 2: 91.0, 4: 99.0}  # seed 4: b's alone
  diff = statistics_report.paired_difference(a, b)
  reference = stats.ttest_rel([90.0, 91.0, 92.0], [89.0, 89.5, 91.0])
  assert diff["seeds"] == [0, 1, 2]
  assert diff["p"] == pytest.approx(reference.pvalue, rel=1e-9)
  assert diff["mean"] == pytest.approx(7 / 6, rel=1e-12)


def test_verdicts_follow_the_interval():
  better = statistics_report.paired_difference({0: 2.0, 1: 3.1, 2: 4.0},
                                               {0: 1.0, 1: 2.0, 2: 3.0})
  assert better["ci"][0] > 0 and better["verdict"] == "better"
  worse = statistics_report.paired_difference({0: 1.0, 1: 2.0, 2: 3.0},
                                              {0: 2.0, 1: 3.1, 2: 4.0})
  assert worse["ci"][1] < 0 and worse["verdict"] == "worse"


def test_fewer_than_two_shared_seeds_give_no_verdict():
  one = statistics_report.paired_difference({0: 2.0, 1: 3.0}, {1: 1.0, 2: 0.0})
  assert one == {"seeds": [1], "n": 1, "mean": 2.0, "verdict": None}
  none = statistics_report.paired_difference({0: 2.0}, {1: 1.0})
  assert none == {"seeds": [], "n": 0, "mean": None, "verdict": None}


def test_equal_differences_give_a_zero_width_interval():
  shifted = statistics_report.paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
  assert shifted["ci"] == [1.0, 1.0] and shifted["verdict"] == "better"
  assert shifted["p"] == 0.0 and shifted["t"] is None
  same = statistics_report.paired_difference({0: 2.0, 1: 3.0}, {0: 2.0, 1: 3.0})
  assert same["verdict"] == "tie" and same["p"] == 1.0


def test_holm_on_the_textbook_example():
  # Four hypotheses at alpha 0.05 (the example of Wikipedia's
  # "Holm-Bonferroni method"): sorted p 0.005, 0.01, 0.03, 0.04 against
  # 0.05/4, 0.05/3, 0.05/2: H4 and H1 are rejected, then the procedure stops.
  p = {"H1": 0.01, "H2": 0.04, "H3": 0.03, "H4": 0.005}
  adjusted = statistics_report.holm(p)
  # By hand: 4 * 0.005, 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04).
  assert adjusted == pytest.approx({"H1": 0.03, "H2": 0.06, "H3": 0.06,
                                    "H4": 0.02}, rel=1e-12)
  assert list(adjusted) == list(p)
  assert {name for name, value in adjusted.items() if value < 0.05} == {"H1", "H4"}


def test_holm_caps_at_one_and_keeps_monotone_order():
  adjusted = statistics_report.holm({"a": 0.5, "b": 0.2, "c": 0.9})
  assert adjusted == pytest.approx({"a": 1.0, "b": 0.6, "c": 1.0})
  assert statistics_report.holm({}) == {}


def _rows(arm, values, early=None):
  rows = []
  for seed, value in values.items():
    row = {"seed": seed, "overrides": {}, "test_accuracy": value,
           "mean_epoch_seconds": 1.0, "epochs": []}
    if early is not None:
      row.update(early_stopped_test_accuracy=early[seed], early_stopped_epoch=3,
                 early_stopped_approximate=False, best_validation_epoch=3)
    rows.append(row)
  return rows


def test_arm_statistics_adds_paired_comparisons_with_one_holm_family():
  grouped = {
      "sam": _rows("sam", {0: 0.85, 1: 0.86, 2: 0.84, 3: 0.85}),
      "sgd": _rows("sgd", {0: 0.80, 1: 0.82, 2: 0.81, 3: 0.80}),
      "ssam": _rows("ssam", {0: 0.84, 1: 0.86, 2: 0.83}),
      "single": _rows("single", {0: 0.9}),
  }
  arms = statistics_report.arm_statistics(grouped)
  ssam = arms["ssam"]["paired"]["test_accuracy"]
  assert ssam["vs_sam"]["seeds"] == [0, 1, 2]
  reference = stats.ttest_rel([84.0, 86.0, 83.0], [85.0, 86.0, 84.0])
  assert ssam["vs_sam"]["p"] == pytest.approx(reference.pvalue, rel=1e-9)
  assert arms["single"]["paired"]["test_accuracy"]["vs_sam"]["verdict"] is None
  # The family: sam-sgd (once, though both arms report it), ssam-sam,
  # ssam-sgd; the single-seed arm has no verdict and is not a member.
  sam_sgd = arms["sam"]["paired"]["test_accuracy"]["vs_sgd"]
  sgd_sam = arms["sgd"]["paired"]["test_accuracy"]["vs_sam"]
  assert sam_sgd["holm"]["comparisons"] == 3
  p = {"sam-sgd": sam_sgd["p"], "ssam-sam": ssam["vs_sam"]["p"],
       "ssam-sgd": ssam["vs_sgd"]["p"]}
  adjusted = statistics_report.holm(p)
  assert sam_sgd["holm"]["p"] == sgd_sam["holm"]["p"] == adjusted["sam-sgd"]
  assert ssam["vs_sgd"]["holm"]["p"] == adjusted["ssam-sgd"]
  assert "holm" not in arms["single"]["paired"]["test_accuracy"]["vs_sam"]
  assert "vs_sam" not in arms["ssam"]  # every comparison is paired
  assert "early_stopped_test_accuracy" not in arms["sam"]["paired"]


def test_arm_statistics_pairs_the_early_stopped_accuracy():
  grouped = {"sam": _rows("sam", {0: 0.85, 1: 0.86}, early={0: 0.86, 1: 0.87}),
             "sgd": _rows("sgd", {0: 0.70, 1: 0.72}, early={0: 0.80, 1: 0.83})}
  arms = statistics_report.arm_statistics(grouped)
  early = arms["sam"]["paired"]["early_stopped_test_accuracy"]["vs_sgd"]
  assert early["mean"] == pytest.approx(5.0)
  assert arms["sgd"]["early_stopped_test_accuracy"]["mean"] == pytest.approx(81.5)
  assert arms["sgd"]["early_stopped_epochs"] == [3, 3]
  assert arms["sgd"]["early_stopped_approximate_seeds"] == []


def test_markdown_table_reads_the_paired_early_stopped_interval():
  grouped = {"sam": _rows("sam", {0: 0.85, 1: 0.86, 2: 0.84}, early={0: 0.86, 1: 0.87, 2: 0.85}),
             "sgd": _rows("sgd", {0: 0.70, 1: 0.72, 2: 0.71}, early={0: 0.80, 1: 0.83, 2: 0.81})}
  table = statistics_report.markdown_table(grouped)
  # Early-stopped SAM - SGD per seed: 6, 4, 4 points; mean 4.667, sd 1.155,
  # t_{0.975, 2} = 4.303: 4.667 ± 2.869.
  sam_row = next(line for line in table.splitlines() if line.startswith("| sam |"))
  assert "+4.67 [+1.80, +7.54], n=3, better" in sam_row
  assert "vs SGD (early-stopped)" in table.splitlines()[0]
