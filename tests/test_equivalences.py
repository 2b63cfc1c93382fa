"""Exact special cases: rho=0, sparsity=0, sparsity=1, zero gradients.

The exact ones compare bit for bit: by construction (see ``Plan`` in
``ssam_jax/_core.py``) both sides run the same operations in the same order,
so no rounding can tell them apart on any CPU.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
import ssam_jax
from experiments.tiny_mlp import init_params, loss, synthetic_batch


def train(opt, steps=6, params=None, grad_fn_factory=None, **update_kwargs):
  params = init_params() if params is None else params
  state = opt.init(params)

  @jax.jit
  def step(params, state, batch):
    grads = jax.grad(loss)(params, batch)
    grad_fn = (grad_fn_factory(batch) if grad_fn_factory
               else (lambda p: jax.grad(loss)(p, batch)))
    updates, state = opt.update(grads, state, params, grad_fn=grad_fn, **update_kwargs)
    return optax.apply_updates(params, updates), state

  for i in range(steps):
    params, state = step(params, state, synthetic_batch(seed=i))
  return params, state


def base_optimizer():
  return optax.sgd(0.1, momentum=0.9)


def test_rho_zero_reproduces_base_optimizer_exactly():
  expected, _ = train(optax.with_extra_args_support(base_optimizer()))
  for opt in (ssam_jax.sam(base_optimizer(), rho=0.0),
              ssam_jax.ssam(base_optimizer(), rho=0.0, sparsity=0.5)):
    actual, _ = train(opt)
    chex.assert_trees_all_equal(actual, expected)


@pytest.mark.parametrize("mask", [ssam_jax.fisher_mask(), ssam_jax.dynamic_mask(total_steps=6),
                                  ssam_jax.random_mask()])
def test_sparsity_zero_reproduces_sam_exactly(mask):
  expected, _ = train(ssam_jax.sam(base_optimizer(), rho=0.2))
  actual, state = train(ssam_jax.ssam(base_optimizer(), rho=0.2, sparsity=0.0, mask=mask,
                                      mask_update_every=2))
  chex.assert_trees_all_equal(actual, expected)
  assert all(bool(m.all()) for m in jax.tree.leaves(state.mask))


def test_sparsity_one_reproduces_base_and_never_calls_grad_fn():
  def grad_fn_that_must_not_run(batch):
    def fail(params):
      raise AssertionError("grad_fn called although sparsity=1")
    return fail

  def fisher_fn_that_must_not_run(params):
    raise AssertionError("fisher_fn called although sparsity=1")

  expected, _ = train(optax.with_extra_args_support(base_optimizer()))
  actual, state = train(
      ssam_jax.ssam(base_optimizer(), rho=0.2, sparsity=1.0),
      grad_fn_factory=grad_fn_that_must_not_run, fisher_fn=fisher_fn_that_must_not_run)
  chex.assert_trees_all_equal(actual, expected)
  assert not any(bool(m.any()) for m in jax.tree.leaves(state.mask))


def test_sparsity_one_as_traced_value_reproduces_base():
  """Through inject_hyperparams the sparsity is traced: eps is zero, grad_fn runs."""
  expected, _ = train(optax.with_extra_args_support(base_optimizer()))
  opt = optax.inject_hyperparams(ssam_jax.ssam)(base_optimizer=base_optimizer(), rho=0.2,
                                                sparsity=1.0, mask_update_every=2,
                                                mask=ssam_jax.fisher_mask(accumulate=True))
  actual, _ = train(opt)
  chex.assert_trees_all_equal(actual, expected)


@pytest.mark.parametrize("make_opt", [
    lambda: ssam_jax.sam(optax.sgd(0.1), rho=0.1),
    lambda: ssam_jax.sam(optax.sgd(0.1), rho=0.1, adaptive_eta=0.01),
    lambda: ssam_jax.ssam(optax.sgd(0.1), rho=0.1, sparsity=0.5, normalize="masked",
                          mask=ssam_jax.fisher_mask(accumulate=True), mask_update_every=1),
])
def test_zero_gradient_gives_zero_perturbation_not_nan(make_opt):
  params = init_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  seen = []

  def grad_fn(p):
    seen.append(p)
    return zeros

  opt = make_opt()
  updates, _ = opt.update(zeros, opt.init(params), params, grad_fn=grad_fn)
  chex.assert_trees_all_equal(seen[0], params)
  chex.assert_tree_all_finite(updates)


def test_perturbation_has_norm_rho():
  params, batch = init_params(), synthetic_batch()
  seen = []

  def grad_fn(p):
    seen.append(p)
    return jax.grad(loss)(p, batch)

  opt = ssam_jax.sam(optax.sgd(0.1), rho=0.37)
  opt.update(jax.grad(loss)(params, batch), opt.init(params), params, grad_fn=grad_fn)
  eps = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), seen[0], params)
  norm = np.sqrt(sum(np.sum(e ** 2) for e in jax.tree.leaves(eps)))
  # eps is recovered as (w + eps) - w: its rounding is relative to |w| <= 1.
  numerics.assert_trees_close(norm, 0.37, scale=1.0)


def test_rho_schedule_is_evaluated_at_the_step_count():
  params, batch = init_params(), synthetic_batch()
  norms = []

  def grad_fn(p):
    eps = jax.tree.map(lambda a, b: a - b, p, params)
    norms.append(float(optax.tree.norm(eps)))
    return jax.grad(loss)(params, batch)

  opt = ssam_jax.sam(optax.sgd(0.0), rho=lambda count: 0.1 * (count + 1))
  state = opt.init(params)
  for _ in range(3):
    _, state = opt.update(jax.grad(loss)(params, batch), state, params, grad_fn=grad_fn)
  numerics.assert_trees_close(np.asarray(norms), np.asarray([0.1, 0.2, 0.3]), scale=1.0)
