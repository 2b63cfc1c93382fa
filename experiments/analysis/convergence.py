"""Theorems 1-2: the O(log T / sqrt(T)) rate of SAM and SSAM, measured.

  python -m experiments.analysis.convergence --out figures/
  python -m experiments.analysis.convergence --num-steps 10000 --num-seeds 8 \\
      --eta0 1.0 --rho0 0.2 --sparsity 0.5 --out figures/

Runs SGD, SAM and SSAM-F on accumulated squared gradients
(``ssam-f-accumulated``; ``eta_t = eta0/sqrt(t)``, ``rho_t = rho0/sqrt(t)``)
on the synthetic robust-regression problem of
:mod:`experiments.convergence.problem`, which satisfies Assumptions 1-3, and
plots the running average ``(1/T) sum_t E||grad f(w_t)||^2`` (mean over
seeds) with its fitted envelope ``C log T / sqrt(T)``. The JSON also holds
the analytic and estimated ``G``, ``sigma^2``, ``L`` and the theorems'
constants. (``--demo`` is accepted for symmetry; the problem is always
synthetic.)
"""

import argparse
import os
import sys

import jax
import numpy as np

from experiments.analysis import demo
from experiments.analysis import output
from experiments.convergence import problem as regression
from experiments.configs import common as configs_common
from experiments.convergence import rates

import matplotlib.pyplot as plt  # pylint: disable=g-bad-import-order  (Agg set by output)

SPARSITY = configs_common.get_base_config().sparsity  # the configs' default


def compute(problem: regression.Problem, key, num_steps: int, num_seeds: int,
            eta0: float, rho0: float, sparsity: float, t_min: int = 10,
            optimizers=rates.DEFAULT_OPTIMIZERS, num_plot_points: int = 400
            ) -> dict:
  """Curves, fits and constants; curves subsampled at log-spaced ``T``."""
  k_run, k_g, k_var, k_l = jax.random.split(key, 4)
  curves = rates.convergence_curves(
      problem, k_run, num_steps, num_seeds, eta0, rho0, optimizers, sparsity,
      t_min)
  bounds = regression.analytic_bounds(problem)
  estimates = regression.Constants(
      regression.estimate_gradient_bound(problem, k_g),
      regression.estimate_variance(problem, k_var),
      regression.estimate_smoothness(problem, k_l))
  t = np.unique(np.geomspace(1, num_steps, num_plot_points).astype(int))
  results = {}
  for name, curve in curves.items():
    results[name] = {
        "T": t, "running_average": curve.average[t - 1],
        "slope": curve.envelope.slope, "envelope_C": curve.envelope.constant,
        "t_min": curve.envelope.t_min, "loss_decrease": curve.loss_decrease,
        "final_running_average": float(curve.average[-1]),
        "theorem_constants": rates.theorem_constants(
            bounds, eta0, rho0, curve.loss_decrease)}
  return {"curves": results, "analytic_bounds": bounds._asdict(),
          "estimates": estimates._asdict(),
          "theorem2_condition_rho0_le_G_eta0_over_2":
              bool(rho0 <= bounds.gradient_bound * eta0 / 2),
          "eta0": eta0, "rho0": rho0, "sparsity": sparsity,
          "num_steps": num_steps, "num_seeds": num_seeds,
          "num_examples": int(problem.features.shape[0]),
          "dim": int(problem.features.shape[1]),
          "batch_size": problem.batch_size}


def plot(results: dict, path: str, title: str) -> str:
  figure, axis = plt.subplots(figsize=(6.5, 4.5))
  for name, r in results["curves"].items():
    t = np.asarray(r["T"], np.float64)
    line, = axis.loglog(t, r["running_average"],
                        label=f"{name} (slope {r['slope']:.2f})")
    tail = t >= max(r["t_min"], 2)
    axis.loglog(t[tail], r["envelope_C"] * np.log(t[tail]) / np.sqrt(t[tail]),
                linestyle="--", color=line.get_color(), linewidth=1,
                label=f"{r['envelope_C']:.3g} log T / sqrt(T)")
  axis.set_xlabel("T")
  axis.set_ylabel(r"$(1/T)\,\sum_{t<T}\, E\|\nabla f(w_t)\|^2$")
  axis.legend(fontsize=7)
  axis.set_title(title, fontsize=10)
  return output.save_figure(figure, path)


def make_figure(out_dir: str, seed: int = 0, num_steps: int = 10_000,
                num_seeds: int = 8, eta0: float = 1.0, rho0: float = 0.2,
                sparsity: float = SPARSITY, num_examples: int = 512, dim: int = 10,
                batch_size: int = 8, optimizers=rates.DEFAULT_OPTIMIZERS
                ) -> tuple[str, str]:
  """Writes ``convergence.{png,json}``; returns the paths."""
  k_problem, k_run = jax.random.split(jax.random.key(seed))
  problem = regression.make_problem(k_problem, num_examples, dim, batch_size)
  results = compute(problem, k_run, num_steps, num_seeds, eta0, rho0, sparsity,
                    optimizers=tuple(optimizers))
  title = (f"Convergence on synthetic robust regression (n={num_examples}, "
           f"d={dim}, B={batch_size}),\n$\\eta_t={eta0:g}/\\sqrt{{t}}$, "
           f"$\\rho_t={rho0:g}/\\sqrt{{t}}$, {num_seeds} seeds, "
           f"SSAM sparsity {sparsity:g}")
  png = plot(results, os.path.join(out_dir, "convergence.png"), title)
  return png, output.write_json(
      os.path.join(out_dir, "convergence.json"),
      {"figure": "Theorems 1-2 convergence", "dataset": demo.SYNTHETIC,
       **results})


def main(argv=None) -> tuple[str, str]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--demo", action="store_true", help="accepted; no-op")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num-steps", type=int, default=10_000)
  parser.add_argument("--num-seeds", type=int, default=8)
  parser.add_argument("--eta0", type=float, default=1.0)
  parser.add_argument("--rho0", type=float, default=0.2)
  parser.add_argument("--sparsity", type=float, default=SPARSITY)
  parser.add_argument("--num-examples", type=int, default=512)
  parser.add_argument("--dim", type=int, default=10)
  parser.add_argument("--batch-size", type=int, default=8)
  parser.add_argument("--optimizers", default=",".join(rates.DEFAULT_OPTIMIZERS),
                      help="comma-separated names of experiments.optimizer_table"
                      " that need no fisher_fn")
  args = parser.parse_args(argv)
  paths = make_figure(args.out, args.seed, args.num_steps, args.num_seeds,
                      args.eta0, args.rho0, args.sparsity, args.num_examples,
                      args.dim, args.batch_size, args.optimizers.split(","))
  print("\n".join(paths))
  return paths


if __name__ == "__main__":
  main(sys.argv[1:])
