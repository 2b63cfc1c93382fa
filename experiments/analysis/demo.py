"""The demo: a tiny MLP trained on synthetic data, so every figure command
runs end to end without a training run (``--demo``).

:func:`demo_models` gives :class:`~experiments.analysis.trained.TrainedModel`
objects for Figs. 1, 4 and 5; :func:`write_demo_runs` writes ``metrics.jsonl``
files in the training program's format for Figs. 2 and 3. Their outputs are
labelled ``synthetic``. The optimizers are those of
``experiments.optimizer_table`` with the configs' defaults, on a constant
learning rate without weight decay.
"""

import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from experiments import optimizer_table
from experiments import optimizers
from experiments import steps
from experiments import tiny_mlp
from experiments.analysis import output
from experiments.analysis import runs as runs_lib
from experiments.analysis import trained
from experiments.configs import common as configs_common

PyTree = Any
SYNTHETIC = "synthetic"
DEMO_SIZES = (16, 24, 4)  # features, hidden units, classes
DEMO_SPARSITY = configs_common.get_base_config().sparsity
DEMO_LEARNING_RATE = 0.1
DEMO_FISHER_SAMPLES = 16
METRIC_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def synthetic_data(seed: int = 0, num_train: int = 512, num_test: int = 512
                   ) -> tuple[dict, dict]:
  """Train and test sets labelled by a random teacher MLP with Gumbel noise."""
  data = tiny_mlp.synthetic_batch(seed, num_train + num_test, sizes=DEMO_SIZES,
                                  teacher_width=32)
  return (jax.tree.map(lambda a: a[:num_train], data),
          jax.tree.map(lambda a: a[num_train:], data))


def init_mlp(key: jax.Array) -> PyTree:
  """The demo MLP: fan-in scaled kernels, zero biases."""
  return tiny_mlp.init_params(key, sizes=DEMO_SIZES, kernel_scale=None,
                              bias_scale=0.0)


def demo_optimizer(name: str, sparsity: float, total_steps: int,
                   steps_per_epoch: int) -> optimizer_table.Built:
  """The optimizer ``name`` of the table, its mask refreshed once an epoch
  on its own (traced) schedule."""
  return optimizer_table.build(name, optimizers.default_hyperparams(
      name, total_steps=total_steps, mask_update_every=steps_per_epoch,
      learning_rate=DEMO_LEARNING_RATE, weight_decay=0.0, sparsity=sparsity))


def _train_one(seed_key, data, built: optimizer_table.Built, *, num_epochs,
               batch_size):
  """Trains one MLP; returns its params and per-epoch metrics ``(epochs, 4)``."""
  train, test = data
  num_train = train["y"].shape[0]
  steps_per_epoch = num_train // batch_size
  k_init, k_data = jax.random.split(seed_key)
  # No static refresh: inside scan the optimizer's own (traced) schedule runs.
  train_step = steps.make_train_step(
      steps.stateless_loss_fns(tiny_mlp.loss, tiny_mlp.example_loss),
      built.optimizer,
      num_fisher_samples=built.num_fisher_samples(DEMO_FISHER_SAMPLES))

  def step(carry, indices):
    params, opt_state = carry
    out = train_step(params, opt_state, None,
                     jax.tree.map(lambda a: a[indices], train))
    return (out.params, out.opt_state), None

  def epoch(carry, epoch_key):
    order = jax.random.permutation(epoch_key, num_train)
    batches = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, -1)
    carry, _ = jax.lax.scan(step, carry, batches)
    params = carry[0]
    metrics = jnp.stack([tiny_mlp.loss(params, train),
                         tiny_mlp.accuracy(params, train),
                         tiny_mlp.loss(params, test),
                         tiny_mlp.accuracy(params, test)])
    return carry, metrics

  params = init_mlp(k_init)
  carry = (params, built.optimizer.init(params))
  (params, _), metrics = jax.lax.scan(
      epoch, carry, jax.random.split(k_data, num_epochs))
  return params, metrics


