"""Mask strategies for sparse SAM: which parameters get perturbed.

A strategy is a :class:`MaskStrategy`, a tuple of pure functions that
:func:`ssam_jax.ssam` calls inside its ``update``:

* ``init(params, select)``: the first mask and the strategy's state.
* ``reselect(mask, state, inputs, select)``: a new mask and state on the
  steps that refresh the mask; ``None`` for a mask that never changes.
* ``accumulate_statistics(state, inputs)``: optional, called on every step
  before any refresh, for strategies that gather statistics between
  refreshes.

Neither is called while the mask is unused (a sparsity of 0 or 1, or a
static ``rho`` of 0), and the state then keeps its initial value. The state
is carried through ``jax.jit``, ``lax.scan`` and ``optax.inject_hyperparams``,
so it keeps its shapes and dtypes from one step to the next. The guide
"Writing your own mask strategy" (``docs/masks.md``) builds one.

``inputs`` is a :class:`MaskInputs`. ``select(scores, keep_fraction=...)``
applies the mask pattern (unstructured, tensorwise or N:M) to a pytree of
scores shaped like the params, keeping the configured fraction
``1 - sparsity`` unless told otherwise; it already excludes the leaves that
may not be perturbed. Every strategy starts from a random mask with the
right number of ones (Algorithm 1, line 1 of Mi et al.).
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ssam_jax import sharding
from ssam_jax import validation


PyTree = Any
_CRITERIA = ("gradient", "weight", "random")


class MaskInputs(NamedTuple):
  """What a strategy may look at on each step.

  Attributes:
    step: the optimizer's step count (0 on the first update), in SAM steps.
    grads: gradient at the unperturbed parameters ``w``, averaged over
      ``axis_name`` when there is one.
    params: the parameters ``w``.
    fisher_fn: the ``fisher_fn`` passed to ``update``, or ``None``.
    keep_fraction: fraction of perturbable parameters to perturb,
      ``1 - sparsity``.
  """

  step: jax.Array
  grads: PyTree
  params: PyTree
  fisher_fn: Optional[Callable[[PyTree], PyTree]]
  keep_fraction: Any


class MaskStrategy(NamedTuple):
  """How a sparse SAM mask is created and reselected (see module docstring).

  Attributes:
    init: ``init(params, select) -> (mask, state)``.
    reselect: ``reselect(mask, state, inputs, select) -> (mask, state)``, or
      ``None`` for a fixed mask.
    accumulate_statistics: ``accumulate_statistics(state, inputs) -> state``,
      or ``None``.
  """

  init: Callable
  reselect: Optional[Callable] = None
  accumulate_statistics: Optional[Callable] = None


class FisherMaskState(NamedTuple):
  """State of :func:`fisher_mask` with ``accumulate=True``.

  Without ``accumulate`` the state is ``optax.EmptyState()``.

  Attributes:
    squared_grad_sum: float32 sum of the squared minibatch gradients since
      the last refresh, shaped like the params.
    num_accumulated: how many gradients ``squared_grad_sum`` holds.
  """

  squared_grad_sum: PyTree
  num_accumulated: jax.Array


class DynamicMaskState(NamedTuple):
  """State of :func:`dynamic_mask`.

  Attributes:
    key: PRNG key for the random choices of the next refresh.
  """

  key: jax.Array


class RandomMaskState(NamedTuple):
  """State of :func:`random_mask` with ``resample=True``.

  Without ``resample`` the state is ``optax.EmptyState()``.

  Attributes:
    key: PRNG key of the next redraw.
  """

  key: jax.Array


def uniform_scores(key: jax.Array, params: PyTree) -> PyTree:
  """Independent U[0, 1) float32 scores shaped (and sharded) like ``params``."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  return jax.tree.unflatten(treedef, [
      sharding.shard_like(jax.random.uniform(k, p.shape, jnp.float32), p)
      for k, p in zip(keys, leaves)
  ])


def _random_initial_mask(seed: int):
  def init(params, select):
    return select(uniform_scores(jax.random.PRNGKey(seed), params))
  return init


def _squared_float32(grads: PyTree) -> PyTree:
  return jax.tree.map(lambda g: jnp.square(g.astype(jnp.float32)), grads)


