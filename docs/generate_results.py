"""Writes docs/results.md, README.md's results table and the measured part of
docs/efficient.md from the committed results.

  python docs/generate_results.py          # rewrite all three
  python docs/generate_results.py --check  # exit 1 if any is out of date

README.md's results block sits between the markers ``<!-- RESULTS TABLE -->``
and ``<!-- END RESULTS TABLE -->`` (written by ``docs/readme_section.py``);
nothing else in the README is touched.

Sources: ``experiments/results/<regime>_summary.json`` (made by
``python -m experiments.sweep summary --regime <regime>`` from the per-run
records), the legacy ``fashion_mnist_sweep.jsonl``, the figures under
``experiments/results/figures/``, ``benchmarks/results/*_arm_cost_cpu.json``
and ``benchmarks/results/gpu_*.json`` (made by ``scripts/gpu_suite.sh``; their
sections are written by ``docs/gpu_step_time.py``). Every difference is a
paired one from the summaries; the formatting and the sentences of each
regime's reading come from ``docs/results_reading.py``, the radius-controlled
arms' subsection from ``docs/radius_section.py``.
"""

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments import statistics_report  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import sweep_readouts  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import tensorwise_masks  # pylint: disable=g-import-not-at-top,wrong-import-position
import efficient_section  # pylint: disable=g-import-not-at-top,wrong-import-position
import gpu_step_time  # pylint: disable=g-import-not-at-top,wrong-import-position
import radius_section  # pylint: disable=g-import-not-at-top,wrong-import-position
import readme_section  # pylint: disable=g-import-not-at-top,wrong-import-position
from results_reading import (  # pylint: disable=g-import-not-at-top,wrong-import-position,g-importing-member
    EARLY, FINAL, LABELS, METRIC_NAMES, RADIUS_LABELS, TENSORWISE_NOTE, compared_metric,
    display_names, early_stopping_note, family_size, format_paired, hessian_reading,
    load_summary, paired, perturbs_of, reading, separates, stat)

OUT = ROOT / "docs" / "results.md"
EFFICIENT = ROOT / "docs" / "efficient.md"
README = ROOT / "README.md"
FIGURES = "../experiments/results/figures"
REGIMES = ("overfit", "label_noise")

COLUMN_NAMES = {FINAL: "final test (%)", EARLY: "early-stopped test (%)",
                "validation_accuracy": "validation (%)", "train_accuracy": "train (%)"}


def arms_table(summary: dict, costs: dict | None = None, names: dict | None = None,
               labels=None, verdicts: bool = True) -> str:
  """One row per arm of ``labels`` (default: every arm but the radius-controlled
  ones), ``names``: display labels. Accuracies (%), mean ± std over the ``n``
  seeds, then the paired differences to SAM and SGD in the compared metric
  (``results_reading.compared_metric``) and in final test accuracy;
  ``verdicts=False`` leaves out the verdict words."""
  names, arms = names or {}, summary["arms"]
  labels = [arm for arm in (arms if labels is None else labels)
            if arm in arms and arm not in RADIUS_LABELS]
  metrics = [m for m in COLUMN_NAMES if any(m in arms[arm] for arm in labels)]
  compared = compared_metric(summary)
  comparisons = [compared] + ([FINAL] if compared != FINAL else [])
  header = ("| arm | n | " + " | ".join(
      COLUMN_NAMES[m] for m in metrics) + " | " + " | ".join(
          f"vs {ref} ({METRIC_NAMES[m]})" for m in comparisons for ref in ("SAM", "SGD"))
            + " |")
  rule = "| --- | ---: |" + " ---: |" * len(metrics) + " --- |" * 2 * len(comparisons)
  if costs:
    header += " cost (x SGD) |"
    rule += " ---: |"
  lines = [header, rule]
  for arm in labels:
    entry = arms[arm]
    row = (f"| {names.get(arm, arm)} | {entry[FINAL]['n']} | "
           + " | ".join(stat(entry, m) for m in metrics) + " | "
           + " | ".join(format_paired(paired(entry, ref, m), verdicts)
                        for m in comparisons for ref in ("sam", "sgd")) + " |")
    if costs:
      cost = costs.get(arm)
      row += f" {cost:.2f} |" if cost else " |"
    lines.append(row)
  return "\n".join(lines)


