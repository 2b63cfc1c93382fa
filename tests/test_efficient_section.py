"""The measured part of docs/efficient.md (docs/efficient_section.py) on small
hand-made summaries: the gain kept, the criterion, and the pick per budget."""

import pathlib
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))

import efficient_section  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_results_reading import SAM, SGD, summary_of  # pylint: disable=g-import-not-at-top,wrong-import-position

EVERY_10 = "sam every 10 own rho"
MSAM = "sam msam own rho"
# Early-stopped: within 0.3 of SAM, either side (a tie); and half of SAM's gain.
CLOSE = [(final, early + offset)
         for (final, early), offset in zip(SAM, (-0.3, 0.2, -0.1, 0.1, -0.2))]
HALF = [(final, (early + sgd_early) / 2) for (final, early), (_, sgd_early) in zip(SAM, SGD)]


def _rows(arms, costs):
  return {row["label"]: row for row in efficient_section.rows(summary_of(arms), costs)}


def test_gain_kept_is_the_paired_gain_over_sgd_as_a_share_of_sams_on_the_same_seeds():
  rows = _rows({"sgd": SGD, "sam": SAM, MSAM: HALF}, {"sgd": 1.0, "sam": 1.9, MSAM: 1.0})
  assert abs(rows[MSAM]["kept"] - 0.5) < 1e-9
  assert rows["sam"]["kept"] == 1.0
  assert not rows[MSAM]["meets"]  # half the gain, and below SAM
  fewer_seeds = _rows({"sgd": SGD, "sam": SAM, MSAM: HALF[:3]}, {})
  assert fewer_seeds[MSAM]["kept"] is None  # SAM's gain is on five seeds, the arm's on three


def test_the_criterion_needs_the_cost_the_gain_not_worse_than_sam_and_every_seed():
  costs = {"sgd": 1.0, "sam": 1.9, EVERY_10: 1.1}
  assert _rows({"sgd": SGD, "sam": SAM, EVERY_10: CLOSE}, costs)[EVERY_10]["meets"]
  better = [(final, early + 0.5 + offset) for (final, early), offset in
            zip(SAM, (0.1, -0.1, 0.0, 0.05, -0.05))]
  assert _rows({"sgd": SGD, "sam": SAM, EVERY_10: better}, costs)[EVERY_10]["meets"]
  # 95 % of the gain on average, but below SAM by its interval on every seed.
  slightly_worse = [(final, early - 0.2 + 0.01 * i) for i, (final, early) in enumerate(SAM)]
  worse = _rows({"sgd": SGD, "sam": SAM, EVERY_10: slightly_worse}, costs)[EVERY_10]
  assert worse["kept"] > 0.9 and worse["to_sam"]["verdict"] == "worse" and not worse["meets"]
  too_dear = _rows({"sgd": SGD, "sam": SAM, EVERY_10: CLOSE}, {**costs, EVERY_10: 1.2})
  assert not too_dear[EVERY_10]["meets"]
  three_seeds = _rows({"sgd": SGD, "sam": SAM, EVERY_10: CLOSE[:3]}, costs)
  assert not three_seeds[EVERY_10]["meets"]
  untimed = _rows({"sgd": SGD, "sam": SAM, EVERY_10: CLOSE}, {"sgd": 1.0, "sam": 1.9})
  assert not untimed[EVERY_10]["meets"] and untimed[EVERY_10]["cost"] is None


def test_each_budget_names_its_highest_mean_among_complete_arms_once():
  summary = summary_of({"sgd": SGD, "sam": SAM, EVERY_10: CLOSE, MSAM: HALF})
  costs = {"sgd": 1.0, "sam": 1.9, EVERY_10: 1.1, MSAM: 1.0}
  found = efficient_section.rows(summary, costs)
  lines = [efficient_section.pick_line(b, row, {}) for b, row in efficient_section.picks(found)]
  assert [line.split(":")[0] for line in lines] == [
      "Up to 1x SGD's cost", "Up to 1.15x SGD's cost (and up to 1.3x)",
      "Up to 2x SGD's cost"]
  assert lines[0].startswith("Up to 1x SGD's cost: sam msam own rho (1.00x)")
  assert EVERY_10 in lines[1] and "sam (1.90x)" in lines[2]


def test_render_replaces_only_the_text_between_the_markers():
  text = f"intro\n{efficient_section.START}\nold\n{efficient_section.END}\noutro\n"
  out = efficient_section.render(text, None, {}, {})
  assert out == (f"intro\n{efficient_section.START}\n\nNo R2 summary is committed.\n\n"
                 f"{efficient_section.END}\noutro\n")
  with pytest.raises(ValueError, match="lacks the markers"):
    efficient_section.render("no markers", None, {}, {})


def test_readme_paragraph_says_why_no_cheap_arm_is_named():
  costs = {"sgd": 1.0, "sam": 1.9, EVERY_10: 1.1, MSAM: 1.0}
  partial = summary_of({"sgd": SGD, "sam": SAM, EVERY_10: CLOSE[:1]})
  assert "no cheaper ascent is trained at every seed" in efficient_section.readme_paragraph(
      partial, costs, {})
  below_sgd = [(final, sgd_early - 1.0 + 0.1 * i)
               for i, ((final, _), (_, sgd_early)) in enumerate(zip(SAM, SGD))]
  losing = summary_of({"sgd": SGD, "sam": SAM, MSAM: below_sgd})
  assert "early-stopped SGD has the highest mean" in efficient_section.readme_paragraph(
      losing, costs, {})
  complete = summary_of({"sgd": SGD, "sam": SAM, EVERY_10: CLOSE})
  text = efficient_section.readme_paragraph(complete, costs, {EVERY_10: "SAM every 10"})
  assert ("of the arms within 1.15x SGD's cost trained at every seed, the highest mean is "
          "SAM every 10's (1.10x)") in text
  assert text.endswith("(point estimate) and not worse than SAM: SAM every 10.")


def test_an_arm_within_the_budget_by_its_median_round_only_says_so():
  costs = {"sgd": 1.0, "sam": 1.9, EVERY_10: 1.1}
  summary = summary_of({"sgd": SGD, "sam": SAM, EVERY_10: CLOSE})
  straddles = {EVERY_10: (1.05, 1.2, 4), "sam": (1.8, 2.0, 4)}
  text = efficient_section.readme_paragraph(summary, costs, {}, straddles)
  assert "(1.10x; rounds 1.05-1.20x)" in text
  assert text.endswith("by the median over the benchmark's rounds only (some rounds cost "
                       f"more): {EVERY_10}.")
  within = efficient_section.readme_paragraph(summary, costs, {}, {EVERY_10: (1.05, 1.12, 4)})
  assert "median" not in within and within.endswith(f"not worse than SAM: {EVERY_10}.")
  row = {r["label"]: r for r in efficient_section.rows(summary, costs, straddles)}[EVERY_10]
  assert efficient_section.table([row], {}).splitlines()[-1].startswith(
      f"| {EVERY_10} | 1.10 (1.05-1.20) |")
