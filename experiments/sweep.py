r"""Fashion-MNIST evidence sweeps: rho selection on validation, then every arm.

  python -m experiments.sweep run --regime overfit --phase rho [--parallel 2]
  python -m experiments.sweep run --regime overfit --phase arms [--parallel 2]
  python -m experiments.sweep run --regime label_noise --phase rho-arms
  python -m experiments.sweep table --regime overfit
  python -m experiments.sweep summary --regime overfit
  python -m experiments.sweep runs --regime overfit     # Fig. 3 inputs
  python -m experiments.sweep compare --regime overfit --workdir runs/main_job
  python -m experiments.sweep export --regime overfit   # seed-0 models, for figures
  python -m experiments.sweep rerun --regime overfit --arm sam --seed 0  # or --index N

A regime is a config (``REGIMES``). Phase ``rho`` trains SAM once (seed 0) at
each rho of ``RHO_GRID``; phase ``rho-ssam`` does so for SSAM-F at 50 %
sparsity, to measure whether SSAM would prefer another rho. Phase ``arms``
trains every arm of ``sweep_arms.ARMS`` at seeds ``SEEDS``, the ``CORE_ARMS``
first, then the ``HEADLINE_ARMS`` at the further ``HEADLINE_SEEDS``, with the
rho that gave SAM the best final *validation* accuracy (SSAM arms use SAM's
rho, as the paper does), or, for an arm with a grid of its own
(``Arm.rho_grid``, e.g. the radius-controlled arms), with the rho it chose
the same way in phase ``rho-arms`` (``experiments.rho_search``: the grid grows
until its best value is bracketed). A run is identified by its config
overrides and seed, so a grid run that is also an arm's run trains once
(``experiments.sweep_runner`` trains and records them). Runs live in ``runs/sweeps/<regime>/...`` and resume after a kill; each finished
run is appended, with its per-epoch metrics and the command that made it, to
``experiments/results/<regime>_runs.jsonl``, and rerunning skips it.
``summary`` writes ``experiments/results/<regime>_summary.json`` from that
file alone. Regime ``augmented`` is the earlier 10-epoch sweep with crop and
flip (read only: ``table``).
"""

import argparse
import dataclasses
import json
import pathlib
import sys

from experiments import optimizer_table
from experiments import rho_search
from experiments import statistics_report
from experiments import sweep_arms

RESULTS = pathlib.Path("experiments/results")
RUNS = pathlib.Path("runs/sweeps")
SEEDS = (0, 1, 2, 3, 4)
# The headline comparison (sweep_arms.HEADLINE_ARMS) may get more seeds.
HEADLINE_SEEDS = SEEDS
RHO_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
RHO_SEED = 0


@dataclasses.dataclass(frozen=True)
class Regime:
  config: str
  description: str
  # A regime whose arms train the same steps (same model, batch and epochs):
  # its measured costs are this regime's too.
  cost_of: str | None = None
  # Every arm trains on the same seeds, so that arms compare paired by seed.
  seeds: tuple[int, ...] = SEEDS
  headline_seeds: tuple[int, ...] = HEADLINE_SEEDS

  @property
  def every_seed(self) -> int:
    """How many seeds an arm trained at every seed has (a headline arm may
    have more)."""
    return len(self.seeds)


REGIMES = {
    # SAM's gain over SGD is small here: the headline arms need more seeds.
    "overfit": Regime("experiments/configs/fashion_mnist_overfit.py",
                      "R1: clean labels, 10k examples, no augmentation",
                      headline_seeds=tuple(range(10))),
    "label_noise": Regime("experiments/configs/fashion_mnist_label_noise.py",
                          "R2: R1 with 40 % symmetric training-label noise",
                          cost_of="overfit"),
    "augmented": Regime("experiments/configs/fashion_mnist_small.py",
                        "all 60k examples, crop + flip, 10 epochs"),
}

# The arm the rho grid trains, and the one phase rho-ssam trains on it.
RHO_ARM = sweep_arms.SAM
RHO_SSAM_ARM = sweep_arms.SSAM_F_HALF


def regime_config(regime: str):
  """The regime's config (for the values that "2x" overrides double)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("regime_config",
                                                REGIMES[regime].config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def overrides_of(regime: str, arm: sweep_arms.Arm, rho: float) -> dict:
  """The arm's config overrides in ``regime``, with rho set if it perturbs."""
  overrides = arm.overrides(regime_config(regime))
  if optimizer_table.get(arm.optimizer).sharpness_aware:
    overrides["rho"] = rho
  return overrides


def _slug(overrides: dict) -> str:
  return "_".join(f"{k}={v}" for k, v in sorted(overrides.items())).replace(
      "/", "").replace("^", "").replace("|", "-").replace("(", "").replace(")", "")


def workdir(regime: str, overrides: dict, seed: int) -> pathlib.Path:
  return RUNS / regime / _slug(overrides) / f"seed{seed}"


