"""Checks a whole training config before any work, one clear error per mistake.

``validate`` raises :class:`ConfigError` for the first value the program
cannot run with; its message names the key, the value and what is allowed,
e.g. ``config.batch_size=0: must be an integer >= 1.`` The optimizer's
hyperparameters go through the library's own validation: the optimizer is
built once and initialised on the model's parameter shapes (traced only).
"""

import math
import os
import re
from typing import Any, Optional

import jax
import jax.numpy as jnp

from experiments import ascents
from experiments import errors
from experiments import datasets
from experiments import models
from experiments import optimizer_table
from experiments import optimizers

# Training examples of each dataset's train split, to check sizes without
# loading data.
TRAIN_EXAMPLES = {"cifar10": 50_000, "cifar100": 50_000,
                  "fashion_mnist": 60_000, "imagenet2012": 1_281_167}


class ConfigError(errors.UsageError, ValueError):
  """A config value the program cannot run with."""


def validate(config, workdir: Optional[str] = None,
             num_devices: Optional[int] = None) -> None:
  """Raises :class:`ConfigError` for the first invalid value of ``config``.

  Args:
    config: the experiment config (see ``configs/common.py``).
    workdir: if given, it must be a directory this process can create or
      write to.
    num_devices: if given, ``batch_size`` and ``eval_batch_size`` must be
      divisible by it (data parallelism gives every device whole rows).
  """
  if workdir is not None:
    check_workdir(workdir)
  _one_of(config, "dataset", tuple(datasets.DATASETS))
  _one_of(config, "data_pipeline", tuple(datasets.PIPELINES))
  readable = datasets.PIPELINE_DATASETS.get(config.data_pipeline)
  if readable is not None and config.dataset not in readable:
    raise ConfigError(f"config.data_pipeline={config.data_pipeline!r}: reads only "
                      f"{', '.join(readable)}, not config.dataset={config.dataset!r}.")
  _one_of(config, "optimizer", tuple(optimizer_table.OPTIMIZERS))
  _integer(config, "model_width", 0)
  try:
    model = models.create_model(config.model, 2, config.model_width)
  except ValueError as error:
    raise ConfigError(f"config.model={config.model!r}: {error}") from None
  _integer(config, "num_epochs", 1)
  _integer(config, "batch_size", 1)
  _integer(config, "eval_batch_size", 1)
  _integer(config, "test_every_epochs", 1)
  _integer(config, "train_subset", 0)
  _integer(config, "test_subset", 0)
  _integer(config, "seed", 0)
  _integer(config, "validation_seed", 0)
  available = TRAIN_EXAMPLES.get(config.dataset)
  if available is None:  # a dataset without a known size: checked on loading
    _integer(config, "validation_size", 0)
    available = math.inf
  else:
    _integer(config, "validation_size", 0, available - 1,
             f"the {config.dataset} training split has {available} examples")
  _number(config, "label_noise", 0, 1, upper_open=True)
  _integer(config, "shuffle_buffer", 1)
  _integer(config, "augment.crop_padding", 0)
  _integer(config, "augment.cutout_size", 0)
  train_examples = available - config.validation_size
  if config.train_subset:
    train_examples = min(train_examples, config.train_subset)
  if config.batch_size > train_examples:
    raise ConfigError(
        f"config.batch_size={config.batch_size}: must be <= the "
        f"{train_examples} training examples (train_subset="
        f"{config.train_subset}, validation_size={config.validation_size}).")
  if num_devices is not None:
    for key in ("batch_size", "eval_batch_size"):
      if _get(config, key) % num_devices:
        raise ConfigError(
            f"config.{key}={_get(config, key)}: must be divisible by the "
            f"number of devices ({num_devices}) for data parallelism.")

  _number(config, "learning_rate", 0, math.inf, lower_open=True)
  _number(config, "momentum", 0, 1, upper_open=True)
  _number(config, "weight_decay_sgd", 0, math.inf)
  _number(config, "weight_decay_sam", 0, math.inf)
  entry = optimizer_table.get(config.optimizer)
  if entry.reselects:
    _number(config, "mask_update_epochs", 0, math.inf, lower_open=True)
  _check_ascent(config, entry)
  if entry.uses_fisher_fn:
    _integer(config, "num_fisher_samples", 1, config.batch_size,
             f"the Fisher uses the first examples of a batch of "
             f"batch_size={config.batch_size}")
  if config.perturbed_leaves:
    try:
      re.compile(config.perturbed_leaves)
    except re.error as error:
      raise ConfigError(f"config.perturbed_leaves={config.perturbed_leaves!r}"
                        f": not a regular expression ({error}).") from None
  _integer(config, "log_every_steps", 1)
  _integer(config, "checkpoint_every_steps", 0)
  _integer(config, "max_checkpoints_to_keep", 1)
  if "skip_nonfinite_steps" in config:
    _integer(config, "skip_nonfinite_steps", 0)
  steps_per_epoch = (train_examples // config.batch_size
                     if math.isfinite(train_examples) else 1)
  _check_optimizer(config, model, steps_per_epoch)


