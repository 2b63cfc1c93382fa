"""Sweep bookkeeping: rho selection on validation, summaries, the results page."""

import json
import pathlib
import subprocess
import sys

import pytest

from experiments import statistics_report
from experiments import sweep
from experiments import sweep_arms
from experiments import sweep_readouts

REPO = pathlib.Path(__file__).resolve().parents[1]


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
  sam, sgd, ssam = sweep_arms.SAM, sweep_arms.SGD, sweep_arms.SSAM_F_HALF
  for i, rho in enumerate(sweep.RHO_GRID):  # validation peaks at rho = 0.05
    validation = 0.88 - abs(i - 2) * 0.01
    rows.append(_row("overfit", "sam", sweep.overrides_of("overfit", sam, rho),
                     0, 0.5, validation))
    rows.append(_row("overfit", "ssam-f s=0.5",
                     sweep.overrides_of("overfit", ssam, rho), 0, 0.5, 0.8))
  for seed in (1, 2):
    rows.append(_row("overfit", "sam", sweep.overrides_of("overfit", sam, 0.05),
                     seed, 0.882 + seed / 1000, 0.88))
  for seed in (0, 1, 2):
    rows.append(_row("overfit", "sgd", sweep.overrides_of("overfit", sgd, 0.05),
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
  only = [sweep_arms.arm(label) for label in ("sam", "sgd", "ssam-d s=0.9")]
  jobs = sweep.jobs("overfit", "arms", only=only)
  plan = sweep.REGIMES["overfit"]
  assert len(plan.headline_seeds) > len(plan.seeds)
  assert {(arm.label, seed) for arm, _, seed in jobs} == {
      (arm, seed) for arm in ("sam", "sgd") for seed in plan.headline_seeds} | {
          ("ssam-d s=0.9", seed) for seed in plan.seeds}
  # Every arm has all the regime's seeds before the headline arms get more.
  first_extra = next(i for i, (_, _, seed) in enumerate(jobs) if seed not in plan.seeds)
  assert all(seed not in plan.seeds for _, _, seed in jobs[first_extra:])
  sam_seed0 = next(o for arm, o, seed in jobs if arm == sweep_arms.SAM and seed == 0)
  assert sam_seed0 == sweep.overrides_of("overfit", sweep_arms.SAM, 0.05)
  assert sweep.overrides_of("overfit", sweep_arms.SGD, 0.05) == {"optimizer": "sgd"}


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
  assert summary["arms"]["sgd"]["paired"]["test_accuracy"]["vs_sam"]["verdict"] in (
      "worse", "tie")
  assert summary["settings"]["validation_size"] > 0


def _append(results, rows):
  with (results / "overfit_runs.jsonl").open("a") as out:
    out.write("".join(json.dumps(r) + "\n" for r in rows))


def test_an_own_rho_arm_grows_its_grid_then_trains_every_seed_at_its_best(
    fake_results):
  own = sweep_arms.Arm("ssam-f", 0.9, normalize="masked", rho_grid=(0.1, 0.2, 0.5))
  assert own in sweep_arms.RADIUS_ARMS and own.label == "ssam-f s=0.9 masked own rho"

  def grid_jobs():
    return [o["rho"] for _, o, seed in sweep.jobs("overfit", "rho-arms", [own])
            if seed == sweep.RHO_SEED]

  assert grid_jobs() == [0.1, 0.2, 0.5]
  assert not sweep.jobs("overfit", "arms", [own])  # no rho chosen yet
  validation = {0.1: 0.80, 0.2: 0.84, 0.5: 0.86, 1.0: 0.85}
  _append(fake_results, [_row("overfit", own.label, sweep.overrides_of(
      "overfit", own, rho), 0, 0.5, validation[rho]) for rho in (0.1, 0.2, 0.5)])
  assert grid_jobs() == [1.0]  # 0.5 is best but at the end: the grid grows
  _append(fake_results, [_row("overfit", own.label, sweep.overrides_of(
      "overfit", own, 1.0), 0, 0.5, validation[1.0])])
  assert not grid_jobs()
  assert sweep.arm_rho("overfit", own) == 0.5
  jobs = sweep.jobs("overfit", "arms", [own])
  assert {o["rho"] for _, o, _ in jobs} == {0.5}
  assert [seed for *_, seed in jobs] == list(sweep.REGIMES["overfit"].seeds)
  assert {o["normalize"] for _, o, _ in jobs} == {"masked"}
  selection = sweep.summary("overfit")["own_rho_selection"][own.label]
  assert selection["selected"] == 0.5 and selection["bracketed"]
  assert set(selection["validation_accuracy"]) == {"0.1", "0.2", "0.5", "1.0"}
  # Its seed-0 grid run counts as the arm's seed 0.
  assert [r["seed"] for r in sweep.rows_by_arm("overfit")[own.label]] == [0]


def test_efficient_arms_set_the_variants_config_keys():
  arm = sweep_arms.arm("ssam-f s=0.5 every 10 own rho")
  assert arm in sweep_arms.EFFICIENT_ARMS
  assert arm.overrides(sweep.regime_config("label_noise")) == {
      "optimizer": "ssam-f", "sparsity": 0.5, "ascent": "scheduled",
      "ascent_every": 10}
  config = sweep.regime_config("label_noise")
  for arm in sweep_arms.EFFICIENT_ARMS:  # every key is the config's
    assert set(arm.overrides(config)) <= set(config), arm.label


def test_radius_arms_pair_every_mask_with_both_normalisations():
  arms = sweep_arms.RADIUS_ARMS
  assert {(a.optimizer, a.sparsity, a.normalize) for a in arms} == {
      (mask, s, n) for mask in ("ssam-f", "ssam-d", "ssam-random-resampled")
      for s in (0.9, 0.99) for n in ("masked", None)}
  assert all(a.rho_grid and a in sweep_arms.ARMS for a in arms)
  # The random control is redrawn on the Fisher mask's schedule.
  from experiments import optimizer_table  # pylint: disable=g-import-not-at-top
  assert optimizer_table.get("ssam-random-resampled").reselects


def test_overrides_double_the_regime_values():
  config = sweep.regime_config("overfit")
  longer = sweep.overrides_of("overfit", sweep_arms.arm("sgd 2x epochs"), 0.1)
  assert longer == {"optimizer": "sgd", "num_epochs": 2 * config.num_epochs}
  ablation = sweep.overrides_of("overfit", sweep_arms.arm("sam 2x weight decay"), 0.1)
  assert ablation["weight_decay_sam"] == 2 * config.weight_decay_sam
  assert config.weight_decay_sam == config.weight_decay_sgd  # no confound


def test_results_page_is_generated_from_the_committed_files():
  result = subprocess.run([sys.executable, "docs/generate_results.py", "--check"],
                          cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


def _committed_rows():
  for path in sorted((REPO / "experiments" / "results").glob("*.jsonl")):
    for line in path.read_text().splitlines():
      if line:
        yield path.name, json.loads(line)


def test_every_committed_label_resolves_to_an_arm_with_its_overrides():
  """The records' labels map to arms (LEGACY_ARMS for the legacy sweep's),
  and each arm sets the config values its committed runs were made with."""
  configs = {regime: sweep.regime_config(regime) for regime in sweep.REGIMES}
  legacy_names = {old: new for old, new in sweep_arms.LEGACY_OPTIMIZER_NAMES.items()}
  checked = set()
  for name, row in _committed_rows():
    label = row.get("arm") or row["setting"]
    arm = sweep_arms.arm(label)
    regime = row.get("regime", "augmented")
    recorded = dict(row["overrides"])
    recorded["optimizer"] = legacy_names.get(recorded["optimizer"],
                                             recorded["optimizer"])
    recorded.pop("rho", None)
    assert arm.overrides(configs[regime]) == recorded, (name, label)
    checked.add(label)
  assert set(sweep_arms.LEGACY_ARMS) <= checked  # no stale legacy entry
  # An arm with a rho grid of its own is recorded once its search runs.
  assert {arm.label for arm in sweep_arms.ARMS if not arm.rho_grid} <= checked


def test_labels_are_derived_as_the_committed_summaries_spell_them():
  labels = [arm.label for arm in sweep_arms.ARMS]
  assert len(set(labels)) == len(labels)
  for regime in ("overfit", "label_noise"):
    summary = json.loads(sweep.summary_file(regime).read_text())
    assert list(summary["arms"]) == [l for l in labels if l in summary["arms"]]
    assert {arm.label for arm in sweep_arms.ARMS if not arm.rho_grid} <= set(summary["arms"])
    assert f"rho_selection_{sweep.RHO_SSAM_ARM.label}" in summary
  assert sweep_arms.arm("random s=0.5") == sweep_arms.Arm("ssam-random", 0.5)
  assert sweep_readouts.exported_model("overfit", sweep_arms.SSAM_F_HALF).name == (
      "ssam-f_s0.5_seed0.msgpack")


@pytest.mark.parametrize("fields, message", [
    (dict(optimizer="sgd", sparsity=0.5), "sparsity"),
    (dict(optimizer="ssam-d"), "sparsity"),
    (dict(optimizer="adam"), "adam"),
    (dict(optimizer="sam", doubled="rho"), "doubled"),
    (dict(optimizer="sam", leaves="first block"), "leaves"),
    (dict(optimizer="sam", normalize="masked"), "normalize"),
    (dict(optimizer="ssam-f", sparsity=0.9, normalize="full"), "normalize"),
    (dict(optimizer="sgd", rho_grid=(0.1, 0.2)), "rho_grid"),
    (dict(optimizer="sam", rho_grid=(0.1, 0.5)), "rho_grid"),
    (dict(optimizer="sgd", variant="msam"), "variant"),
    (dict(optimizer="sam", variant="every 3"), "variant"),
])
def test_arms_reject_what_they_cannot_run(fields, message):
  with pytest.raises(ValueError, match=message):
    sweep_arms.Arm(**fields)


def test_unknown_labels_name_the_arms():
  with pytest.raises(KeyError, match="ssam-f s=0.5"):
    sweep_arms.arm("ssam-f s=0.7")


def test_figure_runs_name_each_run_by_its_arm(fake_results):
  del fake_results
  specs = sweep_readouts.figure_runs("overfit")
  assert [spec.split("=")[0] for spec in specs] == (
      ["sam"] * 3 + ["ssam-f@0.5"] + ["sgd"] * 3)
  assert specs[0].split("=", 1)[1] == str(sweep.workdir(
      "overfit", sweep.overrides_of("overfit", sweep_arms.SAM, 0.05), 0))


def test_figure_runs_of_the_legacy_sweep_use_todays_names():
  names = [spec.split("=")[0] for spec in sweep_readouts.figure_runs("augmented")]
  assert names.count("ssam-random@0.5") == 3
  assert names.count("ssam-f-tensorwise@0.5") == 3
  assert not any("noise" in name or " " in name for name in names)


def test_each_timed_arms_cost_lies_within_its_rounds():
  costs = sweep_readouts.training_costs("label_noise")
  ranges = sweep_readouts.training_cost_ranges("label_noise")
  assert ranges and set(ranges) <= set(costs) and "sgd" not in ranges  # SGD: one ratio, 1
  for label, (low, high, rounds) in ranges.items():
    assert low <= costs[label] <= high and rounds >= 2, label
  # A doubled schedule doubles every round, as it doubles the median.
  low, high, _ = ranges["sgd 2x epochs"]
  assert 1.8 < low <= high < 2.4
