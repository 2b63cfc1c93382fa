"""Training a sweep's runs and recording each as it finishes.

``python -m experiments.sweep run`` calls :func:`run`: every run a phase
needs (``experiments.sweep.jobs``) that is not recorded yet is trained in a
subprocess of ``experiments.main``, ``parallel`` at a time, and appended to
the regime's results file with its per-epoch metrics, the command that made
it and the fields of ``experiments.run_record``.
"""

import concurrent.futures
import json
import statistics
import subprocess

from experiments import run_record
from experiments import sweep
from experiments import sweep_arms


def record(regime: str, arm: sweep_arms.Arm, overrides: dict, seed: int,
           parallel: int) -> bool:
  """Appends the finished run to the results file; False if it is unfinished."""
  config = sweep.regime_config(regime)
  epochs = sweep.epochs_of(sweep.workdir(regime, overrides, seed))
  wanted = overrides.get("num_epochs", config.num_epochs)
  if not epochs or epochs[-1]["epoch"] < wanted:
    return False
  last = epochs[-1]
  row = {"regime": regime, "arm": arm.label, "seed": seed, "overrides": overrides,
         **{key: last[key] for key in ("test_accuracy", "validation_accuracy",
                                       "train_accuracy", "train_loss")},
         "mean_epoch_seconds": statistics.fmean(e["epoch_seconds"] for e in epochs),
         "runs_in_parallel": parallel,
         "command": " ".join(sweep.command(regime, overrides, seed)[1:]),
         **run_record.derived_fields(sweep.workdir(regime, overrides, seed),
                                     epochs),
         "epochs": epochs}
  with sweep.results_file(regime).open("a") as out:
    out.write(json.dumps(row) + "\n")
  return True


def run(regime: str, phase: str, parallel: int,
        only: list[sweep_arms.Arm]) -> None:
  """Trains what the phase needs until it needs nothing more."""
  while pending := _pending(regime, phase, parallel, only):
    _train(regime, pending, parallel)


def _pending(regime, phase, parallel, only):
  """The phase's unrecorded jobs; records finished runs found on disk."""
  pending = []
  for arm, overrides, seed in sweep.jobs(regime, phase, only):
    rows = sweep.recorded_rows(regime)
    if sweep.find_run(rows, overrides, seed) is not None:
      continue
    if any(o == overrides and s == seed for _, o, s in pending):
      continue
    if not record(regime, arm, overrides, seed, parallel):
      pending.append((arm, overrides, seed))
  return pending


def _train(regime, pending, parallel):
  """Trains ``pending`` jobs, ``parallel`` at a time, recording each."""
  failed = False

  def train(job):
    arm, overrides, seed = job
    log = sweep.workdir(regime, overrides, seed) / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
      code = subprocess.call(sweep.command(regime, overrides, seed), stdout=out,
                             stderr=subprocess.STDOUT)
    return job, code

  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    for (arm, overrides, seed), code in pool.map(train, pending):
      if code == 0 and record(regime, arm, overrides, seed, parallel):
        print(f"recorded {regime} {arm.label} seed {seed}", flush=True)
      else:
        failed = True
        print(f"FAILED {regime} {arm.label} seed {seed} (exit {code}): "
              f"{sweep.workdir(regime, overrides, seed)}/train.log", flush=True)
  if failed:  # rather than retrying it forever
    raise SystemExit(f"{regime}: a run failed; see its train.log.")
