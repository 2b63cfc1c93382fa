"""Runs every figure command: ``python -m experiments.analysis --demo --out DIR``.

With ``--demo`` all figures use the synthetic demo; without it, pass
``--checkpoint NAME=DIR`` (Figs. 1, 4, 5) and ``--run SPEC`` (Figs. 2, 3)
as the single commands take them.
"""

import argparse
import sys

from experiments.analysis import accuracy_vs_sparsity
from experiments.analysis import convergence
from experiments.analysis import gradient_ratio
from experiments.analysis import hessian
from experiments.analysis import landscape
from experiments.analysis import training_curves


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--demo", action="store_true")
  parser.add_argument("--checkpoint", action="append", default=[])
  parser.add_argument("--run", nargs="+", action="extend", default=[])
  args = parser.parse_args(argv)
  if args.demo:
    model_args = run_args = ["--demo"]
  else:
    model_args = [a for c in args.checkpoint for a in ("--checkpoint", c)]
    run_args = ["--run", *args.run]
  out = ["--out", args.out]
  for module in (gradient_ratio, landscape, hessian):
    module.main(model_args + out)
  for module in (training_curves, accuracy_vs_sparsity):
    module.main(run_args + out)
  convergence.main(out)


if __name__ == "__main__":
  main(sys.argv[1:])
