"""The convergence problem satisfies Assumptions 1-3; SAM/SSAM reach the rate."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numerics
from experiments.convergence import problem as regression
from experiments.convergence import rates

PROBLEM = regression.make_problem(jax.random.key(0), num_examples=256, dim=6,
                                   batch_size=4)
BOUNDS = regression.analytic_bounds(PROBLEM)
SSAM = "ssam-f-accumulated"  # the SSAM the convergence loop can run
POINTS = 3.0 * jax.random.normal(jax.random.key(1), (64, 6))


def test_analytic_bounds_hold_pointwise():
  loss = functools.partial(regression.loss, PROBLEM)
  grads = jax.vmap(jax.grad(loss))(POINTS)
  assert float(jnp.max(jnp.linalg.norm(grads, axis=1))) <= BOUNDS.gradient_bound
  hessians = np.asarray(jax.vmap(jax.hessian(loss))(POINTS), np.float64)
  assert np.max(np.linalg.norm(hessians, 2, axis=(1, 2))) <= BOUNDS.smoothness
  for w in POINTS[:8]:
    assert 0 <= regression.exact_variance(PROBLEM, w) <= BOUNDS.variance


def test_f_is_not_convex():
  loss = functools.partial(regression.loss, PROBLEM)
  eigenvalues = np.concatenate([np.linalg.eigvalsh(np.asarray(
      jax.hessian(loss)(w), np.float64)) for w in POINTS[:16]])
  assert eigenvalues.min() < 0 < eigenvalues.max()


def test_monte_carlo_variance_matches_the_closed_form():
  w = POINTS[0]
  estimate = float(regression.monte_carlo_variance(
      PROBLEM, w, jax.random.key(2), num_batches=8000))
  assert estimate == pytest.approx(regression.exact_variance(PROBLEM, w),
                                   rel=0.1)


@pytest.mark.slow
def test_estimates_are_finite_and_within_the_analytic_bounds():
  key = jax.random.key(3)
  g = regression.estimate_gradient_bound(PROBLEM, key, num_points=500)
  var = regression.estimate_variance(PROBLEM, key, num_points=8,
                                      num_batches=1000)
  lip = regression.estimate_smoothness(PROBLEM, key, num_pairs=2000)
  for estimate, bound in zip((g, var, lip), BOUNDS):
    assert np.isfinite(estimate) and 0 < estimate <= bound
  # L is at least (most of) the curvature at the minimum, sampled near it.
  center = regression.stationary_point(PROBLEM)
  assert float(jnp.linalg.norm(regression.full_gradient(PROBLEM, center))) < 1e-3
  curvature = np.linalg.norm(np.asarray(jax.hessian(
      functools.partial(regression.loss, PROBLEM))(center)), 2)
  assert 0.5 * curvature <= lip


def test_convergence_curves_of_sam_and_ssam_are_finite_and_differ():
  curves = rates.convergence_curves(
      PROBLEM, jax.random.key(4), num_steps=300, num_seeds=2, eta0=1.0,
      rho0=0.2, optimizers=("sam", SSAM))
  for curve in curves.values():
    assert curve.average.shape == (300,) and np.all(np.isfinite(curve.average))
    assert curve.loss_decrease > 0
  numerics.assert_differ(curves["sam"].average, curves[SSAM].average)


@pytest.mark.slow
def test_sam_and_ssam_running_averages_decay_like_the_theorems():
  curves = rates.convergence_curves(
      PROBLEM, jax.random.key(4), num_steps=2000, num_seeds=4, eta0=1.0,
      rho0=0.2, optimizers=("sam", SSAM))
  t = np.arange(1, 2001)
  for curve in curves.values():
    assert np.all(np.isfinite(curve.average))
    assert curve.envelope.slope < -0.3
    tail = slice(curve.envelope.t_min - 1, None)
    envelope = curve.envelope.constant * np.log(t[tail]) / np.sqrt(t[tail])
    assert np.all(curve.average[tail] <= envelope * (1 + 1e-9))
    assert curve.loss_decrease > 0
  # SSAM perturbs half the coordinates: a different trajectory from SAM.
  numerics.assert_differ(curves["sam"].average, curves[SSAM].average)