def rho_table(summary: dict) -> str:
  sam, ssam = summary["rho_selection"], summary["rho_selection_ssam-f s=0.5"]
  lines = ["| rho | SAM validation (%) | SSAM-F 50 % validation (%) |",
           "| ---: | ---: | ---: |"]
  for rho in sorted(set(sam) | set(ssam), key=float):
    mark = " (chosen)" if float(rho) == summary["selected_rho"] else ""
    cells = [f"{grid[rho]:.2f}" if rho in grid else "" for grid in (sam, ssam)]
    lines.append(f"| {rho}{mark} | {cells[0]} | {cells[1]} |")
  return "\n".join(lines)


def _rho_noise(summary: dict) -> str:
  """How each rho grid's spread compares with its arm's spread over seeds, and
  whether SSAM-F 50 % would choose another rho than SAM's."""

  def near_best(arm: str, key: str):
    """The grid's best rho, the arm's validation spread over seeds, and the
    rho values within that spread of the best."""
    spread = summary["arms"].get(arm, {}).get("validation_accuracy")
    grid = {float(rho): accuracy for rho, accuracy in summary[key].items()}
    if not spread or spread["n"] < 2 or not grid:
      return None
    best = max(grid, key=grid.get)
    return best, spread, sorted(rho for rho, accuracy in grid.items()
                                if accuracy >= grid[best] - spread["std"])

  def listed(rhos):
    return ", ".join(f"{rho:g}" for rho in rhos)

  text = ""
  if sam := near_best("sam", "rho_selection"):
    _, spread, close = sam
    text += (f" At that rho, SAM's validation accuracy has a std of {spread['std']:.2f} "
             f"over {spread['n']} seeds; the rho values within that of the best "
             f"({listed(close)}) are as good as it within seed noise.")
  if ssam := near_best("ssam-f s=0.5", "rho_selection_ssam-f s=0.5"):
    best, spread, close = ssam
    chosen = summary["selected_rho"]
    text += (f" SSAM-F 50 %'s own best is {best:g}; the rho values as good within its "
             f"validation std ({spread['std']:.2f} over {spread['n']} seeds): "
             f"{listed(close)}. "
             + (f"SAM's {chosen:g} is among them, so SSAM-F does not measurably prefer "
                "another rho." if chosen in close else
                f"SAM's {chosen:g} is not among them, so SSAM-F prefers another rho here."))
  return text


def _figure_path(regime: str, name: str):
  return ROOT / "experiments" / "results" / "figures" / regime / name


def _figure(regime: str, name: str, caption: str) -> list[str]:
  if not _figure_path(regime, name).exists():
    return []
  return [f"![{caption}]({FIGURES}/{regime}/{name})", ""]


def _shared_cost_note(regime: str) -> str:
  source = sweep.REGIMES[regime].cost_of
  if source is None:
    return ""
  return (f" This regime trains the same steps as `{source}` (same model, batch and "
          "epochs), so the costs are that regime's measurement.")


