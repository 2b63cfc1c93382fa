"""Trained models as the figure commands see them, loaded from checkpoints.

A figure that needs a trained model works on a :class:`TrainedModel`: a name
(the optimizer it was trained with), ``loss_fn(params) -> scalar`` (the
training loss on a fixed batch; BatchNorm statistics and the batch are closed
over) and the ``params`` pytree. :func:`load_checkpoint` makes one from the
latest checkpoint of a run of the training program (``experiments.main``);
``experiments.analysis.demo`` makes them from a tiny MLP trained on synthetic
data.
"""

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A trained model as the analyses see it.

  Attributes:
    name: label in figures and JSON, e.g. the optimizer (``"sam"``).
    loss_fn: ``loss_fn(params) -> scalar`` training loss; must be traceable
      by ``jax.jit``/``jax.vmap``/``jax.jvp`` (close over a fixed batch).
    params: the trained parameters.
    dataset: dataset name for titles (``"synthetic"`` for the demo).
  """

  name: str
  loss_fn: Callable[[PyTree], jax.Array]
  params: PyTree
  dataset: str


def dataset_title(models: Sequence[TrainedModel]) -> str:
  return ", ".join(sorted({m.dataset for m in models}))


def load_checkpoint(checkpoint_dir: str, name: str,
                    num_examples: int = 1024) -> TrainedModel:
  """Loads the latest checkpoint of a training-program run.

  The run's ``config.json`` gives the model and dataset. The loss is the
  training loss (as Fig. 4 of the paper) on the first ``num_examples``
  training examples, without augmentation, with BatchNorm in eval mode (the
  run's running statistics), so that it is a deterministic function of the
  parameters.

  Args:
    checkpoint_dir: a run's workdir (``--workdir`` of ``experiments.main``),
      or a ``.msgpack`` file written by :func:`export_model`.
    name: the label to give the model.
    num_examples: size of the fixed batch the loss is evaluated on.

  Returns:
    A :class:`TrainedModel`.
  """
  # The training program needs TensorFlow; the demo does not.
  import flax.serialization  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from experiments import checkpointing, input_pipeline, models, steps
  # pylint: enable=g-import-not-at-top

  if checkpoint_dir.endswith(".msgpack"):  # an exported model, see export_model
    with open(checkpoint_dir, "rb") as f:
      state = flax.serialization.msgpack_restore(f.read())
    config = ml_collections.ConfigDict(json.loads(state.pop("config")))
  else:
    with open(os.path.join(checkpoint_dir, "config.json")) as f:
      config = ml_collections.ConfigDict(json.load(f))
    checkpointer = checkpointing.Checkpointer(os.path.join(checkpoint_dir, "checkpoints"))
    latest = checkpointer.latest_step()
    if latest is None:
      raise FileNotFoundError(f"no checkpoint in {checkpoint_dir}/checkpoints.")
    state = checkpointer.read_state(latest)
    checkpointer.close()
  info = input_pipeline.DATASETS[config.dataset]
  model = models.create_model(config.model, info.num_classes, config.model_width)
  batch_config = ml_collections.ConfigDict(config.to_dict())
  batch_config.eval_batch_size = num_examples
  batch_config.train_subset = num_examples
  batch = next(input_pipeline.eval_batches(
      input_pipeline.load_split(batch_config, "train"), batch_config))
  images, labels = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
  batch_stats = jax.tree.map(jnp.asarray, state["batch_stats"])

  def loss_fn(params):
    losses, _ = steps.eval_mode_losses(model, params, batch_stats, images, labels)
    return losses.mean()

  return TrainedModel(name, loss_fn, jax.tree.map(jnp.asarray, state["params"]),
                      config.dataset)


def export_model(checkpoint_dir: str, path: str) -> str:
  """Writes a run's final params, BatchNorm statistics and config to one file.

  Small enough to commit (no optimizer state), and :func:`load_checkpoint`
  reads it as it reads the workdir, so figures on trained models can be
  regenerated without rerunning the training.
  """
  import flax.serialization  # pylint: disable=g-import-not-at-top
  from experiments import checkpointing  # pylint: disable=g-import-not-at-top

  checkpointer = checkpointing.Checkpointer(os.path.join(checkpoint_dir, "checkpoints"))
  state = checkpointer.read_state(checkpointer.latest_step())
  checkpointer.close()
  with open(os.path.join(checkpoint_dir, "config.json")) as f:
    config = f.read()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(
        {"params": state["params"], "batch_stats": state["batch_stats"],
         "config": config}))
  return path
