"""What the sweeps' records give besides tables: comparisons, models, runs.

* :func:`compare`: a finished run beside the committed arms of its regime
  (``python -m experiments.sweep compare``).
* :func:`export`: the seed-0 models the analyses read (``... export``).
* :func:`figure_runs`: the runs of the sparsity axis, for Fig. 3
  (``... runs``).
* :func:`cost_file`, :func:`training_cost`: what each arm costs, from
  ``benchmarks.arm_cost``.
"""

import json
import pathlib

from experiments import sweep
from experiments import sweep_arms


def compare(regime: str, workdir: str) -> str:
  """A finished run's final accuracies beside the regime's committed arms."""
  final = sweep.epochs_of(pathlib.Path(workdir))[-1]
  if not sweep.summary_file(regime).exists():
    return (f"This run: test accuracy {100 * final['test_accuracy']:.2f} %. "
            f"No committed {sweep.summary_file(regime)} to compare with.")
  committed = json.loads(sweep.summary_file(regime).read_text())
  lines = [f"This run ({workdir}, epoch {final['epoch']}): test accuracy "
           f"{100 * final['test_accuracy']:.2f} %, validation "
           f"{100 * final.get('validation_accuracy', float('nan')):.2f} %.",
           f"Committed {committed['description']} "
           f"(rho {committed['selected_rho']}, {sweep.summary_file(regime)}):"]
  for arm in sweep_arms.HEADLINE_ARMS:
    stats = committed["arms"].get(arm.label, {}).get("test_accuracy")
    if stats:
      lines.append(f"  {arm.label:14s} test accuracy {stats['mean']:.2f} ± "
                   f"{stats['std']:.2f} % over {stats['n']} seeds")
  return "\n".join(lines)


def exported_model(regime: str, arm: sweep_arms.Arm) -> pathlib.Path:
  name = arm.label.replace(" ", "_").replace("=", "")
  return sweep.RESULTS / "models" / regime / f"{name}_seed0.msgpack"


def export(regime: str) -> list[str]:
  """Writes the seed-0 models of ``sweep_arms.EXPORTED_ARMS`` (params and BatchNorm
  statistics only) next to the results, for the analyses."""
  from experiments.analysis import trained  # pylint: disable=g-import-not-at-top
  rho = sweep.selected_rho(regime)
  return [trained.export_model(
      str(sweep.workdir(regime, sweep.overrides_of(regime, arm, rho), 0)),
      str(exported_model(regime, arm))) for arm in sweep_arms.EXPORTED_ARMS]


def figure_runs(regime: str) -> list[str]:
  """``OPT[@SPARSITY]=PATH`` of each recorded arm run on the sparsity axis."""
  specs = []
  for label, rows in sweep.rows_by_arm(regime).items():
    arm = sweep_arms.arm(label)
    if (arm.leaves or arm.doubled or arm.label_noise is not None
        or arm.normalize or arm.rho_grid):
      continue  # an ablation, a longer schedule, label noise or its own rho
    name = arm.optimizer + ("-tensorwise" if arm.tensorwise else "")
    if arm.sparsity is not None:
      name += f"@{arm.sparsity}"
    specs += [f"{name}={sweep.workdir(regime, row['overrides'], row['seed'])}"
              for row in rows]
  return specs


def cost_file(regime: str) -> pathlib.Path:
  """``benchmarks.arm_cost``'s measurement for ``regime`` (see ``Regime.cost_of``)."""
  measured = sweep.REGIMES[regime].cost_of or regime
  return pathlib.Path("benchmarks/results") / f"{measured}_arm_cost_cpu.json"


def training_cost(regime: str, arm: sweep_arms.Arm, epoch_ratio: float) -> float:
  """An arm's whole training run in units of SGD's, from its epoch's cost
  (``benchmarks.arm_cost``): ``sgd 2x epochs`` costs twice its epoch."""
  config = sweep.regime_config(regime)
  epochs = sweep.overrides_of(regime, arm, rho=0.0).get("num_epochs", config.num_epochs)
  return epoch_ratio * epochs / config.num_epochs


def cost_key(regime: str, arm: sweep_arms.Arm) -> str:
  """What an arm's cost depends on: its overrides but rho. Arms with one key
  (an arm and its "own rho" twin) share one timing."""
  overrides = sweep.overrides_of(regime, arm, rho=0.0)
  overrides.pop("rho", None)
  return json.dumps(overrides, sort_keys=True)


def cost_report(regime: str) -> dict | None:
  """The regime's :func:`cost_file`, parsed, or None if it is not measured."""
  path = pathlib.Path(__file__).resolve().parents[1] / cost_file(regime)
  return json.loads(path.read_text()) if path.exists() else None


def _timed_rows(regime: str) -> dict[str, dict]:
  """The cost report's row timing each arm of ``sweep_arms.ARMS``, directly or
  through an arm with its :func:`cost_key`, by label."""
  report = cost_report(regime)
  if report is None:
    return {}
  timed = {cost_key(regime, sweep_arms.arm(label)): row
           for label, row in report["arms"].items()}
  return {arm.label: timed[key] for arm in sweep_arms.ARMS
          if (key := cost_key(regime, arm)) in timed}


def training_costs(regime: str) -> dict[str, float]:
  """:func:`training_cost` of every timed arm, by label (empty when the
  regime's costs are not measured)."""
  return {label: training_cost(regime, sweep_arms.arm(label), row["ratio_to_sgd"])
          for label, row in _timed_rows(regime).items()}


def training_cost_ranges(regime: str) -> dict[str, tuple[float, float, int]]:
  """The lowest and highest :func:`training_cost` over the benchmark's rounds,
  and how many rounds, of every arm timed in two or more rounds, by label.
  The cost is their median."""
  out = {}
  for label, row in _timed_rows(regime).items():
    rounds = row.get("ratios_to_nearest_sgd", [])
    if len(rounds) >= 2:
      arm = sweep_arms.arm(label)
      out[label] = (training_cost(regime, arm, min(rounds)),
                    training_cost(regime, arm, max(rounds)), len(rounds))
  return out