def fisher_mask(accumulate: bool = False, seed: int = 0) -> MaskStrategy:
  """SSAM-F: perturb the parameters with the largest empirical Fisher.

  On every refresh the mask becomes the top of the diagonal empirical Fisher
  ``F = (1 / N_F) sum_i (grad log p(y_i | x_i))^2`` (Eqs. 5 and 6 of Mi et
  al.), selected globally across all perturbable leaves. The Fisher comes
  from the ``fisher_fn`` passed to ``update``, normally
  :func:`ssam_jax.empirical_fisher`, evaluated only on refresh steps: each
  refresh costs ``num_samples`` per-example gradients. A refresh without
  ``fisher_fn`` raises a ``TypeError``.

  ``accumulate=True`` ranks by a cheaper estimate instead, for loops that
  cannot pass ``fisher_fn``: the mean of the squared minibatch gradients
  that ``update`` received since the last refresh, the refresh step's
  included. Per parameter, with ``mu`` and ``sigma^2`` the mean and variance
  of the per-example gradients and ``B`` the batch size, its expectation is
  ``mu^2 + sigma^2 / B`` where the Fisher is ``mu^2 + sigma^2``: the
  per-example variance, usually the larger term, is divided by the batch
  size, so the ranking can differ from the paper's. It costs no extra
  gradient but 4 bytes per parameter of optimizer state, and ``update``
  must not get a ``fisher_fn`` (a ``TypeError`` says so), since the
  estimate would not use it.

  Args:
    accumulate: rank by the accumulated squared minibatch gradients above
      instead of by ``fisher_fn``.
    seed: seed of the random mask used before the first refresh.

  Returns:
    A :class:`MaskStrategy` for :func:`ssam_jax.ssam`. Its state is
    ``optax.EmptyState()``, or a :class:`FisherMaskState` with
    ``accumulate=True``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, ssam_jax
    >>> loss = lambda p, x: jnp.sum((p['w'] * x) ** 2)  # also one example's
    >>> x = jnp.array([[1.0, 1.0, 1.0, 1.0], [1.0, 3.0, 2.0, 0.0]])
    >>> opt = ssam_jax.ssam(optax.sgd(0.1), rho=0.05, sparsity=0.5,
    ...                     mask=ssam_jax.fisher_mask(), mask_update_every=10)
    >>> params = {'w': jnp.array([1.0, -2.0, 3.0, 0.5])}
    >>> state = opt.init(params)
    >>> updates, state = opt.update(
    ...     jax.grad(loss)(params, x), state, params,
    ...     grad_fn=lambda p: jax.grad(loss)(p, x),
    ...     fisher_fn=ssam_jax.empirical_fisher(loss, x, num_samples=2))
    >>> state.mask['w'].tolist()  # the largest Fisher entries
    [False, True, True, False]

  References:
    Mi et al., `Make Sharpness-Aware Minimization Stronger: A Sparsified
    Perturbation Approach <https://arxiv.org/abs/2210.05177>`_, 2022
  """
  validation.check_bool("accumulate", accumulate)
  validation.check_int("seed", seed)
  random_initial_mask = _random_initial_mask(seed)

  def init(params, select):
    if not accumulate:
      return random_initial_mask(params, select), optax.EmptyState()
    sums = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params)
    return random_initial_mask(params, select), FisherMaskState(
        squared_grad_sum=sums, num_accumulated=jnp.zeros([], jnp.int32))

  def accumulate_statistics(state, inputs):
    _check_no_fisher_fn(inputs)
    return FisherMaskState(
        squared_grad_sum=jax.tree.map(jnp.add, state.squared_grad_sum,
                                      _squared_float32(inputs.grads)),
        num_accumulated=state.num_accumulated + 1)

  def reselect_by_fisher_fn(mask, state, inputs, select):
    del mask
    if inputs.fisher_fn is None:
      raise TypeError(_MISSING_FISHER_FN)
    fisher = inputs.fisher_fn(inputs.params)
    if jax.tree.structure(fisher) != jax.tree.structure(inputs.params):
      raise TypeError(
          "fisher_fn must return a pytree with the structure of the params; "
          f"got {jax.tree.structure(fisher)}.")
    return select(fisher, inputs.keep_fraction), state

  def reselect_by_accumulated(mask, state, inputs, select):
    del mask
    _check_no_fisher_fn(inputs)
    count = jnp.maximum(state.num_accumulated, 1).astype(jnp.float32)
    estimate = jax.tree.map(lambda s: s / count, state.squared_grad_sum)
    reset = FisherMaskState(
        squared_grad_sum=jax.tree.map(jnp.zeros_like, state.squared_grad_sum),
        num_accumulated=jnp.zeros([], jnp.int32))
    return select(estimate, inputs.keep_fraction), reset

  if accumulate:
    return MaskStrategy(init=init, reselect=reselect_by_accumulated,
                        accumulate_statistics=accumulate_statistics)
  return MaskStrategy(init=init, reselect=reselect_by_fisher_fn)


