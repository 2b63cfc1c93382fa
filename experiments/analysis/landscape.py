"""Fig. 4: training-loss landscape along two random filter-normalised directions.

  python -m experiments.analysis.landscape --demo --out figures/
  python -m experiments.analysis.landscape --checkpoint sgd=runs/sgd \\
      --checkpoint sam=runs/sam --num-points 50 --out figures/
"""

import argparse
import os
import sys
from collections.abc import Sequence

import jax
import numpy as np

from experiments.analysis import cli
from experiments.analysis import output
from experiments.analysis import trained
from ssam_jax.analysis import landscape

import matplotlib.pyplot as plt  # pylint: disable=g-bad-import-order  (Agg set by output)


def compute(loss_fn, params, key, num_points: int = 50,
            span: tuple[float, float] = (-1.0, 1.0), chunk_size: int = 50
            ) -> dict:
  """The Fig. 4 numbers for one model: the grid and the loss on it."""
  surface = landscape.loss_surface(loss_fn, params, key, num_points, span,
                                   chunk_size)
  loss = np.asarray(surface.loss, np.float64)
  return {"x": np.asarray(surface.x), "y": np.asarray(surface.y), "loss": loss,
          "center_loss": float(loss_fn(params)), "mean_loss": float(loss.mean()),
          "max_loss": float(loss.max())}


def plot(results: dict, path: str, title: str) -> str:
  names = list(results)
  figure = plt.figure(figsize=(4.2 * len(names), 7.6))
  low = min(float(np.min(r["loss"])) for r in results.values())
  high = max(float(np.max(r["loss"])) for r in results.values())
  levels = np.linspace(low, high, 25)
  for column, name in enumerate(names):
    r = results[name]
    x, y = np.meshgrid(r["x"], r["y"])
    axis = figure.add_subplot(2, len(names), column + 1)
    contour = axis.contour(x, y, r["loss"], levels=levels, cmap="coolwarm")
    axis.clabel(contour, fontsize=6, fmt="%.2f")
    axis.set_title(f"{name}", fontsize=10)
    axis.set_aspect("equal")
    axis3d = figure.add_subplot(2, len(names), len(names) + column + 1,
                                projection="3d")
    axis3d.plot_surface(x, y, r["loss"], cmap="coolwarm", vmin=low, vmax=high,
                        linewidth=0, antialiased=True)
    axis3d.set_zlim(low, high)
    axis3d.set_zlabel("train loss", fontsize=8)
  figure.suptitle(title)
  return output.save_figure(figure, path)


def make_figure(models: Sequence[trained.TrainedModel], out_dir: str,
                seed: int = 0, num_points: int = 50, chunk_size: int = 50
                ) -> tuple[str, str]:
  """Writes ``fig4_landscape.{png,json}`` for ``models``; returns the paths.

  Every model gets its own random directions (normalised to its own
  filters), drawn from the same key, as in Li et al.
  """
  key = jax.random.key(seed)
  results = {m.name: compute(m.loss_fn, m.params, key, num_points,
                             chunk_size=chunk_size) for m in models}
  title = (f"Training loss landscape ({trained.dataset_title(models)}), "
           f"{num_points}x{num_points} grid")
  png = plot(results, os.path.join(out_dir, "fig4_landscape.png"), title)
  data = {"figure": "Fig. 4 loss landscape", "seed": seed,
          "dataset": trained.dataset_title(models),
          "directions": "Gaussian, filter-normalised per output channel "
                        "(last axis); 1-D leaves zeroed (Li et al. 2018)",
          "loss_layout": "loss[i][j] at (x[j], y[i])", "models": results}
  return png, output.write_json(os.path.join(out_dir, "fig4_landscape.json"),
                                data)


def main(argv=None) -> tuple[str, str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  cli.add_model_arguments(parser)
  parser.add_argument("--num-points", type=int, default=50,
                      help="grid points per axis (50 in the paper)")
  parser.add_argument("--chunk-size", type=int, default=50,
                      help="grid points evaluated at once under vmap")
  args = parser.parse_args(argv)
  paths = make_figure(cli.models_from_args(args), args.out, args.seed,
                      args.num_points, args.chunk_size)
  print("\n".join(paths))
  return paths


if __name__ == "__main__":
  main(sys.argv[1:])
