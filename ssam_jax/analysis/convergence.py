r"""An empirical check of Theorems 1 and 2 of Mi et al. (SAM/SSAM convergence).

The theorems bound ``(1/T) sum_t E||grad f(w_t)||^2`` by
``C_1 / sqrt(T) + C_2 log(T) / sqrt(T)`` for ``eta_t = eta_0 / sqrt(t)`` and
``rho_t = rho_0 / sqrt(t)`` under Assumptions 1-3. This module provides a
smooth non-convex stochastic problem that satisfies them, runs
:func:`ssam_jax.sam` and :func:`ssam_jax.ssam` on it, and fits the rate.

The problem is robust (Cauchy / Lorentzian) linear regression,

  f(w) = (1/n) sum_i phi(a_i . w - b_i),    phi(z) = log(1 + z^2),

with stochastic gradients from minibatches of ``B`` examples drawn uniformly
with replacement. ``phi`` is non-convex (``phi'' < 0`` for ``|z| > 1``), and

  |phi'(z)| = 2|z| / (1 + z^2) <= 1,    |phi''(z)| = 2|1 - z^2| / (1 + z^2)^2 <= 2,

which give the constants of the assumptions (:func:`analytic_bounds`):

* Assumption 1, bounded gradient: ``grad f(w) = (1/n) sum_i phi'(z_i) a_i``,
  so ``||grad f(w)|| <= G = (1/n) sum_i ||a_i||``.
* Assumption 2, bounded variance: a minibatch gradient is the mean of ``B``
  i.i.d. per-example gradients ``g_i = phi'(z_i) a_i``, so
  ``E||g - grad f||^2 = (mean_i ||g_i||^2 - ||grad f||^2) / B
  <= sigma^2 = (1/(nB)) sum_i ||a_i||^2``.
* Assumption 3, L-smoothness: ``H(w) = (1/n) sum_i phi''(z_i) a_i a_i^T``, so
  ``|u^T H u| <= 2 u^T (A^T A / n) u`` for every unit ``u`` and
  ``||grad f(w) - grad f(v)|| <= L ||w - v||`` with ``L = 2 ||A||_2^2 / n``.

:func:`estimate_gradient_bound`, :func:`estimate_variance` and
:func:`estimate_smoothness` measure ``G``, ``sigma^2`` and ``L`` numerically
on random points, to be compared with these bounds.
"""

from collections.abc import Sequence
import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ssam_jax


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["features", "targets"],
                   meta_fields=["batch_size"])
@dataclasses.dataclass(frozen=True)
class Problem:
  """Robust regression data (a pytree; ``batch_size`` is static).

  Attributes:
    features: ``(n, d)``, the rows ``a_i``.
    targets: ``(n,)``, the ``b_i``.
    batch_size: ``B``, examples per stochastic gradient.
  """

  features: jax.Array
  targets: jax.Array
  batch_size: int


class Constants(NamedTuple):
  """``G``, ``sigma^2`` and ``L`` of Assumptions 1-3."""

  gradient_bound: float
  variance: float
  smoothness: float


def make_problem(key: jax.Array, num_examples: int = 512, dim: int = 10,
                 batch_size: int = 8, noise: float = 1.0) -> Problem:
  """Synthetic data: ``a_i ~ N(0, I)``, ``b_i = a_i . w* + noise * t_i``.

  The noise ``t_i`` is standard Cauchy (heavy tailed; ``phi`` is its negative
  log-likelihood up to a constant), ``w* ~ N(0, I)``.

  >>> import jax
  >>> p = make_problem(jax.random.key(0), num_examples=32, dim=3, batch_size=4)
  >>> p.features.shape, p.targets.shape, p.batch_size
  ((32, 3), (32,), 4)

  Args:
    key: PRNG key.
    num_examples: ``n``.
    dim: ``d``.
    batch_size: ``B``, the minibatch size of the stochastic gradients.
    noise: scale of the target noise.

  Returns:
    A :class:`Problem`.
  """
  k_a, k_w, k_t = jax.random.split(key, 3)
  features = jax.random.normal(k_a, (num_examples, dim))
  w_star = jax.random.normal(k_w, (dim,))
  targets = features @ w_star + noise * jax.random.cauchy(k_t, (num_examples,))
  return Problem(features, targets, batch_size)


