r"""Command line entry point.

  python -m experiments.main --config experiments/configs/fashion_mnist.py \
      --workdir runs/fmnist_ssamf --config.optimizer=ssam-f --config.num_epochs=5

Re-running the same command continues a killed run from its latest checkpoint
(``--noresume`` refuses to touch a workdir that already has checkpoints).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags
import jax
import tensorflow as tf

from experiments import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file in experiments/configs/.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory for checkpoints and metrics.")
_RESUME = flags.DEFINE_bool("resume", True,
                            "Continue from the latest checkpoint in workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
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
