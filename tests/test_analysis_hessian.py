"""Hessian tools against the exact Hessian of a 67-parameter MLP."""

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import pytest

import numerics
from experiments import tiny_mlp
from ssam_jax.analysis import hessian

PARAMS = tiny_mlp.init_params(0)
BATCH = tiny_mlp.synthetic_batch(1, size=32)
FLAT, UNRAVEL = ravel_pytree(PARAMS)


def loss_fn(params):
  return tiny_mlp.loss(params, BATCH)


@pytest.fixture(scope="module")
def exact():
  matrix = jax.hessian(lambda v: loss_fn(UNRAVEL(v)))(FLAT)
  matrix = np.asarray(matrix, np.float64)
  return matrix, np.sort(np.linalg.eigvalsh((matrix + matrix.T) / 2))[::-1]


def test_hvp_matches_hessian_times_vector(exact):
  matrix, _ = exact
  v = jax.random.normal(jax.random.key(3), FLAT.shape)
  out = hessian.hvp(loss_fn, PARAMS, UNRAVEL(v))
  assert jax.tree.structure(out) == jax.tree.structure(PARAMS)
  # Forward-over-reverse against the materialised Hessian: sums of
  # different lengths and orders, each of many terms.
  numerics.assert_trees_close(tiny_mlp.flat(out), matrix @ np.asarray(v),
                              eps_multiple=1024)


def test_lanczos_with_as_many_steps_as_parameters_is_exact(exact):
  _, eigenvalues = exact
  top = hessian.top_eigenvalues(loss_fn, PARAMS, jax.random.key(0), k=5,
                                num_steps=FLAT.size)
  scale = abs(eigenvalues[0])
  np.testing.assert_allclose(top.eigenvalues, eigenvalues[:5],
                             atol=1e-4 * scale)
  assert top.ratio == pytest.approx(eigenvalues[0] / eigenvalues[4], rel=1e-3)


def test_lanczos_top_eigenvalue_converges_before_the_full_basis(exact):
  _, eigenvalues = exact
  top = hessian.top_eigenvalues(loss_fn, PARAMS, jax.random.key(1), k=2,
                                num_steps=30)
  assert top.eigenvalues[0] == pytest.approx(eigenvalues[0], rel=1e-3)
  # Ritz values interlace: never above the true largest eigenvalue.
  assert top.eigenvalues[0] <= eigenvalues[0] * (1 + 1e-4)


def test_lanczos_restarts_after_breakdown():
  # Start inside a 2-D invariant subspace: plain Lanczos would stop there.
  a = jnp.diag(jnp.array([5.0, 4.0, 3.0, 2.0, 1.0]))
  start = jnp.array([1.0, 1.0, 0.0, 0.0, 0.0])
  t = hessian.lanczos(lambda v: a @ v, start, 5, jax.random.key(0))
  np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(t.matrix())),
                             [1.0, 2.0, 3.0, 4.0, 5.0], atol=1e-4)
  assert float(t.betas[1]) == 0.0


def test_spectral_density_quadrature(exact):
  _, eigenvalues = exact
  density = hessian.spectral_density(loss_fn, PARAMS, jax.random.key(2),
                                     num_steps=FLAT.size, num_probes=2)
  np.testing.assert_allclose(density.weights.sum(axis=1), 1.0, atol=1e-5)
  for nodes in density.nodes:  # a full Krylov basis: nodes are the spectrum
    np.testing.assert_allclose(np.sort(nodes), np.sort(eigenvalues),
                               atol=1e-4 * abs(eigenvalues[0]))
  step = density.grid[1] - density.grid[0]
  assert np.sum(density.density) * step == pytest.approx(1.0)
  assert density.grid[0] < eigenvalues[-1] and density.grid[-1] > eigenvalues[0]
