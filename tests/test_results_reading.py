"""The results' reading (docs/results_reading.py, docs/radius_section.py) on
small hand-made summaries: paired intervals, Holm's correction, and what may
be said when the intervals do not carry a verdict."""

import pathlib
import re
import sys

import pytest

from experiments import statistics_report

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))

import generate_results  # pylint: disable=g-import-not-at-top,wrong-import-position
import radius_section  # pylint: disable=g-import-not-at-top,wrong-import-position
import readme_section  # pylint: disable=g-import-not-at-top,wrong-import-position
import results_reading  # pylint: disable=g-import-not-at-top,wrong-import-position

MASKED_F = "ssam-f s=0.9 masked own rho"
MASKED_RANDOM = "ssam-random-resampled s=0.9 masked own rho"
FULL_F = "ssam-f s=0.9 own rho"


def _row(seed: int, final: float, early: float, radius=None) -> dict:
  row = {"seed": seed, "overrides": {"rho": 0.2}, "test_accuracy": final / 100,
         "validation_accuracy": early / 100, "train_accuracy": 0.6,
         "early_stopped_test_accuracy": early / 100, "early_stopped_epoch": 5,
         "early_stopped_approximate": False, "mean_epoch_seconds": 1.0}
  if radius is not None:
    row["effective_radius"] = radius
  return row


def summary_of(arms: dict[str, list[tuple[float, float]]], *, description="R2: test",
               own_rho=None, radius=None) -> dict:
  """A regime summary from ``{label: [(final, early-stopped) per seed]}``,
  computed by the sweep's own statistics (paired intervals, Holm)."""
  radius = radius or {}
  rows = {label: [_row(seed, final, early, radius.get(label))
                  for seed, (final, early) in enumerate(values)]
          for label, values in arms.items()}
  contrasts = {MASKED_F: (MASKED_RANDOM,), FULL_F: ("ssam-random-resampled s=0.9 own rho",)}
  return {"regime": "label_noise", "description": description, "selected_rho": 0.2,
          "rho_grid_seed": 0, "settings": {"label_noise": 0.0},
          "own_rho_selection": own_rho or {},
          "arms": statistics_report.arm_statistics(rows, contrasts)}


# SAM beats SGD by about 4 points on every seed; SSAM-F 50 % ties SAM.
SGD = [(70.0, 80.0), (71.0, 80.5), (70.5, 80.2), (71.5, 80.9), (70.2, 80.1)]
SAM = [(84.0, 84.1), (84.6, 84.3), (84.1, 84.0), (84.9, 84.8), (84.2, 84.2)]
SSAM_F = [(84.1, 84.0), (84.4, 84.4), (84.2, 83.9), (84.8, 84.9), (84.0, 84.2)]
# Beats SGD by its interval on three seeds, but by too little to survive Holm.
SSAM_D = [(72.0, 80.5), (72.4, 81.4), (71.8, 80.8)]


def test_format_paired_gives_the_interval_and_calls_a_tie_when_it_contains_zero():
  diff = statistics_report.paired_difference({0: 1.0, 1: 2.0, 2: 3.0},
                                             {0: 1.5, 1: 1.5, 2: 2.5})
  low, high = diff["ci"]
  assert low < 0 < high
  assert results_reading.format_paired(diff) == (
      f"+0.17 [{low:+.2f}, {high:+.2f}], n=3, tie")
  assert results_reading.format_paired(diff, verdict=False).endswith("n=3")


def test_format_paired_with_one_seed_has_no_interval():
  diff = statistics_report.paired_difference({0: 84.0}, {0: 80.0})
  assert results_reading.format_paired(diff) == "+4.00, n=1, no interval"
  assert results_reading.format_paired(
      statistics_report.paired_difference({0: 1.0}, {1: 1.0})) == "no shared seed"


def test_only_a_difference_that_survives_holm_is_bold():
  diff = statistics_report.paired_difference({0: 3.0, 1: 4.0, 2: 3.5},
                                             {0: 0.0, 1: 0.1, 2: 0.2})
  assert diff["verdict"] == "better"
  rejected = {**diff, "holm": {"comparisons": 30, "p": 0.2, "verdict": "tie"}}
  kept = {**diff, "holm": {"comparisons": 30, "p": 0.01, "verdict": "better"}}
  assert "**" not in results_reading.format_paired(rejected)
  assert results_reading.format_paired(kept).startswith("**+")
  assert results_reading.format_paired_holm(rejected).endswith(
      ", n=3, better (after Holm: tie)")
  assert results_reading.format_paired_holm(kept).endswith(", n=3, better**")


