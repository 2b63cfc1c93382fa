"""The one implementation behind :func:`ssam_jax.sam` and :func:`ssam_jax.ssam`.

SSAM is SAM plus a mask stage. :func:`sharpness_aware` builds either: the
public factories validate their arguments, pack them into :class:`Options`
(and, for SSAM, a :class:`MaskStage`) and call it. Which parts of a step run
is decided once, at construction, from the hyperparameters that are static
Python numbers (see :class:`Plan`); injected or scheduled values take the
general path.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssam_jax import leaf_filters
from ssam_jax import masks
from ssam_jax import patterns
from ssam_jax import perturbation
from ssam_jax import sharding
from ssam_jax import validation

PyTree = Any


class Options(NamedTuple):
  """The perturbation options shared by SAM and SSAM (see :func:`ssam_jax.sam`)."""

  adaptive_eta: Any = None
  perturbed_leaves: leaf_filters.LeafFilter = None
  axis_name: Any = None
  m_sharpness: bool = False


def check_options(adaptive_eta, perturbed_leaves, axis_name,
                  m_sharpness) -> Options:
  """Validates the shared options and packs them."""
  if adaptive_eta is not None:
    validation.check_number("adaptive_eta", adaptive_eta, minimum=0,
                            injectable=True)
  leaf_filters.check_leaf_filter(perturbed_leaves)
  validation.check_axis_options(axis_name, m_sharpness)
  return Options(adaptive_eta, perturbed_leaves, axis_name, m_sharpness)


class MaskStage(NamedTuple):
  """SSAM's mask: strategy, pattern, fraction kept, refresh period, norm."""

  strategy: masks.MaskStrategy
  pattern: patterns.Pattern
  keep_fraction: Any
  mask_update_every: Any
  normalize: str


class Plan(NamedTuple):
  """Which parts of the step run, decided at construction.

  Attributes:
    perturbs: False when ``rho`` or the fraction kept is a Python 0: then
      ``grad_fn`` is never called and the base optimizer gets the gradient
      at ``w``, bit for bit.
    applies_mask: whether ``eps`` is masked. False for SAM, and for a
      fraction kept of Python 1, whose mask is all True: skipping the select
      keeps ``ssam(sparsity=0)`` equal to :func:`ssam_jax.sam` bit for bit.
    reselects: whether the mask is ever reselected: only if the strategy
      has a ``reselect`` and the mask is used (``perturbs`` and
      ``applies_mask``). Otherwise the mask keeps its initial value, the
      strategy's state is ``optax.EmptyState()``, no statistics are
      accumulated and ``fisher_fn`` is never called.
  """

  perturbs: bool
  applies_mask: bool
  reselects: bool


def make_plan(rho, stage: Optional[MaskStage]) -> Plan:
  keep = None if stage is None else stage.keep_fraction
  perturbs = not (validation.is_static(rho, 0) or validation.is_static(keep, 0))
  applies_mask = stage is not None and not validation.is_static(keep, 1)
  return Plan(perturbs=perturbs, applies_mask=applies_mask,
              reselects=(perturbs and applies_mask
                         and stage.strategy.reselect is not None))


def _perturbable(options: Options, stage: Optional[MaskStage],
                 params: PyTree) -> tuple:
  """One bool per leaf; checks dtypes and, for N:M, kernel shapes."""
  perturbable = leaf_filters.resolve_leaf_filter(options.perturbed_leaves, params)
  perturbation.check_floating(params, perturbable)
  if stage is not None and isinstance(stage.pattern, patterns.NOutOfM):
    chosen = [(np.shape(p), path) for p, path, use in zip(
        jax.tree.leaves(params), leaf_filters.leaf_paths(params), perturbable)
              if use]
    stage.pattern.check_fits([shape for shape, _ in chosen],
                             [path for _, path in chosen])
  return perturbable


def _selector(stage: MaskStage, perturbable: tuple, params: PyTree):
  """``select(scores, keep_fraction)``: the pattern on perturbable leaves.

  Other leaves stay False. Each mask leaf is sharded like its parameter
  (see :func:`ssam_jax.sharding.shard_like`), whatever the pattern did.
  """

  def select(scores, keep_fraction=stage.keep_fraction):
    leaves, treedef = jax.tree.flatten(scores)
    chosen = iter(stage.pattern.select(
        [s for s, use in zip(leaves, perturbable) if use], keep_fraction))
    return jax.tree.unflatten(treedef, [
        sharding.shard_like(
            next(chosen) if use else jnp.zeros(jnp.shape(s), bool), p)
        for s, p, use in zip(leaves, jax.tree.leaves(params), perturbable)
    ])

  return select


