"""fisher_mask's state: allocated only for the opt-in estimate, which refuses fisher_fn."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
import ssam_jax
from ssam_jax import workarounds
from experiments.tiny_mlp import example_loss, init_params, loss, synthetic_batch


def run(mask, steps, with_fisher_fn, mask_update_every=3):
  opt = ssam_jax.ssam(optax.sgd(0.1), 0.1, 0.5, mask=mask, mask_update_every=mask_update_every)
  params, batch = init_params(), synthetic_batch()
  extra = ({"fisher_fn": ssam_jax.empirical_fisher(example_loss, batch, num_samples=4)}
           if with_fisher_fn else {})
  step = jax.jit(lambda s: opt.update(jax.grad(loss)(params, batch), s, params,
                                      grad_fn=lambda p: jax.grad(loss)(p, batch), **extra)[1])
  state = opt.init(params)
  for _ in range(steps):
    state = step(state)
  return state


def test_default_fisher_mask_keeps_no_state():
  assert run(ssam_jax.fisher_mask(), 2, with_fisher_fn=True).mask_state == optax.EmptyState()


def test_accumulator_refuses_a_fisher_fn_it_would_not_use():
  # The accumulator is read on every refresh, so it is never allocated for
  # nothing: the fisher_fn it would ignore is an error instead.
  with pytest.raises(TypeError, match=r"accumulate=True\) ranks by the squared"):
    run(ssam_jax.fisher_mask(accumulate=True), 2, with_fisher_fn=True)


def test_accumulator_counts_between_refreshes_without_fisher_fn():
  # Steps 0 and 3 refresh (and reset); steps 1, 2, 4 accumulate.
  state = run(ssam_jax.fisher_mask(accumulate=True), 5, with_fisher_fn=False).mask_state
  assert int(state.num_accumulated) == 1
  g = jax.grad(loss)(init_params(), synthetic_batch())
  numerics.assert_trees_close(state.squared_grad_sum, jax.tree.map(jnp.square, g))


def test_replicated_is_the_identity_without_a_mesh():
  x = jnp.arange(6.0).reshape(3, 2)
  assert jax.jit(workarounds.replicated)(x).tolist() == x.tolist()
