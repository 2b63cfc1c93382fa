"""Fig. 2: training curves (mean and 95 % interval over seeds) from metrics.jsonl files.

  python -m experiments.analysis.training_curves --demo --out figures/
  python -m experiments.analysis.training_curves --out figures/ --run \\
      sgd=runs/sgd_s0 sgd=runs/sgd_s1 sam=runs/sam_s0 sam=runs/sam_s1 \\
      ssam-f@0.5=runs/ssamf_s0 ssam-f@0.5=runs/ssamf_s1

Each ``--run`` is ``[OPTIMIZER[@SPARSITY]=]PATH`` (see
:mod:`experiments.analysis.runs`); runs of one optimizer and sparsity are
averaged over seeds; the bands are 95 % confidence intervals of the mean
(``error_bars``), with the seeds per group in the legend. Accuracies are
drawn in percent.
"""

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np

from experiments.analysis import demo
from experiments.analysis import error_bars
from experiments.analysis import output
from experiments.analysis import runs as runs_lib

import matplotlib.pyplot as plt  # pylint: disable=g-bad-import-order  (Agg set by output)

PANELS = (("train_loss", "training loss"), ("test_accuracy", "test accuracy (%)"))


def compute(runs: Sequence[runs_lib.Run],
            keys: Sequence[str] = ("train_loss", "train_accuracy", "test_loss",
                                   "test_accuracy")) -> dict:
  """Per group, per metric: mean and std over seeds for every epoch."""
  results = {}
  for (optimizer, sparsity), members in runs_lib.group_runs(runs).items():
    present = [k for k in keys if all(k in m.records[-1] for m in members)]
    results[runs_lib.group_name(optimizer, sparsity)] = {
        "optimizer": optimizer, "sparsity": sparsity,
        "runs": [m.path for m in members],
        **{k: runs_lib.epoch_statistics(members, k) for k in present}}
  return results


def plot(results: dict, path: str, title: str) -> str:
  figure, axes = plt.subplots(1, len(PANELS), figsize=(5.5 * len(PANELS), 4))
  for axis, (key, label) in zip(axes, PANELS):
    for name, group in results.items():
      if key not in group:
        continue
      stats = group[key]
      scale = 100 if key.endswith("accuracy") else 1
      mean = scale * np.asarray(stats["mean"])
      half = scale * np.array([error_bars.half_width(std, stats["num_runs"])
                               for std in stats["std"]])
      line, = axis.plot(stats["epoch"], mean,
                        label=f"{name} (n = {stats['num_runs']})")
      axis.fill_between(stats["epoch"], mean - half, mean + half,
                        color=line.get_color(), alpha=0.25, linewidth=0)
    axis.set_xlabel("epoch")
    axis.set_ylabel(label)
    axis.legend(fontsize=8)
  figure.suptitle(title)
  error_bars.add_caption(figure)
  return output.save_figure(figure, path)


def make_figure(runs: Sequence[runs_lib.Run], out_dir: str,
                dataset: str = "") -> tuple[str, str]:
  """Writes ``fig2_training_curves.{png,json}``; returns the paths."""
  results = compute(runs)
  title = "Training curves, mean over seeds" + (
      f" ({dataset})" if dataset else "")
  png = plot(results, os.path.join(out_dir, "fig2_training_curves.png"), title)
  return png, output.write_json(
      os.path.join(out_dir, "fig2_training_curves.json"),
      {"figure": "Fig. 2 training curves", "dataset": dataset,
       "std": "sample std over seeds (ddof 1)", "groups": results})


def main(argv=None) -> tuple[str, str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--run", nargs="+", action="extend",
                      metavar="[OPT[@SPARSITY]=]PATH", help="training runs")
  source.add_argument("--demo", action="store_true",
                      help="train demo MLPs on synthetic data (SGD, SAM, "
                      "SSAM-F and SSAM-D at 50%% sparsity) first")
  parser.add_argument("--demo-epochs", type=int, default=10)
  parser.add_argument("--demo-seeds", type=int, default=3)
  parser.add_argument("--dataset", default="", help="name for the title")
  parser.add_argument("--out", required=True, help="output directory")
  args = parser.parse_args(argv)
  specs, dataset = args.run, args.dataset
  if args.demo:
    specs = demo.write_demo_runs(
        os.path.join(args.out, "demo_runs"), sparsities=(demo.DEMO_SPARSITY,),
        seeds=tuple(range(args.demo_seeds)), num_epochs=args.demo_epochs)
    dataset = demo.SYNTHETIC
  paths = make_figure([runs_lib.parse_run(s) for s in specs], args.out, dataset)
  print("\n".join(paths))
  return paths


if __name__ == "__main__":
  main(sys.argv[1:])