def loss(problem: Problem, w: jax.Array, indices: jax.Array | None = None
         ) -> jax.Array:
  """``f(w)``, or the minibatch loss over ``indices`` when given.

  >>> import jax.numpy as jnp
  >>> p = Problem(jnp.array([[1.0], [2.0]]), jnp.array([0.0, 0.0]), 1)
  >>> round(float(loss(p, jnp.array([1.0]))), 4)  # (log 2 + log 5) / 2
  1.1513

  Args:
    problem: the data.
    w: parameters, shape ``(d,)``.
    indices: optional example indices of a minibatch.

  Returns:
    The mean of ``log(1 + (a_i . w - b_i)^2)``.
  """
  a, b = problem.features, problem.targets
  if indices is not None:
    a, b = a[indices], b[indices]
  return jnp.mean(jnp.log1p(jnp.square(a @ w - b)))


def sample_batch(problem: Problem, key: jax.Array) -> jax.Array:
  """``B`` example indices drawn uniformly with replacement."""
  return jax.random.randint(key, (problem.batch_size,), 0,
                            problem.features.shape[0])


def analytic_bounds(problem: Problem) -> Constants:
  """``G``, ``sigma^2`` and ``L`` derived in the module docstring.

  >>> import jax.numpy as jnp
  >>> p = Problem(jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.zeros(2), 2)
  >>> analytic_bounds(p)  # G = 3/2, sigma^2 = 5/4, L = 2 * 4 / 2
  Constants(gradient_bound=1.5, variance=1.25, smoothness=4.0)

  Args:
    problem: the data.

  Returns:
    :class:`Constants` (Python floats).
  """
  a = np.asarray(problem.features, np.float64)
  n = a.shape[0]
  row_norms = np.linalg.norm(a, axis=1)
  return Constants(
      gradient_bound=float(np.mean(row_norms)),
      variance=float(np.mean(row_norms ** 2) / problem.batch_size),
      smoothness=float(2 * np.linalg.norm(a, 2) ** 2 / n))


def stationary_point(problem: Problem, num_steps: int = 2000) -> jax.Array:
  """A stationary point of ``f``, the centre of the sampled points.

  Full-batch gradient descent with step ``1 / L`` (``L`` from
  :func:`analytic_bounds`) from the origin. (The least-squares fit is a poor
  start: the Cauchy outliers pull it into the flat region of ``f``.)
  """
  step = 1.0 / analytic_bounds(problem).smoothness
  return _gradient_descent(problem, jnp.zeros(problem.features.shape[1]), step,
                           num_steps)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def _gradient_descent(problem, w, step, num_steps):
  return jax.lax.fori_loop(
      0, num_steps, lambda _, v: v - step * full_gradient(problem, v), w)


def _unit_vectors(key: jax.Array, num: int, dim: int) -> jax.Array:
  u = jax.random.normal(key, (num, dim))
  return u / jnp.linalg.norm(u, axis=1, keepdims=True)


def _random_points(center: jax.Array, key: jax.Array, num_points: int,
                   scale: float) -> jax.Array:
  """Points ``center + scale * r * u``: ``u`` uniform on the sphere, ``r``
  uniform in [0, 1)."""
  k_u, k_r = jax.random.split(key)
  u = _unit_vectors(k_u, num_points, center.shape[0])
  r = jax.random.uniform(k_r, (num_points, 1))
  return center + scale * r * u


def full_gradient(problem: Problem, w: jax.Array) -> jax.Array:
  """``grad f(w)`` over all ``n`` examples."""
  return jax.grad(loss, argnums=1)(problem, w)


