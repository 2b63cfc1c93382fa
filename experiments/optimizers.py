"""Builds the optimizer named in the config: sgd, sam, ssam-f, ssam-d, ssam-random.

All share the paper's base optimizer, SGD with momentum 0.9 on a cosine
schedule with weight decay added to the gradient (PyTorch's ``weight_decay``):
``chain(add_decayed_weights(wd), sgd(schedule, momentum))``. SAM-family
optimizers use ``config.weight_decay_sam`` (1e-3 on CIFAR), SGD
``config.weight_decay_sgd`` (5e-4).
"""

import jax
import optax

import ssam_jax

# ssam-random is SSAM with a fixed random mask: the control for the Fisher and
# dynamic masks at the same sparsity.
OPTIMIZERS = ("sgd", "sam", "ssam-f", "ssam-d", "ssam-random")


def fisher_unroll() -> int | bool:
  """``unroll`` for ``ssam_jax.empirical_fisher``.

  Unrolled on CPU, where convolutions in loop bodies are ~5x slower
  (``python -m benchmarks.control_flow``); a loop elsewhere, which bounds the
  memory of the per-example gradients.
  """
  return True if jax.default_backend() == "cpu" else 1


def is_sparse(config) -> bool:
  """Whether the optimizer is an SSAM variant (it has a mask)."""
  return config.optimizer.startswith("ssam-")


def uses_fisher(config) -> bool:
  """Whether the train step must pass ``fisher_fn`` (SSAM-F only)."""
  return config.optimizer == "ssam-f"


def weight_decay(config) -> float:
  return (config.weight_decay_sgd if config.optimizer == "sgd"
          else config.weight_decay_sam)


def mask_update_every(config, steps_per_epoch: int) -> int:
  """T_m in steps: ``config.mask_update_epochs`` of ``steps_per_epoch`` (>= 1)."""
  return max(1, round(config.mask_update_epochs * steps_per_epoch))


def create_optimizer(config,
                     steps_per_epoch: int) -> optax.GradientTransformationExtraArgs:
  """Returns an optimizer whose ``update`` accepts ``grad_fn``/``fisher_fn``.

  Args:
    config: the experiment config (see ``configs/common.py``).
    steps_per_epoch: with ``config.num_epochs``, the length of the cosine
      schedule and of SSAM-D's drop decay; with ``config.mask_update_epochs``,
      the mask refresh period.
  """
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {config.optimizer!r}; "
                     f"expected one of {OPTIMIZERS}.")
  total_steps = steps_per_epoch * config.num_epochs
  schedule = optax.cosine_decay_schedule(config.learning_rate, total_steps)
  base = optax.chain(optax.add_decayed_weights(weight_decay(config)),
                     optax.sgd(schedule, momentum=config.momentum))
  if config.get("skip_nonfinite_steps"):
    # Inside the SAM/SSAM wrapper it checks the sharpness-aware gradient that
    # is applied; wrapped around the outside it would check only the first.
    base = optax.apply_if_finite(base, config.skip_nonfinite_steps)
  if config.optimizer == "sgd":
    return optax.with_extra_args_support(base)  # ignores grad_fn
  if config.optimizer == "sam":
    return ssam_jax.sam(base, rho=config.rho)
  return ssam_jax.ssam(base, rho=config.rho, sparsity=config.sparsity,
                       mask=_mask_strategy(config, total_steps),
                       mask_update_every=mask_update_every(config, steps_per_epoch),
                       pattern=config.pattern, normalize=config.normalize,
                       perturbed_leaves=(ssam_jax.leaves_matching(config.perturbed_leaves)
                                         if config.perturbed_leaves else None))


def check_fast_path(config) -> None:
  """Raises a ValueError unless ``config.fast_path`` computes the same update.

  The partial first gradient leaves the unperturbed tensors' gradients at
  zero, which only a tensorwise mask with masked normalisation never reads.
  """
  if not config.fast_path:
    return
  if not is_sparse(config):
    raise ValueError(f"fast_path needs a sparse optimizer, got {config.optimizer!r}.")
  if config.pattern != "tensorwise" or config.normalize != "masked":
    raise ValueError("fast_path needs pattern='tensorwise' and normalize='masked'"
                     f", got pattern={config.pattern!r}, "
                     f"normalize={config.normalize!r}.")


def _mask_strategy(config, total_steps: int) -> ssam_jax.MaskStrategy:
  if config.optimizer == "ssam-f":
    return ssam_jax.fisher_mask(seed=config.seed)  # the step passes fisher_fn
  if config.optimizer == "ssam-d":
    return ssam_jax.dynamic_mask(drop_rate=config.drop_rate,
                                 total_steps=total_steps, seed=config.seed)
  return ssam_jax.random_mask(seed=config.seed)  # ssam-random
