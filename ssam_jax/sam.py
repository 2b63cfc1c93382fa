"""SAM (Foret et al.) as an Optax gradient transformation."""

from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from ssam_jax import leaf_filters
from ssam_jax import perturbation
from ssam_jax import sharding
from ssam_jax import validation


PyTree = Any


class SAMState(NamedTuple):
  """State of the transformation returned by :func:`sam`.

  Attributes:
    count: number of updates taken (int32), the step that a ``rho``
      schedule is evaluated at.
    base_state: state of the base optimizer.
  """

  count: jax.Array
  base_state: optax.OptState


def sam(
    base_optimizer: optax.GradientTransformation,
    rho: Union[float, optax.Schedule] = 0.05,
    *,
    adaptive: bool = False,
    adaptive_eta: float = 0.01,
    perturbed_leaves: leaf_filters.LeafFilter = None,
    axis_name: Optional[Union[str, tuple]] = None,
    m_sharpness: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Sharpness-Aware Minimization around any Optax optimizer.

  ``update(grads, state, params, grad_fn=...)`` takes the gradient ``g`` at
  ``w``, forms ``eps = rho * g / ||g||`` with the global L2 norm over all
  perturbable leaves, and feeds ``grad_fn(w + eps)`` to ``base_optimizer``.
  Both gradients are computed in one ``update`` call, so the transformation
  chains like any other (unlike ``optax.contrib.sam``, it needs no
  alternating adversarial steps).

  A zero gradient gives ``eps = 0`` rather than NaN (``optax.contrib``'s
  ``normalize`` divides by zero there), as does a non-finite one. Unlike the
  common PyTorch implementations we add no ``1e-12`` to the norm, so
  ``||eps|| = rho`` exactly. With ``rho=0`` (a Python number) ``grad_fn`` is
  not called and the base optimizer is reproduced exactly.

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

  Args:
    base_optimizer: the optimizer that consumes the perturbed gradient.
    rho: radius of the perturbation, a number >= 0 or an Optax schedule
      (a function of the step count).
    adaptive: ASAM (Kwon et al.): scale the perturbation elementwise by
      ``T = |w| + adaptive_eta``, ``eps = rho * T^2 g / ||T g||``.
    adaptive_eta: the offset ``eta`` of ASAM.
    perturbed_leaves: which leaves may be perturbed: ``None`` for all, a
      pytree of Python booleans shaped like the params, or a callable
      mapping params to one (e.g. :func:`ssam_jax.kernels_only`). Other
      leaves are evaluated unperturbed and do not enter ``||g||``.
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

  Returns:
    An ``optax.GradientTransformationExtraArgs``. Its ``update`` requires
    ``params`` and the keyword argument ``grad_fn``, a function from params
    to the gradient of the loss at those params (same batch). Other keyword
    arguments are passed on to ``base_optimizer``.

  References:
    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, 2021

    Kwon et al., `ASAM: Adaptive Sharpness-Aware Minimization for
    Scale-Invariant Learning of Deep Neural Networks
    <https://arxiv.org/abs/2102.11600>`_, 2021
  """
  validation.check_rho(rho)
  validation.check_adaptive_eta(adaptive_eta)
  leaf_filters.check_leaf_filter(perturbed_leaves)
  validation.check_axis_options(axis_name, m_sharpness)
  base_optimizer = optax.with_extra_args_support(base_optimizer)

  def init_fn(params):
    return SAMState(count=jnp.zeros([], jnp.int32),
                    base_state=base_optimizer.init(params))

  def update_fn(updates, state, params=None, *, grad_fn=None, **extra_args):
    params = validation.require_params(params, "sam")
    grads = sharding.mean_over(axis_name, updates)
    if not validation.is_static_zero(rho):
      grads = perturbation.sharpness_aware_gradient(
          updates if m_sharpness else grads, params,
          perturbation.current_rho(rho, state.count), grad_fn,
          leaf_filters.resolve_leaf_filter(perturbed_leaves, params),
          axis_name=axis_name, adaptive=adaptive, adaptive_eta=adaptive_eta)
    updates, base_state = base_optimizer.update(
        grads, state.base_state, params, **extra_args)
    return updates, SAMState(count=optax.safe_increment(state.count),
                             base_state=base_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