def minibatch_gradient(problem: Problem, w: jax.Array, key: jax.Array
                       ) -> jax.Array:
  """The stochastic gradient ``g(w)`` on a minibatch drawn with ``key``."""
  return jax.grad(loss, argnums=1)(problem, w, sample_batch(problem, key))


@functools.partial(jax.jit, static_argnames=("num_points",))
def _max_gradient_norm(problem, center, key, num_points, scale):
  points = _random_points(center, key, num_points, scale)
  grads = jax.vmap(functools.partial(full_gradient, problem))(points)
  return jnp.max(jnp.linalg.norm(grads, axis=1))


def estimate_gradient_bound(problem: Problem, key: jax.Array,
                            num_points: int = 2000, scale: float = 3.0
                            ) -> float:
  """``G``: the largest ``||grad f(w)||`` over random points.

  The points fill a ball of radius ``scale`` around :func:`stationary_point`.

  >>> import jax
  >>> p = make_problem(jax.random.key(0))
  >>> estimate_gradient_bound(p, jax.random.key(1)) <= analytic_bounds(p)[0]
  True

  Args:
    problem: the data.
    key: PRNG key for the points.
    num_points: how many points.
    scale: radius of the ball.

  Returns:
    The estimate (a Python float).
  """
  return float(_max_gradient_norm(problem, stationary_point(problem),
                                  key, num_points, scale))


@functools.partial(jax.jit, static_argnames=("num_batches",))
def monte_carlo_variance(problem: Problem, w: jax.Array, key: jax.Array,
                         num_batches: int = 2000) -> jax.Array:
  """``E||g(w) - grad f(w)||^2`` averaged over ``num_batches`` minibatches.

  >>> import jax, jax.numpy as jnp
  >>> p = Problem(jnp.array([[1.0], [1.0]]), jnp.array([0.0, 2.0]), 1)
  >>> float(monte_carlo_variance(p, jnp.array([1.0]), jax.random.key(0)))
  1.0
  """
  keys = jax.random.split(key, num_batches)
  grads = jax.vmap(functools.partial(minibatch_gradient, problem, w))(keys)
  deviation = grads - full_gradient(problem, w)
  return jnp.mean(jnp.sum(jnp.square(deviation), axis=1))


@functools.partial(jax.jit, static_argnames=("num_points", "num_batches"))
def _max_variance(problem, center, key, num_points, num_batches, scale):
  k_points, k_batches = jax.random.split(key)
  points = _random_points(center, k_points, num_points, scale)
  return jnp.max(jax.lax.map(
      lambda w: monte_carlo_variance(problem, w, k_batches, num_batches),
      points))


def estimate_variance(problem: Problem, key: jax.Array, num_points: int = 20,
                      num_batches: int = 2000, scale: float = 3.0) -> float:
  """``sigma^2``: the largest Monte Carlo ``E||g(w) - grad f(w)||^2``.

  >>> import jax
  >>> p = make_problem(jax.random.key(0))
  >>> estimate_variance(p, jax.random.key(1)) <= analytic_bounds(p)[1]
  True

  Args:
    problem: the data.
    key: PRNG key for the points and the minibatches.
    num_points: how many random points ``w`` (see
      :func:`estimate_gradient_bound`).
    num_batches: minibatches averaged at each point.
    scale: radius of the ball the points are drawn from.

  Returns:
    The estimate (a Python float).
  """
  return float(_max_variance(problem, stationary_point(problem), key,
                             num_points, num_batches, scale))


