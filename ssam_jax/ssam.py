"""Sparse SAM (Mi et al.) as an Optax gradient transformation."""

from typing import Any, NamedTuple, Optional, Union

import jax
import optax

from ssam_jax import _core
from ssam_jax import leaf_filters
from ssam_jax import masks
from ssam_jax import patterns
from ssam_jax import perturbation
from ssam_jax import refresh
from ssam_jax import validation

PyTree = Any


class SSAMState(NamedTuple):
  """State of the transformation returned by :func:`ssam`.

  Attributes:
    count: number of SAM steps taken (int32). With an int
      ``mask_update_every`` the mask is refreshed when
      ``count % mask_update_every == 0``.
    mask: boolean pytree shaped like the params; True where the parameter is
      perturbed. Leaves that may not be perturbed are all False. Found by
      ``optax.tree.get(state, "mask")`` even inside a chain.
    mask_state: state of the mask strategy (Fisher statistics, PRNG key),
      as the strategy's ``init`` made it; it stays so while the mask is
      unused (a sparsity of 0 or 1, or a static ``rho`` of 0).
    base_state: state of the base optimizer.
  """

  count: jax.Array
  mask: PyTree
  mask_state: Any
  base_state: optax.OptState


def _keep_fraction(sparsity, pattern):
  """``1 - sparsity``, checked against an ``"N:M"`` pattern.

  Without ``sparsity``, an N:M pattern implies it, and other patterns
  default to 0.5.
  """
  n_out_of_m = isinstance(pattern, patterns.NOutOfM)
  if sparsity is None:
    return pattern.keep_fraction if n_out_of_m else 1 - 0.5
  validation.check_number("sparsity", sparsity, minimum=0, maximum=1,
                          injectable=True)
  if (n_out_of_m and not validation.is_injected(sparsity) and 0 < sparsity < 1
      and abs((1 - sparsity) - pattern.keep_fraction) > 1e-6):
    raise ValueError(
        f"sparsity={sparsity} does not match the {pattern.keep}:"
        f"{pattern.group_size} pattern, which keeps {pattern.keep} of every "
        f"{pattern.group_size}: pass sparsity={1 - pattern.keep_fraction:g} "
        "or None.")
  return 1 - sparsity


