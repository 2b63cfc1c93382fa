"""The sharpness-aware perturbation shared by :func:`sam` and :func:`ssam`.

Given the gradient ``g`` at ``w``, the ascent step is

  eps = rho * T^2 g / ||T g||        (T = 1 for SAM, T = |w| + eta for ASAM)

restricted to the perturbable leaves and, for sparse SAM, to a boolean mask.
The gradient handed on to the base optimizer is ``grad_fn(w + eps)``.
"""

from collections.abc import Callable
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
LeafFilter = Union[None, PyTree, Callable[[PyTree], PyTree]]
NORMALIZATIONS = ("full", "masked")


def kernels_only(params: PyTree) -> PyTree:
  """Leaf filter that perturbs only leaves with two or more dimensions.

  Keeps biases and normalisation scales/offsets (all one-dimensional) out of
  the perturbation, a common choice for SAM on networks with BatchNorm.

  >>> import jax.numpy as jnp
  >>> import ssam_jax
  >>> ssam_jax.kernels_only({'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)})
  {'bias': False, 'kernel': True}

  Args:
    params: a pytree of arrays or ``jax.ShapeDtypeStruct``.

  Returns:
    A pytree of Python booleans shaped like ``params``.
  """
  return jax.tree.map(lambda p: len(p.shape) >= 2, params)


def _is_masked_node(x) -> bool:
  return isinstance(x, optax.MaskedNode)


def fill_masked(tree: PyTree, full: PyTree) -> PyTree:
  """Replaces the ``optax.MaskedNode`` placeholders of ``tree`` from ``full``.

  Inside ``optax.masked`` or ``optax.multi_transform`` a transformation only
  sees the leaves it is responsible for; the others are ``optax.MaskedNode``.
  A ``grad_fn`` used there receives such a partial tree and can complete it
  from the full parameters it closes over::

    grad_fn = lambda p: jax.grad(loss)(ssam_jax.fill_masked(p, params), batch)

  The gradient it returns may be the full tree: SAM keeps only the leaves it
  is responsible for.

  Args:
    tree: a pytree that may contain ``optax.MaskedNode`` nodes.
    full: a pytree with the same structure where ``tree`` has real leaves.

  Returns:
    ``tree`` with every ``MaskedNode`` replaced by the matching subtree of
    ``full``.
  """
  return jax.tree.map(lambda t, f: f if _is_masked_node(t) else t,
                      tree, full, is_leaf=_is_masked_node)


def _restrict_like(tree: PyTree, reference: PyTree) -> PyTree:
  """Drops the parts of ``tree`` that are ``MaskedNode`` in ``reference``."""
  return jax.tree.map(lambda r, t: r if _is_masked_node(r) else t,
                      reference, tree, is_leaf=_is_masked_node)


def resolve_leaf_filter(leaf_filter: LeafFilter, params: PyTree) -> tuple:
  """One static Python bool per leaf of ``params``: may it be perturbed?"""
  treedef = jax.tree.structure(params)
  if leaf_filter is None:
    return (True,) * treedef.num_leaves
  tree = leaf_filter(params) if callable(leaf_filter) else leaf_filter
  try:
    flags = treedef.flatten_up_to(tree)
  except (ValueError, TypeError) as error:
    raise ValueError(
        "perturbed_leaves must be a pytree of booleans with the structure of "
        f"the params (or a callable returning one): {error}") from None
  for flag in flags:
    if not isinstance(flag, (bool, np.bool_)):
      raise TypeError(
          "perturbed_leaves must hold static Python booleans (one per leaf); "
          f"got {flag!r}.")
  return tuple(bool(flag) for flag in flags)


def check_leaf_filter(leaf_filter: LeafFilter) -> None:
  if leaf_filter is not None and not callable(leaf_filter):
    for flag in jax.tree.leaves(leaf_filter):
      if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(
            "perturbed_leaves must be None, a callable, or a pytree of "
            f"Python booleans; found leaf {flag!r}.")


def _global_norm(leaves) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves))


def perturbation(
    grads: PyTree,
    params: PyTree,
    rho,
    perturbable: tuple,
    mask: Optional[PyTree] = None,
    normalize: str = "full",
    adaptive: bool = False,
    adaptive_eta: float = 0.0,
) -> list:
  """Returns ``eps`` as a list over the leaves of ``params``.

  Entries for leaves that are not perturbable are ``None``: no perturbation
  array is allocated for them. ``eps`` is float32 whatever the parameter
  dtype. A zero or non-finite gradient norm gives ``eps = 0``, never NaN.
  """
  grad_leaves = jax.tree.leaves(grads)
  param_leaves = jax.tree.leaves(params)
  mask_leaves = (jax.tree.leaves(mask) if mask is not None
                 else [None] * len(param_leaves))
  scaled, scale_by = [], []
  for g, p, use in zip(grad_leaves, param_leaves, perturbable):
    if not use:
      continue
    t = jnp.abs(p.astype(jnp.float32)) + adaptive_eta if adaptive else None
    g = g.astype(jnp.float32)
    scaled.append(g * t if adaptive else g)
    scale_by.append(t)
  masks = [m for m, use in zip(mask_leaves, perturbable) if use]
  if normalize == "masked" and mask is not None:
    norm = _global_norm([jnp.where(m, s, 0.0) for s, m in zip(scaled, masks)])
  else:
    norm = _global_norm(scaled)
  valid = (norm > 0) & jnp.isfinite(norm)
  factor = jnp.where(valid, jnp.asarray(rho, jnp.float32) / jnp.where(valid, norm, 1.0), 0.0)

  eps_perturbable = []
  for s, t, m in zip(scaled, scale_by, masks):
    e = s * t * factor if adaptive else s * factor
    e = jnp.where(valid, e, 0.0)  # A non-finite gradient gives no ascent.
    eps_perturbable.append(e if m is None else jnp.where(m, e, 0.0))
  eps_iter = iter(eps_perturbable)
  return [next(eps_iter) if use else None for use in perturbable]