def exact_variance(problem: Problem, w: jax.Array) -> float:
  """``E||g(w) - grad f(w)||^2`` in closed form (sampling with replacement).

  >>> import jax, jax.numpy as jnp
  >>> p = Problem(jnp.array([[1.0], [1.0]]), jnp.array([0.0, 2.0]), 1)
  >>> exact_variance(p, jnp.array([1.0]))  # g = +-1 with mean 0: variance 1
  1.0
  """
  per_example = jax.vmap(
      lambda a, b: jax.grad(lambda v: jnp.log1p(jnp.square(a @ v - b)))(w))(
          problem.features, problem.targets)
  mean = jnp.mean(per_example, axis=0)
  second = jnp.mean(jnp.sum(jnp.square(per_example), axis=1))
  return float((second - jnp.sum(jnp.square(mean))) / problem.batch_size)


@functools.partial(jax.jit, static_argnames=("num_pairs",))
def _max_gradient_ratio(problem, center, key, num_pairs, scale):
  k_w, k_dir, k_len = jax.random.split(key, 3)
  w = _random_points(center, k_w, num_pairs, scale)
  direction = _unit_vectors(k_dir, num_pairs, w.shape[1])
  lengths = jnp.exp(jax.random.uniform(
      k_len, (num_pairs, 1), minval=jnp.log(1e-2), maxval=jnp.log(scale)))
  v = w + lengths * direction
  grad = jax.vmap(functools.partial(full_gradient, problem))
  return jnp.max(jnp.linalg.norm(grad(w) - grad(v), axis=1)
                 / jnp.linalg.norm(w - v, axis=1))


def estimate_smoothness(problem: Problem, key: jax.Array,
                        num_pairs: int = 4000, scale: float = 3.0) -> float:
  """``L``: the largest ``||grad f(w) - grad f(v)|| / ||w - v||`` over pairs.

  ``w`` is drawn as in :func:`estimate_gradient_bound` and ``v = w + delta``
  with ``||delta||`` log-uniform in [1e-2, scale] (near pairs probe the local
  curvature, far ones the global Lipschitz constant).

  >>> import jax
  >>> p = make_problem(jax.random.key(0))
  >>> estimate_smoothness(p, jax.random.key(1)) <= analytic_bounds(p)[2]
  True

  Args:
    problem: the data.
    key: PRNG key for the pairs.
    num_pairs: how many pairs.
    scale: radius of the ball of the first points, and the largest
      distance within a pair.

  Returns:
    The estimate (a Python float).
  """
  return float(_max_gradient_ratio(problem, stationary_point(problem),
                                   key, num_pairs, scale))


def inverse_sqrt_schedule(value0: float) -> optax.Schedule:
  """``value0 / sqrt(t)`` with ``t = count + 1`` (the first step is ``t = 1``).

  >>> [round(float(inverse_sqrt_schedule(2.0)(c)), 4) for c in range(3)]
  [2.0, 1.4142, 1.1547]
  """
  return lambda count: value0 / jnp.sqrt(jnp.asarray(count, jnp.float32) + 1)


def make_optimizer(name: str, eta0: float, rho0: float, sparsity: float = 0.5,
                   mask: ssam_jax.MaskStrategy | None = None,
                   mask_update_every: int = 10
                   ) -> optax.GradientTransformationExtraArgs:
  """``"sgd"``, ``"sam"`` or ``"ssam"`` on ``optax.sgd`` with the theorems' schedules.

  Args:
    name: which optimizer.
    eta0: ``eta_0`` of ``eta_t = eta_0 / sqrt(t)``.
    rho0: ``rho_0`` of ``rho_t = rho_0 / sqrt(t)``.
    sparsity: SSAM's sparsity.
    mask: SSAM's mask strategy (default: :func:`ssam_jax.fisher_mask`, with
      the accumulated squared gradients standing in for the Fisher).
    mask_update_every: SSAM's mask refresh interval.

  Returns:
    An optimizer whose ``update`` takes ``grad_fn``.
  """
  base = optax.sgd(inverse_sqrt_schedule(eta0))
  if name == "sgd":
    return optax.with_extra_args_support(base)
  if name == "sam":
    return ssam_jax.sam(base, rho=inverse_sqrt_schedule(rho0))
  if name == "ssam":
    return ssam_jax.ssam(base, rho=inverse_sqrt_schedule(rho0),
                         sparsity=sparsity, mask=mask,
                         mask_update_every=mask_update_every)
  raise ValueError(f"Unknown optimizer {name!r}; expected sgd, sam or ssam.")


