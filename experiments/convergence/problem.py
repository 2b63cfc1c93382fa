r"""A stochastic non-convex problem satisfying Assumptions 1-3 of Mi et al.

Theorems 1 and 2 (SAM/SSAM convergence) assume a bounded gradient, bounded
variance and L-smoothness; this module builds a problem with all three and
measures its constants (:mod:`experiments.convergence.rates` runs the
optimizers on it).

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

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


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
