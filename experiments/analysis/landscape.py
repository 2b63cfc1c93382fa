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

import matplotlib  # pylint: disable=g-bad-import-order
import matplotlib.pyplot as plt  # pylint: disable=g-bad-import-order  (Agg set by output)

CMAP = "coolwarm"


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
  """Contours (top row) and surfaces (bottom row) of each model's loss on
  one colour scale, with its colourbar."""
  names = list(results)
  figure = plt.figure(figsize=(4.2 * len(names) + 1.2, 7.8))
  low = min(float(np.min(r["loss"])) for r in results.values())
  high = max(float(np.max(r["loss"])) for r in results.values())
  levels = np.linspace(low, high, 25)
  norm = matplotlib.colors.Normalize(low, high)
  axes = []
  for column, name in enumerate(names):
    r = results[name]
    x, y = np.meshgrid(r["x"], r["y"])
    axis = figure.add_subplot(2, len(names), column + 1)
    contour = axis.contour(x, y, r["loss"], levels=levels, cmap=CMAP, norm=norm)
    axis.clabel(contour, fontsize=6, fmt="%.1f")
    axis.plot(0, 0, "k+", markersize=8)  # the trained weights
    axis.set_title(name, fontsize=10)
    axis.set_xlabel(r"$\alpha$ (direction 1)", fontsize=8)
    if column == 0:  # the rows share their axes
      axis.set_ylabel(r"$\beta$ (direction 2)", fontsize=8)
    axis.set_aspect("equal")
    axis3d = figure.add_subplot(2, len(names), len(names) + column + 1,
                                projection="3d")
    axis3d.plot_surface(x, y, np.asarray(r["loss"]), cmap=CMAP, norm=norm,
                        linewidth=0, antialiased=True)
    axis3d.set_zlim(low, high)
    axis3d.set_xlabel(r"$\alpha$", fontsize=8)
    axis3d.set_ylabel(r"$\beta$", fontsize=8)
    axes += [axis, axis3d]
  figure.subplots_adjust(wspace=0.35)
  colorbar = figure.colorbar(matplotlib.cm.ScalarMappable(norm, CMAP), ax=axes,
                             shrink=0.8, pad=0.02)
  colorbar.set_label("training loss (cross-entropy)")
  figure.suptitle(title)
  figure.text(0.45, 0.05, "Training loss at w + alpha d1 + beta d2 for two random "
              "directions d1, d2, filter-normalised to the weights w (Li et al., 2018); + "
              "marks w. Top: contours; bottom: the same loss as a surface (height and "
              "colour).", ha="center", fontsize=8)
  return output.save_figure(figure, path)


PNG, JSON = "fig4_landscape.png", "fig4_landscape.json"


def figure_title(data: dict, prefix: str = "") -> str:
  """The title of the figure of ``data`` (the JSON), after ``prefix``."""
  size = len(next(iter(data["models"].values()))["x"])
  return output.title_lines(prefix, f"Training loss landscape ({data['dataset']}), "
                                    f"{size}x{size} grid")


def draw(data: dict, out_dir: str, prefix: str = "") -> str:
  """Writes the PNG of ``data`` (the JSON) to ``out_dir``."""
  return plot(data["models"], os.path.join(out_dir, PNG), figure_title(data, prefix))


def make_figure(models: Sequence[trained.TrainedModel], out_dir: str,
                seed: int = 0, num_points: int = 50, chunk_size: int = 50,
                title: str = "") -> tuple[str, str]:
  """Writes ``fig4_landscape.{png,json}`` for ``models``; returns the paths.

  Every model gets its own random directions (normalised to its own
  filters), drawn from the same key, as in Li et al. ``title`` goes before
  the figure's own.
  """
  key = jax.random.key(seed)
  results = {m.name: compute(m.loss_fn, m.params, key, num_points,
                             chunk_size=chunk_size) for m in models}
  data = {"figure": "Fig. 4 loss landscape", "seed": seed,
          "dataset": trained.dataset_title(models),
          "directions": "Gaussian, filter-normalised per output channel "
                        "(last axis); 1-D leaves zeroed (Li et al. 2018)",
          "loss_layout": "loss[i][j] at (x[j], y[i])", "models": results}
  return draw(data, out_dir, title), output.write_json(os.path.join(out_dir, JSON), data)


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
