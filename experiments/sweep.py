r"""Fashion-MNIST evidence sweeps: rho selection on validation, then every arm.

  python -m experiments.sweep run --regime overfit --phase rho [--parallel 2]
  python -m experiments.sweep run --regime overfit --phase arms [--parallel 2]
  python -m experiments.sweep table --regime overfit
  python -m experiments.sweep summary --regime overfit
  python -m experiments.sweep runs --regime overfit     # Fig. 3 inputs
  python -m experiments.sweep compare --regime overfit --workdir runs/main_job
  python -m experiments.sweep export --regime overfit   # seed-0 models, for figures

A regime is a config (``REGIMES``). Phase ``rho`` trains SAM once (seed 0) at
each rho of ``RHO_GRID``; phase ``arms`` trains every arm of ``ARMS`` at seeds
``SEEDS`` with the rho that gave SAM the best final *validation* accuracy
(SSAM arms use SAM's rho, as the paper does), the ``CORE_ARMS`` first, then
the ``HEADLINE_ARMS`` at the further seeds of ``HEADLINE_SEEDS``; phase
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

from experiments import statistics_report

RESULTS = pathlib.Path("experiments/results")
RUNS = pathlib.Path("runs/sweeps")
SEEDS = (0, 1, 2)
# The headline comparison (SGD, SAM, SSAM-F at 50 %) gets two more seeds.
HEADLINE_ARMS = ("sgd", "sam", "ssam-f s=0.5")
HEADLINE_SEEDS = SEEDS + (3, 4)
RHO_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
RHO_SEED = 0


@dataclasses.dataclass(frozen=True)
class Regime:
  config: str
  description: str
  # A regime whose arms train the same steps (same model, batch and epochs):
  # its measured costs are this regime's too.
  cost_of: str | None = None


REGIMES = {
    "overfit": Regime("experiments/configs/fashion_mnist_overfit.py",
                      "R1: clean labels, 10k examples, no augmentation"),
    "label_noise": Regime("experiments/configs/fashion_mnist_label_noise.py",
                          "R2: R1 with 40 % symmetric training-label noise",
                          cost_of="overfit"),
    "augmented": Regime("experiments/configs/fashion_mnist_small.py",
                        "all 60k examples, crop + flip, 10 epochs"),
}

# Arms in priority order: name -> config overrides (rho is added from the
# selection). The rho grid runs use the first two arms' overrides.
_TENSORWISE = {"pattern": "tensorwise", "normalize": "masked", "fast_path": True}
ARMS = {
    "sam": {"optimizer": "sam"},
    "ssam-f s=0.5": {"optimizer": "ssam-f", "sparsity": 0.5},
    "sgd": {"optimizer": "sgd"},
    "ssam-d s=0.5": {"optimizer": "ssam-d", "sparsity": 0.5},
    "ssam-random s=0.5": {"optimizer": "ssam-random", "sparsity": 0.5},
    "ssam-f s=0.9": {"optimizer": "ssam-f", "sparsity": 0.9},
    "ssam-d s=0.9": {"optimizer": "ssam-d", "sparsity": 0.9},
    "ssam-random s=0.9": {"optimizer": "ssam-random", "sparsity": 0.9},
    "ssam-f s=0.99": {"optimizer": "ssam-f", "sparsity": 0.99},
    "ssam-d s=0.99": {"optimizer": "ssam-d", "sparsity": 0.99},
    "ssam-random s=0.99": {"optimizer": "ssam-random", "sparsity": 0.99},
    "sgd 2x epochs": {"optimizer": "sgd", "num_epochs": "2x"},
    "ssam-f tensorwise s=0.9": {"optimizer": "ssam-f", "sparsity": 0.9, **_TENSORWISE},
    "ssam-f tensorwise s=0.9 last block": {
        "optimizer": "ssam-f", "sparsity": 0.9, **_TENSORWISE,
        "perturbed_leaves": "^(Conv_2|BatchNorm_2|Dense_0)/"},
    "sam 2x weight decay": {"optimizer": "sam", "weight_decay_sam": "2x"},
}
# The arms that answer the main question, trained at every seed before the rest.
CORE_ARMS = ("sam", "sgd", "ssam-f s=0.5", "ssam-d s=0.5", "ssam-random s=0.5")
# The arms whose seed-0 models the analyses (Figs. 1, 4, 5) read.
EXPORTED_ARMS = ("sgd", "sam", "ssam-f s=0.5", "ssam-d s=0.5")


def regime_config(regime: str):
  """The regime's config (for the values that "2x" overrides double)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("regime_config",
                                                REGIMES[regime].config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def overrides_of(regime: str, arm: str, rho: float) -> dict:
  """The arm's config overrides with "2x" resolved and rho set (if used)."""
  config = regime_config(regime)
  overrides = {key: (2 * config[key] if value == "2x" else value)
               for key, value in ARMS[arm].items()}
  if overrides["optimizer"] != "sgd":
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


def training_cost(regime: str, arm: str, epoch_ratio: float) -> float:
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


