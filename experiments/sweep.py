r"""Fashion-MNIST evidence sweeps: rho selection on validation, then every arm.

  python -m experiments.sweep run --regime overfit --phase rho [--parallel 2]
  python -m experiments.sweep run --regime overfit --phase arms [--parallel 2]
  python -m experiments.sweep table --regime overfit
  python -m experiments.sweep summary --regime overfit
  python -m experiments.sweep runs --regime overfit     # Fig. 3 inputs
  python -m experiments.sweep compare --regime overfit --workdir runs/main_job
  python -m experiments.sweep export --regime overfit   # seed-0 models, for figures
  python -m experiments.sweep rerun --regime overfit --arm sam --seed 0  # or --index N

A regime is a config (``REGIMES``). Phase ``rho`` trains SAM once (seed 0) at
each rho of ``RHO_GRID``; phase ``arms`` trains every arm of
``sweep_arms.ARMS`` at seeds ``SEEDS`` with the rho that gave SAM the best
final *validation* accuracy (SSAM arms use SAM's rho, as the paper does), the
``CORE_ARMS`` first, then the ``HEADLINE_ARMS`` at the further seeds of
``HEADLINE_SEEDS``; phase
``rho-ssam`` trains SSAM-F at 50 % sparsity on the same grid, to measure
whether SSAM would prefer another rho. A run is
identified by its config overrides and seed, so an arm identical to a grid run
(SAM at the chosen rho, seed 0) is trained once. Runs live in
``runs/sweeps/<regime>/...``, resume after a kill, and each finished run is
appended, with its per-epoch metrics and the command that made it, to
``experiments/results/<regime>_runs.jsonl``; rerunning skips recorded runs.
``summary`` writes ``experiments/results/<regime>_summary.json`` from that
file alone. Regime ``augmented`` is the earlier 10-epoch sweep with crop and
flip (read only: ``table``).
"""

import argparse
import concurrent.futures
import dataclasses
import json
import pathlib
import statistics
import subprocess
import sys

from experiments import optimizer_table
from experiments import run_record
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


def cost_file(regime: str) -> pathlib.Path:
  """``benchmarks.arm_cost``'s measurement for ``regime`` (see ``Regime.cost_of``)."""
  measured = REGIMES[regime].cost_of or regime
  return pathlib.Path("benchmarks/results") / f"{measured}_arm_cost_cpu.json"


def training_cost(regime: str, arm: sweep_arms.Arm, epoch_ratio: float) -> float:
  """An arm's whole training run in units of SGD's, from its epoch's cost
  (``benchmarks.arm_cost``): ``sgd 2x epochs`` costs twice its epoch."""
  config = regime_config(regime)
  epochs = overrides_of(regime, arm, rho=0.0).get("num_epochs", config.num_epochs)
  return epoch_ratio * epochs / config.num_epochs


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


def _find(rows: list[dict], overrides: dict, seed: int):
  return next((r for r in rows if r["overrides"] == overrides
               and r["seed"] == seed), None)


def _epochs(path: pathlib.Path) -> list[dict]:
  metrics = path / "metrics.jsonl"
  if not metrics.exists():
    return []
  return [json.loads(line) for line in metrics.read_text().splitlines() if line]


def _record(regime: str, arm: sweep_arms.Arm, overrides: dict, seed: int,
            parallel: int) -> bool:
  """Appends the finished run to the results file; False if it is unfinished."""
  config = regime_config(regime)
  epochs = _epochs(workdir(regime, overrides, seed))
  wanted = overrides.get("num_epochs", config.num_epochs)
  if not epochs or epochs[-1]["epoch"] < wanted:
    return False
  last = epochs[-1]
  row = {"regime": regime, "arm": arm.label, "seed": seed, "overrides": overrides,
         **{key: last[key] for key in ("test_accuracy", "validation_accuracy",
                                       "train_accuracy", "train_loss")},
         "mean_epoch_seconds": statistics.fmean(e["epoch_seconds"] for e in epochs),
         "runs_in_parallel": parallel,
         "command": " ".join(command(regime, overrides, seed)[1:]),
         **run_record.derived_fields(workdir(regime, overrides, seed), epochs),
         "epochs": epochs}
  with results_file(regime).open("a") as out:
    out.write(json.dumps(row) + "\n")
  return True


