"""Fig. 1: distribution of r = log|(g_SAM - g_SGD) / g_SGD| over parameters.

  python -m experiments.analysis.gradient_ratio --demo --out figures/
  python -m experiments.analysis.gradient_ratio --checkpoint sgd=runs/sgd \\
      --checkpoint sam=runs/sam --rho 0.1 --out figures/
"""

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np

from experiments.analysis import cli
from experiments.analysis import output
from experiments.analysis import trained
from ssam_jax.analysis import gradient_ratio

import matplotlib.pyplot as plt  # pylint: disable=g-bad-import-order  (Agg set by output)

BIN_EDGES = np.linspace(-12.0, 6.0, 73)


def compute(loss_fn, params, rho: float, bin_edges=BIN_EDGES) -> dict:
  """The Fig. 1 numbers for one model: histogram, fraction ``r < 0``, counts."""
  stats = gradient_ratio.gradient_ratio_statistics(loss_fn, params, rho,
                                                   bin_edges)
  return stats._asdict()


def plot(results: dict, path: str, title: str) -> str:
  figure, axis = plt.subplots(figsize=(6, 4))
  for name, stats in results.items():
    edges = np.asarray(stats["bin_edges"])
    density = np.asarray(stats["counts"]) / max(stats["num_valid"], 1)
    axis.stairs(density, edges, label=(
        f"{name}: {stats['fraction_below_zero']:.1%} with r < 0"))
  axis.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
  axis.set_xlabel(r"$r = \log|(g_{SAM} - g_{SGD}) / g_{SGD}|$")
  axis.set_ylabel("fraction of parameters")
  axis.set_title(title)
  axis.legend(fontsize=8)
  return output.save_figure(figure, path)


PNG, JSON = "fig1_gradient_ratio.png", "fig1_gradient_ratio.json"


def figure_title(data: dict, prefix: str = "") -> str:
  """The title of the figure of ``data`` (the JSON), after ``prefix``."""
  return output.title_lines(
      prefix, f"Gradient ratio r, rho={data['rho']:g} ({data['dataset']})")


def draw(data: dict, out_dir: str, prefix: str = "") -> str:
  """Writes the PNG of ``data`` (the JSON) to ``out_dir``."""
  return plot(data["models"], os.path.join(out_dir, PNG), figure_title(data, prefix))


def make_figure(models: Sequence[trained.TrainedModel], out_dir: str,
                rho: float = 0.1, title: str = "") -> tuple[str, str]:
  """Writes ``fig1_gradient_ratio.{png,json}`` for ``models``; returns the
  paths. ``title`` goes before the figure's own."""
  results = {m.name: compute(m.loss_fn, m.params, rho) for m in models}
  data = {"figure": "Fig. 1 gradient ratio", "rho": rho,
          "dataset": trained.dataset_title(models),
          "note": "r uses the natural log; parameters with g_SGD == 0 are "
                  "excluded (num_excluded); values outside the edges are "
                  "clipped into the end bins.",
          "models": results}
  return draw(data, out_dir, title), output.write_json(os.path.join(out_dir, JSON), data)


def main(argv=None) -> tuple[str, str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  cli.add_model_arguments(parser)
  parser.add_argument("--rho", type=float, default=0.1, help="SAM radius")
  args = parser.parse_args(argv)
  paths = make_figure(cli.models_from_args(args), args.out, args.rho)
  print("\n".join(paths))
  return paths


if __name__ == "__main__":
  main(sys.argv[1:])
