r"""Command line entry point.

  python -m experiments.main --config experiments/configs/fashion_mnist.py \
      --workdir runs/fmnist_ssamf --config.optimizer=ssam-f --config.num_epochs=5

Re-running the same command continues a killed run from its newest intact
checkpoint (``--noresume`` refuses to touch a workdir that already has
checkpoints). A workdir serves one run at a time, and a resumed run must use
the config its checkpoints were made with, except for the keys named in
``--allow_config_change`` (e.g. ``--allow_config_change=num_epochs``).

A mistake in the flags or the config, a busy workdir or a refused resume ends
with one ``Error:`` line on stderr and exit status 2; a diverged run or a
workdir without an intact checkpoint with one line and exit status 1. Other
failures keep their traceback.

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
import sys
import warnings

# Before TensorFlow loads: no C++ info/warning lines, no oneDNN notice.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags
import jax

from experiments import datasets
from experiments import distributed
from experiments import errors
from experiments import train
from experiments import workdir_guard

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file in experiments/configs/.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory for checkpoints and metrics.")
_RESUME = flags.DEFINE_bool("resume", True,
                            "Continue from the latest checkpoint in workdir.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_list(
    "allow_config_change", [], "Config keys (e.g. num_epochs,"
    "checkpoint_every_steps) that may differ from the config the workdir's "
    "checkpoints were made with; the change is recorded in "
    "workdir/config_history.jsonl.")
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


def _exit_with(message: str, code: int) -> None:
  print(f"Error: {message}", file=sys.stderr)
  sys.exit(code)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every mistake (an unknown or mistyped
  ``--config.KEY`` included) answered by one line and exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    _exit_with(str(error).replace("\n", " "), 2)
  except (AttributeError, KeyError) as error:  # from ml_collections
    key = str(error).strip("\"'")
    given = [arg.split("=")[0] for arg in argv
             if arg.split("=")[0].endswith(f".{key}")]
    _exit_with(f"{(given or [key])[0]}: no such key in the config.", 2)
  except (TypeError, ValueError) as error:  # from ml_collections
    _exit_with(f"invalid --config override: {error}", 2)


def quiet_libraries() -> None:
  """Silences the INFO and WARNING chatter of absl, tfds, TensorFlow and
  orbax (e.g. tfds' "has no dataset_info.json" for the offline IDX files)."""
  logging.set_verbosity(logging.ERROR)
  # Narrow filters for known, harmless Python warnings of those libraries.
  for module in ("tensorflow_datasets", "orbax", "tensorflow"):
    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            module=module)


def _quiet_tensorflow() -> None:
  """TensorFlow's logger to errors; TensorFlow runs tf.data only, away from
  any accelerator JAX uses."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel("ERROR")
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow already runs (main called in-process)
    pass


def main(argv):
  if len(argv) > 1:
    _exit_with(f"unexpected arguments {argv[1:]}; flags look like "
               "--config.num_epochs=5.", 2)
  quiet_libraries()
  try:
    distributed.initialize(auto_detect=_DISTRIBUTED.value,
                           coordinator_address=_COORDINATOR_ADDRESS.value,
                           num_processes=_NUM_PROCESSES.value,
                           process_id=_PROCESS_ID.value,
                           cpu_devices=_CPU_DEVICES.value)
  except ValueError as error:
    _exit_with(str(error), 2)
  config = _CONFIG.value
  unknown = [key for key in _ALLOW_CONFIG_CHANGE.value
             if key not in workdir_guard.flat_config(config)]
  if unknown:
    _exit_with(f"--allow_config_change names unknown config keys: "
               f"{', '.join(unknown)}.", 2)
  if config.data_pipeline == "tf.data":  # the arrays pipeline needs no TensorFlow
    _quiet_tensorflow()
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    # A resumed run reuses the compiled steps.
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(_WORKDIR.value, "jax_cache"))
  try:
    train.train_and_evaluate(config, _WORKDIR.value, resume=_RESUME.value,
                             allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except errors.RunError as error:
    _exit_with(str(error), error.exit_code)
  except datasets.DatasetNotFoundError as error:
    _exit_with(str(error), 2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
