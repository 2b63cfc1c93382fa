"""A run killed mid-epoch and resumed ends bit-identical to an uninterrupted one.

The same command-line runs also show that a workdir in use refuses a second
run, that the lock of a run killed with SIGKILL does not outlive it, and that
the program's output is the progress bar plus its own summary lines, with no
library warnings.
"""

import json
import os
import re
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from experiments import checkpointing
from experiments import train
from experiments import workdir_guard
import experiment_helpers as testing

# 16 steps/epoch, 2 epochs; SSAM-D carries a PRNG key and a changing mask,
# refreshed every 3 steps.
RUN = dict(optimizer="ssam-d", num_epochs=2, train_subset=1024,
           checkpoint_every_steps=5, mask_update_epochs=3 / 16,
           label_noise=0.1)
TOTAL_STEPS = 32
# A tqdm line, e.g. "epoch 1/2:  25%|██▌       | 4/16 [00:01<00:03, ...]".
PROGRESS_BAR = re.compile(r"^epoch \d+/\d+: +\d+%\|")


def _main_command(workdir):
  return testing.main_command(workdir, **RUN)


def _run_to_completion(workdir, compilation_cache):
  result = subprocess.run(_main_command(workdir), cwd=testing.REPO_ROOT,
                          env=testing.main_env(compilation_cache),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _first_checkpoint(workdir, process, timeout=240) -> int:
  """Waits until ``process`` has saved a complete checkpoint (its checksum
  file is written last); returns its step."""
  directory = os.path.join(workdir, "checkpoints")
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and process.poll() is None:
    for step in checkpointing.saved_steps(directory):
      if os.path.exists(os.path.join(directory, str(step),
                                     checkpointing.CHECKSUM_FILE)):
        return step
    time.sleep(0.05)
  raise AssertionError(f"no checkpoint in {directory} (exit {process.poll()})")


def _kill_after_first_checkpoint(workdir, compilation_cache):
  """SIGKILLs a run after its first checkpoint; on the way, a second run on
  the same workdir must be refused while the first one holds it."""
  process = subprocess.Popen(_main_command(workdir), cwd=testing.REPO_ROOT,
                             env=testing.main_env(compilation_cache),
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    _first_checkpoint(workdir, process)
    with pytest.raises(workdir_guard.WorkdirBusyError,
                       match=f"pid {process.pid} "):
      train.train_and_evaluate(testing.tiny_config(**RUN), workdir)
    process.send_signal(signal.SIGKILL)
  finally:
    process.kill()
    process.wait(timeout=60)


def _checkpoint_steps(workdir) -> tuple[list[int], list[int]]:
  """(intact, damaged) checkpoint steps; a kill between orbax's commit and
  the checksum file leaves the newest one incomplete."""
  checkpointer = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  steps = checkpointing.saved_steps(checkpointer.directory)
  damaged = [step for step in steps if checkpointer.problem(step)]
  checkpointer.close()
  return [step for step in steps if step not in damaged], damaged


def _metrics_without_timings(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if k != "epoch_seconds"}
          for r in records]


def _assert_quiet_and_summarised(result, workdir, warnings=0) -> None:
  """stderr holds the progress bar and ``warnings`` warnings of the program
  only; stdout one line per epoch and a final summary that says where the
  outputs are."""
  stderr = [line for line in result.stderr.replace("\r", "\n").splitlines()
            if line.strip() and not PROGRESS_BAR.match(line)]
  assert len(stderr) == warnings, stderr
  assert all(line.startswith("Warning: ") for line in stderr), stderr
  stdout = result.stdout.splitlines()
  epochs = [line for line in stdout if line.startswith("epoch ")]
  assert [line.split()[1] for line in epochs] == ["1/2", "2/2"][-len(epochs):]
  assert all(" train loss " in line and " test loss " in line
             for line in epochs)
  assert any(line.startswith("FINAL ") for line in stdout)
  for output in ("metrics.jsonl", "tensorboard", "checkpoints"):
    assert any(os.path.join(workdir, output) in line for line in stdout)


@pytest.mark.slow  # three command-line runs
@testing.requires_fashion_mnist
def test_killed_and_resumed_run_is_bit_identical(tmp_path):
  uninterrupted, interrupted = str(tmp_path / "a"), str(tmp_path / "b")
  cache = str(tmp_path / "jax_cache")
  _assert_quiet_and_summarised(_run_to_completion(uninterrupted, cache),
                               uninterrupted)

  _kill_after_first_checkpoint(interrupted, cache)
  intact, damaged = _checkpoint_steps(interrupted)
  killed_at = max(intact)
  assert killed_at < TOTAL_STEPS and all(s > killed_at for s in damaged)
  # The killed run's lock went with it: the same command resumes.
  result = _run_to_completion(interrupted, cache)
  assert f"Resumed from step {killed_at}" in result.stdout
  _assert_quiet_and_summarised(result, interrupted, warnings=len(damaged))

  step_a, state_a = testing.final_checkpoint(uninterrupted)
  step_b, state_b = testing.final_checkpoint(interrupted)
  assert step_a == step_b == TOTAL_STEPS
  leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
  assert jax.tree.structure(state_a) == jax.tree.structure(state_b)
  assert {"params", "batch_stats", "opt_state"} <= set(state_a)
  for a, b in zip(leaves_a, leaves_b):  # params, batch_stats, full opt state
    np.testing.assert_array_equal(a, b)
  assert (_metrics_without_timings(interrupted) ==
          _metrics_without_timings(uninterrupted))
