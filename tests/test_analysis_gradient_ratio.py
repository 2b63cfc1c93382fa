"""The r statistic of Fig. 1 on a case computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
import ssam_jax
from ssam_jax.analysis import gradient_ratio

# f(p) = sum_j a_j p_j^2 / 2: g = a p and g_SAM = a (p + rho a p / ||a p||), so
# (g_SAM - g) / g = rho a_j / ||a p|| wherever p_j != 0.
A = jnp.array([1.0, 4.0, 30.0, 20.0])
P = {"w": jnp.array([3.0, 1.0, 0.0, 0.01])}  # a p = [3, 4, 0, 0.2]
RHO = 0.5


def loss_fn(params):
  return 0.5 * jnp.sum(A * params["w"] ** 2)


def test_log_ratio_by_hand():
  g_sam, g_sgd = gradient_ratio.sam_and_sgd_gradients(loss_fn, P, RHO)
  r = np.asarray(gradient_ratio.log_ratio(g_sam, g_sgd)["w"], np.float64)
  norm = np.sqrt(25.0 + 0.04)
  np.testing.assert_allclose(r[[0, 1, 3]], np.log([0.5 * 1 / norm, 0.5 * 4 / norm,
                                                   0.5 * 20 / norm]), rtol=1e-4)
  assert np.isnan(r[2])  # g_SGD = 0: excluded


def test_statistics_count_exclusions_and_the_fraction_below_zero():
  stats = gradient_ratio.gradient_ratio_statistics(loss_fn, P, RHO)
  assert (stats.num_valid, stats.num_excluded) == (3, 1)
  assert stats.fraction_below_zero == pytest.approx(2 / 3)  # log 1.998 > 0
  assert int(stats.counts.sum()) == 3


def test_sam_gradient_is_the_one_ssam_jax_sam_feeds_its_base_optimizer():
  g_sam, _ = gradient_ratio.sam_and_sgd_gradients(loss_fn, P, RHO)
  opt = ssam_jax.sam(optax.identity(), rho=RHO)
  updates, _ = opt.update(jax.grad(loss_fn)(P), opt.init(P), P,
                          grad_fn=jax.grad(loss_fn))
  numerics.assert_trees_close(g_sam["w"], updates["w"])


def test_zero_gradient_gives_zero_perturbation_and_all_excluded():
  stats = gradient_ratio.gradient_ratio_statistics(
      loss_fn, {"w": jnp.zeros(4)}, RHO)
  assert (stats.num_valid, stats.num_excluded) == (0, 4)
  assert np.isnan(stats.fraction_below_zero)


def test_zero_gradient_gives_a_finite_sam_gradient_and_statistics():
  # rho g / ||g|| is 0 / 0 here; the library's perturbation makes it 0.
  zero = {"w": jnp.zeros(4)}
  g_sam, g_sgd = gradient_ratio.sam_and_sgd_gradients(loss_fn, zero, RHO)
  assert np.all(np.isfinite(g_sam["w"]))
  np.testing.assert_array_equal(g_sam["w"], g_sgd["w"])
  stats = gradient_ratio.gradient_ratio_statistics(loss_fn, zero, RHO)
  assert np.all(np.isfinite(stats.counts)) and int(stats.counts.sum()) == 0


def test_non_finite_rho_gives_no_perturbation():
  # eps = 0, so g_SAM = g_SGD: r = -inf (below zero) wherever g_SGD != 0.
  g_sam, g_sgd = gradient_ratio.sam_and_sgd_gradients(loss_fn, P, float("inf"))
  np.testing.assert_array_equal(g_sam["w"], g_sgd["w"])
  stats = gradient_ratio.gradient_ratio_statistics(loss_fn, P, float("nan"))
  assert (stats.num_valid, stats.num_excluded) == (3, 1)
  assert stats.fraction_below_zero == 1.0
