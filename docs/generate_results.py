"""Writes docs/results.md and README.md's results table from the committed results.

  python docs/generate_results.py          # rewrite both
  python docs/generate_results.py --check  # exit 1 if either is out of date

README.md's table sits between the markers ``<!-- RESULTS TABLE -->`` and
``<!-- END RESULTS TABLE -->``; nothing else in the README is touched.

Sources: ``experiments/results/<regime>_summary.json`` (made by
``python -m experiments.sweep summary --regime <regime>`` from the per-run
records), the legacy ``fashion_mnist_sweep.jsonl``, the figures under
``experiments/results/figures/``, ``benchmarks/results/*_arm_cost_cpu.json``
and ``benchmarks/results/gpu_*.json`` (made by ``scripts/gpu_suite.sh``).
"""

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments import statistics_report  # pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

OUT = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
README_START, README_END = "<!-- RESULTS TABLE -->", "<!-- END RESULTS TABLE -->"
RESULTS = ROOT / "experiments" / "results"
FIGURES = "../experiments/results/figures"
GPU_STEP_TIME = ROOT / "benchmarks" / "results" / "gpu_step_time.json"
LAST_BLOCK_ROW = "ssam-F tensorwise s=0.9 fast path, last block only"
REGIMES = ("overfit", "label_noise")
SPARSITIES = ("0.5", "0.9", "0.99")
FASHION_MNIST_CLASSES = 10


def load_summary(regime: str) -> dict | None:
  path = RESULTS / f"{regime}_summary.json"
  return json.loads(path.read_text()) if path.exists() else None


def _stat(entry: dict, metric: str) -> str:
  stat = entry.get(metric)
  if not stat:
    return ""
  return f"{stat['mean']:.2f} ± {stat['std']:.2f}" if stat["n"] > 1 else f"{stat['mean']:.2f}"


def _versus(entry: dict, reference: str) -> str:
  diff = entry.get(f"vs_{reference}")
  if not diff:
    return ""
  units = "" if diff["se_units"] is None else f", {diff['se_units']:+.1f} SE"
  return f"{diff['mean']:+.2f}{units}, {diff['verdict']}"


def arms_table(summary: dict, costs: dict | None = None) -> str:
  """One row per arm: accuracies (%), the gaps to SAM and SGD, and the cost."""
  header = "| arm | seeds | test (%) | validation (%) | train (%) | vs SAM | vs SGD |"
  rule = "| --- | ---: | ---: | ---: | ---: | --- | --- |"
  if costs:
    header += " cost (x SGD) |"
    rule += " ---: |"
  lines = [header, rule]
  for arm, entry in summary["arms"].items():
    row = (f"| {arm} | {entry['test_accuracy']['n']} | {_stat(entry, 'test_accuracy')} | "
           f"{_stat(entry, 'validation_accuracy')} | {_stat(entry, 'train_accuracy')} | "
           f"{_versus(entry, 'sam')} | {_versus(entry, 'sgd')} |")
    if costs:
      cost = costs.get(arm)
      row += f" {cost:.2f} |" if cost else " |"
    lines.append(row)
  return "\n".join(lines)


HEADLINE_ARMS = ("sgd", "sam", "ssam-f s=0.5", "ssam-d s=0.5", "ssam-random s=0.5",
                 "ssam-f s=0.9", "ssam-d s=0.9", "ssam-random s=0.9",
                 "ssam-f s=0.99", "ssam-d s=0.99", "ssam-random s=0.99")


def headline_table(summaries: dict[str, dict]) -> str:
  """The README's table: test accuracy of the main arms, a column group per regime."""
  names = {regime: summary["description"].split(":")[0]
           for regime, summary in summaries.items()}
  lines = ["| arm | " + " | ".join(f"{names[r]} test (%) | {names[r]} vs SAM | "
                                   f"{names[r]} vs SGD" for r in summaries) + " |",
           "| --- |" + " ---: | --- | --- |" * len(summaries)]
  for arm in HEADLINE_ARMS:
    entries = [summary["arms"].get(arm) for summary in summaries.values()]
    if any(entries):
      lines.append(f"| {arm} | " + " | ".join(
          f"{_stat(e, 'test_accuracy')} | {_versus(e, 'sam')} | {_versus(e, 'sgd')}"
          if e else " | | " for e in entries) + " |")
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


