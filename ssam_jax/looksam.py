"""LookSAM (Liu et al.) as an Optax gradient transformation."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ssam_jax import ascent_schedule
from ssam_jax import perturbation
from ssam_jax import refresh
from ssam_jax import validation

PyTree = Any


def _wide(x: jax.Array) -> jax.Array:
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _dot(a: PyTree, b: PyTree) -> jax.Array:
  return sum(jnp.sum(_wide(x) * _wide(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _ratio(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """``numerator / denominator``, or 0 where that is not a finite number."""
  valid = (denominator > 0) & jnp.isfinite(denominator) & jnp.isfinite(
      numerator)
  return jnp.where(valid, numerator / jnp.where(valid, denominator, 1.0), 0.0)


def orthogonal_part(sam_grads: PyTree, grads: PyTree, like: PyTree) -> PyTree:
  """``g_v = g_s - (<g, g_s> / ||g||^2) g``, in the dtypes of ``like``.

  The part of the SAM gradient ``g_s`` orthogonal to the gradient ``g`` at
  ``w``; all of ``g_s`` when ``g`` is zero or not finite.
  """
  coefficient = _ratio(_dot(grads, sam_grads), _dot(grads, grads))
  return jax.tree.map(
      lambda s, g, o: (_wide(s) - coefficient * _wide(g)).astype(o.dtype),
      sam_grads, grads, like)


def with_orthogonal(grads: PyTree, orthogonal: PyTree, alpha) -> PyTree:
  """``g + alpha * (||g|| / ||g_v||) * g_v``, in the dtypes of ``grads``.

  Adds nothing while ``g_v`` is zero or either norm is not finite.
  """
  scale = alpha * _ratio(jnp.sqrt(_dot(grads, grads)),
                         jnp.sqrt(_dot(orthogonal, orthogonal)))
  return jax.tree.map(lambda g, v: (_wide(g) + scale * _wide(v)).astype(g.dtype),
                      grads, orthogonal)


class LookSAMState(NamedTuple):
  """State of :func:`looksam`.

  Attributes:
    orthogonal: ``g_v``, the part of the last SAM gradient orthogonal to
      the gradient at ``w`` of that update, shaped like the params (zero
      before the first ascent, and always with ``every=1``).
    inner: the state of the wrapped optimizer (:class:`ssam_jax.SAMState`
      or :class:`ssam_jax.SSAMState`); its ``count`` counts every update.
  """

  orthogonal: PyTree
  inner: Any


def looksam(
    inner: optax.GradientTransformationExtraArgs,
    every: int | str,
    alpha: float,
) -> optax.GradientTransformationExtraArgs:
  """LookSAM: SAM every ``k`` updates, its sharpness direction reused between.

  Every ``k`` updates (``every``) an update is ``inner``'s: with ``g`` the
  gradient at ``w`` and ``g_s`` the gradient at ``w + eps`` that feeds the
  base optimizer, it stores

    g_v = g_s - (<g, g_s> / ||g||^2) g,

  the part of ``g_s`` orthogonal to ``g`` (Algorithm 1 of Liu et al., with
  global norms over all leaves). The updates in between do not call
  ``grad_fn``: they feed the base optimizer

    g + alpha * (||g|| / ||g_v||) * g_v.

  An update computes ``1 + 1/k`` gradients on average. ``alpha=0`` is SAM
  every ``k`` updates and plain training between
  (:func:`ssam_jax.scheduled_ascent`); ``every=1`` reproduces ``inner``
  exactly, and a ``rho`` of Python 0 the base optimizer. With a sparse
  ``inner`` (:func:`ssam_jax.ssam`) the ascent is masked and the mask stage
  runs on every update, from ``g``. The layer-wise variant Look-LayerSAM is
  not implemented.

  Args:
    inner: the optimizer that takes the ascent steps, built by
      :func:`ssam_jax.sam` or :func:`ssam_jax.ssam` (any mask strategy,
      ``transparent=False``).
    every: ``k >= 1``: ascend on the updates whose count is a multiple of
      ``k``; or ``"manual"``: the caller passes ``ascend`` to every update
      (see :mod:`ssam_jax.ascent_schedule`).
    alpha: the weight ``alpha >= 0`` of the reused direction, a number or an
      injected value.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is a
    :class:`LookSAMState`. Its ``update`` takes what ``inner``'s takes:
    ``params``, ``grad_fn`` (unless ``every="manual"`` and
    ``ascend=False``), ``fisher_fn`` and ``refresh`` for SSAM's mask; with
    ``every="manual"`` it requires ``ascend``, a Python bool. ``grads``
    must be the full gradient: ``grads_wrt`` must cover every leaf.

  Examples:
    >>> x = jax.random.normal(jax.random.key(0), (16, 4))
    >>> y = x @ jnp.array([1.0, -2.0, 0.5, 3.0])
    >>> loss = lambda p, x: jnp.mean((x @ p['w'] - y) ** 2)
    >>> opt = ssam_jax.looksam(ssam_jax.sam(optax.sgd(0.05), rho=0.05),
    ...                        every=5, alpha=0.7)
    >>> @jax.jit
    ... def train_step(params, state, x):
    ...   grads = jax.grad(loss)(params, x)
    ...   updates, state = opt.update(grads, state, params,
    ...                               grad_fn=lambda p: jax.grad(loss)(p, x))
    ...   return optax.apply_updates(params, updates), state
    >>> params = {'w': jnp.zeros(4)}
    >>> state = opt.init(params)
    >>> for _ in range(100):
    ...   params, state = train_step(params, state, x)
    >>> bool(loss(params, x) < 1e-2), int(state.inner.count)
    (True, 100)

  References:
    Liu et al., `Towards Efficient and Scalable Sharpness-Aware Minimization
    <https://arxiv.org/abs/2203.02714>`_, 2022
  """
  core = ascent_schedule.wrapped_core(inner, "looksam")
  ascent_schedule.check_every(every)
  validation.check_number("alpha", alpha, minimum=0, injectable=True)
  why = ("looksam reads the gradient at w of every leaf, for g_v and for "
         "the updates between ascents")

  def init_fn(params):
    return LookSAMState(orthogonal=jax.tree.map(jnp.zeros_like, params),
                        inner=core.init(params))

  def update_fn(updates, state, params=None, *, grad_fn=None, ascend=None,
                **extra_args):
    params = validation.require_params(params, "looksam")
    inner_state = state.inner
    ascends = ascent_schedule.due(every, inner_state.count, ascend)
    if not core.plan.perturbs or every == 1:
      # Nothing to reuse: every update is inner's (or the base optimizer's).
      ascent_schedule.pop_full_grads_wrt(extra_args, params, why)
      new_updates, new_inner = core.update(updates, inner_state, params,
                                           grad_fn=grad_fn, **extra_args)
      return new_updates, LookSAMState(state.orthogonal, new_inner)
    if ascends is not False:
      perturbation.check_grad_fn(grad_fn)
    ascent_schedule.pop_full_grads_wrt(extra_args, params, why)

    def ascent():
      extra = dict(extra_args)
      begun = core.begin(updates, inner_state, params, extra)
      sam_grads = core.perturbed_gradient(begun, params, inner_state.count,
                                          grad_fn)
      new_updates, new_inner = core.descend(sam_grads, inner_state, params,
                                            begun.fields, extra)
      orthogonal = orthogonal_part(sam_grads, begun.grads, state.orthogonal)
      return new_updates, new_inner, orthogonal

    def reuse():
      extra = dict(extra_args)
      begun = core.begin(updates, inner_state, params, extra)
      grads = with_orthogonal(begun.grads, state.orthogonal, alpha)
      new_updates, new_inner = core.descend(grads, inner_state, params,
                                            begun.fields, extra)
      return new_updates, new_inner, state.orthogonal

    new_updates, new_inner, orthogonal = refresh.when(ascends, ascent, reuse)
    return new_updates, LookSAMState(orthogonal=orthogonal, inner=new_inner)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
