"""A run killed mid-epoch and resumed ends bit-identical to an uninterrupted one."""

import json
import os
import signal
import subprocess

import jax
import numpy as np

from experiments import testing

# 16 steps/epoch, 2 epochs; SSAM-D carries a PRNG key and a changing mask.
RUN = dict(optimizer="ssam-d", num_epochs=2, train_subset=1024,
           checkpoint_every_steps=5, mask_update_every=3, label_noise=0.1)
TOTAL_STEPS = 32


def _main_command(workdir):
  return testing.main_command(workdir, **RUN)


def _run_to_completion(workdir, compilation_cache):
  result = subprocess.run(_main_command(workdir), cwd=testing.REPO_ROOT,
                          env=testing.main_env(compilation_cache),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def _kill_after_first_checkpoint(workdir, compilation_cache):
  process = subprocess.Popen(_main_command(workdir), cwd=testing.REPO_ROOT,
                             env=testing.main_env(compilation_cache),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
  try:
    for line in process.stdout:
      if line.startswith("Saved checkpoint"):
        process.send_signal(signal.SIGKILL)
        break
  finally:
    process.kill()
    process.wait(timeout=60)
    process.stdout.close()


def _metrics_without_timings(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if k != "epoch_seconds"}
          for r in records]


@testing.requires_fashion_mnist
def test_killed_and_resumed_run_is_bit_identical(tmp_path):
  uninterrupted, interrupted = str(tmp_path / "a"), str(tmp_path / "b")
  cache = str(tmp_path / "jax_cache")
  _run_to_completion(uninterrupted, cache)

  _kill_after_first_checkpoint(interrupted, cache)
  killed_at, _ = testing.final_checkpoint(interrupted)
  assert killed_at is not None and killed_at < TOTAL_STEPS, killed_at
  stdout = _run_to_completion(interrupted, cache)
  assert f"Resumed from step {killed_at}" in stdout

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