def rho_selection(regime: str,
                  arm: sweep_arms.Arm = RHO_ARM) -> dict[float, float]:
  """Final validation accuracy (%) of ``arm`` at each recorded grid rho."""
  rows = recorded_rows(regime)
  found = {}
  for rho in RHO_GRID:
    row = _find(rows, overrides_of(regime, arm, rho), RHO_SEED)
    if row is not None:
      found[rho] = 100 * row["validation_accuracy"]
  return found


def selected_rho(regime: str) -> float:
  """SAM's rho with the best final validation accuracy (first on a tie)."""
  grid = rho_selection(regime)
  if len(grid) < len(RHO_GRID):
    raise SystemExit(f"{regime}: the rho grid is not finished ({len(grid)} of "
                     f"{len(RHO_GRID)} SAM runs); run --phase rho first.")
  return max(RHO_GRID, key=lambda rho: (grid[rho], -RHO_GRID.index(rho)))


def jobs(regime: str, phase: str, only: list[sweep_arms.Arm]
         ) -> list[tuple[sweep_arms.Arm, dict, int]]:
  """(arm, overrides, seed) of every run the phase needs, in priority order."""
  if phase in ("rho", "rho-ssam"):
    arm = RHO_ARM if phase == "rho" else RHO_SSAM_ARM
    return [(arm, overrides_of(regime, arm, rho), RHO_SEED) for rho in RHO_GRID]
  rho = selected_rho(regime)
  arms = [arm for arm in sweep_arms.ARMS if not only or arm in only]
  core = sweep_arms.CORE_ARMS
  groups = ([a for a in arms if a in core], [a for a in arms if a not in core])
  seeds = REGIMES[regime].seeds
  extra_seeds = [s for s in REGIMES[regime].headline_seeds if s not in seeds]
  return [(arm, overrides_of(regime, arm, rho), seed)
          for group in groups for seed in seeds for arm in group] + [
              (arm, overrides_of(regime, arm, rho), seed)
              for seed in extra_seeds for arm in arms
              if arm in sweep_arms.HEADLINE_ARMS]


def seeds_of(regime: str, arm: sweep_arms.Arm) -> tuple[int, ...]:
  plan = REGIMES[regime]
  return (plan.headline_seeds if arm in sweep_arms.HEADLINE_ARMS
          else plan.seeds)


def run(regime: str, phase: str, parallel: int,
        only: list[sweep_arms.Arm]) -> None:
  pending = []
  for arm, overrides, seed in jobs(regime, phase, only):
    if _find(recorded_rows(regime), overrides, seed) is not None:
      continue
    if any(o == overrides and s == seed for _, o, s in pending):
      continue
    if not _record(regime, arm, overrides, seed, parallel):
      pending.append((arm, overrides, seed))

  def train(job):
    arm, overrides, seed = job
    log = workdir(regime, overrides, seed) / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
      code = subprocess.call(command(regime, overrides, seed), stdout=out,
                             stderr=subprocess.STDOUT)
    return job, code

  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    for (arm, overrides, seed), code in pool.map(train, pending):
      if code == 0 and _record(regime, arm, overrides, seed, parallel):
        print(f"recorded {regime} {arm.label} seed {seed}", flush=True)
      else:
        print(f"FAILED {regime} {arm.label} seed {seed} (exit {code}): "
              f"{workdir(regime, overrides, seed)}/train.log", flush=True)


def rows_by_arm(regime: str) -> dict[str, list[dict]]:
  """Recorded rows grouped by arm; rows of the rho grid only count as an arm
  at the selected rho."""
  rows = recorded_rows(regime)
  if regime == "augmented":  # legacy records: one name per setting
    grouped = {}
    for row in rows:
      grouped.setdefault(row["setting"], []).append(row)
    return grouped
  rho = selected_rho(regime)
  return {arm.label: [r for seed in seeds_of(regime, arm)
                      if (r := _find(rows, overrides_of(regime, arm, rho), seed))]
          for arm in sweep_arms.ARMS}


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
      "arms": statistics_report.arm_statistics(grouped),
  }


