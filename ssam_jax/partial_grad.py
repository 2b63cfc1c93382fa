"""A first gradient for the perturbed tensors only: the tensorwise fast path.

SAM needs two gradients per step: ``g`` at ``w``, used only to build the
perturbation ``eps``, and the gradient at ``w + eps``, used for the update.
When the mask perturbs whole tensors (``pattern="tensorwise"``) and ``eps`` is
normalised over the masked gradient (``normalize="masked"``), ``eps`` depends
on ``g`` of the perturbed tensors alone. Differentiating with respect to
those tensors only lets JAX skip the weight gradients of all the others, and
the backward pass below the lowest perturbed layer.

Use it only with ``pattern="tensorwise"`` and ``normalize="masked"``: with
other settings ``eps`` depends on the gradient of unperturbed entries, which
this path replaces by zeros. For the same reason, do not combine it with
``fisher_mask(accumulate=True)`` (the accumulator would sum those zeros);
pass ``fisher_fn`` with ``fisher_mask()``, or use ``dynamic_mask`` or
``random_mask``, whose refreshes run on the full-gradient steps.

The set of perturbed tensors must be static (Python booleans) for that, so
the training loop reads it from the optimizer state after each mask refresh
with :func:`perturbed_tensors` and passes it as a static argument: ``jax.jit``
then compiles once per distinct set and reuses the cache. On refresh steps
the new set is not yet known, so those steps take the full gradient::

  @functools.partial(jax.jit, static_argnames="perturbed")
  def train_step(params, state, batch, perturbed):
    grad = (jax.value_and_grad(loss_fn) if perturbed is None
            else ssam_jax.value_and_partial_grad(loss_fn, wrt=perturbed))
    loss, grads = grad(params, batch)
    updates, state = opt.update(grads, state, params,
                                grad_fn=lambda p: jax.grad(loss_fn)(p, batch))
    return optax.apply_updates(params, updates), state, loss

  perturbed = None
  for step, batch in enumerate(batches):
    refresh = step % mask_update_every == 0
    params, state, loss = train_step(params, state, batch,
                                     None if refresh else perturbed)
    if refresh:
      perturbed = ssam_jax.perturbed_tensors(state)   # one small device read
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any


def value_and_partial_grad(
    fun: Callable[..., Any],
    wrt: Sequence[bool],
    has_aux: bool = False,
) -> Callable[..., tuple[Any, PyTree]]:
  """Like ``jax.value_and_grad(fun)``, but differentiates only some leaves.

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