def command(regime: str, overrides: dict, seed: int) -> list[str]:
  return [sys.executable, "-m", "experiments.main",
          f"--config={REGIMES[regime].config}",
          f"--workdir={workdir(regime, overrides, seed)}"] + [
              f"--config.{key}={value}"
              for key, value in {"seed": seed, **overrides}.items()]


def results_file(regime: str) -> pathlib.Path:
  if regime == "augmented":
    return RESULTS / "fashion_mnist_sweep.jsonl"
  return RESULTS / f"{regime}_runs.jsonl"


def recorded_rows(regime: str) -> list[dict]:
  """Every finished run of ``regime``, in the order it was recorded."""
  path = results_file(regime)
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line]


def find_run(rows: list[dict], overrides: dict, seed: int):
  return next((r for r in rows if r["overrides"] == overrides
               and r["seed"] == seed), None)


def epochs_of(path: pathlib.Path) -> list[dict]:
  metrics = path / "metrics.jsonl"
  if not metrics.exists():
    return []
  return [json.loads(line) for line in metrics.read_text().splitlines() if line]


def rho_selection(regime: str,
                  arm: sweep_arms.Arm = RHO_ARM) -> dict[float, float]:
  """Final validation accuracy (%) of ``arm`` at each recorded grid rho."""
  validation = _validation(regime)
  return {rho: value for rho in RHO_GRID
          if (value := validation(arm, rho)) is not None}


def selected_rho(regime: str) -> float:
  """SAM's rho with the best final validation accuracy (first on a tie)."""
  grid = rho_selection(regime)
  if len(grid) < len(RHO_GRID):
    raise SystemExit(f"{regime}: the rho grid is not finished ({len(grid)} of "
                     f"{len(RHO_GRID)} SAM runs); run --phase rho first.")
  return max(RHO_GRID, key=lambda rho: (grid[rho], -RHO_GRID.index(rho)))


def _validation(regime: str) -> rho_search.Validation:
  """``validation(arm, rho)``: the final validation accuracy (%) of the
  arm's recorded rho-seed run at ``rho``, or None."""
  rows = recorded_rows(regime)

  def validation(arm, rho):
    row = find_run(rows, overrides_of(regime, arm, rho), RHO_SEED)
    return None if row is None else 100 * row["validation_accuracy"]

  return validation


def arm_rho(regime: str, arm: sweep_arms.Arm,
            validation: rho_search.Validation | None = None) -> float | None:
  """The rho ``arm`` trains at at every seed: SAM's, or its own once chosen;
  None while that or its knob is not chosen, or another knob was."""
  if arm.rho_grid is None:
    return selected_rho(regime)
  validation = validation or _validation(regime)
  if not rho_search.knob_chosen(arm, validation, sweep_arms.VARIANT_FAMILIES):
    return None
  return rho_search.arm_search(arm, validation).selected


def jobs(regime: str, phase: str, only: list[sweep_arms.Arm]
         ) -> list[tuple[sweep_arms.Arm, dict, int]]:
  """(arm, overrides, seed) of every run the phase needs now, in priority
  order (phase ``rho-arms`` may need more once these are recorded)."""
  arms = [arm for arm in sweep_arms.ARMS if not only or arm in only]
  if phase in ("rho", "rho-ssam"):
    arm = RHO_ARM if phase == "rho" else RHO_SSAM_ARM
    return [(arm, overrides_of(regime, arm, rho), RHO_SEED) for rho in RHO_GRID]
  if phase == "rho-arms":
    return [(arm, overrides_of(regime, arm, rho), RHO_SEED) for arm in arms
            if arm.rho_grid
            for rho in rho_search.arm_search(arm, _validation(regime)).pending]
  selected_rho(regime)  # SAM's grid must be finished
  validation = _validation(regime)
  rhos = {arm: arm_rho(regime, arm, validation) for arm in arms}
  arms = [arm for arm in arms if rhos[arm] is not None]
  core = sweep_arms.CORE_ARMS
  groups = ([a for a in arms if a in core], [a for a in arms if a not in core])
  seeds = REGIMES[regime].seeds
  extra_seeds = [s for s in REGIMES[regime].headline_seeds if s not in seeds]
  return [(arm, overrides_of(regime, arm, rhos[arm]), seed)
          for group in groups for seed in seeds for arm in group] + [
              (arm, overrides_of(regime, arm, rhos[arm]), seed)
              for seed in extra_seeds for arm in arms
              if arm in sweep_arms.HEADLINE_ARMS]


def seeds_of(regime: str, arm: sweep_arms.Arm) -> tuple[int, ...]:
  plan = REGIMES[regime]
  return (plan.headline_seeds if arm in sweep_arms.HEADLINE_ARMS
          else plan.seeds)