def summary_file(regime: str) -> pathlib.Path:
  return RESULTS / f"{regime}_summary.json"


def compare(regime: str, workdir: str) -> str:
  """A finished run's final accuracies beside the regime's committed arms."""
  final = _epochs(pathlib.Path(workdir))[-1]
  if not summary_file(regime).exists():
    return (f"This run: test accuracy {100 * final['test_accuracy']:.2f} %. "
            f"No committed {summary_file(regime)} to compare with.")
  committed = json.loads(summary_file(regime).read_text())
  lines = [f"This run ({workdir}, epoch {final['epoch']}): test accuracy "
           f"{100 * final['test_accuracy']:.2f} %, validation "
           f"{100 * final.get('validation_accuracy', float('nan')):.2f} %.",
           f"Committed {committed['description']} "
           f"(rho {committed['selected_rho']}, {summary_file(regime)}):"]
  for arm in sweep_arms.HEADLINE_ARMS:
    stats = committed["arms"].get(arm.label, {}).get("test_accuracy")
    if stats:
      lines.append(f"  {arm.label:14s} test accuracy {stats['mean']:.2f} ± "
                   f"{stats['std']:.2f} % over {stats['n']} seeds")
  return "\n".join(lines)


def exported_model(regime: str, arm: sweep_arms.Arm) -> pathlib.Path:
  name = arm.label.replace(" ", "_").replace("=", "")
  return RESULTS / "models" / regime / f"{name}_seed0.msgpack"


def export(regime: str) -> list[str]:
  """Writes the seed-0 models of ``sweep_arms.EXPORTED_ARMS`` (params and BatchNorm
  statistics only) next to the results, for the analyses."""
  from experiments.analysis import trained  # pylint: disable=g-import-not-at-top
  rho = selected_rho(regime)
  return [trained.export_model(str(workdir(regime, overrides_of(regime, arm, rho), 0)),
                               str(exported_model(regime, arm)))
          for arm in sweep_arms.EXPORTED_ARMS]


def figure_runs(regime: str) -> list[str]:
  """``OPT[@SPARSITY]=PATH`` of each recorded arm run on the sparsity axis."""
  specs = []
  for label, rows in rows_by_arm(regime).items():
    arm = sweep_arms.arm(label)
    if arm.leaves or arm.doubled or arm.label_noise is not None:
      continue  # an ablation, a longer schedule or label noise
    name = arm.optimizer + ("-tensorwise" if arm.tensorwise else "")
    if arm.sparsity is not None:
      name += f"@{arm.sparsity}"
    specs += [f"{name}={workdir(regime, row['overrides'], row['seed'])}"
              for row in rows]
  return specs


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("action", choices=("run", "table", "summary", "runs",
                                         "compare", "selected-rho", "export", "rerun"))
  parser.add_argument("--regime", choices=tuple(REGIMES), required=True)
  parser.add_argument("--phase", choices=("rho", "arms", "rho-ssam"), default="arms")
  parser.add_argument("--parallel", type=int, default=1)
  parser.add_argument("--only", default="", help="comma-separated arm names")
  parser.add_argument("--workdir", help="the run to compare (compare)")
  parser.add_argument("--arm", help="rerun: the record's arm (with --seed)")
  parser.add_argument("--seed", type=int, help="rerun: the record's seed")
  parser.add_argument("--index", type=int, help="rerun: the record's 0-based line")
  args = parser.parse_args(argv)
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
    run(args.regime, args.phase, args.parallel, only)
  elif args.action == "summary":
    path = summary_file(args.regime)
    path.write_text(json.dumps(summary(args.regime), indent=1) + "\n")
    print(f"wrote {path}")
  elif args.action == "export":
    print("\n".join(export(args.regime)))
  elif args.action == "compare":
    print(compare(args.regime, args.workdir))
  elif args.action == "selected-rho":  # from the committed summary
    if not summary_file(args.regime).exists():
      raise SystemExit(f"no {summary_file(args.regime)}")
    print(json.loads(summary_file(args.regime).read_text())["selected_rho"])
  elif args.action == "runs":
    print(" ".join(figure_runs(args.regime)))
  else:
    print(table(args.regime))


if __name__ == "__main__":
  main()
