"""Fig. 5: Hessian spectrum -- top eigenvalues, lambda_1/lambda_5, density.

  python -m experiments.analysis.hessian --demo --out figures/
  python -m experiments.analysis.hessian --checkpoint sgd=runs/sgd \\
      --checkpoint sam=runs/sam --lanczos-steps 90 --out figures/
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
from ssam_jax.analysis import hessian

import matplotlib.pyplot as plt  # pylint: disable=g-bad-import-order  (Agg set by output)


def compute(loss_fn, params, key, num_steps: int = 90, num_probes: int = 1,
            k: int = 5, sigma_squared: float = 1e-5) -> dict:
  """The Fig. 5 numbers for one model: top-``k`` eigenvalues and the density."""
  k_top, k_density = jax.random.split(key)
  top = hessian.top_eigenvalues(loss_fn, params, k_top, k, num_steps)
  density = hessian.spectral_density(loss_fn, params, k_density, num_steps,
                                     num_probes, sigma_squared)
  return {"top_eigenvalues": top.eigenvalues, "lambda1_over_lambdak": top.ratio,
          "k": k, "grid": density.grid, "density": density.density,
          "nodes": density.nodes, "weights": density.weights}


def plot(results: dict, path: str, title: str) -> str:
  figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for name, r in results.items():
    label = (f"{name}: $\\lambda_1$={r['top_eigenvalues'][0]:.3g}, "
             f"$\\lambda_1/\\lambda_{r['k']}$={r['lambda1_over_lambdak']:.3g}")
    left.semilogy(r["grid"], np.maximum(r["density"], 1e-12), label=label)
    right.plot(np.arange(1, r["k"] + 1), r["top_eigenvalues"], "o-", label=name)
  left.set_xlabel("Hessian eigenvalue")
  left.set_ylabel("spectral density (SLQ, Gaussian broadening)")
  left.set_ylim(bottom=1e-8)
  left.legend(fontsize=8)
  right.set_xlabel("index i (largest first)")
  right.set_ylabel(r"top eigenvalues $\lambda_i$")
  right.set_xticks(np.arange(1, max(r["k"] for r in results.values()) + 1))
  right.legend(fontsize=8)
  figure.suptitle(title)
  return output.save_figure(figure, path)


PNG, JSON = "fig5_hessian.png", "fig5_hessian.json"


def figure_title(data: dict, prefix: str = "") -> str:
  """The title of the figure of ``data`` (the JSON), after ``prefix``."""
  return output.title_lines(
      prefix, f"Hessian spectrum of the training loss ({data['dataset']})")


def draw(data: dict, out_dir: str, prefix: str = "") -> str:
  """Writes the PNG of ``data`` (the JSON) to ``out_dir``."""
  return plot(data["models"], os.path.join(out_dir, PNG), figure_title(data, prefix))


def make_figure(models: Sequence[trained.TrainedModel], out_dir: str,
                seed: int = 0, num_steps: int = 90, num_probes: int = 1,
                title: str = "") -> tuple[str, str]:
  """Writes ``fig5_hessian.{png,json}`` for ``models``; returns the paths.
  ``title`` goes before the figure's own."""
  key = jax.random.key(seed)
  results = {m.name: compute(m.loss_fn, m.params, key, num_steps, num_probes)
             for m in models}
  data = {"figure": "Fig. 5 Hessian spectrum", "seed": seed,
          "dataset": trained.dataset_title(models), "lanczos_steps": num_steps,
          "num_probes": num_probes, "models": results}
  return draw(data, out_dir, title), output.write_json(os.path.join(out_dir, JSON), data)


def main(argv=None) -> tuple[str, str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  cli.add_model_arguments(parser)
  parser.add_argument("--lanczos-steps", type=int, default=90,
                      help="Lanczos iterations (capped at the parameter count)")
  parser.add_argument("--num-probes", type=int, default=1,
                      help="random probes averaged in the density")
  args = parser.parse_args(argv)
  paths = make_figure(cli.models_from_args(args), args.out, args.seed,
                      args.lanczos_steps, args.num_probes)
  print("\n".join(paths))
  return paths


if __name__ == "__main__":
  main(sys.argv[1:])
