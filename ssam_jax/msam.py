"""Momentum-SAM (Becker et al.) as an Optax gradient transformation.

MSAM takes the ascent direction from the base optimizer's momentum instead
of a first gradient, so an update costs one gradient, as plain training
does. With ``v`` the momentum after the last update (``optax.trace``'s
``trace``, i.e. PyTorch's ``momentum_buffer``, or Adam's first moment
``mu``), the gradient is taken at

  w + eps,     eps = -rho * v / ||v||

(the sign and the global norm of the official code), and the base optimizer
steps from ``w``. ``v`` accumulates gradients, so ``-v`` points along the
descent: MSAM looks ahead along the path the optimizer is taking, as
Nesterov momentum does, and takes the gradient there. Before the first
update ``v = 0`` and ``eps = 0``.

The train step asks the optimizer for the perturbed point, differentiates
there once and hands that gradient to ``update``: see :func:`msam`.
"""

from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import optax

from ssam_jax import _core
from ssam_jax import ascent_schedule
from ssam_jax import leaf_filters
from ssam_jax import perturbation
from ssam_jax import validation

PyTree = Any
MOMENTUM_FIELDS = ("trace", "mu")


class MSAMState(NamedTuple):
  """State of :func:`msam`.

  Attributes:
    inner: the state of the wrapped optimizer (:class:`ssam_jax.SAMState`
      or :class:`ssam_jax.SSAMState`): its ``base_state`` holds the
      momentum, its ``count`` the step of a ``rho`` schedule and, for SSAM,
      its ``mask`` masks ``eps``.
  """

  inner: Any


def find_momentum(base_state: optax.OptState) -> Optional[PyTree]:
  """The base optimizer's momentum: its field ``trace`` or ``mu``, or None.

  Raises a ``ValueError`` when both fields, or one field twice, are found.
  """
  found = {}
  for field in MOMENTUM_FIELDS:
    try:
      value = optax.tree.get(base_state, field)
    except KeyError as error:
      raise ValueError(
          f"the base optimizer's state holds several fields {field!r}; pass "
          "msam(..., momentum=lambda base_state: <the momentum>).") from error
    if value is not None:
      found[field] = value
  if len(found) > 1:
    raise ValueError(
        "the base optimizer's state holds both a 'trace' and a 'mu'; pass "
        "msam(..., momentum=lambda base_state: <the momentum>).")
  return next(iter(found.values()), None)


def _msam_state(state: optax.OptState) -> MSAMState:
  """The one :class:`MSAMState` in ``state``, possibly inside a chain."""
  if isinstance(state, MSAMState):
    return state
  is_msam = lambda x: isinstance(x, MSAMState)
  found = [x for x in jax.tree.leaves(state, is_leaf=is_msam) if is_msam(x)]
  if len(found) != 1:
    raise ValueError(
        "perturbed_params needs the optimizer state of msam, or a state "
        f"holding exactly one MSAMState; found {len(found)}.")
  return found[0]


class _MomentumAscent:
  """The state-dependent parts of :func:`msam`, around an inner core."""

  def __init__(self, core: _core.Core, momentum):
    self.core = core
    self.momentum = find_momentum if momentum is None else momentum

  def _momentum_of(self, base_state, params) -> PyTree:
    momentum = self.momentum(base_state)
    if momentum is None:
      raise ValueError(
          "msam perturbs along the base optimizer's momentum, but its state "
          f"has no field {' or '.join(map(repr, MOMENTUM_FIELDS))}: use a base "
          "with momentum (optax.sgd(..., momentum=0.9), optax.adam, ...), or "
          "pass momentum=lambda base_state: <the momentum>.")
    mismatch = (leaf_filters.path_mismatch(momentum, params)
                or leaf_filters.shape_mismatch(momentum, params))
    if mismatch is not None:
      raise ValueError(f"the momentum must be shaped like params: {mismatch}.")
    return momentum

  def init(self, params):
    inner = self.core.init(params)
    self._momentum_of(inner.base_state, params)
    return MSAMState(inner)

  def perturbed_params(self, state, params):
    inner = _msam_state(state).inner
    if not self.core.plan.perturbs:
      return params
    descent = jax.tree.map(lambda v: -v,
                           self._momentum_of(inner.base_state, params))
    mask = inner.mask if self.core.plan.applies_mask else None
    begun = _core.Begun(grads=None, ascent_grads=descent,
                        perturbable=self.core.perturbable(params), mask=mask,
                        fields={})
    eps = self.core.eps(begun, params, inner.count)
    return perturbation.add_perturbation(params, eps)

  def update(self, updates, state, params=None, **extra_args):
    params = validation.require_params(params, "msam")
    if extra_args.pop("grad_fn", None) is not None:
      raise TypeError(
          "msam takes no grad_fn: pass as updates the gradient at "
          "opt.perturbed_params(state, params), the only gradient of the "
          "update.")
    ascent_schedule.pop_full_grads_wrt(
        extra_args, params, "msam feeds the gradient to the base optimizer")
    begun = self.core.begin(updates, state.inner, params, extra_args)
    new_updates, inner = self.core.descend(begun.grads, state.inner, params,
                                           begun.fields, extra_args)
    return new_updates, MSAMState(inner)