def test_a_claim_rejected_by_holm_is_not_stated():
  summary = summary_of({"sgd": SGD, "sam": SAM, "ssam-f s=0.5": SSAM_F,
                        "ssam-d s=0.9": SSAM_D})
  d_vs_sgd = results_reading.paired(summary["arms"]["ssam-d s=0.9"], "sgd",
                                    results_reading.EARLY)
  assert d_vs_sgd["verdict"] == "better" and d_vs_sgd["holm"]["verdict"] == "tie"
  assert results_reading.separates(summary)
  kept = results_reading.kept_sentence(summary, ["ssam-f s=0.5", "ssam-d s=0.9"])
  keeps, rest = kept.split("Not shown to beat")
  assert "ssam-f s=0.5" in keeps and "ssam-d s=0.9" not in keeps
  assert "ssam-d s=0.9" in rest
  assert results_reading.sam_vs_sgd(summary).startswith("SAM beats early-stopped SGD by **+")


NO_COSTS = (None, {}, {}, {})  # efficient_section.inputs() without a summary


def test_readme_states_only_holm_claims_and_the_family_size(monkeypatch):
  summary = summary_of({"sgd": SGD, "sam": SAM, "ssam-f s=0.5": SSAM_F,
                        "ssam-d s=0.9": SSAM_D})
  monkeypatch.setattr(readme_section, "perturbs_of", lambda regime, summary: {})
  text = readme_section.regime(summary, NO_COSTS)
  family = results_reading.family_size(summary, results_reading.EARLY)
  assert f"Holm's family: {family} paired comparisons" in text
  table = [line for line in text.splitlines() if line.startswith("| ssam-d s=0.9")]
  vs_sgd = table[0].split("|")[-3]
  assert "[" in vs_sgd and "**" not in vs_sgd  # its interval, but no claim
  assert not re.search(r", (better|worse|tie)\b", table[0])
  assert "Keeps it: ssam-f s=0.5." in text
  assert "Not shown to beat early-stopped SGD after Holm: ssam-d s=0.9" in text


def test_readme_shows_no_table_for_a_regime_that_cannot_separate_sam_from_sgd():
  flat = [(87.5, 87.5), (87.4, 87.6), (87.6, 87.4)]
  summary = summary_of({"sgd": flat, "sam": flat, "ssam-f s=0.5": SSAM_F},
                       description="R1: test")
  text = readme_section.regime(summary, NO_COSTS)
  assert "R1 cannot separate SAM from SGD" in text
  assert "| ssam-f s=0.5" not in text and "Keeps it" not in text
  assert "(docs/results.md#r1-test)" in text


def test_regime_that_cannot_separate_sam_from_sgd_gives_no_ssam_verdict():
  sgd = [(87.4, 87.4), (87.5, 87.6), (87.3, 87.5), (87.6, 87.3), (87.4, 87.5)]
  sam = [(87.7, 87.5), (87.6, 87.4), (87.8, 87.8), (87.5, 87.6), (87.9, 87.6)]
  ssam = [(88.1, 88.0), (88.2, 88.3), (88.0, 88.1)]  # above SGD by its interval
  summary = summary_of({"sgd": sgd, "sam": sam, "ssam-f s=0.9": ssam},
                       description="R1: test")
  assert results_reading.paired(summary["arms"]["ssam-f s=0.9"], "sgd",
                                results_reading.EARLY)["verdict"] == "better"
  assert not results_reading.separates(summary)
  assert results_reading.kept_sentence(summary, ["ssam-f s=0.9"]) == ""
  text = " ".join(results_reading.reading(summary))
  assert "R1 cannot separate SAM from SGD" in text
  assert "No verdict on the SSAM arms is drawn from R1" in text
  assert "Keeps it" not in text and "keeps SAM's gain" not in text
  table = generate_results.arms_table(summary, verdicts=results_reading.separates(summary))
  assert not re.search(r"n=\d+, (better|worse|tie)", table)


