r"""Cost of every sweep arm as a ratio to SGD: the training program's own step.

  python -m benchmarks.arm_cost --regime overfit [--rounds 5] [--out FILE]

For each arm of ``experiments.sweep_arms.ARMS`` this builds the ``Trainer`` of the
regime's config with the arm's overrides and times one epoch of its train
step on batches already in memory, starting at a mask refresh, so a sparse
arm pays its refreshes at the rate training does (one per
``mask_update_epochs``). Arms are timed in interleaved rounds after
compilation; the median epoch time over rounds, divided by SGD's, is the arm's
cost. Absolute times depend on the machine; ratios from one run compare.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # pylint: disable=g-import-not-at-top
import statistics
import sys
import tempfile
import time

import jax

from benchmarks import harness
from experiments import sweep
from experiments import sweep_arms
from experiments import sweep_readouts
from experiments import train


def _epoch_runner(regime: str, arm: sweep_arms.Arm, rho: float, workdir: str):
  """A function running one epoch of ``arm``'s train step; returns seconds."""
  config = sweep.regime_config(regime)
  config.update(sweep.overrides_of(regime, arm, rho))
  trainer = train.Trainer(config, workdir)
  batches = [trainer.data_parallel.global_batch(b) for b in
             trainer.pipeline.train_batches(trainer.train_split, config, epoch=0)]
  state = trainer.initial_state()

  def run_epoch():
    nonlocal state
    start = time.perf_counter()
    for step, batch in enumerate(batches):
      state, _ = trainer.step(state, batch, step)
    jax.block_until_ready(state)
    return time.perf_counter() - start

  run_epoch()  # compiles every variant of the step (refresh or not)
  return run_epoch, len(batches)


def measure(regime: str, rho: float, rounds: int,
            arms: list[sweep_arms.Arm]) -> dict:
  """Per arm label: epoch seconds and their median's ratio to SGD's."""
  runners = {}
  with tempfile.TemporaryDirectory() as root:
    for arm in arms:
      runners[arm.label] = _epoch_runner(regime, arm, rho, os.path.join(
          root, arm.label.replace(" ", "_")))
      print(f"compiled {arm.label}", flush=True)
    seconds = {arm.label: [] for arm in arms}
    for _ in range(rounds):
      for arm in arms:
        seconds[arm.label].append(runners[arm.label][0]())
  sgd = statistics.median(seconds[sweep_arms.SGD.label])
  return {arm: {"epoch_seconds_median": statistics.median(values),
                "epoch_seconds": values, "steps": runners[arm][1],
                "ratio_to_sgd": statistics.median(values) / sgd}
          for arm, values in seconds.items()}


def main(argv=None):
  parser = harness.argument_parser(__doc__, repetitions=5, out="")
  # Regimes that train another regime's steps read that one's costs.
  parser.add_argument("--regime", default="overfit", choices=[
      name for name, regime in sweep.REGIMES.items()
      if regime.cost_of is None and name != "augmented"])
  parser.add_argument("--only", default="", help="comma-separated arm names")
  args = parser.parse_args(argv)
  only = [sweep_arms.arm(label) for label in args.only.split(",") if label]
  arms = [sweep_arms.SGD] + [a for a in sweep_arms.ARMS if a != sweep_arms.SGD and (
      not only or a in only)]
  rho = sweep.selected_rho(args.regime)
  results = measure(args.regime, rho, args.repetitions, arms)
  for arm, row in results.items():
    print(f"{arm:40s} {row['ratio_to_sgd']:.2f}x SGD "
          f"({row['epoch_seconds_median']:.2f} s / epoch)")
  out = args.out or str(sweep_readouts.cost_file(args.regime))
  with open(out, "w") as f:
    json.dump({"command": harness.command_line("benchmarks.arm_cost"), "backend": jax.default_backend(),
               "regime": args.regime, "rho": rho, "rounds": args.repetitions,
               "arms": results}, f, indent=1)
  print(f"wrote {out}")


if __name__ == "__main__":
  main(sys.argv[1:])
