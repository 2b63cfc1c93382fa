"""Writes docs/results.md and README.md's results table from the committed results.

  python docs/generate_results.py          # rewrite both
  python docs/generate_results.py --check  # exit 1 if either is out of date

README.md's table sits between the markers ``<!-- RESULTS TABLE -->`` and
``<!-- END RESULTS TABLE -->``; nothing else in the README is touched.

Sources: ``experiments/results/<regime>_summary.json`` (made by
``python -m experiments.sweep summary --regime <regime>`` from the per-run
records), the legacy ``fashion_mnist_sweep.jsonl``, the figures under
``experiments/results/figures/``, ``benchmarks/results/*_arm_cost_cpu.json``
and ``benchmarks/results/gpu_*.json`` (made by ``scripts/gpu_suite.sh``; their
sections are written by ``docs/gpu_step_time.py``). The sentences of each
regime's reading come from ``docs/results_reading.py``.
"""

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments import statistics_report  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import sweep_arms  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import sweep_readouts  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import tensorwise_masks  # pylint: disable=g-import-not-at-top,wrong-import-position
import gpu_step_time  # pylint: disable=g-import-not-at-top,wrong-import-position
from results_reading import (  # pylint: disable=g-import-not-at-top,wrong-import-position,g-importing-member
    GAIN_KEPT_RULE, display_names, hessian_reading, reading, sparsity_verdicts, stat,
    versus)

OUT = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
README_START, README_END = "<!-- RESULTS TABLE -->", "<!-- END RESULTS TABLE -->"
RESULTS = ROOT / "experiments" / "results"
FIGURES = "../experiments/results/figures"
REGIMES = ("overfit", "label_noise")
TENSORWISE_NOTE = (
    "A tensor-wise arm is named by what its mask perturbs, measured, rather than by its "
    "budget (`s=0.9`: at most 10 % of the parameters it may perturb): the tensors, by "
    "Flax's module names (read from the mask after the arm's first training step by "
    "`python -m experiments.tensorwise_masks`, `experiments/results/"
    "tensorwise_masks.json`), and the fraction of all parameters that every epoch of "
    "every seed records. Only tensors that fit the budget whole are taken, so that "
    "fraction can be far below the budget.")


def load_summary(regime: str) -> dict | None:
  path = RESULTS / f"{regime}_summary.json"
  return json.loads(path.read_text()) if path.exists() else None


def perturbs_of(regime: str, summary: dict) -> dict[str, str]:
  """What each tensor-wise arm of the summary perturbs: its measured tensors
  (``experiments/results/tensorwise_masks.json``) and recorded density."""
  rows = sweep.rows_by_arm(regime)
  return tensorwise_masks.perturbs(regime, {arm: rows.get(arm, [])
                                            for arm in summary["arms"]})


def arms_table(summary: dict, costs: dict | None = None,
               names: dict | None = None) -> str:
  """One row per arm (``names``: display labels): accuracies (%), the gaps to
  SAM and SGD, and the cost."""
  names = names or {}
  header = "| arm | seeds | test (%) | validation (%) | train (%) | vs SAM | vs SGD |"
  rule = "| --- | ---: | ---: | ---: | ---: | --- | --- |"
  if costs:
    header += " cost (x SGD) |"
    rule += " ---: |"
  lines = [header, rule]
  for arm, entry in summary["arms"].items():
    row = (f"| {names.get(arm, arm)} | {entry['test_accuracy']['n']} | "
           f"{stat(entry, 'test_accuracy')} | "
           f"{stat(entry, 'validation_accuracy')} | {stat(entry, 'train_accuracy')} | "
           f"{versus(entry, 'sam')} | {versus(entry, 'sgd')} |")
    if costs:
      cost = costs.get(arm)
      row += f" {cost:.2f} |" if cost else " |"
    lines.append(row)
  return "\n".join(lines)


HEADLINE_ARMS = ("sgd", "sam", "ssam-f s=0.5", "ssam-d s=0.5", "ssam-random s=0.5",
                 "ssam-f s=0.9", "ssam-d s=0.9", "ssam-random s=0.9",
                 "ssam-f s=0.99", "ssam-d s=0.99", "ssam-random s=0.99",
                 "ssam-f tensorwise s=0.9 last block")


