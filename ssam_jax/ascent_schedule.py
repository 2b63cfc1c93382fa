"""SAM's ascent on a schedule: every ``k`` updates, or with probability ``p``.

SAM pays for its second gradient on every update. :func:`scheduled_ascent`
wraps a :func:`ssam_jax.sam` or :func:`ssam_jax.ssam` optimizer and takes
the ascent step on some updates only; on the others ``grad_fn`` is not
called and the base optimizer consumes the gradient at ``w``, as plain
training would. Which updates ascend is stated once, at construction:

* ``every=k`` (an int): the updates whose count is a multiple of ``k``,
  starting with the first (SAM-k in Liu et al.). The choice is traced: one
  compilation, and the two kinds of update are the branches of
  ``jax.lax.cond``.
* ``every="manual"``: the caller decides and passes ``ascend=<Python bool>``
  to every ``update``. Each kind of update is then traced at top level, at
  the cost of two compilations: the fast option on CPU, where XLA runs
  convolutions inside ``lax.cond`` slowly (see :mod:`ssam_jax.workarounds`).
* ``probability=p``: each update ascends with probability ``p`` (a number,
  an injected value or a schedule of the step), drawn from a PRNG key in the
  state (RST, Zhao et al.). Every device draws the same value.

:func:`ssam_jax.looksam` takes the same ``every``. The count of an update is
the wrapped optimizer's ``count``: every update, with or without the ascent,
advances it, so a ``rho`` schedule and SSAM's ``mask_update_every`` keep
counting updates. The mask stage runs on every update, with the gradient at
``w``.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ssam_jax import _core
from ssam_jax import partial_grad
from ssam_jax import perturbation
from ssam_jax import refresh
from ssam_jax import validation

PyTree = Any
MANUAL = "manual"


def wrapped_core(inner, name: str) -> _core.Core:
  """The core of ``inner``, which must come from ``sam`` or ``ssam``."""
  core = _core.core_of(inner)
  if core is None:
    raise TypeError(
        f"{name} wraps an optimizer built by ssam_jax.sam or ssam_jax.ssam "
        f"with transparent=False, as its inner argument; got {inner!r}.")
  return core


def check_every(every) -> None:
  if isinstance(every, str):
    if every != MANUAL:
      raise ValueError(f"every must be an int >= 1 or 'manual'; got {every!r}.")
    return
  validation.check_int("every", every, minimum=1)


def due(every, count: jax.Array, ascend):
  """Whether this update ascends: a Python bool, or a traced bool.

  Args:
    every: the checked ``every`` argument.
    count: the wrapped optimizer's update count (traced).
    ascend: the ``ascend`` keyword ``update`` received, or None.
  """
  if every == MANUAL:
    if ascend is None:
      raise TypeError(
          "every='manual' leaves the schedule to the caller: update() needs "
          "ascend=<Python bool> on every call, True on the updates that take "
          "the ascent step (e.g. ascend=step % k == 0, counted on the host).")
    if not isinstance(ascend, bool):
      raise TypeError("ascend must be a Python bool (static, known when "
                      f"tracing); got {ascend!r}.")
    return ascend
  check_no_ascend(ascend, f"every={every!r}")
  if every == 1:
    return True
  return count % every == 0


def check_no_ascend(ascend, owner: str) -> None:
  if ascend is not None:
    raise ValueError(
        f"update() got ascend={ascend!r}, but {owner} already owns the "
        "schedule. Drop ascend, or pass every='manual' to decide every "
        "update in the loop.")


def pop_full_grads_wrt(extra_args: dict, params, why: str) -> None:
  """Pops ``grads_wrt`` from ``extra_args``, refusing a partial one.

  For updates whose base optimizer reads the gradient at ``w`` in full;
  ``why`` says so in the error.
  """
  grads_wrt = extra_args.pop("grads_wrt", None)
  if grads_wrt is not None:
    partial_grad.check_grads_wrt(
        grads_wrt, params, required=[True] * len(jax.tree.leaves(params)),
        why_required=why, forbidden=None)


class ScheduledAscentState(NamedTuple):
  """State of :func:`scheduled_ascent`.

  Attributes:
    key: with ``probability``, the PRNG key of the next draw; None otherwise.
    ascents: the number of updates that took the ascent step (int32), each
      of which called ``grad_fn`` once per ascent step.
    inner: the state of the wrapped optimizer (:class:`ssam_jax.SAMState`
      or :class:`ssam_jax.SSAMState`); its ``count`` counts every update.
  """

  key: Optional[jax.Array]
  ascents: jax.Array
  inner: Any


def scheduled_ascent(
    inner: optax.GradientTransformationExtraArgs,
    every: Optional[int | str] = None,
    *,
    probability: Optional[float | optax.Schedule] = None,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  """SAM or SSAM that takes the ascent step on some updates only.

  An update that ascends is ``inner``'s update: the gradient at ``w + eps``
  (``eps`` possibly sparse) feeds the base optimizer. Any other update feeds
  it the gradient ``g`` at ``w`` and does not call ``grad_fn``, at the cost
  of plain training. On average an update computes ``1 + 1/k`` gradients
  with ``every=k`` and ``1 + p`` with ``probability=p``. See
  :mod:`ssam_jax.ascent_schedule` for the schedules.

  ``every=1`` and ``probability=1`` (Python numbers) reproduce ``inner``
  exactly, and a ``rho`` of Python 0 the base optimizer.

  Args:
    inner: the optimizer whose ascent is scheduled, built by
      :func:`ssam_jax.sam` or :func:`ssam_jax.ssam` (any mask strategy,
      ``transparent=False``).
    every: an int ``k >= 1``: ascend on the updates whose count is a
      multiple of ``k``; or ``"manual"``: the caller passes ``ascend`` to
      every update. Exclusive with ``probability``.
    probability: ascend with this probability in ``[0, 1]``: a number, an
      injected value or an Optax schedule of the update count.
    seed: seed of the PRNG key of ``probability``'s draws.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is a
    :class:`ScheduledAscentState`. Its ``update`` takes what ``inner``'s
    takes: ``params``, ``grad_fn`` (unless ``every="manual"`` and
    ``ascend=False``, or ``probability=0``), ``fisher_fn`` and ``refresh``
    for SSAM's mask, and ``grads_wrt``, which must cover every leaf unless
    the update is known to ascend. With ``every="manual"`` it requires
    ``ascend``, a Python bool.

  Examples:
    >>> x = jax.random.normal(jax.random.key(0), (16, 4))
    >>> y = x @ jnp.array([1.0, -2.0, 0.5, 3.0])
    >>> loss = lambda p, x: jnp.mean((x @ p['w'] - y) ** 2)
    >>> opt = ssam_jax.scheduled_ascent(
    ...     ssam_jax.sam(optax.sgd(0.05, momentum=0.9), rho=0.05), every=4)
    >>> @jax.jit
    ... def train_step(params, state, x):
    ...   grads = jax.grad(loss)(params, x)
    ...   updates, state = opt.update(grads, state, params,
    ...                               grad_fn=lambda p: jax.grad(loss)(p, x))
    ...   return optax.apply_updates(params, updates), state
    >>> params = {'w': jnp.zeros(4)}
    >>> state = opt.init(params)
    >>> for _ in range(10):
    ...   params, state = train_step(params, state, x)
    >>> int(state.ascents), int(state.inner.count)   # updates 0, 4 and 8
    (3, 10)

  References:
    Liu et al., `Towards Efficient and Scalable Sharpness-Aware Minimization
    <https://arxiv.org/abs/2203.02714>`_, 2022 (SAM-k)

    Zhao et al., `Randomized Sharpness-Aware Training for Boosting
    Computational Efficiency in Deep Learning
    <https://arxiv.org/abs/2203.09962>`_, 2022
  """
  core = wrapped_core(inner, "scheduled_ascent")
  if (every is None) == (probability is None):
    raise ValueError("scheduled_ascent needs exactly one of every (ascend "
                     "every k updates) and probability; got "
                     f"every={every!r}, probability={probability!r}.")
  if every is not None:
    check_every(every)
  elif not callable(probability):
    validation.check_number("probability", probability, minimum=0, maximum=1,
                            injectable=True)
  validation.check_int("seed", seed)

  def init_fn(params):
    key = None if probability is None else jax.random.PRNGKey(seed)
    return ScheduledAscentState(key=key, ascents=jnp.zeros([], jnp.int32),
                                inner=core.init(params))

  def decide(state, ascend):
    """(whether this update ascends, the next key)."""
    if probability is None:
      return due(every, state.inner.count, ascend), state.key
    check_no_ascend(ascend, "probability")
    for static in (0, 1):
      if validation.is_static(probability, static):
        return bool(static), state.key
    p = perturbation.current_rho(probability, state.inner.count)
    key, draw = jax.random.split(state.key)
    return jax.random.uniform(draw) < p, key

  def update_fn(updates, state, params=None, *, grad_fn=None, ascend=None,
                **extra_args):
    params = validation.require_params(params, "scheduled_ascent")
    inner_state = state.inner
    ascends, key = decide(state, ascend)
    if not core.plan.perturbs:
      ascends = False  # eps is zero: every update is the base optimizer's
    if ascends is not False:
      perturbation.check_grad_fn(grad_fn)

    def ascent():
      return core.update(updates, inner_state, params, grad_fn=grad_fn,
                         **extra_args)

    def plain():
      extra = dict(extra_args)
      pop_full_grads_wrt(extra, params, "on updates without the ascent the "
                         "base optimizer consumes the gradient at w")
      begun = core.begin(updates, inner_state, params, extra)
      return core.descend(begun.grads, inner_state, params, begun.fields,
                          extra)

    new_updates, new_inner = refresh.when(ascends, ascent, plain)
    ascents = jnp.where(ascends, optax.safe_increment(state.ascents),
                        state.ascents)
    return new_updates, ScheduledAscentState(key=key, ascents=ascents,
                                             inner=new_inner)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
