"""Sparse SAM (Mi et al.) as an Optax gradient transformation."""

import functools
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from ssam_jax import leaf_filters
from ssam_jax import masks
from ssam_jax import patterns
from ssam_jax import perturbation
from ssam_jax import sharding
from ssam_jax import validation

PyTree = Any


class SSAMState(NamedTuple):
  """State of the transformation returned by :func:`ssam`.

  Attributes:
    count: number of updates taken (int32). The mask is refreshed when
      ``count % mask_update_every == 0``.
    mask: boolean pytree shaped like the params; True where the parameter is
      perturbed. Leaves that may not be perturbed are all False. Found by
      ``optax.tree.get(state, "mask")`` even inside a chain.
    mask_state: state of the mask strategy (Fisher statistics, PRNG key).
    base_state: state of the base optimizer.
  """

  count: jax.Array
  mask: PyTree
  mask_state: Any
  base_state: optax.OptState


def _check_sparsity(sparsity, pattern) -> None:
  if validation.is_injected(sparsity):
    return
  if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
    raise TypeError(f"sparsity must be a number in [0, 1], got {sparsity!r}.")
  if not 0 <= sparsity <= 1:
    raise ValueError(f"sparsity must be in [0, 1], got {sparsity}.")
  if isinstance(pattern, patterns.NOfM) and 0 < sparsity < 1 and abs(
      (1 - sparsity) - pattern.density) > 1e-6:
    raise ValueError(
        f"sparsity={sparsity} does not match the {pattern.n}:{pattern.m} "
        f"pattern, which keeps {pattern.n}/{pattern.m} of each group: pass "
        f"sparsity={1 - pattern.density:g}.")


def _check_mask_update_every(mask_update_every) -> None:
  if validation.is_injected(mask_update_every):
    return
  if isinstance(mask_update_every, bool) or not isinstance(mask_update_every, int):
    raise TypeError(
        f"mask_update_every must be an int, got {mask_update_every!r}.")
  if mask_update_every < 1:
    raise ValueError(
        f"mask_update_every must be >= 1, got {mask_update_every}.")


def _selector(pattern, perturbable: tuple, params: PyTree, scores: PyTree,
              density) -> PyTree:
  """Applies ``pattern`` to the perturbable leaves; the others stay False.

  Each mask leaf is sharded like its parameter (see
  :func:`ssam_jax.sharding.shard_like`), whatever the pattern did.
  """
  leaves, treedef = jax.tree.flatten(scores)
  chosen = iter(pattern.select(
      [s for s, use in zip(leaves, perturbable) if use], density))
  return jax.tree.unflatten(treedef, [
      sharding.shard_like(
          next(chosen) if use else jnp.zeros(jnp.shape(s), bool), p)
      for s, p, use in zip(leaves, jax.tree.leaves(params), perturbable)
  ])