def ssam(
    base_optimizer: optax.GradientTransformation,
    rho: Union[float, optax.Schedule] = 0.05,
    sparsity: Optional[float] = None,
    *,
    mask: Optional[masks.MaskStrategy] = None,
    mask_update_every: Union[int, str, None] = None,
    pattern: patterns.PatternLike = "unstructured",
    normalize: str = "full",
    adaptive_eta: Optional[float] = None,
    perturbed_leaves: leaf_filters.LeafFilter = None,
    axis_name: Optional[Union[str, tuple]] = None,
    m_sharpness: bool = False,
    sync_period: Optional[int] = None,
    transparent: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Sparse SAM: perturb only a masked subset of the parameters.

  Follows Algorithm 1 of Mi et al. On step 0 and every ``mask_update_every``
  steps the mask strategy reselects the boolean mask ``m`` (inside the
  jitted update, under ``jax.lax.cond``: no recompilation, and ``fisher_fn``
  runs only on those steps; see :mod:`ssam_jax.refresh`). Then

    eps = rho * (g / ||g||) * m,     gradient = grad_fn(w + eps)

  where ``||g||`` is the norm of the full, unmasked gradient (Sec. 4.1), or of
  ``g * m`` with ``normalize="masked"`` (so that ``||eps|| = rho``, and the
  gradient of unperturbed tensors is not needed for the perturbation).

  With the unstructured pattern the mask has exactly
  ``floor((1 - sparsity) * d)`` ones, ``d`` the number of perturbable
  parameters. ``sparsity=0`` reproduces :func:`ssam_jax.sam` exactly;
  ``sparsity=1`` reproduces the base optimizer exactly, as does ``rho=0``.
  While the mask is unused it is never reselected and the strategy's state
  does not change; with a static ``sparsity=1`` or ``rho=0`` neither
  ``grad_fn`` nor ``fisher_fn`` is called.
  Non-finite values are handled as in :func:`ssam_jax.sam`.

  Differences from the official PyTorch code (which we do not follow): it
  refreshes the mask after the step that triggers it, only at the start of
  an epoch, sums rather than averages the Fisher (the ranking is the same),
  and adds ``1e-7`` to ``||g||``. See :func:`dynamic_mask` for SSAM-D.

  Args:
    base_optimizer: the optimizer that consumes the perturbed gradient.
    rho: radius of the perturbation, a number >= 0 or an Optax schedule.
    sparsity: fraction of perturbable parameters NOT perturbed, in [0, 1].
      None: the fraction an ``"N:M"`` pattern implies, ``1 - N/M``, and 0.5
      for other patterns. With ``"N:M"`` a number must equal ``1 - N/M``.
    mask: the mask strategy: :func:`fisher_mask` (SSAM-F, the default),
      :func:`dynamic_mask` (SSAM-D), :func:`random_mask`, or your own
      :class:`MaskStrategy`.
    mask_update_every: who refreshes the mask, and how often. An int
      ``T_m >= 1``: the update refreshes it every ``T_m`` steps. The paper
      refreshes about once per epoch: pass the number of steps per epoch.
      Each refresh costs what the strategy computes: :func:`fisher_mask`
      calls ``fisher_fn``, ``num_samples`` per-example gradients, and with
      ``T_m=1`` its step costs several SGD steps. ``"manual"``: the caller
      passes ``refresh`` to every update. ``None`` (default): only for a mask
      that is never reselected (:func:`random_mask` without ``resample``, or
      a static sparsity of 0 or 1); otherwise a ``ValueError``.
    pattern: ``"unstructured"``, ``"tensorwise"`` or ``"N:M"`` such as
      ``"2:4"`` (see :mod:`ssam_jax.patterns`). With ``"N:M"``, the input
      axis (-2) of every perturbed kernel must be a multiple of ``M``
      (checked at ``init``).
    normalize: ``"full"`` (the paper) or ``"masked"``.
    adaptive_eta: None, or ASAM's ``eta`` (see :func:`sam`).
    perturbed_leaves: which leaves may be perturbed (see :func:`sam`);
      ``d`` counts only these. With ``optax.inject_hyperparams``, name it in
      ``static_args`` (it would otherwise be taken for a schedule).
    axis_name: the data axis inside ``shard_map``/``pmap`` (see :func:`sam`);
      the Fisher is averaged over it too.
    m_sharpness: per-device perturbations (see :func:`sam`); the mask stays
      global.
    sync_period: the ascent steps plus one (see :func:`sam`); every ascent
      step uses the same mask.
    transparent: take one SAM step over ``sync_period`` calls, without
      ``grad_fn`` (see :mod:`ssam_jax.transparent`); the mask is refreshed
      on the first call of a SAM step.

  Returns:
    An ``optax.GradientTransformationExtraArgs``. Its ``update`` requires
    ``params`` and ``grad_fn`` (see :func:`sam`), and takes

    * ``fisher_fn``: on refresh steps, required by :func:`fisher_mask` (and
      refused with ``accumulate=True``);
    * ``refresh``: with ``mask_update_every="manual"`` only, and then on
      every call: a Python bool, True on the updates that refresh the mask
      (e.g. ``refresh=step % steps_per_epoch == 0`` counted on the host).
      The refresh is then traced outside ``lax.cond``, at the cost of two
      compilations: the fast option on CPU, where XLA runs convolutions
      inside ``lax.cond`` slowly (see :mod:`ssam_jax.workarounds`);
    * ``grads_wrt``: the leaves ``grads`` was differentiated with respect
      to, for the tensor-wise fast path (see :mod:`ssam_jax.partial_grad`),
      checked against the update's needs.

    Other keyword arguments go to ``base_optimizer``.

  Examples:
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
  keep_fraction = _keep_fraction(sparsity, pattern)
  validation.check_choice("normalize", normalize, perturbation.NORMALIZATIONS)
  options = _core.check_options(adaptive_eta, perturbed_leaves, axis_name,
                                m_sharpness, sync_period, transparent)
  stage = _core.MaskStage(mask, pattern, keep_fraction, mask_update_every,
                          normalize)
  refresh.check_mask_update_every(
      mask_update_every, reselects=_core.make_plan(rho, stage).reselects,
      injected=validation.is_injected(keep_fraction))
  if transparent and isinstance(mask_update_every, str):
    raise ValueError(
        "mask_update_every='manual' needs refresh= on every update, which a "
        "loop using transparent=True cannot pass: pass an int.")
  return _core.sharpness_aware(base_optimizer, rho, options, stage,
                               name="ssam", state_type=SSAMState)
