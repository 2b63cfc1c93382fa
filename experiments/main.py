r"""Command line entry point.

  python -m experiments.main --config experiments/configs/fashion_mnist.py \
      --workdir runs/fmnist_ssamf --config.optimizer=ssam-f --config.num_epochs=5

Re-running the same command continues a killed run from its latest checkpoint
(``--noresume`` refuses to touch a workdir that already has checkpoints).

Training is data parallel over all devices. Several processes (hosts) join one
job with ``--distributed`` (settings detected on Cloud TPU, SLURM, Open MPI)
or explicitly; e.g. two processes on this machine with two CPU devices each::

  python -m experiments.main ... --coordinator_address=127.0.0.1:12345 \
      --num_processes=2 --process_id=0 --cpu_devices=2 &
  python -m experiments.main ... --coordinator_address=127.0.0.1:12345 \
      --num_processes=2 --process_id=1 --cpu_devices=2

All processes need the same ``--workdir`` on a shared file system.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags
import jax
import tensorflow as tf

from experiments import distributed
from experiments import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file in experiments/configs/.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory for checkpoints and metrics.")
_RESUME = flags.DEFINE_bool("resume", True,
                            "Continue from the latest checkpoint in workdir.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process job with the settings "
    "jax.distributed.initialize() detects (Cloud TPU, SLURM, Open MPI, ...).")
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, to join a "
    "multi-process job explicitly (with --num_processes and --process_id).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's index in the job.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "CPU devices this process exposes (data parallelism "
    "without accelerators, e.g. for tests).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  try:
    distributed.initialize(auto_detect=_DISTRIBUTED.value,
                           coordinator_address=_COORDINATOR_ADDRESS.value,
                           num_processes=_NUM_PROCESSES.value,
                           process_id=_PROCESS_ID.value,
                           cpu_devices=_CPU_DEVICES.value)
  except ValueError as error:
    raise app.UsageError(str(error)) from error
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  # tf.data only; keep TensorFlow away from any accelerator JAX uses.
  tf.config.set_visible_devices([], "GPU")
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    # A resumed run reuses the compiled steps (about a minute on 2 CPU cores).
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(_WORKDIR.value, "jax_cache"))
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)


if __name__ == "__main__":
  app.run(main)