class MomentumSAM(optax.GradientTransformationExtraArgs):
  """What :func:`msam` returns: a transformation with :meth:`perturbed_params`.

  It is an ``optax.GradientTransformationExtraArgs`` (``init``, ``update``)
  and chains like one.
  """

  def perturbed_params(self, state: optax.OptState, params: PyTree) -> PyTree:
    """``w + eps``: where the train step takes the gradient for ``update``.

    Args:
      state: the optimizer state, or a state holding exactly one
        :class:`MSAMState` (a chain's, for instance).
      params: the parameters ``w``.

    Returns:
      The parameters moved by ``eps = -rho * v / ||v||`` (masked for SSAM),
      in their own dtypes; ``params`` itself with a ``rho`` of Python 0.
    """
    return self.update.__self__.perturbed_params(state, params)


def msam(
    inner: optax.GradientTransformationExtraArgs,
    *,
    momentum: Optional[Callable[[optax.OptState], PyTree]] = None,
) -> MomentumSAM:
  """Momentum-SAM: the ascent along the momentum, one gradient per update.

  ``inner`` supplies the base optimizer and the shape of ``eps``: ``rho`` (a
  number or a schedule), ``perturbed_leaves``, ASAM's ``adaptive_eta``,
  ``axis_name`` and, from :func:`ssam_jax.ssam`, the mask and its
  normalisation. The direction is the momentum ``v`` instead of a first
  gradient:

    eps = -rho * v / ||v|| * m,     update from grad L(w + eps) at w.

  ``v`` accumulates gradients, so ``-v`` points along the descent: the
  gradient is taken a step ahead on the optimizer's path, as with Nesterov
  momentum. Before the first update ``v = 0`` and ``eps = 0``.

  The train step takes the gradient at ``opt.perturbed_params(state,
  params)`` and passes it to ``update`` as the gradient; ``update`` takes no
  ``grad_fn``. SSAM's mask stage reads that gradient, and a refresh takes
  effect from the next update on. ``rho=0`` (a Python number) reproduces the
  base optimizer exactly.

  Differences from the official PyTorch code: the base optimizer steps from
  ``w``, so its weight decay reads ``w`` (theirs reads ``w + eps``), and we
  add no ``1e-12`` to ``||v||``.

  Args:
    inner: built by :func:`ssam_jax.sam` or :func:`ssam_jax.ssam` with the
      defaults ``sync_period=2``, ``m_sharpness=False`` and
      ``transparent=False``, around a base optimizer with momentum.
    momentum: a function from the base optimizer's state to its momentum
      ``v``, a pytree shaped like the params that accumulates gradients.
      None: the state's field ``trace`` (:func:`optax.sgd` with
      ``momentum``, :func:`optax.trace`) or ``mu`` (:func:`optax.adam` and
      its kin), whichever it has.

  Returns:
    A :class:`MomentumSAM`, whose state is an :class:`MSAMState`. Its
    ``update`` takes the gradient at the perturbed point, ``params`` and,
    for SSAM's mask, ``fisher_fn`` and ``refresh``; ``grads_wrt`` must cover
    every leaf. Other keyword arguments go to the base optimizer.

  Examples:
    >>> x = jax.random.normal(jax.random.key(0), (16, 4))
    >>> y = x @ jnp.array([1.0, -2.0, 0.5, 3.0])
    >>> loss = lambda p, x: jnp.mean((x @ p['w'] - y) ** 2)
    >>> opt = ssam_jax.msam(ssam_jax.sam(optax.sgd(0.05, momentum=0.9),
    ...                                  rho=0.05))
    >>> @jax.jit
    ... def train_step(params, state, x):
    ...   point = opt.perturbed_params(state, params)
    ...   value, grads = jax.value_and_grad(loss)(point, x)   # one gradient
    ...   updates, state = opt.update(grads, state, params)
    ...   return optax.apply_updates(params, updates), state, value
    >>> params = {'w': jnp.zeros(4)}
    >>> state = opt.init(params)
    >>> for _ in range(100):
    ...   params, state, value = train_step(params, state, x)
    >>> bool(loss(params, x) < 1e-2)
    True

  References:
    Becker et al., `Momentum-SAM: Sharpness Aware Minimization without
    Computational Overhead <https://arxiv.org/abs/2401.12033>`_, 2024
  """
  core = ascent_schedule.wrapped_core(inner, "msam")
  if core.options.sync_period != 2:
    raise ValueError(
        "msam takes one ascent step, along the momentum: build inner with "
        f"sync_period=2, not {core.options.sync_period}.")
  if core.options.m_sharpness:
    raise ValueError(
        "msam cannot use m_sharpness=True: the momentum, and so eps, is the "
        "same on every device.")
  if momentum is not None and not callable(momentum):
    raise TypeError("momentum must be None or a function from the base "
                    f"optimizer's state to its momentum; got {momentum!r}.")
  ascent = _MomentumAscent(core, momentum)
  return MomentumSAM(ascent.init, ascent.update)