def squared_gradient_norms(problem: Problem, optimizer, w0: jax.Array,
                           key: jax.Array, num_steps: int
                           ) -> tuple[jax.Array, jax.Array]:
  """``||grad f(w_t)||^2`` for ``t = 0 .. num_steps - 1`` of one stochastic run.

  ``w_t`` is the iterate before update ``t + 1``; each update draws a
  minibatch with ``key`` and passes the same batch's gradient as ``grad_fn``.
  Jit-compatible (a ``lax.scan``); ``vmap`` it over keys for several seeds.

  Returns:
    ``(squared_norms, w_T)``: the ``num_steps`` squared full-gradient norms
    and the final iterate.
  """

  def step(carry, step_key):
    w, state = carry
    batch_grad = lambda v: minibatch_gradient(problem, v, step_key)
    updates, state = optimizer.update(batch_grad(w), state, w,
                                      grad_fn=batch_grad)
    full = full_gradient(problem, w)
    return (optax.apply_updates(w, updates), state), jnp.sum(jnp.square(full))

  keys = jax.random.split(key, num_steps)
  (w_final, _), norms = jax.lax.scan(step, (w0, optimizer.init(w0)), keys)
  return norms, w_final


class Envelope(NamedTuple):
  """Rate fitted to a running average ``y(T)``.

  Attributes:
    slope: least-squares slope of ``log y`` against ``log T`` over
      log-spaced ``T >= t_min``.
    constant: the smallest ``C`` with ``y(T) <= C log(T) / sqrt(T)`` for all
      ``T >= t_min``.
    t_min: first ``T`` used.
  """

  slope: float
  constant: float
  t_min: int


def running_average(squared_norms: jax.Array) -> np.ndarray:
  """``(1/T) sum_{t<T} mean_seeds ||grad f(w_t)||^2`` for ``T = 1 .. num_steps``.

  >>> running_average(np.array([[4.0, 2.0], [2.0, 0.0]])).tolist()
  [3.0, 2.0]

  Args:
    squared_norms: ``(num_seeds, num_steps)``; the mean over seeds estimates
      the expectation.

  Returns:
    A float64 array of length ``num_steps``.
  """
  mean = np.mean(np.asarray(squared_norms, np.float64), axis=0)
  return np.cumsum(mean) / np.arange(1, mean.size + 1)


def fit_envelope(average: np.ndarray, t_min: int = 10) -> Envelope:
  """Fits the log-log slope and the ``C log T / sqrt(T)`` envelope.

  >>> t = np.arange(1, 1001)
  >>> env = fit_envelope(3.0 / np.sqrt(t), t_min=10)
  >>> round(env.slope, 3), round(env.constant, 3)  # max of 3 / log T at T=10
  (-0.5, 1.303)

  Args:
    average: the running average, ``average[T - 1]`` at ``T``.
    t_min: first ``T`` of the fit (>= 2, where ``log T > 0``).

  Returns:
    An :class:`Envelope`.
  """
  if not 2 <= t_min < average.size:
    raise ValueError(f"t_min must be in [2, {average.size - 1}], got {t_min}.")
  t = np.arange(1, average.size + 1, dtype=np.float64)
  sample = np.unique(np.geomspace(t_min, average.size, 50).astype(int)) - 1
  slope = np.polyfit(np.log(t[sample]), np.log(average[sample]), 1)[0]
  tail = slice(t_min - 1, None)
  constant = np.max(average[tail] * np.sqrt(t[tail]) / np.log(t[tail]))
  return Envelope(slope=float(slope), constant=float(constant), t_min=t_min)