def ssam(
    base_optimizer: optax.GradientTransformation,
    rho: Union[float, optax.Schedule] = 0.05,
    sparsity: float = 0.5,
    *,
    mask: Optional[masks.MaskStrategy] = None,
    mask_update_every: int = 1,
    pattern: patterns.PatternLike = "unstructured",
    normalize: str = "full",
    adaptive: bool = False,
    adaptive_eta: float = 0.01,
    perturbed_leaves: leaf_filters.LeafFilter = None,
    axis_name: Optional[Union[str, tuple]] = None,
    m_sharpness: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Sparse SAM: perturb only a masked subset of the parameters.

  Follows Algorithm 1 of Mi et al. On step 0 and every ``mask_update_every``
  steps the mask strategy regenerates the boolean mask ``m`` (inside the
  jitted update, under ``jax.lax.cond``: no recompilation, and ``fisher_fn``
  runs only on those steps). Then

    eps = rho * (g / ||g||) * m,     gradient = grad_fn(w + eps)

  where ``||g||`` is the norm of the full, unmasked gradient (Sec. 4.1), or of
  ``g * m`` with ``normalize="masked"`` (so that ``||eps|| = rho``, and the
  gradient of unperturbed tensors is not needed for the perturbation).

  With the unstructured pattern the mask has exactly
  ``floor((1 - sparsity) * d)`` ones, ``d`` the number of perturbable
  parameters. ``sparsity=0`` reproduces :func:`ssam_jax.sam` exactly;
  ``sparsity=1`` reproduces the base optimizer exactly and, when it is a
  Python number, never calls ``grad_fn`` or ``fisher_fn``.

  Differences from the official PyTorch code (which we do not follow): it
  refreshes the mask after the step that triggers it, only at the start of
  an epoch, sums rather than averages the Fisher (the ranking is the same),
  and adds ``1e-7`` to ``||g||``. See :func:`dynamic_mask` for SSAM-D.

  >>> import jax, jax.numpy as jnp, optax, ssam_jax
  >>> loss = lambda p, x: jnp.mean((x @ p['w'] - 1.0) ** 2)
  >>> example_loss = lambda p, x: loss(p, x[None])
  >>> x = jax.random.normal(jax.random.key(0), (16, 4))
  >>> opt = ssam_jax.ssam(optax.sgd(0.05, momentum=0.9), rho=0.1,
  ...                     sparsity=0.5, mask=ssam_jax.fisher_mask(),
  ...                     mask_update_every=10)
  >>> params = {'w': jnp.zeros(4)}
  >>> state = opt.init(params)
  >>> @jax.jit
  ... def train_step(params, state, x):
  ...   value, grads = jax.value_and_grad(loss)(params, x)
  ...   updates, state = opt.update(
  ...       grads, state, params,
  ...       grad_fn=lambda p: jax.grad(loss)(p, x),
  ...       fisher_fn=ssam_jax.empirical_fisher(example_loss, x, num_samples=8))
  ...   return optax.apply_updates(params, updates), state, value
  >>> params, state, value = train_step(params, state, x)
  >>> int(state.mask['w'].sum())
  2

  Args:
    base_optimizer: the optimizer that consumes the perturbed gradient.
    rho: radius of the perturbation, a number >= 0 or an Optax schedule.
    sparsity: fraction of perturbable parameters NOT perturbed, in [0, 1].
      For an ``"N:M"`` pattern it must equal ``1 - N/M``.
    mask: the mask strategy: :func:`fisher_mask` (SSAM-F, the default),
      :func:`dynamic_mask` (SSAM-D) or :func:`random_mask`.
    mask_update_every: refresh interval ``T_m`` in steps (>= 1). The paper
      refreshes about once per epoch: pass the number of steps per epoch.
    pattern: ``"unstructured"``, ``"tensorwise"`` or ``"N:M"`` such as
      ``"2:4"`` (see :mod:`ssam_jax.patterns`).
    normalize: ``"full"`` (the paper) or ``"masked"``.
    adaptive: ASAM-style elementwise scaling by ``|w| + adaptive_eta``.
    adaptive_eta: the offset of ASAM.
    perturbed_leaves: which leaves may be perturbed (see :func:`sam`);
      ``d`` counts only these. With ``optax.inject_hyperparams``, name it in
      ``static_args`` (it would otherwise be taken for a schedule).
    axis_name: the data axis inside ``shard_map``/``pmap`` (see :func:`sam`);
      the Fisher is averaged over it too.
    m_sharpness: per-device perturbations (see :func:`sam`); the mask stays
      global.

  Returns:
    An ``optax.GradientTransformationExtraArgs``. Its ``update`` requires
    ``params`` and ``grad_fn`` (see :func:`sam`), and takes ``fisher_fn`` for
    :func:`fisher_mask`, and ``refresh``: ``None`` (default) refreshes on the
    schedule above, under ``lax.cond``; a Python bool decides statically
    instead (the schedule is then the caller's, e.g.
    ``refresh=step % mask_update_every == 0`` counted on the host, at the
    cost of two compilations). Use it on CPU: XLA:CPU runs the convolutions
    of ``fisher_fn`` about 4x slower inside ``lax.cond``
    (jax-ml/jax#12868), and the untaken ``cond`` still slowed every other
    step by about 14% on a small CNN (``python -m benchmarks.step_time``).
    Other keyword arguments go to ``base_optimizer``.

  References:
    Mi et al., `Make Sharpness-Aware Minimization Stronger: A Sparsified
    Perturbation Approach <https://arxiv.org/abs/2210.05177>`_, 2022
  """
  mask = masks.fisher_mask() if mask is None else mask
  if not isinstance(mask, masks.MaskStrategy):
    raise TypeError(
        "mask must be a MaskStrategy such as ssam_jax.fisher_mask(), "
        f"ssam_jax.dynamic_mask(...) or ssam_jax.random_mask(); got {mask!r}.")
  pattern = patterns.resolve_pattern(pattern)
  validation.check_rho(rho)
  _check_sparsity(sparsity, pattern)
  _check_mask_update_every(mask_update_every)
  validation.check_adaptive_eta(adaptive_eta)
  leaf_filters.check_leaf_filter(perturbed_leaves)
  validation.check_axis_options(axis_name, m_sharpness)
  if normalize not in perturbation.NORMALIZATIONS:
    raise ValueError(
        f"normalize must be one of {perturbation.NORMALIZATIONS}, got {normalize!r}.")
  base_optimizer = optax.with_extra_args_support(base_optimizer)
  density = 1 - sparsity
  never_perturbs = validation.is_static_zero(density)
  # A static sparsity of 0 perturbs everything: applying the all-True mask
  # would only cost a select (and change XLA's fusion, so results would no
  # longer match sam() bit for bit).
  always_dense = validation.is_static_zero(sparsity)

  def init_fn(params):
    perturbable = leaf_filters.resolve_leaf_filter(perturbed_leaves, params)
    select = functools.partial(_selector, pattern, perturbable, params,
                               density=density)
    initial_mask, mask_state = mask.init(params, select)
    return SSAMState(count=jnp.zeros([], jnp.int32), mask=initial_mask,
                     mask_state=mask_state, base_state=base_optimizer.init(params))

  def refreshed_mask(state, updates, params, fisher_fn, perturbable, refresh):
    mask_state = mask.observe(state.mask_state, updates, fisher_fn is not None)
    if mask.refresh is None or never_perturbs or refresh is False:
      return state.mask, mask_state
    inputs = masks.RefreshInputs(step=state.count, grads=updates, params=params,
                                 fisher_fn=fisher_fn, density=density)
    select = functools.partial(_selector, pattern, perturbable, params)
    do_refresh = lambda: mask.refresh(state.mask, mask_state, inputs, select)
    if refresh:
      return do_refresh()
    return jax.lax.cond(state.count % mask_update_every == 0, do_refresh,
                        lambda: (state.mask, mask_state))

  def update_fn(updates, state, params=None, *, grad_fn=None, fisher_fn=None,
                refresh=None, **extra_args):
    params = validation.require_params(params, "ssam")
    if refresh is not None and not isinstance(refresh, bool):
      raise TypeError("refresh must be None or a Python bool (static, known "
                      f"when tracing); got {refresh!r}.")
    perturbable = leaf_filters.resolve_leaf_filter(perturbed_leaves, params)
    grads = sharding.mean_over(axis_name, updates)
    if fisher_fn is not None and axis_name is not None:
      local_fisher_fn = fisher_fn
      fisher_fn = lambda p: sharding.mean_over(axis_name, local_fisher_fn(p))
    new_mask, mask_state = refreshed_mask(state, grads, params, fisher_fn,
                                          perturbable, refresh)
    if not (never_perturbs or validation.is_static_zero(rho)):
      grads = perturbation.sharpness_aware_gradient(
          updates if m_sharpness else grads, params,
          perturbation.current_rho(rho, state.count), grad_fn, perturbable,
          axis_name=axis_name, mask=None if always_dense else new_mask,
          normalize=normalize, adaptive=adaptive, adaptive_eta=adaptive_eta)
    updates, base_state = base_optimizer.update(
        grads, state.base_state, params, **extra_args)
    return updates, SSAMState(count=optax.safe_increment(state.count),
                              mask=new_mask, mask_state=mask_state,
                              base_state=base_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