def _check_no_fisher_fn(inputs: MaskInputs) -> None:
  if inputs.fisher_fn is not None:
    raise TypeError(
        "fisher_mask(accumulate=True) ranks by the squared minibatch "
        "gradients accumulated between refreshes and never calls fisher_fn: "
        "leave fisher_fn out of update(), or use fisher_mask() to rank by "
        "the empirical Fisher that fisher_fn computes.")


_MISSING_FISHER_FN = (
    "fisher_mask() ranks parameters by the empirical Fisher, so update() "
    "needs fisher_fn on the steps that refresh the mask: pass "
    "update(grads, state, params, grad_fn=..., fisher_fn=ssam_jax."
    "empirical_fisher(example_loss_fn, batch, num_samples=128)). To rank by "
    "squared minibatch gradients instead (an approximation, see its "
    "docstring), use fisher_mask(accumulate=True).")


def drop_fraction(step, drop_rate: float, total_steps: int) -> jax.Array:
  """Cosine-decayed drop rate ``alpha / 2 * (1 + cos(pi t / T))`` (Eq. 9)."""
  progress = jnp.minimum(jnp.asarray(step, jnp.float32) / total_steps, 1.0)
  return drop_rate / 2 * (1 + jnp.cos(math.pi * progress))


def dynamic_mask(
    total_steps: int,
    *,
    drop_rate: float = 0.5,
    drop_criterion: str = "gradient",
    growth_criterion: str = "random",
    seed: int = 0,
) -> MaskStrategy:
  """SSAM-D: a dynamic sparse mask that drops flat and regrows random entries.

  The mask starts random. On each refresh at step ``t`` (Eqs. 7 to 9 of Mi et
  al.), with ``k`` perturbed parameters:

  1. drop: of the ``k`` live entries, the ``N_drop`` with the lowest drop
     score stop being perturbed, where ``N_drop = f(t) * k`` and
     ``f(t) = drop_rate / 2 * (1 + cos(pi t / total_steps))``;
  2. grow: ``N_drop`` entries with the highest growth score among all
     entries not kept in step 1 (just-dropped ones included, as in Eq. 8)
     start being perturbed, so the count stays ``k``.

  Scores: ``"gradient"`` is ``|g|`` at ``w`` (drop the smallest, grow the
  largest), ``"weight"`` is ``|w|``, ``"random"`` is uniform noise from the
  PRNG key carried in the state. The paper drops by gradient and grows at
  random (the defaults).

  Differences from the official PyTorch code, which we do not follow: it
  lets only previously dead entries regrow, and its rounding can change the
  number of live entries; here the count stays exactly ``k`` (unstructured).

  Args:
    total_steps: ``T`` of the cosine decay, the number of training steps
      (the paper counts epochs; only the ratio ``t / T`` matters). There is
      no default: past ``T`` nothing is dropped, so a wrong ``T`` silently
      turns SSAM-D into a fixed random mask.
    drop_rate: ``alpha``, the fraction of live entries replaced at step 0.
    drop_criterion: ``"gradient"``, ``"weight"`` or ``"random"``.
    growth_criterion: ``"random"``, ``"gradient"`` or ``"weight"``.
    seed: seed of the initial mask and of the PRNG key in the state.

  Returns:
    A :class:`MaskStrategy` for :func:`ssam_jax.ssam`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, ssam_jax
    >>> opt = ssam_jax.ssam(optax.sgd(0.1), rho=0.05, sparsity=0.75,
    ...                     mask=ssam_jax.dynamic_mask(total_steps=100),
    ...                     mask_update_every=10)
    >>> state = opt.init({'w': jnp.zeros(8)})
    >>> int(state.mask['w'].sum())
    2

  References:
    Mi et al., `Make Sharpness-Aware Minimization Stronger: A Sparsified
    Perturbation Approach <https://arxiv.org/abs/2210.05177>`_, 2022
  """
  validation.check_number("drop_rate", drop_rate, minimum=0, maximum=1)
  validation.check_int("total_steps", total_steps, minimum=1)
  validation.check_choice("drop_criterion", drop_criterion, _CRITERIA)
  validation.check_choice("growth_criterion", growth_criterion, _CRITERIA)
  validation.check_int("seed", seed)

  def init(params, select):
    # A raw uint32 key, so that checkpoints and tree utilities treat it as
    # plain data.
    init_key, state_key = jax.random.split(jax.random.PRNGKey(seed))
    mask = select(uniform_scores(init_key, params))
    return mask, DynamicMaskState(key=state_key)

  def criterion_scores(criterion, key, inputs):
    if criterion == "gradient":
      return jax.tree.map(lambda g: jnp.abs(g.astype(jnp.float32)), inputs.grads)
    if criterion == "weight":
      return jax.tree.map(lambda p: jnp.abs(p.astype(jnp.float32)), inputs.params)
    return uniform_scores(key, inputs.params)

  def reselect(mask, state, inputs, select):
    key, drop_key, growth_key = jax.random.split(state.key, 3)
    surviving_fraction = inputs.keep_fraction * (
        1 - drop_fraction(inputs.step, drop_rate, total_steps))
    # Lowest drop scores go: keep the best of the live entries.
    drop_scores = criterion_scores(drop_criterion, drop_key, inputs)
    kept = select(jax.tree.map(lambda m, s: jnp.where(m, s, -jnp.inf),
                               mask, drop_scores), surviving_fraction)
    # Kept entries rank above everything; the rest compete to regrow.
    growth_scores = criterion_scores(growth_criterion, growth_key, inputs)
    new_mask = select(jax.tree.map(lambda m, s: jnp.where(m, jnp.inf, s),
                                   kept, growth_scores), inputs.keep_fraction)
    return new_mask, DynamicMaskState(key=key)

  return MaskStrategy(init=init, reselect=reselect)


