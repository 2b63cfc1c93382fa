"""A first gradient for the perturbed tensors only: the tensorwise fast path.

SAM needs two gradients per step: ``g`` at ``w``, used only to build the
perturbation ``eps``, and the gradient at ``w + eps``, used for the update.
When the mask perturbs whole tensors (``pattern="tensorwise"``) and ``eps`` is
normalised over the masked gradient (``normalize="masked"``), ``eps`` depends
on ``g`` of the perturbed tensors alone. Differentiating with respect to
those tensors only lets JAX skip the weight gradients of all the others, and
the backward pass below the lowest perturbed layer.

The optimizer checks that it may: pass the leaves you differentiated to
``update`` as ``grads_wrt``, and :func:`ssam_jax.ssam` (or
:func:`ssam_jax.sam`) raises a ``ValueError`` when its update would read a
gradient left out, namely when

* ``eps`` is normalised over every perturbable leaf (``normalize="full"``,
  SAM, or a sparsity of 0) and ``grads_wrt`` leaves one out;
* the base optimizer consumes the gradient at ``w`` (``rho`` or the
  fraction kept a static 0) and ``grads_wrt`` leaves any leaf out;
* the strategy accumulates statistics from every gradient
  (``fisher_mask(accumulate=True)``);
* the mask may be reselected in this update: the new mask may perturb
  other tensors, and ``dynamic_mask`` ranks by the full gradient. So the
  refresh schedule must be the caller's (``mask_update_every="manual"``)
  and the update ``refresh=False``; on refresh steps take the full
  gradient. ``fisher_mask()`` with ``fisher_fn``, ``dynamic_mask`` and
  ``random_mask`` all work this way.

What it cannot check is ``grads_wrt`` against the mask, which is traced:
``grads_wrt`` must cover every tensor the current mask perturbs, as
:func:`perturbed_tensors` read after the last refresh does. A tensor left
out gets a zero ``eps``. With unstructured or N:M masks nearly every tensor
is perturbed, so only ``"tensorwise"`` saves work.

The set of perturbed tensors must be static (Python booleans) for that, so
the training loop reads it from the optimizer state after each mask refresh
with :func:`perturbed_tensors` and passes it as a static argument: ``jax.jit``
then compiles once per distinct set and reuses the cache. On refresh steps
the new set is not yet known, so those steps take the full gradient::

  opt = ssam_jax.ssam(base, rho, sparsity, pattern="tensorwise",
                      normalize="masked", mask=ssam_jax.dynamic_mask(T),
                      mask_update_every="manual")

  @functools.partial(jax.jit, static_argnames=("perturbed", "refresh"))
  def train_step(params, state, batch, perturbed, refresh):
    grad = (jax.value_and_grad(loss_fn) if perturbed is None
            else ssam_jax.value_and_partial_grad(loss_fn, wrt=perturbed))
    loss, grads = grad(params, batch)
    updates, state = opt.update(grads, state, params, refresh=refresh,
                                grads_wrt=perturbed,
                                grad_fn=lambda p: jax.grad(loss_fn)(p, batch))
    return optax.apply_updates(params, updates), state, loss

  perturbed = None
  for step, batch in enumerate(batches):
    refresh = step % mask_update_every == 0
    params, state, loss = train_step(params, state, batch,
                                     None if refresh else perturbed, refresh)
    if refresh:
      perturbed = ssam_jax.perturbed_tensors(state)   # one small device read
"""

from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssam_jax import leaf_filters

PyTree = Any