def reading(summary: dict) -> list[str]:
  """Sentences computed from the numbers: no claim without its SE."""
  arms, out = summary["arms"], []
  single = [arm for arm, entry in arms.items() if entry["test_accuracy"]["n"] < 2]
  if single:
    out.append(f"{', '.join(single)}: one seed so far, so no standard error and no "
               "comparison with these arms yet.")
  noise = summary["settings"]["label_noise"]
  if noise:
    # A relabelled example keeps its true class with probability 1/classes.
    clean = 100 * (1 - noise * (1 - 1 / FASHION_MNIST_CLASSES))
    out.append(f"Memorisation: a model that predicts every true class scores {clean:.0f} % "
               "on the noisy training labels; more means it fits wrong labels. Train "
               "accuracy: " + ", ".join(f"{arm} {entry['train_accuracy']['mean']:.1f}"
                                        for arm, entry in arms.items()) + ".")
  sam, sgd = arms.get("sam"), arms.get("sgd")
  if sam and sgd and "vs_sgd" in sam:
    out.append(f"SAM vs SGD: {_versus(sam, 'sgd')}.")
  for sparsity in SPARSITIES:
    for mask in ("ssam-f", "ssam-d"):
      entry = arms.get(f"{mask} s={sparsity}")
      gaps = [f"vs {ref.upper()} {_versus(entry, ref)}" for ref in ("sam", "sgd")
              if entry and f"vs_{ref}" in entry]
      if gaps:
        out.append(f"{mask} at {float(sparsity):.0%} sparsity: {'; '.join(gaps)}.")
      control = arms.get(f"ssam-random s={sparsity}")
      if entry and control and entry["test_accuracy"]["n"] > 1 and control["test_accuracy"]["n"] > 1:
        diff = statistics_report.difference(entry["test_accuracy"], control["test_accuracy"])
        units = "" if diff["se_units"] is None else f", {diff['se_units']:+.1f} SE"
        out.append(f"{mask} vs the random mask at {float(sparsity):.0%}: "
                   f"{diff['mean']:+.2f}{units}, {diff['verdict']}.")
  return out


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
  cost_path = ROOT / sweep.cost_file(regime)
  cost_report = json.loads(cost_path.read_text()) if cost_path.exists() else None
  costs = cost_report and {arm: sweep.training_cost(regime, arm, row["ratio_to_sgd"])
                           for arm, row in cost_report["arms"].items()}
  settings = summary["settings"]
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
           f"SAM's best rho, {summary['selected_rho']}, is used by every SAM and SSAM arm.", "",
           "### Every arm", "", arms_table(summary, costs), ""]
  if cost_report:
    noise = cost_report["arms"].get("sgd 2x epochs")
    noise_note = (f" SGD's own epoch, timed again as `sgd 2x epochs`, came out at "
                  f"{noise['ratio_to_sgd']:.2f}x: differences of that size are noise."
                  if noise else "")
    lines += ["Cost: the whole training run as a multiple of SGD's: one epoch of the "
              "training program's step, its mask refreshes included, timed alone "
              f"({cost_report['backend'].upper()} of the machine the runs used; median of "
              f"{cost_report['rounds']} interleaved rounds, `{cost_path.relative_to(ROOT)}`), "
              "times the arm's "
              f"epochs.{noise_note}{_shared_cost_note(regime)}", ""]
  lines += ["### Reading", ""] + [f"- {s}" for s in reading(summary)] + [""]
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
        f"{m['lambda1_over_lambdak']:.2f})" for name, m in models.items()) + ".", ""] + figures
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
  table = statistics_report.markdown_table(sweep.rows_by_arm("augmented"))
  return ["## An underfitting regime: all 60k examples, crop + flip, 10 epochs", "",
          "The earlier sweep (`experiments/results/fashion_mnist_sweep.jsonl`, small CNN of "
          "width 32, rho 0.1, weight decay 1e-3 for SAM-family arms and 5e-4 for SGD) trains "
          "too briefly for SGD to fit the training set: train and test accuracy are about "
          "equal, so there is no generalisation gap for SAM to close and perturbing only "
          "slows optimisation. There, the less an arm perturbs, the better it does. The "
          "rows labelled noise0.4 are 40 % label noise at 10 epochs, also before "
          "memorisation. The differences are to the clean SAM and SGD rows.", "", table, ""]


