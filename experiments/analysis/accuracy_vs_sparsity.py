"""Fig. 3: final test accuracy (%) against sparsity, with 95 % intervals.

  python -m experiments.analysis.accuracy_vs_sparsity --demo --out figures/
  python -m experiments.analysis.accuracy_vs_sparsity --out figures/ --run \\
      sam=runs/sam_s0 ssam-f@0.5=runs/f50_s0 ssam-f@0.9=runs/f90_s0 \\
      ssam-d@0.5=runs/d50_s0 ssam-d@0.9=runs/d90_s0

Sparse optimizers (runs with a sparsity) are drawn as lines over sparsity;
dense ones (SGD, SAM) as horizontal reference lines with bands. Bars and
bands are 95 % confidence intervals of the mean over seeds
(``error_bars``), with the seeds per series in the legend. The accuracy is
that of each run's last record, in percent.
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


def compute(runs: Sequence[runs_lib.Run], key: str = "test_accuracy") -> dict:
  """``{"sparse": {opt: [...per sparsity...]}, "dense": {opt: stats}}``, each
  ``stats`` with ``mean``, ``std`` (in percent) and ``n`` over seeds."""
  sparse, dense = {}, {}
  for (optimizer, sparsity), members in runs_lib.group_runs(runs).items():
    stats = runs_lib.final_statistics(members, key)
    stats = {"mean": 100 * stats["mean"], "std": 100 * stats["std"],
             "values": 100 * stats["values"], "n": stats["num_runs"],
             "runs": [m.path for m in members]}
    if sparsity is None:
      dense[optimizer] = stats
    else:
      sparse.setdefault(optimizer, []).append({"sparsity": sparsity, **stats})
  for points in sparse.values():
    points.sort(key=lambda p: p["sparsity"])
  return {"metric": key, "sparse": sparse, "dense": dense}


def plot(results: dict, path: str, title: str) -> str:
  """Draws ``results`` (of :func:`compute`, or ``evidence``'s): points with
  ``mean``, ``std`` and ``n``, accuracies in percent."""
  figure, axis = plt.subplots(figsize=(6.5, 4.2))
  # On a logit axis 50 %, 90 % and 99 % sparsity are about evenly spaced; each
  # series is shifted a little along it so that error bars do not hide each other.
  sparse = results["sparse"]
  offsets = np.linspace(-0.1, 0.1, len(sparse)) if len(sparse) > 1 else [0.0]
  for offset, (name, points) in zip(offsets, sparse.items()):
    logit = np.log([p["sparsity"] / (1 - p["sparsity"]) for p in points]) + offset
    mean = np.array([p["mean"] for p in points])
    half = [error_bars.half_width(p["std"], p["n"]) for p in points]
    axis.errorbar(1 / (1 + np.exp(-logit)), mean, yerr=half, marker="o", capsize=3,
                  label=f"{name} ({error_bars.seeds(p['n'] for p in points)})")
  ticks = sorted({p["sparsity"] for points in sparse.values() for p in points})
  if ticks and 0 < ticks[0] and ticks[-1] < 1:
    axis.set_xscale("logit")
    axis.set_xticks(ticks, [f"{t:.0%}" for t in ticks])
    axis.minorticks_off()
  grays = ("black", "dimgray", "darkgray", "silver")
  for (name, stats), color in zip(results["dense"].items(), grays * 8):
    half = error_bars.half_width(stats["std"], stats["n"])
    axis.axhline(stats["mean"], linestyle="--", linewidth=1, color=color,
                 label=f"{name} (dense, n = {stats['n']})")
    axis.axhspan(stats["mean"] - half, stats["mean"] + half, color=color, alpha=0.1)
  axis.set_xlabel("sparsity (fraction of parameters not perturbed)")
  axis.set_ylabel(results["metric"].replace("_", " ") + " (%)")
  axis.legend(fontsize=8)
  axis.set_title(title)
  error_bars.add_caption(figure)
  return output.save_figure(figure, path)


def make_figure(runs: Sequence[runs_lib.Run], out_dir: str, dataset: str = ""
                ) -> tuple[str, str]:
  """Writes ``fig3_accuracy_vs_sparsity.{png,json}``; returns the paths."""
  results = compute(runs)
  title = "Accuracy vs. sparsity" + (f" ({dataset})" if dataset else "")
  png = plot(results, os.path.join(out_dir, "fig3_accuracy_vs_sparsity.png"),
             title)
  return png, output.write_json(
      os.path.join(out_dir, "fig3_accuracy_vs_sparsity.json"),
      {"figure": "Fig. 3 accuracy vs sparsity", "dataset": dataset,
       "std": "sample std over seeds (ddof 1), in percent",
       "error_bars": error_bars.CAPTION, **results})


def main(argv=None) -> tuple[str, str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--run", nargs="+", action="extend",
                      metavar="[OPT[@SPARSITY]=]PATH", help="training runs")
  source.add_argument("--demo", action="store_true",
                      help="train demo MLPs on synthetic data first")
  parser.add_argument("--demo-epochs", type=int, default=10)
  parser.add_argument("--demo-seeds", type=int, default=3)
  parser.add_argument("--demo-sparsities", default="0.5,0.8,0.9,0.95,0.99",
                      help="comma-separated sparsities of the demo runs")
  parser.add_argument("--dataset", default="", help="name for the title")
  parser.add_argument("--out", required=True, help="output directory")
  args = parser.parse_args(argv)
  specs, dataset = args.run, args.dataset
  if args.demo:
    specs = demo.write_demo_runs(
        os.path.join(args.out, "demo_runs"),
        optimizer_names=("sam", "ssam-f", "ssam-d"),
        sparsities=tuple(float(s) for s in args.demo_sparsities.split(",")),
        seeds=tuple(range(args.demo_seeds)), num_epochs=args.demo_epochs)
    dataset = demo.SYNTHETIC
  paths = make_figure([runs_lib.parse_run(s) for s in specs], args.out, dataset)
  print("\n".join(paths))
  return paths


if __name__ == "__main__":
  main(sys.argv[1:])