def value_and_partial_grad(
    fun: Callable[..., Any],
    wrt: Sequence[bool],
    has_aux: bool = False,
) -> Callable[..., tuple[Any, PyTree]]:
  """Like ``jax.value_and_grad(fun)``, but differentiates only some leaves.

  Pass the same ``wrt`` to the optimizer's ``update`` as ``grads_wrt``, so
  that it checks that it reads none of the zeros (see the module docstring).

  Args:
    fun: ``fun(params, *args)``, returning a scalar (or ``(scalar, aux)``
      with ``has_aux``).
    wrt: one static Python bool per leaf of ``params`` (in
      ``jax.tree.leaves`` order), e.g. from :func:`perturbed_tensors`. Only
      these leaves are differentiated.
    has_aux: whether ``fun`` returns ``(value, aux)``.

  Returns:
    A function of ``(params, *args)`` returning ``(value, grads)`` where
    ``grads`` is shaped like ``params``, with zeros (constants, never
    computed) for the other leaves.

  Examples:
    >>> import jax.numpy as jnp, ssam_jax
    >>> loss = lambda p: jnp.sum(p['a'] ** 2) + jnp.sum(3 * p['b'])
    >>> value, grads = ssam_jax.value_and_partial_grad(loss, wrt=(True, False))(
    ...     {'a': jnp.array([1.0, 2.0]), 'b': jnp.array([1.0])})
    >>> float(value), grads['a'].tolist(), grads['b'].tolist()
    (8.0, [2.0, 4.0], [0.0])
  """
  wrt = tuple(bool(w) for w in wrt)

  def value_and_grads(params, *args):
    leaves, treedef = jax.tree.flatten(params)
    if len(leaves) != len(wrt):
      raise ValueError(
          f"wrt has {len(wrt)} entries but params has {len(leaves)} leaves.")

    def fun_of_differentiated(differentiated):
      chosen = iter(differentiated)
      merged = [next(chosen) if w else leaf for leaf, w in zip(leaves, wrt)]
      return fun(jax.tree.unflatten(treedef, merged), *args)

    value, partial = jax.value_and_grad(fun_of_differentiated, has_aux=has_aux)(
        [leaf for leaf, w in zip(leaves, wrt) if w])
    computed = iter(partial)
    grads = [next(computed) if w else jnp.zeros_like(leaf)
             for leaf, w in zip(leaves, wrt)]
    return value, jax.tree.unflatten(treedef, grads)

  return value_and_grads


def perturbed_tensors(state: optax.OptState) -> tuple[bool, ...]:
  """Which leaves the SSAM mask in ``state`` perturbs at all, as Python bools.

  Reads ``optax.tree.get(state, "mask")`` to the host (one boolean per leaf):
  call it once after each mask refresh, not inside a jitted function.

  Args:
    state: an optimizer state containing an :class:`ssam_jax.SSAMState`,
      possibly inside a chain or wrapper.

  Returns:
    One bool per leaf of the params, True where any entry is perturbed: the
    ``wrt`` of :func:`value_and_partial_grad`.

  Examples:
    >>> import jax.numpy as jnp, optax, ssam_jax
    >>> opt = ssam_jax.ssam(optax.sgd(0.1), sparsity=0.5,
    ...                     mask=ssam_jax.random_mask(), pattern="tensorwise")
    >>> ssam_jax.perturbed_tensors(opt.init({'a': jnp.ones(4), 'b': jnp.ones(4)}))
    (True, False)
  """
  mask = optax.tree.get(state, "mask")
  if mask is None:
    raise ValueError("state holds no SSAM mask (no field named 'mask').")
  any_perturbed = jax.device_get([jnp.any(m) for m in jax.tree.leaves(mask)])
  return tuple(bool(np.asarray(a)) for a in any_perturbed)


def check_grads_wrt(grads_wrt, params, *, required: Sequence[bool],
                    why_required: str, forbidden: Optional[str]) -> None:
  """Raises unless ``update`` may take a gradient of ``grads_wrt`` only.

  Args:
    grads_wrt: the ``grads_wrt`` keyword of ``update``: one static Python
      bool per leaf of ``params``.
    params: the parameters.
    required: one bool per leaf: the leaves whose gradient the update reads
      in full.
    why_required: the reason, for the error message.
    forbidden: None, or why no leaf may be left out in this update.
  """
  leaves = jax.tree.leaves(params)
  if (not isinstance(grads_wrt, (tuple, list))
      or not all(isinstance(w, bool) for w in grads_wrt)):
    raise TypeError("grads_wrt must be a tuple of Python bools, one per leaf "
                    "of params (e.g. from ssam_jax.perturbed_tensors); got "
                    f"{grads_wrt!r}.")
  if len(grads_wrt) != len(leaves):
    raise ValueError(f"grads_wrt has {len(grads_wrt)} entries but params has "
                     f"{len(leaves)} leaves.")
  if all(grads_wrt):
    return
  if forbidden is not None:
    raise ValueError(
        f"grads_wrt leaves some leaves out, but {forbidden}: take the full "
        "first gradient here (see ssam_jax.partial_grad).")
  missing = [path for path, need, w in zip(
      leaf_filters.leaf_paths(params), required, grads_wrt) if need and not w]
  if missing:
    raise ValueError(
        f"grads_wrt leaves out {missing[0]!r}, whose gradient the update "
        f"reads: {why_required} (see ssam_jax.partial_grad).")