def check_workdir(workdir: str) -> None:
  """Raises :class:`ConfigError` unless ``workdir`` is (or can be made) a
  directory this process writes to."""
  if not workdir:
    raise ConfigError("--workdir is empty: pass a directory for checkpoints "
                      "and metrics.")
  path = os.path.abspath(workdir)
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ConfigError(f"--workdir={workdir}: {existing} is a file, not a "
                      "directory.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError(f"--workdir={workdir}: {existing} is not writable.")


def _check_ascent(config, entry: optimizer_table.OptimizerEntry) -> None:
  """The cheaper ascents' keys (``experiments.ascents``), as the trainer
  runs them (the host decides which steps ascend)."""
  hyperparams = optimizers.config_hyperparams(
      config, total_steps=1, mask_update_every=1, static_ascent=True)
  try:
    ascents.check(config.optimizer, entry.sharpness_aware, hyperparams)
  except ValueError as error:
    raise ConfigError(f"config.{error}") from None
  fraction = config.ascent_batch_fraction
  if round(fraction * config.batch_size) < 1:
    raise ConfigError(
        f"config.ascent_batch_fraction={fraction!r}: round(fraction * "
        f"batch_size) is 0 examples for batch_size={config.batch_size}; the "
        "first gradient needs at least one.")


def _check_optimizer(config, model, steps_per_epoch: int) -> None:
  """Builds the optimizer and traces its ``init`` on the model's parameters,
  so that the library checks every hyperparameter, including those that
  depend on the parameter shapes (N:M patterns, leaf filters)."""
  try:
    optimizer = optimizers.create_optimizer(config, steps_per_epoch).optimizer
    image_shape = datasets.DATASETS[config.dataset].image_shape
    variables = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0),
                           jnp.zeros((1,) + tuple(image_shape)), train=False))
    jax.eval_shape(optimizer.init, variables["params"])
  except (ValueError, TypeError) as error:
    message = str(error)
    key = message.split(" ", 1)[0]
    prefix = "config." if key in config else f"optimizer {config.optimizer}: "
    raise ConfigError(prefix + message) from None


def _get(config, key: str) -> Any:
  value = config
  for part in key.split("."):
    value = value[part]
  return value


def _one_of(config, key: str, allowed: tuple[str, ...]) -> None:
  value = _get(config, key)
  if value not in allowed:
    raise ConfigError(f"config.{key}={value!r}: must be one of "
                      f"{', '.join(allowed)}.")


def _integer(config, key: str, minimum: int, maximum: Optional[int] = None,
             why: str = "") -> None:
  value = _get(config, key)
  valid = isinstance(value, int) and not isinstance(value, bool)
  if valid and value >= minimum and (maximum is None or value <= maximum):
    return
  allowed = (f"an integer >= {minimum}" if maximum is None
             else f"an integer in [{minimum}, {maximum}]")
  raise ConfigError(f"config.{key}={value!r}: must be {allowed}"
                    + (f" ({why})." if why else "."))


def _number(config, key: str, minimum: float, maximum: float, *,
            lower_open: bool = False, upper_open: bool = False) -> None:
  value = _get(config, key)
  valid = (isinstance(value, (int, float)) and not isinstance(value, bool)
           and math.isfinite(value)
           and (value > minimum if lower_open else value >= minimum)
           and (value < maximum if upper_open else value <= maximum))
  if valid:
    return
  if maximum == math.inf:
    allowed = f"a finite number {'>' if lower_open else '>='} {minimum}"
  else:
    allowed = (f"a number in {'(' if lower_open else '['}{minimum}, "
               f"{maximum}{')' if upper_open else ']'}")
  raise ConfigError(f"config.{key}={value!r}: must be {allowed}.")