def step_time_section() -> list[str]:
  """Step time of every optimizer on a GPU, from ``scripts/gpu_suite.sh``."""
  if not GPU_STEP_TIME.exists():
    return []
  report = json.loads(GPU_STEP_TIME.read_text())
  results = report["results"]
  by_model = [{row["optimizer"]: row for row in result["rows"]} for result in results]
  names = list(dict.fromkeys(name for rows in by_model for name in rows))
  header = "| optimizer | " + " | ".join(
      f"{r['model']}: ms | x SGD | x SGD FLOPs" for r in results) + " |"
  lines = [header, "| --- |" + " ---: | ---: | ---: |" * len(results)]
  for name in names:
    cells = []
    for rows in by_model:
      row = rows.get(name)
      cells.append(f"{1e3 * row['median_s']:.2f} | {row['ratio_to_sgd']:.2f} | "
                   f"{row['flops_ratio_to_sgd']:.2f}" if row else " | | ")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  refresh = "; ".join(
      f"{r['model']}: " + ", ".join(
          f"{row['optimizer'].split()[0]} {row['refresh_cost_in_steps']:.1f}"
          for row in r["rows"] if "refresh_cost_in_steps" in row)
      for r in results)
  models = ", ".join(f"{r['model']} ({r['num_params'] / 1e6:.2f} M parameters, batch "
                     f"{r['batch_size']}, {r['repetitions']} repetitions)" for r in results)
  section = ["## Step time on a GPU", "",
             f"One train step of the training program on an {report['device']} (JAX "
             f"{report['jax']}), median over repetitions interleaved across optimizers, "
             f"as a ratio to SGD timed in the same process: {models}. Steps without a "
             "mask refresh; the refresh rows refresh on every step. FLOPs are XLA's count for the compiled step. "
             "Commands in `benchmarks/results/gpu_step_time.json`; "
             "`OUT=benchmarks/results bash scripts/gpu_suite.sh` reruns them.", "",
             "\n".join(lines), "",
             f"One mask refresh costs, in steps without one: {refresh}. Refreshed once an "
             "epoch (the default, `mask_update_epochs=1`), it adds that cost divided by "
             "the steps in an epoch, e.g. 390 for CIFAR-10 at batch 128.", "",
             "A mask does not make the step cheaper: both gradients are dense, so SSAM "
             "costs SAM's step plus the mask's elementwise work, whatever the sparsity, "
             "and the paper's FLOPs ratios (1.65x SGD at 50 %, 1.30x at 99 %) assume "
             "sparse kernels that dense accelerators do not run. Time falls only with the "
             "tensorwise fast path, where the second backward pass stops at the first "
             "perturbed tensor. Confined to the last block it costs " + ", ".join(
                 f"{r['model']} {rows[LAST_BLOCK_ROW]['ratio_to_sgd']:.2f}x"
                 for r, rows in zip(results, by_model) if LAST_BLOCK_ROW in rows)
             + " SGD's step (see {doc}`masks`).", ""]
  control = ROOT / "benchmarks" / "results" / "gpu_control_flow.json"
  if control.exists():
    rows = json.loads(control.read_text())["rows"]
    section += ["The empirical Fisher (small CNN, 128 examples), as a ratio to computing "
                "it unrolled: " + ", ".join(f"{r['variant']} {r['ratio_to_unrolled']:.2f}x"
                                            for r in rows[1:])
                + " on this GPU (`gpu_control_flow.json`). Off CPU the training program "
                "therefore keeps the loop, which bounds the memory of per-example "
                "gradients.", ""]
  return section


def render() -> str:
  lines = ["# Results", "",
           "<!-- Generated by docs/generate_results.py from the committed results files; "
           "do not edit. -->", "",
           "Accuracy: real Fashion-MNIST (the Debian package `dataset-fashion-mnist`), "
           "trained on CPU. Every "
           "hyperparameter choice is made on a validation split carved from the training "
           "set; the test set is only reported. Every arm uses the same seeds, schedule and "
           "weight decay; the paper's doubled weight decay for SAM is an ablation row.", ""]
  for regime in REGIMES:
    lines += regime_section(regime)
  lines += step_time_section()
  lines += legacy_section()
  return "\n".join(lines).rstrip() + "\n"


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
  return (f"Real Fashion-MNIST, a small CNN of width {settings['model_width']}, "
          f"{settings['num_epochs']} epochs. {regimes}; rho chosen on validation. "
          f"Final test accuracy, {spread}.\n\n"
          + headline_table(summaries) + readme_step_time())


def readme_step_time() -> str:
  """One sentence of what a step costs on a GPU, for the README."""
  if not GPU_STEP_TIME.exists():
    return ""
  report = json.loads(GPU_STEP_TIME.read_text())
  result = next((r for r in report["results"] if r["model"] == "resnet18"), None)
  if result is None:
    return ""
  rows = {row["optimizer"]: row["ratio_to_sgd"] for row in result["rows"]}
  shown = {"SAM": "sam", "SSAM-F 50 %": "ssam-F unstructured s=0.5",
           "SSAM-F 99 %": "ssam-F unstructured s=0.99",
           "SSAM-F confined to the last block (tensor-wise fast path)": LAST_BLOCK_ROW}
  costs = ", ".join(f"{label} {rows[name]:.2f}x" for label, name in shown.items()
                    if name in rows)
  return (f"\n\nStep time on an {report['device']}, ResNet-18 at batch "
          f"{result['batch_size']}, as a multiple of SGD's: {costs}. Both gradients stay "
          "dense, so a mask alone does not shorten the step.")


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