def add_perturbation(params: PyTree, eps: list) -> PyTree:
  """``params + eps`` leaf by leaf, keeping each leaf's dtype."""
  leaves, treedef = jax.tree.flatten(params)
  perturbed = [
      p if e is None else (p.astype(jnp.float32) + e).astype(p.dtype)
      for p, e in zip(leaves, eps)
  ]
  return jax.tree.unflatten(treedef, perturbed)


def call_grad_fn(grad_fn, perturbed_params: PyTree, grads: PyTree) -> PyTree:
  """Calls ``grad_fn`` and checks that its result matches ``grads``."""
  if grad_fn is None:
    raise TypeError(
        "update() needs the keyword argument grad_fn: a function mapping "
        "params to the gradient of the loss at those params, e.g. "
        "grad_fn=lambda p: jax.grad(loss_fn)(p, batch).")
  if not callable(grad_fn):
    raise TypeError(f"grad_fn must be callable, got {type(grad_fn).__name__}.")
  new_grads = grad_fn(perturbed_params)
  expected = jax.tree.structure(grads)
  if jax.tree.structure(new_grads) != expected:
    try:
      new_grads = _restrict_like(new_grads, grads)
    except (ValueError, TypeError):
      pass
  if jax.tree.structure(new_grads) != expected:
    raise TypeError(
        "grad_fn must return a gradient with the structure of the gradient "
        f"passed to update(); expected {expected}, got "
        f"{jax.tree.structure(new_grads)}.")
  for old, new in zip(jax.tree.leaves(grads), jax.tree.leaves(new_grads)):
    if jnp.shape(old) != jnp.shape(new):
      raise ValueError(
          "grad_fn returned a leaf of shape "
          f"{jnp.shape(new)} where the gradient has shape {jnp.shape(old)}.")
  return new_grads


def sharpness_aware_gradient(ascent_grads, params, rho, grad_fn, perturbable,
                             axis_name=None, **perturbation_options):
  """``grad_fn(params + eps)``, averaged over ``axis_name`` if given.

  ``eps`` is built from ``ascent_grads``: the device-mean gradient, or the
  local one for m-sharpness.
  """
  eps = perturbation(ascent_grads, params, rho, perturbable,
                     **perturbation_options)
  return mean_over(axis_name, call_grad_fn(
      grad_fn, add_perturbation(params, eps), ascent_grads))


def mean_over(axis_name, tree):
  """Mean over the devices of a named axis (``shard_map``, ``pmap``).

  Identity when ``axis_name`` is None: under ``jax.jit`` with sharded arrays
  every reduction is already global.
  """
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def shard_like(x: jax.Array, like) -> jax.Array:
  """``x`` with the sharding of ``like``, an array of the same shape.

  Keeps what is created leaf by leaf from the params (masks, Fisher sums,
  random scores) sharded as the params are, e.g. over an FSDP axis: a
  concrete ``like`` spread over several devices places ``x`` on them, a
  traced one under explicit sharding (``jax.sharding.AxisType.Explicit``)
  reshards ``x`` to its type. Otherwise ``x`` is returned unchanged: on one
  device nothing is to be done, and under automatic sharding the compiler
  propagates shardings itself.
  """
  if not isinstance(like, jax.Array):
    return x
  if not isinstance(like, jax.core.Tracer):
    if len(like.sharding.device_set) > 1:
      return jax.device_put(x, like.sharding)
    return x
  sharding = jax.typeof(like).sharding
  if jax.sharding.AxisType.Explicit in sharding.mesh.axis_types:
    return jax.sharding.reshard(x, sharding)
  return x


def check_axis_options(axis_name, m_sharpness) -> None:
  if axis_name is not None and not isinstance(axis_name, (str, tuple)):
    raise TypeError(f"axis_name must be a str or tuple of str, got {axis_name!r}.")
  if not isinstance(m_sharpness, bool):
    raise TypeError(f"m_sharpness must be a bool, got {m_sharpness!r}.")
  if m_sharpness and axis_name is None:
    raise ValueError(
        "m_sharpness=True needs axis_name: each device perturbs with its own "
        "gradient inside shard_map/pmap, then the perturbed gradients are "
        "averaged over axis_name.")


def current_rho(rho, count):
  """The value of ``rho`` (a number or an Optax schedule) at step ``count``."""
  return rho(count) if callable(rho) else rho


def require_params(params, name: str):
  if params is None:
    raise ValueError(
        f"{name}.update() needs params: the perturbation is taken around the "
        "current parameters. Call update(grads, state, params, grad_fn=...).")
  return params


def is_injected(value) -> bool:
  """True for an array, e.g. a value set by ``optax.inject_hyperparams``.

  Such values may be traced, so they are not checked at construction.
  """
  return isinstance(value, (jax.Array, np.ndarray))


def check_rho(rho) -> None:
  if callable(rho) or is_injected(rho):
    return
  if isinstance(rho, bool) or not isinstance(rho, (int, float)):
    raise TypeError(f"rho must be a number or an Optax schedule, got {rho!r}.")
  if not rho >= 0 or rho == float("inf"):
    raise ValueError(f"rho must be finite and >= 0, got {rho}.")


def check_adaptive_eta(adaptive_eta) -> None:
  if is_injected(adaptive_eta):
    return
  if not isinstance(adaptive_eta, (int, float)) or not adaptive_eta >= 0:
    raise ValueError(f"adaptive_eta must be a number >= 0, got {adaptive_eta!r}.")


def is_static_zero(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0