def headline_table(summaries: dict[str, dict]) -> str:
  """The README's table: test accuracy of the main arms, a column group per regime."""
  names = {regime: summary["description"].split(":")[0]
           for regime, summary in summaries.items()}
  # A tensor-wise arm perturbs the same tensors in both regimes (same model).
  shown = {}
  for regime, summary in summaries.items():
    for arm, label in display_names(summary["arms"], perturbs_of(regime, summary)).items():
      if shown.setdefault(arm, label) != label:
        raise ValueError(f"{arm!r} is {shown[arm]!r} in one regime, {label!r} in another.")
  lines = ["| arm | " + " | ".join(f"{names[r]} test (%) | {names[r]} vs SAM | "
                                   f"{names[r]} vs SGD" for r in summaries) + " |",
           "| --- |" + " ---: | --- | --- |" * len(summaries)]
  for arm in HEADLINE_ARMS:
    entries = [summary["arms"].get(arm) for summary in summaries.values()]
    if any(entries):
      lines.append(f"| {shown[arm]} | " + " | ".join(
          f"{stat(e, 'test_accuracy')} | {versus(e, 'sam')} | {versus(e, 'sgd')}"
          if e else " |  | " for e in entries) + " |")
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
    return [f"## {title}", "", "No summary is committed for this regime yet "
            f"(`python -m experiments.sweep summary --regime {regime}`).", ""]
  cost_path = ROOT / sweep_readouts.cost_file(regime)
  cost_report = json.loads(cost_path.read_text()) if cost_path.exists() else None
  costs = cost_report and {
      label: sweep_readouts.training_cost(regime, sweep_arms.arm(label), row["ratio_to_sgd"])
      for label, row in cost_report["arms"].items()}
  settings = summary["settings"]
  perturbs = perturbs_of(regime, summary)
  names = display_names(summary["arms"], perturbs)
  lines = [f"## {title}", "",
           f"Config `{summary['config']}`: {settings['train_subset']} training examples, "
           f"{settings['validation_size']} validation examples carved from the rest of the "
           f"training split, label noise {settings['label_noise']}, {settings['model']} of "
           f"width {settings['model_width']}, {settings['num_epochs']} epochs, batch "
           f"{settings['batch_size']}, learning rate {settings['learning_rate']} (cosine), "
           f"weight decay {settings['weight_decay_sgd']} for every arm. Test accuracy is the "
           "final epoch's; mean ± sample std over seeds; differences with the standard error "
           f"of the difference of means; within {statistics_report.TIE_SE:g} SE is a tie."
           + (" Train accuracy is measured on the noisy training labels; validation and "
              "test labels are clean." if settings["label_noise"] else ""), "",
           f"### rho, chosen on validation (seed {summary['rho_grid_seed']})", "",
           rho_table(summary), "",
           f"SAM's best rho, {summary['selected_rho']}, is used by every SAM and SSAM arm."
           + _rho_noise(summary), "",
           "### Every arm", "", arms_table(summary, costs, names), "",
           TENSORWISE_NOTE, ""]
  if cost_report:
    noise = cost_report["arms"].get("sgd 2x epochs")
    noise_note = (" A second, independent timing of SGD's own epoch (the epoch of "
                  f"`sgd 2x epochs`) came out at {noise['ratio_to_sgd']:.2f}x SGD's, so "
                  f"cost differences under about {abs(noise['ratio_to_sgd'] - 1):.0%} "
                  "are noise."
                  if noise else "")
    lines += ["Cost: the whole training run as a multiple of SGD's: one epoch of the "
              "training program's step, its mask refreshes included, timed alone "
              f"({cost_report['backend'].upper()} of the machine the runs used; median of "
              f"{cost_report['rounds']} interleaved rounds, `{cost_path.relative_to(ROOT)}`), "
              "times the arm's "
              f"epochs.{noise_note}{_shared_cost_note(regime)}", ""]
  lines += ["### Reading", ""] + [f"- {s}" for s in reading(summary, costs, perturbs)] + [""]
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
  table = statistics_report.markdown_table(
      {names[label]: arm_rows for label, arm_rows in by_arm.items()})
  return ["## An underfitting regime: all 60k examples, crop + flip, 10 epochs", "",
          "A third sweep (`experiments/results/fashion_mnist_sweep.jsonl`, small CNN of "
          "width 32) trains too briefly for SGD to fit the training set: train and test "
          "accuracy are about equal, so there is no generalisation gap for SAM to close and "
          "perturbing only slows optimisation. There, the less an arm perturbs, the better "
          "it does. Unlike R1 and R2, its rho is fixed at 0.1 rather than chosen on "
          "validation, and SAM-family arms use weight decay 1e-3 against SGD's 5e-4, so "
          "its SAM-vs-SGD gaps also contain a weight-decay change. The rows labelled "
          "noise0.4 are 40 % label noise at 10 epochs, also before memorisation; their vs "
          "SAM and vs SGD columns compare with the clean rows, so read those rows against "
          "each other. The seconds per epoch come from runs that shared the cores with "
          "other runs and do not compare across arms.", "", table, ""]


