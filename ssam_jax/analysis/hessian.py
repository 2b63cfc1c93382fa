"""Hessian spectra: HVPs, Lanczos top eigenvalues and the spectral density.

Fig. 5 of Mi et al. reports the Hessian spectrum of the training loss with
its dominant eigenvalue ``lambda_1`` and the ratio ``lambda_1 / lambda_5``,
estimated with the Lanczos algorithm as in Ghorbani et al. (2019).

* :func:`hvp`: the Hessian-vector product ``H v`` by forward-over-reverse
  differentiation (``jax.jvp`` of ``jax.grad``) on any params pytree.
* :func:`lanczos`: ``num_steps`` Lanczos iterations with full
  reorthogonalisation: one jitted iteration, called from a Python loop rather
  than a ``lax.fori_loop``, because XLA:CPU runs the convolutions of an HVP
  slowly inside a loop body (see :mod:`ssam_jax.workarounds`). It stores the
  Krylov basis, ``num_steps`` vectors of the size of the model: memory is
  ``num_steps * num_params * 4`` bytes.
* :func:`top_eigenvalues`: the ``k`` largest Ritz values.
* :func:`spectral_density`: stochastic Lanczos quadrature (SLQ) with
  Gaussian broadening: every probe's tridiagonal matrix ``T`` gives nodes
  ``theta_j`` (eigenvalues of ``T``) and weights ``tau_j`` (squared first
  components of its eigenvectors); the density is
  ``mean_probes sum_j tau_j N(t; theta_j, s^2)`` with
  ``s^2 = sigma_squared * max(1, lambda_max - lambda_min)``, normalised to
  integrate to one on the grid, following Ghorbani et al.'s code.
"""

from collections.abc import Callable
import functools
from typing import Any, NamedTuple

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

PyTree = Any


def hvp(loss_fn: Callable[[PyTree], jax.Array], params: PyTree,
        vector: PyTree) -> PyTree:
  """Hessian of ``loss_fn`` at ``params`` times ``vector`` (forward-over-reverse).

  >>> import jax.numpy as jnp
  >>> loss = lambda p: p['a'] ** 2 * p['b']      # H = [[2b, 2a], [2a, 0]]
  >>> out = hvp(loss, {'a': 1.0, 'b': 3.0}, {'a': 1.0, 'b': 0.0})
  >>> float(out['a']), float(out['b'])
  (6.0, 2.0)

  Args:
    loss_fn: ``loss_fn(params)`` returns a scalar.
    params: the point, a pytree.
    vector: a pytree shaped like ``params``.

  Returns:
    ``H @ vector`` as a pytree shaped like ``params``.
  """
  return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


class Tridiagonal(NamedTuple):
  """The Lanczos tridiagonal matrix ``T``: ``alphas`` on the diagonal, ``betas`` off it."""

  alphas: jax.Array  # (num_steps,)
  betas: jax.Array   # (num_steps - 1,)

  def matrix(self) -> jax.Array:
    return (jnp.diag(self.alphas) + jnp.diag(self.betas, 1)
            + jnp.diag(self.betas, -1))


def _orthogonalize(w, basis):
  """Removes from ``w`` its components along the rows of ``basis`` (twice)."""
  for _ in range(2):  # "twice is enough" (Parlett); zero rows are harmless
    w = w - basis.T @ (basis @ w)
  return w


def lanczos(matvec: Callable[[jax.Array], jax.Array], start: jax.Array,
            num_steps: int, key: jax.Array) -> Tridiagonal:
  """Lanczos with full reorthogonalisation for a symmetric linear map.

  On breakdown (an invariant subspace is found) it continues from a random
  vector orthogonal to the basis, with a zero off-diagonal entry, so the
  Ritz values stay eigenvalues of the map.

  >>> import jax, jax.numpy as jnp, numpy as np
  >>> a = jnp.diag(jnp.array([4.0, 3.0, 2.0, 1.0]))
  >>> t = lanczos(lambda v: a @ v, jnp.ones(4), 4, jax.random.key(0))
  >>> np.linalg.eigvalsh(t.matrix()).round(4).tolist()
  [1.0, 2.0, 3.0, 4.0]

  Args:
    matvec: the map ``v -> A v`` on flat vectors. Pass a
      ``jax.tree_util.Partial`` to have the arrays it closes over (e.g. the
      parameters) traced rather than baked into the program as constants.
    start: the starting vector (normalised inside; must be nonzero).
    num_steps: iterations ``m``, at most the dimension.
    key: PRNG key, used only for restarts after breakdown.

  Returns:
    The ``m x m`` tridiagonal matrix as a :class:`Tridiagonal`.
  """
  if not 1 <= num_steps <= start.shape[0]:
    raise ValueError(
        f"num_steps must be in [1, {start.shape[0]}], got {num_steps}.")
  if not isinstance(matvec, jax.tree_util.Partial):
    matvec = jax.tree_util.Partial(matvec)
  dtype = start.dtype
  carry = (jnp.zeros((num_steps, start.shape[0]), dtype),
           start / jnp.linalg.norm(start),
           jnp.zeros(num_steps, dtype), jnp.zeros(num_steps, dtype))
  for i in range(num_steps):
    carry = _lanczos_iteration(matvec, key, jnp.asarray(i, jnp.int32), carry)
  _, _, alphas, betas = carry
  return Tridiagonal(alphas=alphas, betas=betas[:-1])