def theorem_constants(constants: Constants, eta0: float, rho0: float,
                      loss_decrease: float) -> dict[str, float]:
  """``C_1, C_2`` of Theorem 1 and ``C_3, C_4`` of Theorem 2 of Mi et al.

  ``C_1 = 2 (f(w_0) - E f(w_T)) / eta_0``, ``C_2 = C_4 = 2 (L sigma^2 eta_0
  + L G rho_0)``, ``C_3 = C_1 + 2 L^2 rho_0^2 (1 + eta_0 L) pi^2 / 6``.

  Args:
    constants: ``G``, ``sigma^2``, ``L``.
    eta0: initial learning rate.
    rho0: initial radius.
    loss_decrease: ``f(w_0) - E f(w_T)``.

  Returns:
    A dict with keys ``C1``, ``C2``, ``C3``, ``C4``.
  """
  g, var, l = constants
  c1 = 2 * loss_decrease / eta0
  c2 = 2 * (l * var * eta0 + l * g * rho0)
  c3 = c1 + 2 * l ** 2 * rho0 ** 2 * (1 + eta0 * l) * math.pi ** 2 / 6
  return {"C1": c1, "C2": c2, "C3": c3, "C4": c2}


class ConvergenceCurve(NamedTuple):
  """One optimizer's running average and fitted envelope.

  Attributes:
    average: the running average of ``E||grad f(w_t)||^2``.
    envelope: its fitted rate (:func:`fit_envelope`).
    loss_decrease: ``f(w_0) - E f(w_T)`` (mean over seeds), which enters the
      constants of the theorems.
  """

  average: np.ndarray
  envelope: Envelope
  loss_decrease: float


def convergence_curves(problem: Problem, key: jax.Array, num_steps: int = 10_000,
                       num_seeds: int = 8, eta0: float = 1.0, rho0: float = 0.2,
                       optimizers: Sequence[str] = ("sgd", "sam", "ssam"),
                       sparsity: float = 0.5, t_min: int = 10,
                       w0: jax.Array | None = None
                       ) -> dict[str, ConvergenceCurve]:
  """Runs each optimizer ``num_seeds`` times and fits its rate.

  >>> import jax
  >>> p = make_problem(jax.random.key(0), num_examples=64, dim=4)
  >>> curves = convergence_curves(p, jax.random.key(1), num_steps=500,
  ...                             num_seeds=2, optimizers=("sam",))
  >>> c = curves["sam"]
  >>> bool(c.average[-1] < c.average[0] / 4), c.average.shape
  (True, (500,))

  Args:
    problem: the data.
    key: PRNG key; seed ``s`` uses ``fold_in(key, s)`` for its minibatches,
      the same for every optimizer.
    num_steps: ``T``.
    num_seeds: runs averaged for the expectation.
    eta0: ``eta_0``.
    rho0: ``rho_0`` (Theorem 2 assumes ``rho_0 <= G eta_0 / 2``).
    optimizers: names for :func:`make_optimizer`.
    sparsity: SSAM's sparsity.
    t_min: first ``T`` of the fit.
    w0: the common starting point (default: the origin).

  Returns:
    A dict from optimizer name to :class:`ConvergenceCurve`.
  """
  dim = problem.features.shape[1]
  w0 = jnp.zeros(dim) if w0 is None else w0
  seed_keys = jnp.stack([jax.random.fold_in(key, s) for s in range(num_seeds)])
  curves = {}
  for name in optimizers:
    optimizer = make_optimizer(name, eta0, rho0, sparsity)
    run = jax.jit(jax.vmap(functools.partial(
        squared_gradient_norms, problem, optimizer, w0, num_steps=num_steps)))
    squared_norms, finals = run(seed_keys)
    average = running_average(squared_norms)
    final_losses = jax.vmap(functools.partial(loss, problem))(finals)
    curves[name] = ConvergenceCurve(
        average=average, envelope=fit_envelope(average, t_min),
        loss_decrease=float(loss(problem, w0) - jnp.mean(final_losses)))
  return curves