def regime_section(regime: str) -> list[str]:
  summary = load_summary(regime)
  title = sweep.REGIMES[regime].description
  if summary is None:
    return [f"## {title}", "", "No summary is committed for this regime "
            f"(`python -m experiments.sweep summary --regime {regime}`).", ""]
  cost_path = ROOT / sweep_readouts.cost_file(regime)
  cost_report = json.loads(cost_path.read_text()) if cost_path.exists() else None
  costs = sweep_readouts.training_costs(regime) or None
  settings = summary["settings"]
  perturbs = perturbs_of(regime, summary)
  names = display_names(summary["arms"], perturbs)
  lines = [f"## {title}", "",
           f"Config `{summary['config']}`: {settings['train_subset']} training examples, "
           f"{settings['validation_size']} validation examples carved from the rest of the "
           f"training split, label noise {settings['label_noise']}, {settings['model']} of "
           f"width {settings['model_width']}, {settings['num_epochs']} epochs, batch "
           f"{settings['batch_size']}, learning rate {settings['learning_rate']} (cosine), "
           f"weight decay {settings['weight_decay_sgd']} for every arm. Test accuracy (%), "
           "mean ± sample std over the n seeds: final at the last epoch, early-stopped at "
           "the epoch of best validation accuracy." + early_stopping_note(summary)
           + " vs SAM and vs SGD: paired differences in early-stopped and in final test "
           "accuracy; Holm's family is this regime's "
           f"{family_size(summary, compared_metric(summary))} paired comparisons of each "
           "metric."
           + ("" if separates(summary) else " The regime does not separate SAM from SGD "
              "(see the reading), so the differences carry no verdict words.")
           + (" Train accuracy is measured on the noisy training labels; validation and "
              "test labels are clean." if settings["label_noise"] else ""), "",
           f"### rho, chosen on validation (seed {summary['rho_grid_seed']})", "",
           rho_table(summary), "",
           f"SAM's best rho, {summary['selected_rho']}, is used by every SAM and SSAM arm "
           "without \"own rho\" in its label; those choose their own on validation."
           + _rho_noise(summary), "",
           "### Every arm", "",
           arms_table(summary, costs, names, verdicts=separates(summary)), "",
           TENSORWISE_NOTE, ""]
  if cost_report:
    noise = cost_report["arms"].get("sgd 2x epochs")
    noise_note = (" A second, independent timing of SGD's own epoch (the epoch of "
                  f"`sgd 2x epochs`) is {noise['ratio_to_sgd']:.2f}x SGD's, so "
                  f"medians that differ by under about {abs(noise['ratio_to_sgd'] - 1):.0%} "
                  "are noise; single rounds spread wider."
                  if noise else "")
    lines += ["Cost: the whole training run as a multiple of SGD's: one epoch of the "
              "training program's step, its mask refreshes included, timed alone "
              f"({cost_report['backend'].upper()} of the machine the runs used; median of "
              "interleaved rounds, each arm beside SGD in one benchmark run of "
              f"`{cost_path.relative_to(ROOT)}`), "
              "times the arm's "
              f"epochs.{noise_note}{_shared_cost_note(regime)}", ""]
  lines += ["### Reading", ""] + [f"- {s}" for s in reading(summary, costs, perturbs)] + [""]
  lines += radius_section.section(summary, regime)
  lines += _figure(regime, "fig3_accuracy_vs_sparsity.png", "accuracy vs sparsity")
  lines += _figure(regime, "accuracy_vs_cost.png", "accuracy vs cost")
  analyses = [("fig1_gradient_ratio.png", "Fig. 1: where SAM's gradient differs from SGD's"),
              ("fig4_landscape.png", "Fig. 4: training loss landscape"),
              ("fig5_hessian.png", "Fig. 5: Hessian spectrum")]
  figures = [line for name, caption in analyses for line in _figure(regime, name, caption)]
  hessian = _figure_path(regime, "fig5_hessian.json")
  ratio = _figure_path(regime, "fig1_gradient_ratio.json")
  if hessian.exists():
    models = json.loads(hessian.read_text())["models"]
    figures = ["Top Hessian eigenvalue of the training loss (seed 0): " + ", ".join(
        f"{name} {m['top_eigenvalues'][0]:.1f} (lambda_1/lambda_{m['k']} "
        f"{m['lambda1_over_lambdak']:.2f})" for name, m in models.items()) + ". "
        + hessian_reading(models), ""] + figures
  landscape = _figure_path(regime, "fig4_landscape.json")
  if landscape.exists():
    models = json.loads(landscape.read_text())["models"]
    figures = ["Training loss over the Fig. 4 grid (two filter-normalised directions, "
               "span -1 to 1), mean / max: " + ", ".join(
                   f"{name} {m['mean_loss']:.1f} / {m['max_loss']:.1f}"
                   for name, m in models.items()) + ".", ""] + figures
  if ratio.exists():
    models = json.loads(ratio.read_text())["models"]
    figures = ["Fraction of parameters with r < 0 (Fig. 1): " + ", ".join(
        f"{name} {m['fraction_below_zero']:.3f}" for name, m in models.items()) + ".",
        ""] + figures
  if figures:
    figures = [
        "Figure numbers follow Mi et al. (2022). Fig. 1: for each parameter, r = "
        "ln|(g_SAM - g_SGD) / g_SGD| at the final weights, where g_SAM is the gradient at "
        "the SAM-perturbed point (the regime's rho); r < 0 means the perturbation changes "
        "that parameter's gradient by less than the gradient itself. Fig. 4: the training "
        "loss on a plane through the final weights spanned by two random filter-normalised "
        "directions; lower and wider means flatter. Fig. 5: the Hessian's eigenvalue "
        "density by Lanczos and its top eigenvalues; lambda_1, the curvature along the "
        "sharpest direction, is the flatness measure (smaller is flatter). The ratio "
        "lambda_1/lambda_5 only says how far the top eigenvalue stands out from the "
        "next four: it is not a flatness measure, and the data below say whether it "
        "orders the arms as lambda_1 does.", ""] + figures
    lines += ["### Analyses of the seed-0 models", "",
              "On the exported seed-0 models (`experiments/results/models/"
              f"{regime}/`), training loss on 1,024 training examples with clean labels "
              f"(`python -m experiments.analysis.evidence --regime {regime} --models`; "
              "numbers in the JSON beside each figure).",
              ""] + figures
  return lines