@functools.partial(jax.jit, donate_argnums=(3,))
def _lanczos_iteration(matvec, key, i, carry):
  """Iteration ``i``: one ``matvec``, full reorthogonalisation, restart on
  breakdown. ``carry`` = (basis, current vector, alphas, betas)."""
  basis, v, alphas, betas = carry
  dim, dtype = v.shape[0], v.dtype
  basis = basis.at[i].set(v)
  w = matvec(v)
  scale = jnp.linalg.norm(w)
  alpha = jnp.vdot(v, w)
  w = _orthogonalize(w, basis)
  beta = jnp.linalg.norm(w)
  broke_down = beta <= jnp.sqrt(jnp.finfo(dtype).eps) * scale

  def restart():
    fresh = jax.random.normal(jax.random.fold_in(key, i), (dim,), dtype)
    fresh = _orthogonalize(fresh, basis)
    return fresh / jnp.linalg.norm(fresh)

  next_v = jax.lax.cond(broke_down, restart,
                        lambda: w / jnp.where(broke_down, 1.0, beta))
  return (basis, next_v, alphas.at[i].set(alpha),
          betas.at[i].set(jnp.where(broke_down, 0.0, beta)))


def _flat_hvp(loss_fn, params):
  """``matvec`` on the raveled parameters (a ``Partial``), and the raveled params."""
  flat, unravel = ravel_pytree(params)

  def matvec(point, v):
    hv = hvp(loss_fn, point, unravel(v.astype(flat.dtype)))
    return ravel_pytree(hv)[0].astype(v.dtype)

  return jax.tree_util.Partial(matvec, params), flat


class TopEigenvalues(NamedTuple):
  """The largest Hessian eigenvalues.

  Attributes:
    eigenvalues: the ``k`` largest Ritz values, descending.
    ratio: ``eigenvalues[0] / eigenvalues[-1]`` (``lambda_1 / lambda_5`` for
      ``k = 5``, the criterion of Fig. 5).
  """

  eigenvalues: np.ndarray
  ratio: float


def top_eigenvalues(loss_fn: Callable[[PyTree], jax.Array], params: PyTree,
                    key: jax.Array, k: int = 5, num_steps: int = 50
                    ) -> TopEigenvalues:
  """The ``k`` largest Hessian eigenvalues by Lanczos from a random start.

  The extreme eigenvalues converge first; with ``num_steps`` equal to the
  number of parameters the result is exact up to rounding.

  >>> import jax, jax.numpy as jnp
  >>> loss = lambda p: 0.5 * jnp.sum(jnp.arange(1.0, 7.0) * p ** 2)
  >>> top = top_eigenvalues(loss, jnp.zeros(6), jax.random.key(0), k=5,
  ...                       num_steps=6)
  >>> top.eigenvalues.round(3).tolist(), round(top.ratio, 3)
  ([6.0, 5.0, 4.0, 3.0, 2.0], 3.0)

  Args:
    loss_fn: ``loss_fn(params)`` returns a scalar.
    params: the point whose Hessian is analysed.
    key: PRNG key for the starting vector.
    k: how many eigenvalues.
    num_steps: Lanczos iterations (capped at the number of parameters).

  Returns:
    A :class:`TopEigenvalues`.
  """
  matvec, flat = _flat_hvp(loss_fn, params)
  num_steps = min(num_steps, flat.size)
  if not 1 <= k <= num_steps:
    raise ValueError(f"k must be in [1, {num_steps}], got {k}.")
  k_start, k_restart = jax.random.split(key)
  start = jax.random.normal(k_start, flat.shape, jnp.float32)
  t = lanczos(matvec, start, num_steps, k_restart)
  ritz = np.sort(np.linalg.eigvalsh(np.asarray(t.matrix(), np.float64)))[::-1]
  top = ritz[:k]
  return TopEigenvalues(eigenvalues=top, ratio=float(top[0] / top[-1]))


