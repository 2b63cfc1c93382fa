"""Transparent mode: SAM and SSAM for loops that cannot pass ``grad_fn``.

By default :func:`ssam_jax.sam` and :func:`ssam_jax.ssam` take a whole SAM
step in one ``update`` call and evaluate the gradient at ``w + eps`` through
``grad_fn``. Loops that only call ``tx.update(grads, state, params)``, such
as Flax linen's ``TrainState.apply_gradients``, cannot pass it. With
``transparent=True`` (as in ``optax.contrib.sam``'s default mode) a SAM step
is spread over ``sync_period`` calls instead, and the loop does the
evaluating:

* the first ``sync_period - 1`` calls are ascent steps: each gets the
  gradient at the current point and returns ``eps`` as the update, so the
  loop's parameters move to ``w + eps`` (then ``w + eps + eps'``, and so
  on). The first of them also refreshes the mask, from the gradient at ``w``;
* the last call is the descent: it gets the gradient at the perturbed
  point, feeds it to the base optimizer at ``w`` (cached in the state), and
  returns the update that moves the parameters back to ``w`` plus the base
  optimizer's step.

Caveats:

* Each call consumes a batch, so a SAM step sees ``sync_period`` batches
  (two by default) and the gradient at ``w + eps`` comes from another batch
  than ``eps``. Count epochs in calls, and SAM steps in
  ``state.inner.count``: a ``rho`` schedule and ``mask_update_every`` count
  SAM steps.
* Between calls the loop's parameters are at the perturbed point. Evaluate,
  checkpoint or average them after a descent (``state.steps_since_sync ==
  0``).
* Everything else the loop computes at each call happens at the perturbed
  point too: BatchNorm running statistics are updated with the activations
  at ``w + eps``, and metrics averaged over calls mix both points.
* No ``fisher_fn`` reaches ``update`` from such a loop: use
  ``fisher_mask(accumulate=True)``, ``dynamic_mask`` or ``random_mask``.
  ``mask_update_every="manual"`` and ``m_sharpness`` are not available.

Examples:
  Flax's ``TrainState`` trains with SSAM unchanged:

  >>> import flax.linen as nn
  >>> from flax.training import train_state
  >>> x = jax.random.normal(jax.random.key(0), (64, 3))
  >>> y = x @ jnp.array([[1.0], [-2.0], [0.5]])
  >>> model = nn.Dense(1)
  >>> tx = ssam_jax.ssam(optax.sgd(0.1), rho=0.05, sparsity=0.5,
  ...                    mask=ssam_jax.fisher_mask(accumulate=True),
  ...                    mask_update_every=10, transparent=True)
  >>> state = train_state.TrainState.create(
  ...     apply_fn=model.apply, params=model.init(jax.random.key(1), x)['params'],
  ...     tx=tx)
  >>> def loss_fn(params, batch):
  ...   inputs, targets = batch
  ...   return jnp.mean((model.apply({'params': params}, inputs) - targets) ** 2)
  >>> @jax.jit
  ... def train_step(state, batch):
  ...   return state.apply_gradients(grads=jax.grad(loss_fn)(state.params, batch))
  >>> for _ in range(300):   # 150 SAM steps of two calls each
  ...   state = train_step(state, (x, y))
  >>> int(state.opt_state.steps_since_sync), int(state.opt_state.inner.count)
  (0, 150)
  >>> bool(loss_fn(state.params, (x, y)) < 1e-3)
  True
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ssam_jax import validation

PyTree = Any


class TransparentState(NamedTuple):
  """State of :func:`ssam_jax.sam` or :func:`ssam_jax.ssam` with
  ``transparent=True``.

  Attributes:
    steps_since_sync: calls since the last descent, from 0 to
      ``sync_period - 1``; the call with ``sync_period - 1`` descends.
    cache: the parameters ``w`` at the start of the current SAM step,
      where the descent is taken from.
    inner: the state of the one-call optimizer (:class:`ssam_jax.SAMState`
      or :class:`ssam_jax.SSAMState`), whose ``count`` counts SAM steps.
  """

  steps_since_sync: jax.Array
  cache: PyTree
  inner: Any


def _copy(leaf):
  # A buffer of its own, so that the loop may donate params and state.
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return leaf
  return jnp.array(leaf, copy=True)


def transparent(core) -> optax.GradientTransformationExtraArgs:
  """The transparent mode of a ``ssam_jax._core.Core``."""
  sync_period = core.options.sync_period

  def init_fn(params):
    return TransparentState(steps_since_sync=jnp.zeros([], jnp.int32),
                            cache=jax.tree.map(_copy, params),
                            inner=core.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    params = validation.require_params(params, core.name)
    for name in ("grad_fn", "grads_wrt"):
      if extra_args.pop(name, None) is not None:
        raise TypeError(
            f"{core.name}(transparent=True) takes no {name}: the loop "
            "evaluates the gradient at the perturbed point on the next call. "
            f"Pass transparent=False to use {name}.")
    phase = state.steps_since_sync
    first = phase == 0
    begun = core.begin(updates, state.inner, params, extra_args, active=first)
    cache = jax.tree.map(lambda p, c: jnp.where(first, p, c), params,
                         state.cache)
    inner = state.inner

    def ascend():
      leaves, treedef = jax.tree.flatten(params)
      eps = (core.eps(begun, params, inner.count) if core.plan.perturbs
             else [None] * len(leaves))
      steps = [jnp.zeros_like(p) if e is None else e.astype(p.dtype)
               for p, e in zip(leaves, eps)]
      return jax.tree.unflatten(treedef, steps), core.state_type(
          count=inner.count, base_state=inner.base_state, **begun.fields)

    def descend():
      base_updates, new_inner = core.descend(begun.grads, inner, cache,
                                             begun.fields, extra_args)
      back = jax.tree.map(lambda c, p, u: (c - p + u).astype(p.dtype), cache,
                          params, base_updates)
      return back, new_inner

    updates, inner = jax.lax.cond(phase == sync_period - 1, descend, ascend)
    return updates, TransparentState(
        steps_since_sync=(phase + 1) % sync_period, cache=cache, inner=inner)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
