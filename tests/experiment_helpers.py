"""Helpers shared by the tests of the training program: a tiny real-data config.

The tests import it as ``import experiment_helpers as testing``.
"""

import os
import sys

import pytest

from experiments import checkpointing
from experiments import input_pipeline
from experiments.configs import fashion_mnist_small

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST_CONFIG_FILE = os.path.join(REPO_ROOT, "experiments", "configs",
                                         "fashion_mnist_small.py")

# Real Fashion-MNIST, cut down so that a run takes seconds on a 2-core CPU.
TINY_OVERRIDES = {
    "train_subset": 512,
    "test_subset": 500,
    "batch_size": 64,  # 8 steps per epoch
    "eval_batch_size": 250,
    "num_epochs": 3,
    "learning_rate": 0.2,  # 24 steps in all: a high rate shows progress
    "model_width": 8,
    "mask_update_epochs": 0.5,  # every 4 steps
    "num_fisher_samples": 16,
    "log_every_steps": 4,
    "checkpoint_every_steps": 0,
}


def _fashion_mnist_available() -> bool:
  directory = os.environ.get("FASHION_MNIST_DIR",
                             input_pipeline.DEBIAN_FASHION_MNIST_DIR)
  return os.path.exists(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"))


requires_fashion_mnist = pytest.mark.skipif(
    not _fashion_mnist_available(),
    reason="needs the real Fashion-MNIST IDX files: "
    "apt-get install dataset-fashion-mnist")


def tiny_config(**overrides):
  """The Fashion-MNIST CPU config with TINY_OVERRIDES, then ``overrides``."""
  config = fashion_mnist_small.get_config()
  config.update({**TINY_OVERRIDES, **overrides})
  return config


def tiny_config_flags(**overrides) -> list[str]:
  """The same config as command-line flags for ``experiments.main``."""
  values = {**TINY_OVERRIDES, **overrides}
  return [f"--config={FASHION_MNIST_CONFIG_FILE}"] + [
      f"--config.{name}={value}" for name, value in values.items()]


def main_command(workdir, *extra_flags, **overrides) -> list[str]:
  """``python -m experiments.main`` on the tiny config with ``overrides``."""
  return [sys.executable, "-m", "experiments.main", f"--workdir={workdir}",
          *tiny_config_flags(**overrides), *extra_flags]


def main_env(compilation_cache: str) -> dict[str, str]:
  """CPU-only environment for ``main_command``; runs sharing ``compilation_cache``
  reuse each other's compiled steps (tests take a third of the time)."""
  env = {**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu",
         "JAX_COMPILATION_CACHE_DIR": compilation_cache}
  env.pop("XLA_FLAGS", None)  # device counts come from --cpu_devices only
  return env


def final_checkpoint(workdir):
  """(latest step, its checkpointed state as nested dicts of arrays)."""
  checkpointer = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  step = checkpointer.latest_step()
  state = None if step is None else checkpointer.read_state(step)
  checkpointer.close()
  return step, state
