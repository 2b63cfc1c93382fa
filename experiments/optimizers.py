"""The config side of the optimizer table: a config's values as ``Hyperparams``.

``config_hyperparams`` is the one place that reads a config's optimizer
values; the trainer's ``hyperparams`` adds the paper's cosine schedule and
the mask refresh in steps, and ``default_hyperparams`` gives the programs
without a config of their own (benchmarks, demo, convergence study, sharding
tests) the defaults of ``experiments/configs/common.py``. The optimizers
themselves are built by ``experiments.optimizer_table``.

The configs give the SAM family ``config.weight_decay_sam`` (1e-3 on CIFAR)
and SGD ``config.weight_decay_sgd`` (5e-4).
"""

from typing import Any

import jax
import optax

from experiments import optimizer_table
from experiments.configs import common as configs_common


# The config keys of the cheaper ascents (``experiments.ascents``), named as
# the fields of ``optimizer_table.Hyperparams``.
ASCENT_KEYS = ("ascent", "ascent_every", "ascent_probability", "looksam_alpha",
               "ascent_batch_fraction")


def fisher_unroll() -> int | bool:
  """``unroll`` for ``ssam_jax.empirical_fisher``.

  Unrolled on CPU, where convolutions in loop bodies are ~5x slower
  (``python -m benchmarks.control_flow``); a loop elsewhere, which bounds the
  memory of the per-example gradients.
  """
  return True if jax.default_backend() == "cpu" else 1


def mask_update_every(config, steps_per_epoch: int) -> int:
  """T_m in steps: ``config.mask_update_epochs`` of ``steps_per_epoch`` (>= 1)."""
  return max(1, round(config.mask_update_epochs * steps_per_epoch))


def config_hyperparams(config, *, total_steps: int, mask_update_every: int,
                       **overrides: Any) -> optimizer_table.Hyperparams:
  """The optimizer values of ``config`` for ``config.optimizer``.

  Args:
    config: an experiment config (see ``configs/common.py``).
    total_steps: the length of SSAM-D's drop-rate decay.
    mask_update_every: T_m in steps.
    **overrides: fields of :class:`optimizer_table.Hyperparams` that replace
      the config's (e.g. a schedule as ``learning_rate``).

  Raises:
    optimizer_table.UnknownOptimizerError: for an unknown ``config.optimizer``.
  """
  entry = optimizer_table.get(config.optimizer)
  values = dict(
      learning_rate=config.learning_rate, momentum=config.momentum,
      weight_decay=(config.weight_decay_sam if entry.sharpness_aware
                    else config.weight_decay_sgd),
      rho=config.rho, sparsity=config.sparsity, pattern=config.pattern,
      normalize=config.normalize, drop_rate=config.drop_rate,
      total_steps=total_steps, mask_update_every=mask_update_every,
      seed=config.seed, perturbed_leaves=config.perturbed_leaves or None,
      skip_nonfinite_steps=config.get("skip_nonfinite_steps", 0),
      **{key: config[key] for key in ASCENT_KEYS})
  return optimizer_table.Hyperparams(**{**values, **overrides})


def hyperparams(config, steps_per_epoch: int) -> optimizer_table.Hyperparams:
  """The trainer's: a cosine schedule over ``config.num_epochs`` (also the
  length of SSAM-D's decay), T_m from ``config.mask_update_epochs``, and the
  refresh and the ascent decided on the host
  (``experiments.steps.RefreshPlan``)."""
  total_steps = steps_per_epoch * config.num_epochs
  return config_hyperparams(
      config, total_steps=total_steps,
      mask_update_every=mask_update_every(config, steps_per_epoch),
      learning_rate=optax.cosine_decay_schedule(config.learning_rate,
                                                total_steps),
      static_refresh=True, static_ascent=True)


def create_optimizer(config, steps_per_epoch: int) -> optimizer_table.Built:
  """The trainer's optimizer for ``config``, with what its step needs.

  Raises:
    ValueError: for ``config.fast_path`` with an optimizer or pattern it
      would change (see ``optimizer_table.check_fast_path``).
  """
  values = hyperparams(config, steps_per_epoch)
  if config.fast_path:
    optimizer_table.check_fast_path(config.optimizer, values)
  return optimizer_table.build(config.optimizer, values)


def default_hyperparams(optimizer: str, *, total_steps: int,
                        mask_update_every: int,
                        **overrides: Any) -> optimizer_table.Hyperparams:
  """The defaults of ``experiments/configs/common.py`` for ``optimizer``, at
  a constant learning rate; ``overrides`` replace any field."""
  config = configs_common.get_base_config()
  config.optimizer = optimizer
  return config_hyperparams(config, total_steps=total_steps,
                            mask_update_every=mask_update_every, **overrides)


def default_num_fisher_samples() -> int:
  """``N_F`` of ``experiments/configs/common.py``."""
  return configs_common.get_base_config().num_fisher_samples