@functools.lru_cache(maxsize=32)
def train_demo(name: str, sparsity: float = DEMO_SPARSITY,
               seeds: tuple[int, ...] = (0,), num_epochs: int = 10,
               batch_size: int = 64, data_seed: int = 0):
  """Trains the demo MLP with one optimizer for several seeds at once (vmap).

  Returns:
    ``(params, metrics)``: params with a leading seed axis, and metrics of
    shape ``(num_seeds, num_epochs, 4)`` in the order of ``METRIC_KEYS``.
  """
  data = synthetic_data(data_seed)
  steps_per_epoch = data[0]["y"].shape[0] // batch_size
  built = demo_optimizer(name, sparsity, steps_per_epoch * num_epochs,
                         steps_per_epoch)
  run = functools.partial(_train_one, data=data, built=built,
                          num_epochs=num_epochs, batch_size=batch_size)
  keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
  run_seeds = jax.jit(jax.vmap(lambda k: run(jax.random.wrap_key_data(k))))
  return jax.device_get(run_seeds(keys))


def _sparsity_of(name: str, sparsity: float):
  """``sparsity`` for an optimizer with a mask, ``None`` for one without."""
  return sparsity if optimizer_table.get(name).has_mask else None


def demo_models(optimizer_names: Sequence[str] = ("sgd", "sam", "ssam-f"),
                num_epochs: int = 10, seed: int = 0) -> list[trained.TrainedModel]:
  """The demo MLP trained with each optimizer; loss = full training set."""
  train, _ = synthetic_data()
  loss_fn = functools.partial(tiny_mlp.loss, batch=train)
  models = []
  for name in optimizer_names:
    # Positional, as in write_demo_runs, so that train_demo's cache is shared.
    params, _ = train_demo(name, DEMO_SPARSITY, (seed,), num_epochs)
    params = jax.tree.map(lambda a: jnp.asarray(a[0]), params)
    label = runs_lib.group_name(name, _sparsity_of(name, DEMO_SPARSITY))
    models.append(trained.TrainedModel(label, loss_fn, params, SYNTHETIC))
  return models


def write_demo_runs(root: str, optimizer_names: Sequence[str] = (
    "sgd", "sam", "ssam-f", "ssam-d"),
                    sparsities: Sequence[float] = (0.5, 0.9, 0.99),
                    seeds: Sequence[int] = (0, 1, 2), num_epochs: int = 10
                    ) -> list[str]:
  """Writes demo training runs as ``root/<run>/metrics.jsonl`` + ``run.json``.

  ``metrics.jsonl`` has the training program's format (one JSON object per
  epoch); ``run.json`` records optimizer, sparsity, seed and dataset.

  Returns:
    The run directories.
  """
  directories = []
  for name in optimizer_names:
    has_mask = optimizer_table.get(name).has_mask
    for sparsity in (sparsities if has_mask else (None,)):
      # Optimizers without a mask ignore the sparsity: pass the demo models'
      # value so that train_demo's cache is shared with demo_models.
      _, metrics = train_demo(
          name, DEMO_SPARSITY if sparsity is None else float(sparsity),
          tuple(seeds), num_epochs)
      for seed, per_epoch in zip(seeds, metrics):
        tag = name if sparsity is None else f"{name}_s{sparsity:g}"
        directory = os.path.join(root, f"{tag}_seed{seed}")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "metrics.jsonl"), "w") as f:
          for epoch, values in enumerate(per_epoch, 1):
            record = {"epoch": epoch, **{k: float(v) for k, v in
                                         zip(METRIC_KEYS, values)}}
            f.write(json.dumps(record) + "\n")
        output.write_json(os.path.join(directory, "run.json"),
                          {"optimizer": name, "sparsity": sparsity,
                           "seed": seed, "dataset": SYNTHETIC})
        directories.append(directory)
  return directories