def test_radius_section_renders_a_partial_sweep():
  own_rho = {
      MASKED_F: {"validation_accuracy": {"0.1": 80.0, "0.2": 82.5, "0.5": 81.0},
                 "selected": 0.2, "bracketed": True},
      MASKED_RANDOM: {"validation_accuracy": {"0.1": 79.0, "0.2": 80.0, "0.5": 79.5},
                      "selected": 0.2, "bracketed": True},
      FULL_F: {"validation_accuracy": {"0.2": 80.18}, "selected": None,
               "bracketed": False},
  }
  summary = summary_of(
      {"sgd": SGD, "sam": SAM, MASKED_F: [(83.0, 83.5)], MASKED_RANDOM: [(81.0, 81.5)]},
      own_rho=own_rho, radius={MASKED_F: 0.2, MASKED_RANDOM: 0.2})
  lines = "\n".join(radius_section.section(summary, "label_noise"))
  row = next(line for line in lines.splitlines() if line.startswith(f"| {MASKED_F} |"))
  assert "**0.2: 82.50**" in row and "bracketed" in row
  assert "n=1, no interval" in row
  assert all("[" not in cell for cell in row.split("|")[7:10])
  assert "| 1 |" in row and "| 0.2 |" in row  # n and the mean radius
  partial = next(line for line in lines.splitlines() if line.startswith(f"| {FULL_F} |"))
  assert "0.2: 80.18; no rho chosen: grid incomplete" in partial
  untrained = "| ssam-d s=0.99 own rho | not measured |"
  assert untrained in lines
  assert "0.2 (= rho)" in lines  # SAM's radius is its rho
  reading = radius_section.reading(summary)
  assert f"{FULL_F} (no rho chosen: grid incomplete)" in reading[0]
  assert "Fewer than two shared seeds, no interval: " in reading[0]
  assert f"Not compared on two shared seeds: {MASKED_F}" in reading[1]
  # Equal radius on the grid: validation differences at the rhos both measured.
  assert f"{MASKED_F}: 0.1: +1.00, 0.2: +2.50, 0.5: +1.50." in reading[1]
  assert FULL_F not in reading[1].split("validation grid")[1]


def test_radius_section_compares_masks_at_equal_radius_with_their_intervals():
  random_values = [(80.0, 81.0), (80.4, 81.2), (80.1, 80.9)]
  fisher = [(82.0, 83.1), (82.4, 83.4), (82.1, 82.9)]
  summary = summary_of({"sgd": SGD, "sam": SAM, MASKED_F: fisher,
                        MASKED_RANDOM: random_values})
  diff = results_reading.paired(summary["arms"][MASKED_F], MASKED_RANDOM,
                                results_reading.EARLY)
  assert diff["n"] == 3
  (b_answer,) = [line for line in radius_section.reading(summary) if line.startswith("(b)")]
  assert f"{MASKED_F} vs {MASKED_RANDOM}: " in b_answer
  assert results_reading.format_paired(diff) in b_answer


def test_readme_names_the_radius_arms_that_keep_the_gain_and_words_contrasts_by_holm(
    monkeypatch):
  monkeypatch.setattr(readme_section, "perturbs_of", lambda regime, summary: {})
  random_values = [(80.0, 81.0), (80.4, 81.2), (80.1, 80.9), (80.3, 81.1), (80.2, 81.0)]
  fisher = [(84.0, 84.0), (84.5, 84.4), (84.2, 84.1), (84.8, 84.7), (84.1, 84.3)]
  summary = summary_of({"sgd": SGD, "sam": SAM, MASKED_F: fisher,
                        MASKED_RANDOM: random_values})
  kept = next(part for part in readme_section.regime(summary, NO_COSTS).split("\n\n")
              if part.startswith("An arm keeps"))
  assert f"Keeps it: {MASKED_F}." in kept
  assert f"falls below SAM by its interval: {MASKED_RANDOM}." in kept
  text = radius_section.contrast_sentence(summary)
  diff = results_reading.paired(summary["arms"][MASKED_F], MASKED_RANDOM,
                                results_reading.EARLY)
  assert results_reading.holm_verdict(diff) == "better"
  assert f"{MASKED_F} beats {MASKED_RANDOM} by **" in text
  # A contrast whose interval excludes 0 but fails Holm (SSAM-F 50 % tying SAM
  # adds a large p-value to the family) is not worded as a finding.
  noisy = [(81.0, early + d) for (_, early), d in zip(random_values, (0.1, 0.9, 0.2, 0.8, 0.3))]
  summary = summary_of({"sgd": SGD, "sam": SAM, "ssam-f s=0.5": SSAM_F, MASKED_F: noisy,
                        MASKED_RANDOM: random_values})
  diff = results_reading.paired(summary["arms"][MASKED_F], MASKED_RANDOM,
                                results_reading.EARLY)
  text = radius_section.contrast_sentence(summary)
  assert diff["verdict"] == "better" and results_reading.holm_verdict(diff) == "tie"
  assert "does not survive Holm's correction" in text and " beats " not in text
  # A regime that cannot separate SAM from SGD gets no sentence.
  flat = [(87.5, 87.5)] * 5
  assert radius_section.contrast_sentence(
      summary_of({"sgd": flat, "sam": flat, MASKED_F: fisher})) == ""
