"""Numerical edge cases: non-finite rho, static sparsity 1, float64, apply_if_finite."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
import ssam_jax
from experiments.tiny_mlp import init_params, loss, synthetic_batch

SGD = optax.sgd(0.1)


def update_once(opt, params, batch, grads=None, grad_fn=None, **kwargs):
  grads = jax.grad(loss)(params, batch) if grads is None else grads
  grad_fn = grad_fn or (lambda p: jax.grad(loss)(p, batch))
  return jax.jit(lambda g, p: opt.update(g, opt.init(p), p, grad_fn=grad_fn, **kwargs))(
      grads, params)


@pytest.mark.parametrize("bad_rho", [jnp.nan, jnp.inf])
@pytest.mark.parametrize("make", [
    lambda rho: ssam_jax.sam(SGD, rho=rho),
    lambda rho: ssam_jax.ssam(SGD, rho=rho, sparsity=0.5, mask=ssam_jax.random_mask()),
], ids=["sam", "ssam"])
def test_non_finite_rho_gives_no_perturbation_and_finite_params(make, bad_rho):
  params, batch = init_params(), synthetic_batch()
  updates, _ = update_once(make(lambda count: bad_rho), params, batch)
  # eps = 0: the base optimizer's step with the gradient at w, computed
  # eagerly here and inside the jitted update there: equal to rounding.
  expected, _ = SGD.update(jax.grad(loss)(params, batch), SGD.init(params))
  numerics.assert_trees_close(updates, expected)


def test_static_sparsity_one_freezes_the_strategy_state_and_calls_nothing():
  params, batch = init_params(), synthetic_batch()

  def must_not_run(p):
    raise AssertionError("called although sparsity=1.0")

  opt = ssam_jax.ssam(SGD, 0.1, 1.0, mask=ssam_jax.fisher_mask(accumulate=True))
  initial = opt.init(params)
  # The strategy's state is allocated whatever the sparsity, so that
  # optax.inject_hyperparams(ssam) keeps the same structure; it never changes.
  assert isinstance(initial.mask_state, ssam_jax.FisherMaskState)
  state = initial
  for _ in range(3):
    updates, state = opt.update(jax.grad(loss)(params, batch), state, params,
                                grad_fn=must_not_run, fisher_fn=must_not_run)
  chex.assert_trees_all_equal(state.mask_state, initial.mask_state)
  assert not any(bool(m.any()) for m in jax.tree.leaves(state.mask))
  assert jax.tree.structure(state) == jax.tree.structure(initial)


def test_static_rho_zero_never_reselects_nor_calls_fisher_fn():
  params, batch = init_params(), synthetic_batch()

  def must_not_run(p):
    raise AssertionError("called although rho=0")

  opt = ssam_jax.ssam(SGD, 0.0, 0.5, mask=ssam_jax.fisher_mask())
  initial = opt.init(params)
  _, state = opt.update(jax.grad(loss)(params, batch), initial, params,
                        grad_fn=must_not_run, fisher_fn=must_not_run)
  chex.assert_trees_all_equal(state.mask, initial.mask)
  assert state.mask_state == optax.EmptyState()


def test_float64_params_keep_float64_precision_outside_eps():
  quadratic = lambda p: jnp.sum((p["w"] - 10.0) ** 2)
  with jax.enable_x64(True):
    params = {"w": jnp.arange(8, dtype=jnp.float64) + 1e-12}  # lost in float32
    opt = ssam_jax.ssam(optax.sgd(1.0), 0.1, 0.5, mask=ssam_jax.random_mask())
    state = opt.init(params)
    # With sgd(1.0) and grad_fn the identity, the update is -(w + eps).
    updates, _ = jax.jit(lambda p, s: opt.update(
        jax.grad(quadratic)(p), s, p, grad_fn=lambda q: q))(params, state)
    assert updates["w"].dtype == jnp.float64
    w, m, w_plus_eps = (np.asarray(x) for x in (params["w"], state.mask["w"], -updates["w"]))
    np.testing.assert_array_equal(w_plus_eps[~m], w[~m])
    assert np.all(np.abs(w_plus_eps[m] - w[m]) > 1e-3)


def nan_like(tree):
  return jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), tree)


def test_apply_if_finite_inside_ssam_skips_a_non_finite_perturbed_gradient():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(optax.apply_if_finite(optax.sgd(0.1, momentum=0.9), 3), 0.1, 0.5,
                      mask=ssam_jax.random_mask())
  state = opt.init(params)
  updates, new_state = opt.update(jax.grad(loss)(params, batch), state, params,
                                  grad_fn=nan_like)
  chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
  assert int(new_state.base_state.notfinite_count) == 1
  chex.assert_trees_all_equal(new_state.base_state.inner_state, state.base_state.inner_state)


def test_apply_if_finite_outside_ssam_checks_only_the_first_gradient():
  """As documented in ``sam``: nest both wrappers to guard both gradients."""
  params, batch = init_params(), synthetic_batch()
  make = lambda base: ssam_jax.ssam(base, 0.1, 0.5, mask=ssam_jax.random_mask())
  outer_only = optax.apply_if_finite(make(optax.sgd(0.1)), 3)
  updates, _ = update_once(outer_only, params, batch, grad_fn=nan_like)
  assert not all(bool(jnp.isfinite(u).all()) for u in jax.tree.leaves(updates))

  both = optax.apply_if_finite(make(optax.apply_if_finite(optax.sgd(0.1), 3)), 3)
  for grads, grad_fn in ((nan_like(params), None), (None, nan_like)):
    updates, state = update_once(both, params, batch, grads=grads, grad_fn=grad_fn)
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))


def test_n_out_of_m_sparsity_defaults_to_the_pattern():
  params = {"kernel": jnp.ones((8, 3)), "bias": jnp.ones(3)}
  opt = ssam_jax.ssam(SGD, 0.1, pattern="1:4", mask=ssam_jax.random_mask())
  mask = opt.init(params).mask
  np.testing.assert_array_equal(np.asarray(mask["kernel"]).reshape(2, 4, 3).sum(1), 1)
  assert bool(mask["bias"].all())


def test_n_out_of_m_accepts_an_empty_leaf_whose_axis_divides():
  params = {"kernel": jnp.ones((8, 0)), "other": jnp.ones((4, 2))}
  opt = ssam_jax.ssam(SGD, 0.1, pattern="2:4", mask=ssam_jax.dynamic_mask(total_steps=4),
                      mask_update_every=1)
  _, state = jax.jit(lambda p: opt.update(p, opt.init(p), p, grad_fn=lambda q: q))(params)
  assert state.mask["kernel"].shape == (8, 0)
  assert int(state.mask["other"].sum()) == 4
