"""The one implementation behind :func:`ssam_jax.sam` and :func:`ssam_jax.ssam`.

SSAM is SAM plus a mask stage. :func:`sharpness_aware` builds either: the
public factories validate their arguments, pack them into :class:`Options`
(and, for SSAM, a :class:`MaskStage`) and call it. Which parts of a step run
is decided once, at construction, from the hyperparameters that are static
Python numbers (see :class:`Plan`); injected or scheduled values take the
general path. The state's structure never depends on the plan, so that
``optax.inject_hyperparams`` keeps it.

An update is three stages, shared by both modes of ``update``:
:meth:`Core.begin` (checks, the mean gradient, the mask),
:meth:`Core.eps` (one ascent step) and :meth:`Core.descend` (the
base optimizer). :meth:`Core.update` runs them in one call with
``grad_fn``; :mod:`ssam_jax.transparent` spreads them over several calls.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssam_jax import leaf_filters
from ssam_jax import masks
from ssam_jax import partial_grad
from ssam_jax import patterns
from ssam_jax import perturbation
from ssam_jax import refresh
from ssam_jax import sharding
from ssam_jax import transparent
from ssam_jax import validation

PyTree = Any


class Options(NamedTuple):
  """The options shared by SAM and SSAM (see :func:`ssam_jax.sam`)."""

  adaptive_eta: Any = None
  perturbed_leaves: leaf_filters.LeafFilter = None
  axis_name: Any = None
  m_sharpness: bool = False
  sync_period: int = 2
  transparent: bool = False


def check_sync_period(sync_period) -> int:
  """``None`` is 2: one ascent step, then the descent (SAM).

  The default is None rather than 2 because ``optax.inject_hyperparams``
  turns every number among the arguments, defaults included, into an array,
  and the number of ascent steps must be static.
  """
  if sync_period is None:
    return 2
  validation.check_int("sync_period", sync_period, minimum=2)
  return sync_period


def check_options(adaptive_eta, perturbed_leaves, axis_name, m_sharpness,
                  sync_period, transparent) -> Options:
  """Validates the shared options and packs them."""
  if adaptive_eta is not None:
    validation.check_number("adaptive_eta", adaptive_eta, minimum=0,
                            injectable=True)
  leaf_filters.check_leaf_filter(perturbed_leaves)
  validation.check_axis_options(axis_name, m_sharpness)
  sync_period = check_sync_period(sync_period)
  validation.check_bool("transparent", transparent)
  if transparent and m_sharpness:
    raise ValueError(
        "transparent=True cannot be combined with m_sharpness=True: each "
        "device would move the loop's parameters to its own w + eps.")
  return Options(adaptive_eta, perturbed_leaves, axis_name, m_sharpness,
                 sync_period, transparent)


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
    reselects: whether the mask may ever be reselected: only if the strategy
      has a ``reselect`` and the mask is used (``perturbs`` and
      ``applies_mask``). Otherwise the mask and the strategy's state keep
      their initial values, no statistics are accumulated and ``fisher_fn``
      is never called. Where the fraction kept is injected, the same test
      runs on each update (see :func:`mask_in_use`).
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


def mask_in_use(keep_fraction):
  """True, or for an injected fraction kept a traced ``0 < keep < 1``.

  A mask that keeps nothing or everything is not reselected, as with the
  static values (see :class:`Plan`): the injected and the static optimizer
  then keep the same state.
  """
  if validation.is_injected(keep_fraction):
    return (keep_fraction > 0) & (keep_fraction < 1)
  return True


class Begun(NamedTuple):
  """What :meth:`Core.begin` computes for the rest of the update.

  Attributes:
    grads: the gradient at ``w``, averaged over ``axis_name``.
    ascent_grads: ``grads``, or the local gradient for m-sharpness.
    perturbable: one Python bool per leaf.
    mask: the mask ``eps`` is multiplied by, or None.
    fields: SSAM's ``mask`` and ``mask_state`` after this update.
  """

  grads: PyTree
  ascent_grads: PyTree
  perturbable: tuple
  mask: Optional[PyTree]
  fields: dict


class Core:
  """SAM (``stage=None``) or SSAM around ``base_optimizer``.

  ``state_type`` is :class:`ssam_jax.SAMState` or :class:`ssam_jax.SSAMState`;
  ``name`` names the transformation in errors.
  """

  def __init__(self, base_optimizer, rho, options: Options,
               stage: Optional[MaskStage], *, name: str, state_type):
    self.base_optimizer = optax.with_extra_args_support(base_optimizer)
    self.rho = rho
    self.options = options
    self.stage = stage
    self.plan = make_plan(rho, stage)
    self.name = name
    self.state_type = state_type

  def perturbable(self, params: PyTree) -> tuple:
    """One bool per leaf; checks dtypes and, for N:M, kernel shapes."""
    perturbable = leaf_filters.resolve_leaf_filter(
        self.options.perturbed_leaves, params)
    perturbation.check_floating(params, perturbable)
    stage = self.stage
    if stage is not None and isinstance(stage.pattern, patterns.NOutOfM):
      chosen = [(np.shape(p), path) for p, path, use in zip(
          jax.tree.leaves(params), leaf_filters.leaf_paths(params),
          perturbable) if use]
      stage.pattern.check_fits([shape for shape, _ in chosen],
                               [path for _, path in chosen])
    return perturbable

  def _selector(self, perturbable: tuple, params: PyTree):
    """``select(scores, keep_fraction)``: the pattern on perturbable leaves.

    Other leaves stay False. Each mask leaf is sharded like its parameter
    (see :func:`ssam_jax.sharding.shard_like`), whatever the pattern did.
    """
    stage = self.stage

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

  def init(self, params: PyTree):
    fields = {}
    perturbable = self.perturbable(params)
    if self.stage is not None:
      mask, mask_state = self.stage.strategy.init(
          params, self._selector(perturbable, params))
      fields = dict(mask=mask, mask_state=mask_state)
    return self.state_type(count=jnp.zeros([], jnp.int32),
                           base_state=self.base_optimizer.init(params),
                           **fields)

  def _next_mask(self, state, inputs: masks.MaskInputs, select, due, active):
    """Accumulates the strategy's statistics, then reselects when ``due``.

    Both happen only while ``active``: the mask is in use (and, in
    transparent mode, on the first call of a SAM step).
    """
    strategy = self.stage.strategy
    mask_state = state.mask_state
    if strategy.accumulate_statistics is not None:
      mask_state = refresh.when(
          active, lambda: strategy.accumulate_statistics(mask_state, inputs),
          lambda: mask_state)
    return refresh.when(
        refresh.both(due, active),
        lambda: strategy.reselect(state.mask, mask_state, inputs, select),
        lambda: (state.mask, mask_state))

  def begin(self, updates, state, params, extra_args: dict, *,
            active=True) -> Begun:
    """Checks the inputs, averages the gradient and updates the mask.

    Consumes SSAM's keywords ``fisher_fn`` and ``refresh``, and
    ``grads_wrt``, from ``extra_args``; the rest is for the base optimizer.
    ``active`` (a Python or traced bool) gates the mask stage.
    """
    perturbation.check_gradients(updates, params)
    perturbable = self.perturbable(params)
    grads = sharding.mean_over(self.options.axis_name, updates)
    ascent_grads = updates if self.options.m_sharpness else grads
    grads_wrt = extra_args.pop("grads_wrt", None)
    stage = self.stage
    if stage is None:
      self._check_grads_wrt(grads_wrt, params, perturbable, due=False)
      return Begun(grads, ascent_grads, perturbable, None, {})
    fisher_fn = extra_args.pop("fisher_fn", None)
    if fisher_fn is not None and self.options.axis_name is not None:
      local_fisher_fn = fisher_fn
      fisher_fn = lambda p: sharding.mean_over(self.options.axis_name,
                                               local_fisher_fn(p))
    due = refresh.due(stage.mask_update_every, state.count,
                      extra_args.pop("refresh", None))
    self._check_grads_wrt(grads_wrt, params, perturbable, due=due)
    fields = dict(mask=state.mask, mask_state=state.mask_state)
    if self.plan.reselects:
      inputs = masks.MaskInputs(step=state.count, grads=grads, params=params,
                                fisher_fn=fisher_fn,
                                keep_fraction=stage.keep_fraction)
      fields["mask"], fields["mask_state"] = self._next_mask(
          state, inputs, self._selector(perturbable, params), due,
          refresh.both(mask_in_use(stage.keep_fraction), active))
    mask = fields["mask"] if self.plan.applies_mask else None
    return Begun(grads, ascent_grads, perturbable, mask, fields)

  def _check_grads_wrt(self, grads_wrt, params, perturbable, due) -> None:
    """Raises unless a first gradient of ``grads_wrt`` only is enough."""
    if grads_wrt is None:
      return
    stage, plan = self.stage, self.plan
    if self.options.transparent:
      reason = "transparent mode feeds every gradient to the base optimizer"
    elif plan.reselects and stage.strategy.accumulate_statistics is not None:
      reason = ("the mask strategy accumulates statistics from every "
                "gradient (fisher_mask(accumulate=True))")
    elif plan.reselects and due is not False:
      reason = (
          "the mask may be reselected on this update: pass "
          "mask_update_every='manual' and refresh=False, and the full "
          "gradient on the updates that refresh" if due is not True else
          "this update reselects the mask, from the full gradient")
    else:
      reason = None
    if not plan.perturbs:
      required = [True] * len(perturbable)
      why = ("rho or the fraction kept is a static 0, so the base optimizer "
             "consumes the gradient at w")
    elif stage is None or stage.normalize == "full" or not plan.applies_mask:
      required = perturbable
      why = ("eps is normalised over the gradient of every perturbable leaf "
             "(SAM, normalize='full' or a sparsity of 0); normalize='masked' "
             "normalises over the masked entries alone")
    else:
      required = [False] * len(perturbable)
      why = ""
    partial_grad.check_grads_wrt(grads_wrt, params, required=required,
                                 why_required=why, forbidden=reason)

  def eps(self, begun: Begun, params, count) -> list:
    """``eps`` at ``params`` from ``begun.ascent_grads`` (one ascent step)."""
    return perturbation.perturbation(
        begun.ascent_grads, params, perturbation.current_rho(self.rho, count),
        begun.perturbable, mask=begun.mask,
        normalize="full" if self.stage is None else self.stage.normalize,
        adaptive_eta=self.options.adaptive_eta)

  def descend(self, grads, state, params, fields: dict, extra_args: dict):
    """The base optimizer's update from ``grads`` at ``params``."""
    updates, base_state = self.base_optimizer.update(
        grads, state.base_state, params, **extra_args)
    return updates, self.state_type(count=optax.safe_increment(state.count),
                                    base_state=base_state, **fields)

  def perturbed_gradient(self, begun: Begun, params, count, grad_fn):
    """The gradient after ``sync_period - 1`` ascent steps with ``grad_fn``,
    averaged over ``axis_name``: what the base optimizer consumes."""
    return perturbation.sharpness_aware_gradient(
        begun.ascent_grads, params, perturbation.current_rho(self.rho, count),
        grad_fn, begun.perturbable, axis_name=self.options.axis_name,
        steps=self.options.sync_period - 1, local=self.options.m_sharpness,
        mask=begun.mask,
        normalize="full" if self.stage is None else self.stage.normalize,
        adaptive_eta=self.options.adaptive_eta)

  def update(self, updates, state, params=None, *, grad_fn=None,
             **extra_args):
    """One SAM step per call: ``sync_period - 1`` ascent steps with
    ``grad_fn``, then the descent."""
    params = validation.require_params(params, self.name)
    if self.plan.perturbs:
      perturbation.check_grad_fn(grad_fn)
    begun = self.begin(updates, state, params, extra_args)
    grads = begun.grads
    if self.plan.perturbs:
      grads = self.perturbed_gradient(begun, params, state.count, grad_fn)
    return self.descend(grads, state, params, begun.fields, extra_args)


def sharpness_aware(base_optimizer: optax.GradientTransformation, rho,
                    options: Options, stage: Optional[MaskStage], *,
                    name: str, state_type) -> optax.GradientTransformationExtraArgs:
  """SAM (``stage=None``) or SSAM around ``base_optimizer``, in either mode."""
  core = Core(base_optimizer, rho, options, stage, name=name,
              state_type=state_type)
  if options.transparent:
    return transparent.transparent(core)
  return optax.GradientTransformationExtraArgs(core.init, core.update)


def core_of(optimizer) -> Optional[Core]:
  """The :class:`Core` behind a one-call ``sam``/``ssam``, else None.

  :func:`sharpness_aware` returns ``core.update`` as a bound method. The
  efficient variants (:func:`ssam_jax.scheduled_ascent`,
  :func:`ssam_jax.looksam`, :func:`ssam_jax.msam`) wrap such an optimizer
  and reuse its stages.
  """
  core = getattr(getattr(optimizer, "update", None), "__self__", None)
  return core if isinstance(core, Core) else None