class SpectralDensity(NamedTuple):
  """Smoothed Hessian eigenvalue density.

  Attributes:
    grid: evaluation points.
    density: density on ``grid`` (integrates to one).
    nodes: Ritz values, ``(num_probes, num_steps)``.
    weights: their quadrature weights, ``(num_probes, num_steps)``; each
      row sums to one.
  """

  grid: np.ndarray
  density: np.ndarray
  nodes: np.ndarray
  weights: np.ndarray


def gaussian_density(nodes: np.ndarray, weights: np.ndarray,
                     sigma_squared: float = 1e-5, grid_len: int = 1000,
                     grid_expand: float = 1e-2):
  """Gaussian-broadened density of weighted nodes (Ghorbani et al.'s convention).

  >>> import numpy as np
  >>> grid, density = gaussian_density(np.array([[0.0, 1.0]]),
  ...                                  np.array([[0.5, 0.5]]), 1e-3)
  >>> bool(abs(np.sum(density) * (grid[1] - grid[0]) - 1.0) < 1e-9)
  True

  Args:
    nodes: ``(num_probes, m)`` Ritz values.
    weights: ``(num_probes, m)`` weights.
    sigma_squared: kernel variance relative to ``max(1, spectrum width)``.
    grid_len: number of grid points.
    grid_expand: margin added on both sides of the extreme nodes.

  Returns:
    ``(grid, density)``.
  """
  nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
  low = np.mean(nodes.min(axis=1)) - grid_expand
  high = np.mean(nodes.max(axis=1)) + grid_expand
  grid = np.linspace(low, high, grid_len)
  variance = sigma_squared * max(1.0, high - low)
  kernel = np.exp(-(grid[:, None, None] - nodes) ** 2 / (2 * variance))
  kernel /= np.sqrt(2 * np.pi * variance)
  density = np.mean(np.sum(kernel * weights, axis=2), axis=1)
  density /= np.sum(density) * (grid[1] - grid[0])
  return grid, density


def spectral_density(loss_fn: Callable[[PyTree], jax.Array], params: PyTree,
                     key: jax.Array, num_steps: int = 90, num_probes: int = 1,
                     sigma_squared: float = 1e-5, grid_len: int = 1000
                     ) -> SpectralDensity:
  """Hessian eigenvalue density by stochastic Lanczos quadrature.

  >>> import jax, jax.numpy as jnp
  >>> loss = lambda p: 0.5 * jnp.sum(jnp.array([1.0, 1.0, 5.0]) * p ** 2)
  >>> d = spectral_density(loss, jnp.zeros(3), jax.random.key(0), num_steps=3,
  ...                      num_probes=2, sigma_squared=1e-3)
  >>> d.nodes.round(3).tolist()[0]               # eigenvalue 1 has mass 2/3
  [1.0, 1.0, 5.0]
  >>> bool(d.density[d.grid < 3].sum() > d.density[d.grid > 3].sum())
  True

  Args:
    loss_fn: ``loss_fn(params)`` returns a scalar.
    params: the point whose Hessian is analysed.
    key: PRNG key for the Gaussian probes.
    num_steps: Lanczos iterations per probe (90 in Ghorbani et al.).
    num_probes: independent probes averaged.
    sigma_squared: relative kernel variance (see :func:`gaussian_density`).
    grid_len: number of grid points of the density.

  Returns:
    A :class:`SpectralDensity`.
  """
  matvec, flat = _flat_hvp(loss_fn, params)
  num_steps = min(num_steps, flat.size)
  nodes, weights = [], []
  for probe_key in jax.random.split(key, num_probes):
    k_start, k_restart = jax.random.split(probe_key)
    start = jax.random.normal(k_start, flat.shape, jnp.float32)
    t = np.asarray(lanczos(matvec, start, num_steps, k_restart).matrix(),
                   np.float64)
    theta, vectors = np.linalg.eigh(t)
    nodes.append(theta)
    weights.append(vectors[0] ** 2)
  nodes, weights = np.stack(nodes), np.stack(weights)
  grid, density = gaussian_density(nodes, weights, sigma_squared, grid_len)
  return SpectralDensity(grid=grid, density=density, nodes=nodes,
                         weights=weights)
