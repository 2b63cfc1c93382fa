"""When :func:`ssam_jax.ssam` reselects its mask: one owner of the schedule.

``mask_update_every`` states the schedule once, at construction:

* an int ``T_m >= 1`` (or a value injected by ``optax.inject_hyperparams``):
  the library refreshes on the updates whose count is a multiple of
  ``T_m``, under ``jax.lax.cond`` inside the jitted update. ``update``
  then refuses a ``refresh`` argument.
* ``"manual"``: the caller owns the schedule and passes
  ``refresh=<Python bool>`` to every ``update``. The refresh is then traced
  at top level, outside ``lax.cond``: one compilation per value, and the
  fast option on CPU (see :mod:`ssam_jax.workarounds`).
* ``None`` (the default): for masks that are never reselected, such as
  :func:`ssam_jax.random_mask` without ``resample``. A strategy that
  reselects needs one of the two above, since every refresh has a cost.

Nothing is reselected, and no statistics are accumulated, while the mask is
unused: a sparsity of 0 or 1 (static, or injected and tested on each step)
or a static ``rho`` of 0.
"""

from typing import Any, Callable

import jax

from ssam_jax import validation

MANUAL = "manual"


def check_mask_update_every(mask_update_every: Any, *, reselects: bool,
                            injected: bool) -> None:
  """Validates ``mask_update_every`` against the strategy at construction.

  Args:
    mask_update_every: the argument of :func:`ssam_jax.ssam`.
    reselects: whether the mask may ever be reselected.
    injected: whether the sparsity is an array (``inject_hyperparams``), so
      that it is not known at construction whether the mask is used.
  """
  if isinstance(mask_update_every, str):
    if mask_update_every != MANUAL:
      raise ValueError(
          "mask_update_every must be an int >= 1, 'manual' or None; got "
          f"{mask_update_every!r}.")
    return
  if mask_update_every is not None:
    validation.check_int("mask_update_every", mask_update_every, minimum=1,
                         injectable=True)
    return
  if reselects:
    raise ValueError(
        "mask_update_every is None, but this mask strategy reselects the mask"
        + (" (with an injected sparsity ssam cannot tell at construction "
           "that the mask is unused)" if injected else "")
        + ": pass mask_update_every=<steps between refreshes> (the paper "
        "refreshes about once per epoch: pass the number of steps per "
        "epoch), or mask_update_every='manual' to pass refresh=<Python "
        "bool> to every update(). A refresh costs what the strategy's "
        "reselect computes: fisher_mask() calls fisher_fn (num_samples "
        "per-example gradients); dynamic_mask, random_mask(resample=True) "
        "and fisher_mask(accumulate=True) rank all perturbable parameters.")


def due(mask_update_every: Any, step: jax.Array, refresh: Any):
  """Whether this update refreshes: a Python bool, or a traced bool.

  Args:
    mask_update_every: the checked argument of :func:`ssam_jax.ssam`.
    step: the update count (traced).
    refresh: the ``refresh`` keyword ``update`` received, or None.

  Returns:
    ``refresh`` with ``"manual"``, False with ``None``, else
    ``step % mask_update_every == 0``.
  """
  if isinstance(mask_update_every, str):
    if refresh is None:
      raise TypeError(
          "mask_update_every='manual' leaves the refresh schedule to the "
          "caller: update() needs refresh=<Python bool> on every call, True "
          "on the updates that reselect the mask (e.g. refresh=step % "
          "steps_per_epoch == 0, counted on the host).")
    if not isinstance(refresh, bool):
      raise TypeError("refresh must be a Python bool (static, known when "
                      f"tracing); got {refresh!r}.")
    return refresh
  if refresh is not None:
    raise ValueError(
        f"update() got refresh={refresh!r}, but mask_update_every="
        f"{mask_update_every!r} already owns the refresh schedule. Either "
        "drop refresh, or pass mask_update_every='manual' to ssam() to "
        "decide every refresh in the loop.")
  if mask_update_every is None:
    return False
  return step % mask_update_every == 0


def both(a, b):
  """``a and b`` for Python or traced bools, folding the Python ones."""
  if a is False or b is False:
    return False
  if a is True:
    return b
  if b is True:
    return a
  return a & b


def when(pred, fn: Callable[[], Any], otherwise: Callable[[], Any]):
  """``fn()`` if ``pred`` else ``otherwise()``: in Python for a Python bool,
  under ``jax.lax.cond`` for a traced one."""
  if isinstance(pred, bool):
    return fn() if pred else otherwise()
  return jax.lax.cond(pred, fn, otherwise)
