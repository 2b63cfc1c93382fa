r"""A sweep regime's figures, from committed files.

  python -m experiments.analysis.evidence --regime overfit           # Fig. 3, cost
  python -m experiments.analysis.evidence --regime overfit --models  # + Figs. 1, 4, 5
  python -m experiments.analysis.evidence --regime overfit --redraw  # Figs. 1, 4, 5 from their JSON

Reads ``experiments/results/<regime>_runs.jsonl`` (every run's final metrics)
and, when present, the regime's ``benchmarks.arm_cost`` measurement
(``sweep_readouts.cost_file``: each arm's epoch time as a ratio to SGD's), and writes into
``experiments/results/figures/<regime>/``:

- ``fig3_accuracy_vs_sparsity.{png,json}``: final test accuracy against
  sparsity for the Fisher, dynamic and random masks, SAM and SGD as bands;
- ``accuracy_vs_cost.{png,json}``: the early-stopped test accuracy of SGD
  (and SGD for twice the epochs), SAM, SSAM-F 50 %, the tensor-wise arms and
  the cheaper ascents against the
  cost of the whole training run in units of SGD's, with the Pareto front
  (``frontier``).

Both draw the mean over seeds with its 95 % confidence interval
(``error_bars``) and name each tensor-wise arm by what it perturbs
(``sweep_arms.Arm.display_label``, measured by ``experiments.tensorwise_masks``).

With ``--models``, also Figs. 1, 4 and 5 of the seed-0 models that
``python -m experiments.sweep export`` wrote to
``experiments/results/models/<regime>/`` (Fig. 1 at the regime's selected rho).
``--redraw`` draws those three again from the JSON beside them, without
recomputing: the way to restyle them.
"""

import argparse
import json
import pathlib
import sys

from experiments import statistics_report
from experiments import sweep
from experiments import sweep_arms
from experiments import sweep_readouts
from experiments import tensorwise_masks
from experiments.analysis import accuracy_vs_sparsity
from experiments.analysis import error_bars
from experiments.analysis import frontier
from experiments.analysis import gradient_ratio
from experiments.analysis import hessian
from experiments.analysis import landscape
from experiments.analysis import output
from experiments.analysis import trained

FIGURES = pathlib.Path("experiments/results/figures")
MASKS = {"ssam-f": "Fisher (SSAM-F)", "ssam-d": "dynamic (SSAM-D)",
         "ssam-random": "random mask"}
MODEL_FIGURES = (gradient_ratio, landscape, hessian)


def accuracy_vs_sparsity_results(arms: dict, metric: str = "test_accuracy") -> dict:
  """Fig. 3's input, in the format of ``accuracy_vs_sparsity.plot``, from the
  statistics of each arm by label: the plain arms of ``sweep_arms.ARMS``, a
  mask's at each sparsity and SAM's and SGD's as references."""
  sparse, dense = {}, {}
  for arm in sweep_arms.ARMS:
    if arm.label not in arms or not arm.plain:
      continue
    stats = {**arms[arm.label][metric], "arm": arm.label}
    if arm.optimizer in MASKS:
      sparse.setdefault(MASKS[arm.optimizer], []).append(
          {"sparsity": arm.sparsity, **stats})
    elif arm.optimizer in ("sam", "sgd"):
      dense[arm.optimizer.upper()] = stats
  for points in sparse.values():
    points.sort(key=lambda p: p["sparsity"])
  return {"metric": metric, "sparse": sparse, "dense": dense}


