"""The sharpness-aware perturbation shared by :func:`sam` and :func:`ssam`.

Given the gradient ``g`` at ``w``, the ascent step is

  eps = rho * T^2 g / ||T g||        (T = 1 for SAM, T = |w| + eta for ASAM)

restricted to the perturbable leaves and, for sparse SAM, to a boolean mask.
The gradient handed on to the base optimizer is ``grad_fn(w + eps)``.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp

from ssam_jax import leaf_filters
from ssam_jax import sharding

PyTree = Any
NORMALIZATIONS = ("full", "masked")


def _global_norm(leaves) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves))


def perturbation(
    grads: PyTree,
    params: PyTree,
    rho,
    perturbable: tuple,
    mask: Optional[PyTree] = None,
    normalize: str = "full",
    adaptive_eta=None,
) -> list:
  """Returns ``eps`` as a list over the leaves of ``params``.

  Entries for leaves that are not perturbable are ``None``: no perturbation
  array is allocated for them. ``eps`` is float32 whatever the parameter
  dtype. A zero or non-finite gradient norm, or a non-finite ``rho``, gives
  ``eps = 0``, never NaN. ``adaptive_eta`` None is SAM; a number is ASAM's
  ``eta``.
  """
  adaptive = adaptive_eta is not None
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
  rho = jnp.asarray(rho, jnp.float32)
  valid = (norm > 0) & jnp.isfinite(norm) & jnp.isfinite(rho)
  factor = jnp.where(valid, rho / jnp.where(valid, norm, 1.0), 0.0)

  eps_perturbable = []
  for s, t, m in zip(scaled, scale_by, masks):
    e = s * t * factor if adaptive else s * factor
    e = jnp.where(valid, e, 0.0)  # A non-finite gradient gives no ascent.
    eps_perturbable.append(e if m is None else jnp.where(m, e, 0.0))
  eps_iter = iter(eps_perturbable)
  return [next(eps_iter) if use else None for use in perturbable]


def add_perturbation(params: PyTree, eps: list) -> PyTree:
  """``params + eps`` leaf by leaf, keeping each leaf's dtype.

  The sum is taken in float32, or in the parameter's dtype when it is wider
  (float64 under ``jax_enable_x64``), so unperturbed entries come back
  exactly.
  """
  leaves, treedef = jax.tree.flatten(params)
  perturbed = []
  for p, e in zip(leaves, eps):
    if e is not None:
      wide = jnp.promote_types(p.dtype, jnp.float32)
      p = (p.astype(wide) + e).astype(p.dtype)
    perturbed.append(p)
  return jax.tree.unflatten(treedef, perturbed)


def check_gradients(grads: PyTree, params: PyTree) -> None:
  """Raises unless ``grads`` has the leaves and leaf shapes of ``params``."""
  mismatch = leaf_filters.path_mismatch(grads, params)
  if mismatch is not None:
    raise TypeError(f"update() needs grads with the leaves of params: {mismatch}.")
  mismatch = leaf_filters.shape_mismatch(grads, params)
  if mismatch is not None:
    raise ValueError(
        f"update() needs grads with the shapes of params: {mismatch}.")


def check_floating(params: PyTree, perturbable: tuple) -> None:
  """Raises a TypeError for a perturbable leaf that is not floating point."""
  for path, p, use in zip(leaf_filters.leaf_paths(params),
                          jax.tree.leaves(params), perturbable):
    dtype = p.dtype if hasattr(p, "dtype") else jnp.result_type(p)
    if use and not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f"only floating-point params can be perturbed; leaf {path!r} has "
          f"dtype {dtype}. Leave it out with perturbed_leaves.")


def check_grad_fn(grad_fn) -> None:
  if grad_fn is None:
    raise TypeError(
        "update() needs the keyword argument grad_fn: a function mapping "
        "params to the gradient of the loss at those params, e.g. "
        "grad_fn=lambda p: jax.grad(loss_fn)(p, batch).")
  if not callable(grad_fn):
    raise TypeError(f"grad_fn must be callable, got {type(grad_fn).__name__}.")


def call_grad_fn(grad_fn, perturbed_params: PyTree, grads: PyTree) -> PyTree:
  """Calls ``grad_fn`` and checks that its result matches ``grads``."""
  check_grad_fn(grad_fn)
  new_grads = grad_fn(perturbed_params)
  expected = jax.tree.structure(grads)
  if jax.tree.structure(new_grads) != expected:
    try:
      # Inside optax.masked, grad_fn may return the full tree.
      new_grads = leaf_filters.restrict_like(new_grads, grads)
    except (ValueError, TypeError):
      pass
  if jax.tree.structure(new_grads) != expected:
    raise TypeError(
        "grad_fn must return a gradient with the structure of the gradient "
        f"passed to update(); expected {expected}, got "
        f"{jax.tree.structure(new_grads)}.")
  mismatch = leaf_filters.shape_mismatch(new_grads, grads)
  if mismatch is not None:
    raise ValueError(f"grad_fn returned a gradient unlike params: {mismatch}.")
  return new_grads


def sharpness_aware_gradient(ascent_grads, params, rho, grad_fn, perturbable,
                             axis_name=None, *, steps: int = 1,
                             local: bool = False, **perturbation_options):
  """The gradient after ``steps`` ascent steps, averaged over ``axis_name``.

  Each step moves the point by ``eps`` (of norm ``rho``), built from the
  gradient at the point: first ``ascent_grads`` at ``params``, then
  ``grad_fn`` at each new point. With ``local`` (m-sharpness) the ascent
  follows each device's own gradient and only the last one is averaged;
  otherwise every gradient is the device mean.
  """
  point = params
  for _ in range(steps):
    eps = perturbation(ascent_grads, point, rho, perturbable,
                       **perturbation_options)
    point = add_perturbation(point, eps)
    here = call_grad_fn(grad_fn, point, ascent_grads)
    ascent_grads = here if local else sharding.mean_over(axis_name, here)
  return sharding.mean_over(axis_name, here) if local else ascent_grads


def current_rho(rho, count):
  """The value of ``rho`` (a number or an Optax schedule) at step ``count``."""
  return rho(count) if callable(rho) else rho