def _record(regime: str, arm: str, overrides: dict, seed: int,
            parallel: int) -> bool:
  """Appends the finished run to the results file; False if it is unfinished."""
  config = regime_config(regime)
  epochs = _epochs(workdir(regime, overrides, seed))
  wanted = overrides.get("num_epochs", config.num_epochs)
  if not epochs or epochs[-1]["epoch"] < wanted:
    return False
  last = epochs[-1]
  row = {"regime": regime, "arm": arm, "seed": seed, "overrides": overrides,
         **{key: last[key] for key in ("test_accuracy", "validation_accuracy",
                                       "train_accuracy", "train_loss")},
         "mean_epoch_seconds": statistics.fmean(e["epoch_seconds"] for e in epochs),
         "runs_in_parallel": parallel,
         "command": " ".join(command(regime, overrides, seed)[1:]),
         "epochs": epochs}
  with results_file(regime).open("a") as out:
    out.write(json.dumps(row) + "\n")
  return True


def rho_selection(regime: str, arm: str = "sam") -> dict[float, float]:
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


def jobs(regime: str, phase: str, only: list[str]) -> list[tuple[str, dict, int]]:
  """(arm, overrides, seed) of every run the phase needs, in priority order."""
  if phase in ("rho", "rho-ssam"):
    arm = "sam" if phase == "rho" else "ssam-f s=0.5"
    return [(arm, overrides_of(regime, arm, rho), RHO_SEED) for rho in RHO_GRID]
  rho = selected_rho(regime)
  arms = [arm for arm in ARMS if not only or arm in only]
  groups = ([a for a in arms if a in CORE_ARMS], [a for a in arms if a not in CORE_ARMS])
  extra_seeds = HEADLINE_SEEDS[len(SEEDS):]
  return [(arm, overrides_of(regime, arm, rho), seed)
          for group in groups for seed in SEEDS for arm in group] + [
              (arm, overrides_of(regime, arm, rho), seed)
              for seed in extra_seeds for arm in arms if arm in HEADLINE_ARMS]


def seeds_of(arm: str) -> tuple[int, ...]:
  return HEADLINE_SEEDS if arm in HEADLINE_ARMS else SEEDS


def run(regime: str, phase: str, parallel: int, only: list[str]) -> None:
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
        print(f"recorded {regime} {arm} seed {seed}", flush=True)
      else:
        print(f"FAILED {regime} {arm} seed {seed} (exit {code}): "
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
  return {arm: [r for seed in seeds_of(arm)
                if (r := _find(rows, overrides_of(regime, arm, rho), seed))]
          for arm in ARMS}


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
      "rho_selection_ssam-f s=0.5": {
          str(k): v for k, v in rho_selection(regime, "ssam-f s=0.5").items()},
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
  for arm in HEADLINE_ARMS:
    stats = committed["arms"].get(arm, {}).get("test_accuracy")
    if stats:
      lines.append(f"  {arm:14s} test accuracy {stats['mean']:.2f} ± "
                   f"{stats['std']:.2f} % over {stats['n']} seeds")
  return "\n".join(lines)


def exported_model(regime: str, arm: str) -> pathlib.Path:
  return RESULTS / "models" / regime / (arm.replace(" ", "_").replace("=", "") + "_seed0.msgpack")


def export(regime: str) -> list[str]:
  """Writes the seed-0 models of ``EXPORTED_ARMS`` (params and BatchNorm
  statistics only) next to the results, for the analyses."""
  from experiments.analysis import common  # pylint: disable=g-import-not-at-top
  rho = selected_rho(regime)
  return [common.export_model(str(workdir(regime, overrides_of(regime, arm, rho), 0)),
                              str(exported_model(regime, arm)))
          for arm in EXPORTED_ARMS]


def figure_runs(regime: str) -> list[str]:
  """``OPT[@SPARSITY]=PATH`` of each recorded arm run on the sparsity axis."""
  specs = []
  for arm, rows in rows_by_arm(regime).items():
    overrides = rows[0]["overrides"] if rows else {}
    if set(overrides) - {"optimizer", "sparsity", "rho", *_TENSORWISE}:
      continue  # a longer schedule or an ablation: not on the sparsity axis
    for row in rows:
      label = overrides["optimizer"]
      if overrides.get("pattern") == "tensorwise":
        label += "-tensorwise"
      if "sparsity" in overrides:
        label += f"@{overrides['sparsity']}"
      specs.append(f"{label}={workdir(regime, row['overrides'], row['seed'])}")
  return specs


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("action", choices=("run", "table", "summary", "runs",
                                         "compare", "selected-rho", "export"))
  parser.add_argument("--regime", choices=tuple(REGIMES), required=True)
  parser.add_argument("--phase", choices=("rho", "arms", "rho-ssam"), default="arms")
  parser.add_argument("--parallel", type=int, default=1)
  parser.add_argument("--only", default="", help="comma-separated arm names")
  parser.add_argument("--workdir", help="the run to compare (compare)")
  args = parser.parse_args(argv)
  if args.action == "run":
    if args.regime == "augmented":
      parser.error("the augmented sweep is finished and read only")
    run(args.regime, args.phase, args.parallel,
        [s for s in args.only.split(",") if s])
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
