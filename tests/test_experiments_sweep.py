"""Sweep bookkeeping: rho selection on validation, summaries, the results page."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

from experiments import statistics_report
from experiments import sweep

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_difference_standard_error_and_verdicts():
  a = {"mean": 88.2, "std": 0.1, "n": 3}
  b = {"mean": 87.6, "std": 0.2, "n": 3}
  diff = statistics_report.difference(a, b)
  se = math.sqrt(0.1**2 / 3 + 0.2**2 / 3)
  assert diff["mean"] == pytest.approx(0.6) and diff["se"] == pytest.approx(se)
  assert diff["se_units"] == pytest.approx(0.6 / se) and diff["verdict"] == "better"
  assert statistics_report.difference(b, a)["verdict"] == "worse"
  close = {"mean": 87.8, "std": 0.3, "n": 3}
  assert statistics_report.difference(close, b)["verdict"] == "tie"


def test_describe_uses_the_sample_std():
  stats = statistics_report.describe([1.0, 2.0, 3.0])
  assert stats == {"mean": 2.0, "std": 1.0, "n": 3}


def _row(regime, arm, overrides, seed, test, validation):
  return {"regime": regime, "arm": arm, "seed": seed, "overrides": overrides,
          "test_accuracy": test, "validation_accuracy": validation,
          "train_accuracy": 1.0, "train_loss": 0.01, "mean_epoch_seconds": 1.0,
          "runs_in_parallel": 1, "command": "...", "epochs": []}


@pytest.fixture
def fake_results(tmp_path, monkeypatch):
  """An overfit regime with a finished rho grid and three seeds of three arms."""
  monkeypatch.setattr(sweep, "RESULTS", tmp_path)
  rows = []
  for i, rho in enumerate(sweep.RHO_GRID):  # validation peaks at rho = 0.05
    validation = 0.88 - abs(i - 2) * 0.01
    rows.append(_row("overfit", "sam", sweep.overrides_of("overfit", "sam", rho),
                     0, 0.5, validation))
    rows.append(_row("overfit", "ssam-f s=0.5",
                     sweep.overrides_of("overfit", "ssam-f s=0.5", rho), 0, 0.5, 0.8))
  for seed in (1, 2):
    rows.append(_row("overfit", "sam", sweep.overrides_of("overfit", "sam", 0.05),
                     seed, 0.882 + seed / 1000, 0.88))
  for seed in sweep.SEEDS:
    rows.append(_row("overfit", "sgd", sweep.overrides_of("overfit", "sgd", 0.05),
                     seed, 0.876 + seed / 1000, 0.87))
  (tmp_path / "overfit_runs.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in rows))
  return tmp_path


def test_rho_is_chosen_on_validation_accuracy(fake_results):
  del fake_results
  assert sweep.selected_rho("overfit") == 0.05
  # The grid run of SAM at the chosen rho is seed 0 of the SAM arm.
  grouped = sweep.rows_by_arm("overfit")
  assert [r["seed"] for r in grouped["sam"]] == [0, 1, 2]
  assert [r["seed"] for r in grouped["sgd"]] == [0, 1, 2]


def test_arms_jobs_skip_nothing_but_share_the_grid_run(fake_results):
  del fake_results
  jobs = sweep.jobs("overfit", "arms", only=["sam", "sgd", "ssam-d s=0.9"])
  assert {(arm, seed) for arm, _, seed in jobs} == {
      (arm, seed) for arm in ("sam", "sgd") for seed in sweep.HEADLINE_SEEDS} | {
          ("ssam-d s=0.9", seed) for seed in sweep.SEEDS}
  # Every arm has all of SEEDS before the headline arms get their extra seeds.
  first_extra = next(i for i, (_, _, seed) in enumerate(jobs) if seed not in sweep.SEEDS)
  assert all(seed not in sweep.SEEDS for _, _, seed in jobs[first_extra:])
  sam_seed0 = next(o for arm, o, seed in jobs if arm == "sam" and seed == 0)
  assert sam_seed0 == sweep.overrides_of("overfit", "sam", 0.05)
  assert sweep.overrides_of("overfit", "sgd", 0.05) == {"optimizer": "sgd"}


def test_unfinished_rho_grid_refuses_the_arms(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, "RESULTS", tmp_path)
  with pytest.raises(SystemExit, match="rho grid is not finished"):
    sweep.selected_rho("overfit")


def test_summary_has_the_documented_shape(fake_results):
  del fake_results
  summary = sweep.summary("overfit")
  assert summary["selected_rho"] == 0.05
  assert set(summary["rho_selection"]) == {str(r) for r in sweep.RHO_GRID}
  assert summary["rho_selection"]["0.05"] == pytest.approx(88.0)
  sam = summary["arms"]["sam"]
  assert sam["test_accuracy"]["n"] == 3 and sam["seeds"] == [0, 1, 2]
  assert sam["rho"] == 0.05 and summary["arms"]["sgd"]["rho"] is None
  assert summary["arms"]["sgd"]["vs_sam"]["verdict"] in ("worse", "tie")
  assert summary["settings"]["validation_size"] > 0


def test_overrides_double_the_regime_values():
  config = sweep.regime_config("overfit")
  longer = sweep.overrides_of("overfit", "sgd 2x epochs", 0.1)
  assert longer == {"optimizer": "sgd", "num_epochs": 2 * config.num_epochs}
  ablation = sweep.overrides_of("overfit", "sam 2x weight decay", 0.1)
  assert ablation["weight_decay_sam"] == 2 * config.weight_decay_sam
  assert config.weight_decay_sam == config.weight_decay_sgd  # no confound


def test_results_page_is_generated_from_the_committed_files():
  result = subprocess.run([sys.executable, "docs/generate_results.py", "--check"],
                          cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr
