r"""Input pipeline throughput vs. train step throughput, in examples/s.

  python -m experiments.benchmark --config experiments/configs/fashion_mnist.py \
      --config.optimizer=ssam-f --num_batches=50

The pipeline is timed alone (augmentation included); the train step is timed
on batches already in memory, after compilation. Training is input-bound when
the first number is the smaller one.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile  # pylint: disable=g-import-not-at-top
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import jax

from experiments import input_pipeline
from experiments import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 50, "Batches to time.")
flags.mark_flags_as_required(["config"])


def pipeline_throughput(split, config, num_batches: int) -> float:
  """Examples/s of ``train_batches`` for epoch 0 (first batch not timed)."""
  batches = input_pipeline.train_batches(split, config, epoch=0)
  next(batches)
  start = time.perf_counter()
  count = sum(len(next(batches)["label"]) for _ in range(num_batches))
  return count / (time.perf_counter() - start)


def train_step_throughput(trainer, batches: list) -> float:
  """Examples/s of the training program's step on in-memory batches.

  Two steps compile first (a sparse optimizer's refresh step and its plain
  step); the timed steps are the ones that follow, as in training.
  """
  state = trainer.initial_state()
  for step, batch in enumerate(batches[:2]):
    state, _ = trainer.step(state, batch, step)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for step, batch in enumerate(batches, start=2):
    state, _ = trainer.step(state, batch, step)
  jax.block_until_ready(state)
  return sum(len(b["label"]) for b in batches) / (time.perf_counter() - start)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  with tempfile.TemporaryDirectory() as unused_workdir:
    trainer = train.Trainer(config, unused_workdir)
    pipeline = pipeline_throughput(trainer.train_split, config,
                                   _NUM_BATCHES.value)
    batches = list(input_pipeline.train_batches(trainer.train_split, config,
                                                epoch=0))
    step = train_step_throughput(trainer, batches[:_NUM_BATCHES.value])
    trainer.checkpointer.close()
  print(f"{config.dataset} {config.model} {config.optimizer} "
        f"batch={config.batch_size}: input pipeline {pipeline:,.0f} ex/s, "
        f"train step {step:,.0f} ex/s "
        f"({1e3 * config.batch_size / step:.1f} ms/step, "
        f"{trainer.steps_per_epoch * config.batch_size / step:.1f} s/epoch)")


if __name__ == "__main__":
  app.run(main)
