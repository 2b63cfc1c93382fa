"""The effective perturbation radius ``||eps||`` of a training step.

SAM perturbs by ``eps = rho g / ||g||``, of norm ``rho``. SSAM masks it:
with ``normalize="full"`` (the paper's) ``eps = rho (m * g) / ||g||``, of
norm ``rho ||m * g|| / ||g||``, which shrinks as the mask thins and depends
on which entries it keeps; with ``normalize="masked"`` ``eps = rho (m * g) /
||m * g||``, of norm ``rho`` again. SGD does not perturb: 0. Norms run over
the perturbable leaves (``config.perturbed_leaves``), and a zero or
non-finite norm gives 0, as in :func:`ssam_jax.perturbation`. ASAM's
rescaled ``eps`` is not covered.

With a scheduled ascent or LookSAM, a step without the ascent records the
radius its first gradient would have perturbed by, so that the average is
the radius of the ascents taken. MSAM's ``eps`` follows the momentum: the
step returns ``eps`` itself, whose norm is recorded.

The trainer records the radius of every step, averaged per epoch
(``effective_radius`` in ``metrics.jsonl``) and over training in a sweep
record (``experiments.run_record``), so that arms can be compared at equal
radius.
"""

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

import ssam_jax
from ssam_jax import leaf_filters

PyTree = Any


def effective_radius(grads: PyTree, mask: Optional[PyTree], rho,
                     normalize: str = "full",
                     perturbable: Optional[tuple] = None) -> jax.Array:
  """``||eps||`` from the gradient at ``w`` and the step's mask.

  Args:
    grads: the first gradient of the step (at ``w``).
    mask: SSAM's boolean mask (the one the step perturbed with), or None
      for SAM.
    rho: the step's radius hyperparameter.
    normalize: SSAM's ``"full"`` or ``"masked"``; ignored without a mask.
    perturbable: one bool per leaf of ``grads``; None: every leaf.

  Returns:
    A float32 scalar.
  """
  leaves = jax.tree.leaves(grads)
  perturbable = perturbable or (True,) * len(leaves)
  masks = jax.tree.leaves(mask) if mask is not None else [None] * len(leaves)
  used = [(g.astype(jnp.float32), m)
          for g, m, use in zip(leaves, masks, perturbable) if use]
  grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g, _ in used))
  masked_norm = (grad_norm if mask is None else jnp.sqrt(
      sum(jnp.sum(jnp.square(jnp.where(m, g, 0.0))) for g, m in used)))
  by = masked_norm if mask is not None and normalize == "masked" else grad_norm
  valid = (by > 0) & jnp.isfinite(by)
  ratio = jnp.where(valid, masked_norm / jnp.where(valid, by, 1.0), 0.0)
  return jnp.asarray(rho, jnp.float32) * ratio


def for_config(config) -> Callable[[PyTree, optax.OptState], jax.Array]:
  """``radius(grads, opt_state)`` of the config's optimizer.

  The mask is the one in ``opt_state`` after the update, the one the step
  perturbed with (a refresh step reselects before it perturbs).
  """
  if config.optimizer == "sgd":
    return lambda grads, opt_state: jnp.zeros([], jnp.float32)
  if config.get("ascent") == "msam":  # the step returns eps for grads
    return lambda eps, opt_state: optax.tree.norm(eps).astype(jnp.float32)

  def radius(grads, opt_state):
    mask = optax.tree.get(opt_state, "mask")
    perturbable = None
    if config.perturbed_leaves:
      perturbable = leaf_filters.resolve_leaf_filter(
          ssam_jax.leaves_matching(config.perturbed_leaves), grads)
    return effective_radius(grads, mask, config.rho, config.normalize,
                            perturbable)

  return radius