def _next_mask(stage: MaskStage, state, inputs: masks.MaskInputs, select,
               refresh: Optional[bool]):
  """Accumulates the strategy's statistics, then reselects on schedule.

  ``refresh`` None follows ``count % mask_update_every == 0`` under
  ``lax.cond``; a Python bool decides statically (see :func:`ssam_jax.ssam`).
  """
  strategy = stage.strategy
  mask_state = state.mask_state
  if strategy.accumulate_statistics is not None:
    mask_state = strategy.accumulate_statistics(mask_state, inputs)
  if refresh is False:
    return state.mask, mask_state
  reselect = lambda: strategy.reselect(state.mask, mask_state, inputs, select)
  if refresh:
    return reselect()
  return jax.lax.cond(inputs.step % stage.mask_update_every == 0, reselect,
                      lambda: (state.mask, mask_state))


def _check_refresh(refresh) -> None:
  if refresh is not None and not isinstance(refresh, bool):
    raise TypeError("refresh must be None or a Python bool (static, known "
                    f"when tracing); got {refresh!r}.")


def _device_mean(fisher_fn, axis_name):
  """``fisher_fn`` averaged over ``axis_name`` (identity without one)."""
  if fisher_fn is None or axis_name is None:
    return fisher_fn
  return lambda p: sharding.mean_over(axis_name, fisher_fn(p))


def sharpness_aware(base_optimizer: optax.GradientTransformation, rho,
                    options: Options, stage: Optional[MaskStage], *,
                    name: str, state_type) -> optax.GradientTransformationExtraArgs:
  """SAM (``stage=None``) or SSAM around ``base_optimizer``.

  ``state_type`` is :class:`ssam_jax.SAMState` or :class:`ssam_jax.SSAMState`;
  ``name`` names the transformation in errors. SSAM's ``update`` consumes
  the keywords ``fisher_fn`` and ``refresh``; SAM passes them on.
  """
  plan = make_plan(rho, stage)
  base_optimizer = optax.with_extra_args_support(base_optimizer)

  def init_fn(params):
    perturbable = _perturbable(options, stage, params)
    fields = {}
    if stage is not None:
      mask, mask_state = stage.strategy.init(
          params, _selector(stage, perturbable, params))
      fields = dict(mask=mask, mask_state=mask_state if plan.reselects
                    else optax.EmptyState())
    return state_type(count=jnp.zeros([], jnp.int32),
                      base_state=base_optimizer.init(params), **fields)

  def update_fn(updates, state, params=None, *, grad_fn=None, **extra_args):
    params = validation.require_params(params, name)
    if plan.perturbs:
      perturbation.check_grad_fn(grad_fn)
    perturbation.check_gradients(updates, params)
    perturbable = _perturbable(options, stage, params)
    grads = sharding.mean_over(options.axis_name, updates)
    fields, mask = {}, None
    if stage is not None:
      fisher_fn = _device_mean(extra_args.pop("fisher_fn", None),
                               options.axis_name)
      refresh = extra_args.pop("refresh", None)
      _check_refresh(refresh)
      fields = dict(mask=state.mask, mask_state=state.mask_state)
      if plan.reselects:
        inputs = masks.MaskInputs(step=state.count, grads=grads, params=params,
                                  fisher_fn=fisher_fn,
                                  keep_fraction=stage.keep_fraction)
        fields["mask"], fields["mask_state"] = _next_mask(
            stage, state, inputs, _selector(stage, perturbable, params), refresh)
      mask = fields["mask"] if plan.applies_mask else None
    if plan.perturbs:
      grads = perturbation.sharpness_aware_gradient(
          updates if options.m_sharpness else grads, params,
          perturbation.current_rho(rho, state.count), grad_fn, perturbable,
          axis_name=options.axis_name, mask=mask,
          normalize="full" if stage is None else stage.normalize,
          adaptive_eta=options.adaptive_eta)
    updates, base_state = base_optimizer.update(
        grads, state.base_state, params, **extra_args)
    return updates, state_type(count=optax.safe_increment(state.count),
                               base_state=base_state, **fields)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