def random_mask(seed: int = 0, resample: bool = False) -> MaskStrategy:
  """A random mask with the requested sparsity: the control baseline.

  Tells whether the Fisher or dynamic choice of parameters beats chance.
  By default the mask is drawn once and never changes (the experiments call
  SSAM with it ``ssam-random``). With ``resample=True`` it is drawn anew at
  every refresh, from a PRNG key carried in the state: the random control on
  SSAM-F's refresh schedule, at the cost of one selection per refresh.

  Args:
    seed: seed of the first mask and, with ``resample``, of the key.
    resample: redraw the mask at every refresh.

  Returns:
    A :class:`MaskStrategy` for :func:`ssam_jax.ssam`. Its state is
    ``optax.EmptyState()``, or a :class:`RandomMaskState` with
    ``resample=True``.

  Examples:
    >>> import jax.numpy as jnp, optax, ssam_jax
    >>> opt = ssam_jax.ssam(optax.sgd(0.1), rho=0.05, sparsity=0.5,
    ...                     mask=ssam_jax.random_mask(seed=1))
    >>> int(opt.init({'w': jnp.zeros(10)}).mask['w'].sum())
    5
  """
  validation.check_int("seed", seed)
  validation.check_bool("resample", resample)
  random_initial_mask = _random_initial_mask(seed)

  def init(params, select):
    mask = random_initial_mask(params, select)
    if not resample:
      return mask, optax.EmptyState()
    # A key apart from the first mask's, so the first redraw differs from it.
    return mask, RandomMaskState(
        key=jax.random.fold_in(jax.random.PRNGKey(seed), 1))

  def reselect(mask, state, inputs, select):
    del mask
    key, draw_key = jax.random.split(state.key)
    scores = uniform_scores(draw_key, inputs.params)
    return select(scores, inputs.keep_fraction), RandomMaskState(key=key)

  return MaskStrategy(init=init, reselect=reselect if resample else None)
