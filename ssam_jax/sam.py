"""SAM (Foret et al.) as an Optax gradient transformation."""

from typing import Any, NamedTuple, Optional, Union

import jax
import optax

from ssam_jax import _core
from ssam_jax import leaf_filters
from ssam_jax import validation


PyTree = Any


class SAMState(NamedTuple):
  """State of the transformation returned by :func:`sam`.

  Attributes:
    count: number of SAM steps taken (int32), the step that a ``rho``
      schedule is evaluated at.
    base_state: state of the base optimizer.
  """

  count: jax.Array
  base_state: optax.OptState


def sam(
    base_optimizer: optax.GradientTransformation,
    rho: Union[float, optax.Schedule] = 0.05,
    *,
    adaptive_eta: Optional[float] = None,
    perturbed_leaves: leaf_filters.LeafFilter = None,
    axis_name: Optional[Union[str, tuple]] = None,
    m_sharpness: bool = False,
    sync_period: Optional[int] = None,
    transparent: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Sharpness-Aware Minimization around any Optax optimizer.

  ``update(grads, state, params, grad_fn=...)`` takes the gradient ``g`` at
  ``w``, forms ``eps = rho * g / ||g||`` with the global L2 norm over all
  perturbable leaves, and feeds ``grad_fn(w + eps)`` to ``base_optimizer``.
  Both gradients are computed in one ``update`` call, so the transformation
  chains like any other. With ``adaptive_eta`` it is ASAM:
  ``eps = rho * T^2 g / ||T g||`` with ``T = |w| + adaptive_eta``.

  ``sync_period > 2`` takes several ascent steps (as ``optax.contrib.sam``
  does): ``sync_period - 1`` times, the point moves by ``eps`` built from
  the gradient there, so the last point is up to
  ``(sync_period - 1) * rho`` from ``w``, and the base optimizer gets the
  gradient at it. ``grad_fn`` is called once per ascent step. For loops
  that cannot pass ``grad_fn``, ``transparent=True`` spreads the step over
  ``sync_period`` calls of ``update`` instead, as ``optax.contrib.sam``'s
  default mode does (see :mod:`ssam_jax.transparent` for its caveats).

  Non-finite values: a zero or non-finite ``||g||``, or a non-finite
  ``rho`` (say, from a schedule), gives ``eps = 0``: the step is the base
  optimizer's step with ``grad_fn(w)``, and the parameters are never set to
  NaN by the perturbation. Unlike the common PyTorch implementations we add
  no ``1e-12`` to the norm, so ``||eps|| = rho`` exactly. To skip steps whose
  gradients are not finite, wrap with ``optax.apply_if_finite``, which
  checks the gradient it is given: ``sam(optax.apply_if_finite(base, n))``
  checks the perturbed gradient ``grad_fn(w + eps)``, which the base
  optimizer consumes; ``optax.apply_if_finite(sam(base), n)`` checks only
  ``g``, so a NaN that only ``grad_fn`` produces passes through. Nest both
  to guard both gradients.

  With ``rho=0`` (a Python number) ``grad_fn`` is not called and the base
  optimizer is reproduced exactly.

  Args:
    base_optimizer: the optimizer that consumes the perturbed gradient.
    rho: radius of the perturbation, a number >= 0 or an Optax schedule
      (a function of the step count).
    adaptive_eta: None for SAM; a number >= 0 for ASAM (Kwon et al.), the
      offset ``eta`` in ``T = |w| + eta`` (Kwon et al. use 0.01).
    perturbed_leaves: which leaves may be perturbed: ``None`` for all, a
      pytree of Python booleans shaped like the params, or a callable
      mapping params to one (e.g. :func:`ssam_jax.kernels_only`). Other
      leaves are evaluated unperturbed and do not enter ``||g||``. A filter
      that selects no leaf raises a ``ValueError`` at ``init``.
    axis_name: inside ``shard_map`` or ``pmap``, the name of the data axis.
      ``update`` then takes local gradients and averages over that axis the
      gradient at ``w`` (so ``eps``, the mask and ``||g||`` are global), the
      gradient at ``w + eps`` and the Fisher. Leave it None under ``jax.jit``
      with sharded arrays, where reductions are already global.
    m_sharpness: with ``axis_name``, perturb each device's parameters with its
      own local gradient and average the perturbed gradients (m-sharpness of
      Foret et al., Sec. 4.1, with m the per-device batch). Often generalises
      better than a global perturbation at large batch sizes; it changes the
      algorithm, so results depend on the number of devices.
    sync_period: the number of ascent steps plus one, an int >= 2, named
      as in ``optax.contrib.sam``; None (default) is 2, SAM. With
      ``transparent``, the number of ``update`` calls per SAM step. It is
      static: with ``optax.inject_hyperparams``, name it in ``static_args``.
    transparent: False: one SAM step per ``update`` call, with ``grad_fn``.
      True: no ``grad_fn``; the ascent and descent steps are separate calls
      and the returned updates move the loop's parameters to the perturbed
      point and back (see :mod:`ssam_jax.transparent`). The state is then a
      :class:`ssam_jax.transparent.TransparentState`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``. Its ``update`` requires
    ``params`` (floating point where perturbed) and, unless ``transparent``,
    the keyword argument ``grad_fn``, a function from params to the gradient
    of the loss at those params (same batch); ``grads`` must have the leaves
    and shapes of ``params``. It takes ``grads_wrt``, the leaves ``grads``
    was differentiated with respect to (see :mod:`ssam_jax.partial_grad`),
    checked against the update's needs. Other keyword arguments are passed
    on to ``base_optimizer``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, ssam_jax
    >>> loss = lambda p: jnp.sum((p['w'] - 1.0) ** 2)
    >>> opt = ssam_jax.sam(optax.sgd(0.1), rho=0.05)
    >>> params = {'w': jnp.zeros(3)}
    >>> state = opt.init(params)
    >>> for _ in range(50):
    ...   grads = jax.grad(loss)(params)
    ...   updates, state = opt.update(grads, state, params, grad_fn=jax.grad(loss))
    ...   params = optax.apply_updates(params, updates)
    >>> bool(jnp.allclose(params['w'], 1.0, atol=0.05))
    True

  References:
    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, 2021

    Kwon et al., `ASAM: Adaptive Sharpness-Aware Minimization for
    Scale-Invariant Learning of Deep Neural Networks
    <https://arxiv.org/abs/2102.11600>`_, 2021
  """
  validation.check_rho(rho)
  options = _core.check_options(adaptive_eta, perturbed_leaves, axis_name,
                                m_sharpness, sync_period, transparent)
  return _core.sharpness_aware(base_optimizer, rho, options, None,
                               name="sam", state_type=SAMState)