def _seed_counts(headline: str) -> str:
  """"3 seeds per arm (5 for sgd, ...)": the seeds recorded, read from the
  summaries (a regime's plan may ask for more than are recorded yet)."""
  def counts(labels):
    return sorted({arm["test_accuracy"]["n"] for regime in REGIMES
                   if (summary := load_summary(regime))
                   for label, arm in summary["arms"].items() if labels(label)})
  headline_labels = {arm.label for arm in sweep_arms.HEADLINE_ARMS}
  text = lambda ns: "/".join(str(n) for n in ns)
  return (f"{text(counts(lambda l: l not in headline_labels))} seeds per arm "
          f"({text(counts(lambda l: l in headline_labels))} for {headline})")


def render() -> str:
  headline = ", ".join(arm.label for arm in sweep_arms.HEADLINE_ARMS)
  lines = ["# Results", "",
           "<!-- Generated by docs/generate_results.py from the committed results files; "
           "do not edit. -->", "",
           "Accuracy: real Fashion-MNIST (the Debian package `dataset-fashion-mnist`), "
           "trained on CPU. In R1 and R2 every "
           "hyperparameter choice is made on a validation split carved from the training "
           "set; the test set is only reported. Every arm uses the same seeds, schedule and "
           "weight decay; the paper's doubled weight decay for SAM is an ablation row.", "",
           f"Differences are read with a fixed rule: a gap of at least "
           f"{statistics_report.TIE_SE:g} standard errors is written better or worse, a "
           f"smaller one a tie. With {_seed_counts(headline)} this is a "
           "screening rule, not a "
           "significance test (a t-test at 95 % with so few seeds needs a larger gap), "
           "and a tie means the runs cannot tell the arms apart, not that they are "
           "equal.", ""]
  for regime in REGIMES:
    lines += regime_section(regime)
  lines += gpu_step_time.results_section()
  lines += legacy_section()
  return "\n".join(lines).rstrip() + "\n"


def _sam_gain(summary: dict) -> str:
  """``, where SAM beats SGD by 0.29 points (2.7 SE)``, or nothing."""
  gain = summary["arms"].get("sam", {}).get("vs_sgd")
  if not gain or gain["verdict"] != "better":
    return ""
  return f", where SAM beats SGD by {gain['mean']:.2f} points ({gain['se_units']:.1f} SE)"


def readme_table() -> str:
  """The README's results block: the headline arms of both regimes."""
  summaries = {regime: summary for regime in REGIMES
               if (summary := load_summary(regime)) is not None}
  if not summaries:
    return "No results are committed yet; see docs/results.md."
  seeds = sorted({entry["test_accuracy"]["n"] for summary in summaries.values()
                  for entry in summary["arms"].values()})
  repeated = [n for n in seeds if n > 1]
  spread = ("one seed per arm, so no standard errors: no difference below is a finding"
            if not repeated else
            f"mean ± std over {'/'.join(map(str, repeated))} seeds"
            + (" (a value without ± is one seed so far)" if 1 in seeds else "")
            + f"; gaps with their standard error (within {statistics_report.TIE_SE:g} "
            "SE: a tie)")
  settings = next(iter(summaries.values()))["settings"]
  regimes = "; ".join(f"{s['description']}, rho {s['selected_rho']}"
                      for s in summaries.values())
  verdicts = [f"In {summary['description'].split(':')[0]}{_sam_gain(summary)}, {text}."
              for summary in summaries.values() if (text := sparsity_verdicts(summary))]
  return (f"Real Fashion-MNIST, a small CNN of width {settings['model_width']}, "
          f"{settings['num_epochs']} epochs. {regimes}; rho chosen on validation. "
          f"Final test accuracy, {spread}.\n\n"
          + headline_table(summaries)
          + ("\n\n" + GAIN_KEPT_RULE + " " + " ".join(verdicts) if verdicts else "")
          + gpu_step_time.readme_sentence())


def render_readme(readme: str) -> str:
  start, end = readme.index(README_START), readme.index(README_END)
  return (readme[:start + len(README_START)] + "\n\n" + readme_table() + "\n\n"
          + readme[end:])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--check", action="store_true")
  args = parser.parse_args(argv)
  outputs = {OUT: render()}
  if README.exists() and README_START in README.read_text():
    outputs[README] = render_readme(README.read_text())
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
