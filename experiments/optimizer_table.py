"""The one table from an optimizer's name to its builder and its step's needs.

Every program here builds its optimizers through :func:`build`: the trainer
(``experiments.optimizers`` fills :class:`Hyperparams` from the config), the
benchmarks, the analysis demo, the convergence study and the sharding tests.

All names share one base, SGD with momentum and weight decay added to the
gradient (PyTorch's ``weight_decay``):
``chain(add_decayed_weights(weight_decay), sgd(learning_rate, momentum))``.
Every optimizer follows Optax's extra-arguments contract: its ``update``
takes ``grad_fn(params)``, ``fisher_fn`` and ``refresh`` and ignores what it
does not use, so one train step (``experiments.steps``) serves them all.

* ``sgd``: the base alone.
* ``sam``: :func:`ssam_jax.sam` around the base.
* ``optax-sam``: ``optax.contrib.sam`` (opaque mode, one ascent step), the
  Optax implementation of SAM, for comparison.
* ``ssam-f``: SSAM-F, :func:`ssam_jax.fisher_mask` ranked by the empirical
  Fisher of the ``fisher_fn`` that the step passes.
* ``ssam-f-accumulated``: the Fisher mask ranked by the squared minibatch
  gradients accumulated between refreshes (``fisher_mask(accumulate=True)``);
  the step passes no ``fisher_fn``.
* ``ssam-d``: SSAM-D, :func:`ssam_jax.dynamic_mask`.
* ``ssam-random``: SSAM with a fixed :func:`ssam_jax.random_mask`, the
  control for the Fisher and dynamic masks at the same sparsity.
* ``ssam-random-resampled``: the random mask drawn anew at every refresh
  (``random_mask(resample=True)``), on the Fisher mask's schedule: the
  control that differs from SSAM-F only in how the mask is chosen.

Every row that perturbs, except ``optax-sam``, takes a cheaper ascent
(``experiments.ascents``), which :func:`build` wraps around the row's
optimizer.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple, Optional

import optax

import ssam_jax
from experiments import ascents


@dataclasses.dataclass(frozen=True)
class Hyperparams:
  """What a builder reads; each builder ignores the fields it has no use for.

  The algorithm's values have no defaults here: they live in the configs
  (``experiments/configs/common.py``), which
  ``experiments.optimizers.config_hyperparams`` and ``default_hyperparams``
  read.

  Attributes:
    learning_rate: of the base, a number or an Optax schedule.
    momentum: of the base; ``None`` for none.
    weight_decay: added to the gradient before the base.
    rho: radius of the perturbation, a number or a schedule.
    sparsity: fraction of the parameters SSAM does not perturb.
    pattern: SSAM's mask pattern: ``"unstructured"``, ``"tensorwise"`` or
      ``"N:M"``.
    normalize: ``"full"`` (the paper) or ``"masked"``.
    drop_rate: SSAM-D's drop rate ``alpha``.
    total_steps: the length of SSAM-D's drop-rate decay.
    mask_update_every: ``T_m``, the refresh interval of a reselecting mask
      in steps.
    seed: seed of the masks.
    static_refresh: ``True``: the caller decides on the host which steps
      refresh the mask and passes ``refresh`` to every ``update``
      (``experiments.steps.RefreshPlan``); ``False``: the optimizer follows
      its own schedule under ``lax.cond``.
    perturbed_leaves: regex on ``"Module_0/kernel"`` leaf paths that may be
      perturbed; ``None``: every leaf.
    skip_nonfinite_steps: ``N > 0`` wraps the base in
      ``optax.apply_if_finite(base, N)`` (see ``experiments.divergence``).
    axis_name: the data axis inside ``shard_map`` (see :func:`ssam_jax.sam`).
    m_sharpness: per-device perturbations (see :func:`ssam_jax.sam`).
    ascent: ``"always"`` (SAM's ascent on every update), ``"scheduled"``,
      ``"looksam"`` or ``"msam"`` (see ``experiments.ascents``).
    ascent_every: ``k`` of ``"scheduled"`` and ``"looksam"``.
    ascent_probability: ``p`` of ``"scheduled"`` in ``[0, 1)``; 0 ascends
      every ``ascent_every`` updates, ``p > 0`` needs ``ascent_every=1``.
    looksam_alpha: LookSAM's ``alpha``.
    ascent_batch_fraction: the fraction of the batch the train step takes
      the first gradient on (``experiments.steps``), in ``(0, 1]``.
    static_ascent: ``True``: the caller decides on the host which updates
      of ``"scheduled"`` and ``"looksam"`` ascend and passes ``ascend`` to
      every ``update`` (:attr:`Built.host_ascent`); ``False``: the
      optimizer decides under ``lax.cond`` (``p`` drawn from a key in its
      state).
  """

  learning_rate: optax.ScalarOrSchedule
  momentum: Optional[float]
  weight_decay: float
  rho: optax.ScalarOrSchedule
  sparsity: float
  pattern: str
  normalize: str
  drop_rate: float
  total_steps: int
  mask_update_every: int
  seed: int
  static_refresh: bool = False
  perturbed_leaves: Optional[str] = None
  skip_nonfinite_steps: int = 0
  axis_name: Optional[str] = None
  m_sharpness: bool = False
  ascent: str = "always"
  ascent_every: int = 1
  ascent_probability: float = 0.0
  looksam_alpha: Optional[float] = None
  ascent_batch_fraction: float = 1.0
  static_ascent: bool = False


Builder = Callable[[Hyperparams], optax.GradientTransformationExtraArgs]


class OptimizerEntry(NamedTuple):
  """One row of the table.

  Attributes:
    build: ``build(hyperparams)``, the optimizer.
    sharpness_aware: it perturbs the parameters (calls ``grad_fn``): the
      configs give it ``weight_decay_sam`` rather than ``weight_decay_sgd``.
    uses_fisher_fn: the step must pass ``fisher_fn``.
    has_mask: its state holds an SSAM mask (``mask_density``, fast path).
    reselects: its mask changes on refreshes, every ``mask_update_every``
      steps; otherwise the mask, if any, is fixed at ``init``.
  """

  build: Builder
  sharpness_aware: bool
  uses_fisher_fn: bool = False
  has_mask: bool = False
  reselects: bool = False


class UnknownOptimizerError(ValueError):
  """A name that is not in :data:`OPTIMIZERS`."""


class Built(NamedTuple):
  """An optimizer built from the table, with the facts its step needs.

  Attributes:
    name: its name in the table.
    optimizer: the ``GradientTransformationExtraArgs``.
    entry: its row of the table.
    hyperparams: what it was built from.
  """

  name: str
  optimizer: optax.GradientTransformationExtraArgs
  entry: OptimizerEntry
  hyperparams: Hyperparams

  def num_fisher_samples(self, available: int) -> int:
    """``available`` if the step must pass ``fisher_fn``, else 0 (none)."""
    return available if self.entry.uses_fisher_fn else 0

  def step_options(self, available_fisher_samples: int) -> dict:
    """The keyword arguments ``experiments.steps.make_train_step`` needs for
    this optimizer: ``num_fisher_samples`` and ``ascent_batch_fraction``."""
    return {"num_fisher_samples": self.num_fisher_samples(
                available_fisher_samples),
            "ascent_batch_fraction": self.hyperparams.ascent_batch_fraction}

  @property
  def host_refresh_every(self) -> Optional[int]:
    """``T_m`` if the caller owns the refresh schedule (a static
    ``refresh``), else ``None``: no mask, a fixed one, or the optimizer's
    own schedule."""
    if self.entry.reselects and self.hyperparams.static_refresh:
      return self.hyperparams.mask_update_every
    return None

  @property
  def host_ascent(self) -> Optional[ascents.HostAscent]:
    """Which updates ascend, if the caller owns the ascent schedule (a
    static ``ascend``), else ``None``: every update, or the optimizer's
    own schedule."""
    return ascents.host_ascent(self.hyperparams)


def _base(hp: Hyperparams) -> optax.GradientTransformation:
  base = optax.chain(optax.add_decayed_weights(hp.weight_decay),
                     optax.sgd(hp.learning_rate, momentum=hp.momentum))
  if hp.skip_nonfinite_steps:
    # Inside the SAM/SSAM wrapper it checks the sharpness-aware gradient that
    # is applied; wrapped around the outside it would check only the first.
    base = optax.apply_if_finite(base, hp.skip_nonfinite_steps)
  return base


def _perturbed_leaves(hp: Hyperparams):
  if hp.perturbed_leaves is None:
    return None
  return ssam_jax.leaves_matching(hp.perturbed_leaves)


def _sgd(hp: Hyperparams) -> optax.GradientTransformationExtraArgs:
  return optax.with_extra_args_support(_base(hp))


def _sam(hp: Hyperparams) -> optax.GradientTransformationExtraArgs:
  return ssam_jax.sam(_base(hp), rho=hp.rho,
                      perturbed_leaves=_perturbed_leaves(hp),
                      axis_name=hp.axis_name, m_sharpness=hp.m_sharpness)


def _optax_sam(hp: Hyperparams) -> optax.GradientTransformationExtraArgs:
  unsupported = {"perturbed_leaves": hp.perturbed_leaves,
                 "axis_name": hp.axis_name, "m_sharpness": hp.m_sharpness}
  for name, value in unsupported.items():
    if value:
      raise ValueError(f"{name}={value!r}: optax-sam (optax.contrib.sam) "
                       "supports no such option; use sam.")
  adversary = optax.chain(optax.contrib.normalize(), optax.sgd(hp.rho))
  optimizer = optax.contrib.sam(_base(hp), adversary, sync_period=2,
                                opaque_mode=True)

  # optax.contrib.sam calls grad_fn(params, state); the shared step passes
  # grad_fn(params).
  def update_fn(updates, state, params=None, *, grad_fn, **extra_args):
    del extra_args  # fisher_fn, refresh: not used
    return optimizer.update(updates, state, params,
                            grad_fn=lambda p, _: grad_fn(p))

  return optax.GradientTransformationExtraArgs(optimizer.init, update_fn)


def _ssam(mask: Callable[[Hyperparams], ssam_jax.MaskStrategy],
          reselects: bool) -> Builder:

  def build(hp: Hyperparams) -> optax.GradientTransformationExtraArgs:
    if not reselects:
      mask_update_every = None  # nothing to refresh
    elif hp.static_refresh:
      mask_update_every = "manual"  # refresh= on every update
    else:
      mask_update_every = hp.mask_update_every
    return ssam_jax.ssam(
        _base(hp), rho=hp.rho, sparsity=hp.sparsity, mask=mask(hp),
        mask_update_every=mask_update_every, pattern=hp.pattern,
        normalize=hp.normalize, perturbed_leaves=_perturbed_leaves(hp),
        axis_name=hp.axis_name, m_sharpness=hp.m_sharpness)

  return build


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry(_sgd, sharpness_aware=False),
    "sam": OptimizerEntry(_sam, sharpness_aware=True),
    "optax-sam": OptimizerEntry(_optax_sam, sharpness_aware=True),
    "ssam-f": OptimizerEntry(
        _ssam(lambda hp: ssam_jax.fisher_mask(seed=hp.seed), reselects=True),
        sharpness_aware=True, uses_fisher_fn=True, has_mask=True,
        reselects=True),
    "ssam-f-accumulated": OptimizerEntry(
        _ssam(lambda hp: ssam_jax.fisher_mask(accumulate=True, seed=hp.seed),
              reselects=True),
        sharpness_aware=True, has_mask=True, reselects=True),
    "ssam-d": OptimizerEntry(
        _ssam(lambda hp: ssam_jax.dynamic_mask(
            drop_rate=hp.drop_rate, total_steps=hp.total_steps, seed=hp.seed),
              reselects=True),
        sharpness_aware=True, has_mask=True, reselects=True),
    "ssam-random": OptimizerEntry(
        _ssam(lambda hp: ssam_jax.random_mask(seed=hp.seed), reselects=False),
        sharpness_aware=True, has_mask=True),
    "ssam-random-resampled": OptimizerEntry(
        _ssam(lambda hp: ssam_jax.random_mask(seed=hp.seed, resample=True),
              reselects=True),
        sharpness_aware=True, has_mask=True, reselects=True),
}


def get(name: str) -> OptimizerEntry:
  """The row of ``name``; raises :class:`UnknownOptimizerError` naming the
  known ones."""
  if name not in OPTIMIZERS:
    raise UnknownOptimizerError(
        f"optimizer={name!r}: unknown; expected one of "
        f"{', '.join(OPTIMIZERS)}.")
  return OPTIMIZERS[name]


def build(name: str, hyperparams: Hyperparams) -> Built:
  """The optimizer ``name`` built from ``hyperparams``, with its row.

  Raises:
    ValueError: for an ascent ``name`` cannot take (``ascents.check``).
  """
  entry = get(name)
  ascents.check(name, entry.sharpness_aware, hyperparams)
  optimizer = ascents.wrap(entry.build(hyperparams), hyperparams)
  return Built(name, optimizer, entry, hyperparams)


def check_fast_path(name: str, hyperparams: Hyperparams) -> None:
  """Raises a ValueError unless the tensor-wise fast path computes the same
  update as the full first gradient.

  The partial first gradient leaves the unperturbed tensors' gradients at
  zero, which only a tensor-wise mask with masked normalisation never reads;
  and the perturbed tensors must be known on the host, so a reselecting mask
  must be refreshed statically.
  """
  entry = get(name)
  if not entry.has_mask:
    raise ValueError(f"fast_path needs a sparse optimizer, got {name!r}.")
  if hyperparams.pattern != "tensorwise" or hyperparams.normalize != "masked":
    raise ValueError("fast_path needs pattern='tensorwise' and normalize='masked'"
                     f", got pattern={hyperparams.pattern!r}, "
                     f"normalize={hyperparams.normalize!r}.")
  if entry.reselects and not hyperparams.static_refresh:
    raise ValueError("fast_path needs static_refresh=True: the perturbed "
                     "tensors must be known on the host.")
  ascents.check_fast_path(hyperparams)