def legacy_section() -> list[str]:
  rows = sweep.recorded_rows("augmented")
  if not rows:
    return []
  by_arm = sweep.rows_by_arm("augmented")
  names = display_names(by_arm, tensorwise_masks.perturbs("augmented", by_arm))
  legacy = {"arms": statistics_report.arm_statistics(by_arm)}
  table = arms_table(legacy, names=names)
  sgd = by_arm["sgd"]
  train = 100 * sum(r["epochs"][-1]["train_accuracy"] for r in sgd) / len(sgd)
  test = 100 * sum(r["test_accuracy"] for r in sgd) / len(sgd)
  return ["## An underfitting regime: all 60k examples, crop + flip, 10 epochs", "",
          "A third sweep (`experiments/results/fashion_mnist_sweep.jsonl`, small CNN of "
          "width 32) trains too briefly for SGD to fit the training set: SGD's train "
          f"accuracy over its last epoch (augmented examples) is {train:.1f} % and its test "
          f"accuracy {test:.1f} % (means over {len(sgd)} seeds), so there is no "
          "generalisation gap for SAM to close. "
          "It has no validation split, so only final "
          "test accuracy. Unlike R1 and R2, its rho is fixed at 0.1 rather than chosen on "
          "validation, and SAM-family arms use weight decay 1e-3 against SGD's 5e-4, so "
          "its SAM-vs-SGD differences also contain a weight-decay change. The rows labelled "
          "noise0.4 are 40 % label noise at 10 epochs, also before memorisation; their vs "
          "SAM and vs SGD columns compare with the clean rows, so read those rows against "
          "each other. Differences are paired on the seeds both arms ran, as in R1 and R2; "
          "bold survives Holm's correction over the sweep's "
          f"{family_size(legacy, FINAL)} paired comparisons.", "", table, ""]


def render() -> str:
  lines = ["# Results", "",
           "<!-- Generated by docs/generate_results.py from the committed results files; "
           "do not edit. -->", "",
           "Accuracy: real Fashion-MNIST (the Debian package `dataset-fashion-mnist`), "
           "trained on CPU. In R1 and R2 every "
           "hyperparameter choice is made on a validation split carved from the training "
           "set; the test set is only reported. R1 and R2 are the regimes `overfit` and "
           "`label_noise` of `experiments/sweep.py`. Within each, every arm draws its seeds "
           "from one list (n: how many it has), and all arms share the schedule and weight "
           "decay; the paper's doubled weight decay for SAM is an ablation row.", "",
           "Every difference is paired: two arms are compared on the seeds both ran, as "
           "the mean of the per-seed differences with its 95 % confidence interval from "
           "Student's t with n - 1 degrees of freedom, written `+3.79 [+2.83, +4.75], n=5, "
           "better`. The verdict is better or worse when the interval excludes 0 and tie "
           "otherwise; a tie means the runs cannot tell the arms apart, not that the arms "
           "are equal. With one shared seed there is no interval. Within a regime, the "
           "paired comparisons of a metric (every arm against SAM and against SGD, and the "
           "radius-controlled arms against their random mask) form one family: a difference "
           "in **bold** survives Holm's correction over that family at 5 %, and only those "
           "are stated as findings in the README. The comparisons are read on early-stopped "
           "test accuracy (the test accuracy at the epoch of best validation accuracy, as a "
           "practitioner with a validation split would stop); final-epoch differences are "
           "shown beside them.", "", LABELS, ""]
  for regime in REGIMES:
    lines += regime_section(regime)
  lines += gpu_step_time.results_section()
  lines += legacy_section()
  return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--check", action="store_true")
  args = parser.parse_args(argv)
  outputs = {OUT: render()}
  efficient = efficient_section.inputs()
  if README.exists() and readme_section.START in README.read_text():
    outputs[README] = readme_section.render(README.read_text(), efficient)
  outputs[EFFICIENT] = efficient_section.render(EFFICIENT.read_text(), *efficient)
  stale = [path for path, text in outputs.items()
           if not path.exists() or path.read_text() != text]
  if args.check:
    for path in stale:
      print(f"{path} is out of date: run python docs/generate_results.py")
    return 1 if stale else 0
  for path in stale:
    path.write_text(outputs[path])
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
