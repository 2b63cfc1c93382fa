r"""Cost of every sweep arm as a ratio to SGD: the training program's own step.

  python -m benchmarks.arm_cost --regime overfit [--only ARMS] [--rounds 5] [--out FILE]

For each arm of ``experiments.sweep_arms.ARMS`` (or of ``--only``, with SGD)
this builds the ``Trainer`` of the regime's config with the arm's overrides
and times one epoch of its train step on batches already in memory, starting
at a mask refresh, so a sparse arm pays its refreshes at the rate training
does (one per ``mask_update_epochs``). Arms are timed after compilation in
rounds, in a shuffled order with an SGD epoch before and after every few
arms; an arm's cost is the median over rounds of its epoch time divided by
the mean of the two SGD epochs around it, which follows the machine's speed
as it drifts. Arms whose configs differ only in rho (an arm
and its "own rho" twin) share one timing. Absolute times depend on the
machine; ratios from one run compare.

The output file keeps the rows of arms this run does not time: each row names
the run that timed it (``"run"``, an index into ``"runs"``, which records
each run's command, rounds and provenance).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # pylint: disable=g-import-not-at-top
import pathlib
import random
import statistics
import sys
import tempfile
import time

import jax

from benchmarks import harness
from experiments import provenance
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


def round_order(keys: list[str], sgd: str, round_index: int,
                anchor_every: int) -> list[str]:
  """One round's timing order: the arms other than SGD shuffled (seeded by
  the round), with SGD first and again after every ``anchor_every`` arms and
  at the end, so that each arm sits between two SGD timings."""
  others = [key for key in keys if key != sgd]
  random.Random(round_index).shuffle(others)
  order = [sgd]
  for index, key in enumerate(others):
    order.append(key)
    if (index + 1) % anchor_every == 0 or index == len(others) - 1:
      order.append(sgd)
  return order


def local_ratios(order: list[str], seconds: list[float], sgd: str) -> dict[str, float]:
  """Each arm's time in ``order`` over the mean of the SGD timings around it:
  the machine's speed drifts over minutes, so the nearest SGD is the fair one."""
  anchors = [i for i, key in enumerate(order) if key == sgd]
  ratios = {}
  for i, key in enumerate(order):
    if key != sgd:
      before = max(a for a in anchors if a < i)
      after = min(a for a in anchors if a > i)
      ratios[key] = seconds[i] / ((seconds[before] + seconds[after]) / 2)
  return ratios


def measure(regime: str, rho: float, rounds: int, arms: list[sweep_arms.Arm],
            anchor_every: int = 4) -> dict:
  """Per arm label: epoch seconds per round, the ratio to the SGD epochs
  timed around it in each round (``local_ratios``), and their median."""
  keys = {arm.label: sweep_readouts.cost_key(regime, arm) for arm in arms}
  timed = {}  # cost key -> the first arm with it
  for arm in arms:
    timed.setdefault(keys[arm.label], arm)
  sgd = keys[sweep_arms.SGD.label]
  runners = {}
  with tempfile.TemporaryDirectory() as root:
    for key, arm in timed.items():
      runners[key] = _epoch_runner(regime, arm, rho, os.path.join(
          root, arm.label.replace(" ", "_").replace("/", "_")))
      print(f"compiled {arm.label}", flush=True)
    seconds = {key: [] for key in timed}
    ratios = {key: [] for key in timed if key != sgd}
    for round_index in range(rounds):
      order = round_order(list(timed), sgd, round_index, anchor_every)
      times = [runners[key][0]() for key in order]
      for key, value in zip(order, times):
        seconds[key].append(value)
      for key, ratio in local_ratios(order, times, sgd).items():
        ratios[key].append(ratio)
  ratios[sgd] = [1.0]
  return {label: {"epoch_seconds_median": statistics.median(seconds[key]),
                  "epoch_seconds": seconds[key], "steps": runners[key][1],
                  "ratios_to_nearest_sgd": ratios[key],
                  "ratio_to_sgd": statistics.median(ratios[key]),
                  **({"timed_as": timed[key].label}
                     if timed[key].label != label else {})}
          for label, key in keys.items()}


# How each run's ratios were computed (a file's older runs may differ).
METHOD = ("median over rounds of the arm's epoch over the mean of the SGD epochs "
          "timed just before and after it")
LEGACY_METHOD = "median epoch over rounds, over SGD's median epoch in the same run"


def merged(previous: dict | None, run: dict, results: dict) -> dict:
  """The cost file with ``results`` of ``run`` over ``previous``'s rows.

  A file without ``runs`` is one run of the legacy method, run 0.

  Raises:
    ValueError: ``previous`` holds another backend's or regime's costs.
  """
  runs, arms = [], {}
  if previous:
    for key in ("backend", "regime"):
      if previous.get(key, run[key]) != run[key]:
        raise ValueError(f"--out holds {key} {previous[key]!r} costs, this run times "
                         f"{run[key]!r}: ratios of both do not compare; pass another --out.")
    runs = previous.get("runs") or [{
        "method": LEGACY_METHOD, **{key: previous[key] for key in (
            "command", "backend", "regime", "rho", "rounds") if key in previous}}]
    arms = {label: {"run": 0, **row} for label, row in previous["arms"].items()}
  runs.append(run)
  arms.update({label: {"run": len(runs) - 1, **row} for label, row in results.items()})
  return {"backend": run["backend"], "regime": run["regime"], "runs": runs, "arms": arms}


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
  started = provenance.collect()  # the code that runs is the code at the start
  results = measure(args.regime, rho, args.repetitions, arms)
  for arm, row in results.items():
    print(f"{arm:40s} {row['ratio_to_sgd']:.2f}x SGD "
          f"({row['epoch_seconds_median']:.2f} s / epoch)")
  out = pathlib.Path(args.out or sweep_readouts.cost_file(args.regime))
  run = {"command": harness.command_line("benchmarks.arm_cost"),
         "backend": jax.default_backend(), "regime": args.regime, "rho": rho,
         "rounds": args.repetitions, "method": METHOD, "provenance": started}
  previous = json.loads(out.read_text()) if out.exists() else None
  out.write_text(json.dumps(merged(previous, run, results), indent=1) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main(sys.argv[1:])