def rows_by_arm(regime: str) -> dict[str, list[dict]]:
  """Recorded rows grouped by arm; rows of the rho grid only count as an arm
  at the selected rho."""
  rows = recorded_rows(regime)
  if regime == "augmented":  # legacy records: one name per setting
    grouped = {}
    for row in rows:
      grouped.setdefault(row["setting"], []).append(row)
    return grouped
  validation = _validation(regime)
  rhos = {arm: arm_rho(regime, arm, validation) for arm in sweep_arms.ARMS}
  return {arm.label: [r for seed in seeds_of(regime, arm) if rhos[arm] is not None
                      and (r := find_run(rows, overrides_of(regime, arm, rhos[arm]),
                                      seed))]
          for arm in sweep_arms.ARMS}


def own_rho_selection(regime: str) -> dict[str, dict]:
  """Per arm with its own grid: the validation accuracy (%) at each grid
  rho, the chosen rho (None until the grid is measured), whether it is
  bracketed, and whether the arm's knob is its family's choice (None:
  undecided)."""
  selection, validation = {}, _validation(regime)
  for arm in sweep_arms.ARMS:
    if arm.rho_grid:
      search = rho_search.arm_search(arm, validation)
      grid = {rho: value for rho in search.grid
              if (value := validation(arm, rho)) is not None}
      if grid:
        selection[arm.label] = {
            "validation_accuracy": grid, "selected": search.selected,
            "bracketed": search.bracketed, "knob_chosen": rho_search.knob_chosen(
                arm, validation, sweep_arms.VARIANT_FAMILIES)}
  return selection


def table(regime: str) -> str:
  return statistics_report.markdown_table(rows_by_arm(regime))


def summary(regime: str) -> dict:
  """The machine-readable summary of a finished (or partial) regime."""
  config = regime_config(regime)
  grouped = rows_by_arm(regime)
  return {
      "regime": regime, "description": REGIMES[regime].description,
      "config": REGIMES[regime].config,
      "settings": {key: config[key] for key in (
          "train_subset", "validation_size", "label_noise", "model",
          "model_width", "num_epochs", "batch_size", "learning_rate",
          "weight_decay_sgd", "weight_decay_sam", "num_fisher_samples",
          "mask_update_epochs", "drop_rate")} | {
              "augment": config.augment.to_dict()},
      "rho_grid_seed": RHO_SEED, "selected_rho": selected_rho(regime),
      "rho_selection": {str(k): v for k, v in rho_selection(regime).items()},
      f"rho_selection_{RHO_SSAM_ARM.label}": {
          str(k): v for k, v in rho_selection(regime, RHO_SSAM_ARM).items()},
      "own_rho_selection": {
          label: {**found, "validation_accuracy": {
              str(k): v for k, v in found["validation_accuracy"].items()}}
          for label, found in own_rho_selection(regime).items()},
      "arms": statistics_report.arm_statistics(grouped, sweep_arms.CONTRASTS),
  }


def summary_file(regime: str) -> pathlib.Path:
  return RESULTS / f"{regime}_summary.json"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("action", choices=("run", "table", "summary", "runs",
                                         "compare", "selected-rho", "export", "rerun"))
  parser.add_argument("--regime", choices=tuple(REGIMES), required=True)
  parser.add_argument("--phase", choices=("rho", "arms", "rho-ssam", "rho-arms"),
                      default="arms")
  parser.add_argument("--parallel", type=int, default=1)
  parser.add_argument("--only", default="", help="comma-separated arm names")
  parser.add_argument("--workdir", help="the run to compare (compare)")
  parser.add_argument("--arm", help="rerun: the record's arm (with --seed)")
  parser.add_argument("--seed", type=int, help="rerun: the record's seed")
  parser.add_argument("--index", type=int, help="rerun: the record's 0-based line")
  args = parser.parse_args(argv)
  from experiments import sweep_readouts  # pylint: disable=g-import-not-at-top
  from experiments import sweep_runner  # pylint: disable=g-import-not-at-top
  if args.action == "rerun":  # experiments.rerun has the details
    from experiments import rerun  # pylint: disable=g-import-not-at-top
    sys.exit(rerun.main(args.regime, args.arm, args.seed, args.index))
  if args.action == "run":
    if args.regime == "augmented":
      parser.error("the augmented sweep is finished and read only")
    try:
      only = [sweep_arms.arm(label) for label in args.only.split(",") if label]
    except KeyError as error:
      parser.error(f"--only: {error.args[0]}")
    sweep_runner.run(args.regime, args.phase, args.parallel, only)
  elif args.action == "summary":
    path = summary_file(args.regime)
    path.write_text(json.dumps(summary(args.regime), indent=1) + "\n")
    print(f"wrote {path}")
  elif args.action == "export":
    print("\n".join(sweep_readouts.export(args.regime)))
  elif args.action == "compare":
    print(sweep_readouts.compare(args.regime, args.workdir))
  elif args.action == "selected-rho":  # from the committed summary
    if not summary_file(args.regime).exists():
      raise SystemExit(f"no {summary_file(args.regime)}")
    print(json.loads(summary_file(args.regime).read_text())["selected_rho"])
  elif args.action == "runs":
    print(" ".join(sweep_readouts.figure_runs(args.regime)))
  else:
    print(table(args.regime))


if __name__ == "__main__":
  main()