def make_figures(regime: str) -> list[str]:
  rows = sweep.rows_by_arm(regime)
  arms = statistics_report.arm_statistics(rows)
  names = tensorwise_masks.display_labels(regime, {a: rows[a] for a in arms})
  out = FIGURES / regime
  out.mkdir(parents=True, exist_ok=True)
  title = sweep.REGIMES[regime].description
  results = accuracy_vs_sparsity_results(arms)
  paths = [accuracy_vs_sparsity.plot(
      results, str(out / "fig3_accuracy_vs_sparsity.png"), title)]
  paths.append(output.write_json(
      str(out / "fig3_accuracy_vs_sparsity.json"),
      {"figure": "Fig. 3 accuracy vs sparsity", "regime": regime,
       "source": str(sweep.results_file(regime)),
       "std": "sample std over seeds (ddof 1)", "error_bars": error_bars.CAPTION,
       **results}))
  costs = sweep_readouts.training_costs(regime)
  if costs:
    candidates = frontier.points(arms, names, costs)
    min_seeds = sweep.REGIMES[regime].every_seed
    front = frontier.pareto_front(candidates, min_seeds)
    paths.append(frontier.plot(candidates, front, min_seeds,
                               str(out / "accuracy_vs_cost.png"), title))
    paths.append(output.write_json(str(out / "accuracy_vs_cost.json"), {
        "regime": regime, "cost_source": str(sweep_readouts.cost_file(regime)),
        "accuracy_source": str(sweep.results_file(regime)),
        "error_bars": error_bars.CAPTION, "front_min_seeds": min_seeds,
        "points": candidates, "front": [p["display"] for p in front]}))
  return paths


# Sized for a 2-core CPU (the paper's landscape grid is 50x50). The chunk
# bounds memory: 50 grid points of the CNN under one vmap need over 18 GB.
LANDSCAPE_POINTS = 21
LANDSCAPE_CHUNK = 7
LANCZOS_STEPS = 20


def _models_title(regime: str) -> str:
  return f"{sweep.REGIMES[regime].description}; seed-0 models"


def model_figures(regime: str) -> list[str]:
  """Figs. 1, 4 and 5 of the regime's exported seed-0 models, loaded once and
  named by their arms' labels."""
  models = []
  for arm in sweep_arms.EXPORTED_ARMS:
    path = sweep.exported_model(regime, arm)
    if not path.exists():
      raise FileNotFoundError(f"{path} is missing; run `python -m experiments.sweep "
                              f"export --regime {regime}` first.")
    models.append(trained.load_checkpoint(str(path), arm.label))
  out, title = str(FIGURES / regime), _models_title(regime)
  return [*gradient_ratio.make_figure(models, out, sweep.selected_rho(regime), title),
          *landscape.make_figure(models, out, num_points=LANDSCAPE_POINTS,
                                 chunk_size=LANDSCAPE_CHUNK, title=title),
          *hessian.make_figure(models, out, num_steps=LANCZOS_STEPS, title=title)]


def redraw_model_figures(regime: str) -> list[str]:
  """Figs. 1, 4 and 5 drawn again from their committed JSON. Models named by
  their optimizer, as older files name them, are renamed to their arm's label
  (in the JSON too)."""
  by_optimizer = {arm.optimizer: arm.label for arm in sweep_arms.EXPORTED_ARMS}
  out, paths = FIGURES / regime, []
  for module in MODEL_FIGURES:
    json_path = out / module.JSON
    data = json.loads(json_path.read_text())
    renamed = {by_optimizer.get(name, name): model
               for name, model in data["models"].items()}
    if list(renamed) != list(data["models"]):
      data["models"] = renamed
      output.write_json(str(json_path), data)
    paths += [module.draw(data, str(out), _models_title(regime)), str(json_path)]
  return paths


def main(argv=None) -> list[str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--regime", choices=("overfit", "label_noise"), required=True)
  parser.add_argument("--models", action="store_true",
                      help="also Figs. 1, 4, 5 of the exported seed-0 models")
  parser.add_argument("--redraw", action="store_true",
                      help="also Figs. 1, 4, 5, drawn again from their JSON")
  args = parser.parse_args(argv)
  paths = make_figures(args.regime)
  if args.models:
    paths += model_figures(args.regime)
  elif args.redraw:
    paths += redraw_model_figures(args.regime)
  print("\n".join(paths))
  return paths


if __name__ == "__main__":
  main(sys.argv[1:])
