"""Defaults that cannot silently change the algorithm, and the checks behind them.

Each test fails on a library that gave ``dynamic_mask`` a default horizon,
refreshed every step by default, let a static ``refresh`` override the
schedule, or left the tensor-wise fast path's preconditions unchecked.
"""

import functools

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
RESELECTING = {
    "fisher": lambda: ssam_jax.fisher_mask(),
    "fisher-accumulated": lambda: ssam_jax.fisher_mask(accumulate=True),
    "dynamic": lambda: ssam_jax.dynamic_mask(total_steps=100),
    "random-resampled": lambda: ssam_jax.random_mask(resample=True),
}


def grads_and_grad_fn(params, batch):
  return jax.grad(loss)(params, batch), (lambda p: jax.grad(loss)(p, batch))


# Defect 1: a default horizon of one step made SSAM-D a fixed random mask.

def test_dynamic_mask_requires_its_horizon():
  with pytest.raises(TypeError, match="total_steps"):
    ssam_jax.dynamic_mask()  # pylint: disable=no-value-for-parameter
  with pytest.raises(TypeError):
    ssam_jax.dynamic_mask(100, 0.5)  # the rest is keyword-only


# Defect 2: the default refreshed the mask on every step.

@pytest.mark.parametrize("name", sorted(RESELECTING))
def test_a_reselecting_mask_needs_mask_update_every(name):
  with pytest.raises(ValueError, match="mask_update_every") as error:
    ssam_jax.ssam(SGD, 0.1, 0.5, mask=RESELECTING[name]())
  message = str(error.value)
  assert "once per epoch" in message and "steps per epoch" in message
  assert "num_samples" in message  # what a Fisher refresh costs


def test_the_default_strategy_needs_mask_update_every_too():
  with pytest.raises(ValueError, match="mask_update_every"):
    ssam_jax.ssam(SGD, 0.1, 0.5)


def test_no_mask_update_every_where_the_mask_is_never_reselected():
  ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.random_mask())
  for sparsity in (0.0, 1.0):  # the mask is unused
    ssam_jax.ssam(SGD, 0.1, sparsity, mask=ssam_jax.fisher_mask())
  ssam_jax.ssam(SGD, 0.0, 0.5, mask=ssam_jax.fisher_mask())


def test_an_injected_sparsity_needs_mask_update_every():
  with pytest.raises(ValueError, match="injected sparsity"):
    optax.inject_hyperparams(ssam_jax.ssam)(
        base_optimizer=SGD, rho=0.1, sparsity=0.0,
        mask=ssam_jax.fisher_mask(accumulate=True)).init(init_params())


@pytest.mark.parametrize("value,error", [(0, ValueError), (2.5, TypeError),
                                         ("sometimes", ValueError), (True, TypeError)])
def test_bad_mask_update_every_is_named(value, error):
  with pytest.raises(error, match="mask_update_every"):
    ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.random_mask(), mask_update_every=value)


# Defect 5: a static refresh= silently overrode mask_update_every.

@pytest.mark.parametrize("refresh", [True, False])
def test_refresh_with_a_library_schedule_names_both_arguments(refresh):
  params, batch = init_params(), synthetic_batch()
  grads, grad_fn = grads_and_grad_fn(params, batch)
  opt = ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.dynamic_mask(10), mask_update_every=4)
  with pytest.raises(ValueError, match=r"refresh=.*mask_update_every=4.*'manual'"):
    opt.update(grads, opt.init(params), params, grad_fn=grad_fn, refresh=refresh)


def test_manual_schedule_needs_refresh_on_every_update():
  params, batch = init_params(), synthetic_batch()
  grads, grad_fn = grads_and_grad_fn(params, batch)
  opt = ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.dynamic_mask(10),
                      mask_update_every="manual")
  with pytest.raises(TypeError, match="refresh=<Python bool> on every call"):
    opt.update(grads, opt.init(params), params, grad_fn=grad_fn)


def test_manual_schedule_refreshes_exactly_when_told():
  params, batch = init_params(), synthetic_batch()
  grads, grad_fn = grads_and_grad_fn(params, batch)
  opt = ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.dynamic_mask(10),
                      mask_update_every="manual")
  update = jax.jit(functools.partial(opt.update, grad_fn=grad_fn),
                   static_argnames="refresh")
  state = initial = opt.init(params)
  for refresh in (False, False):  # steps 0 and 1: the schedule would refresh step 0
    _, state = update(grads, state, params, refresh=refresh)
  chex.assert_trees_all_equal(state.mask, initial.mask)
  _, refreshed = update(grads, state, params, refresh=True)
  numerics.assert_differ(jax.tree.map(lambda m: m.astype(jnp.float32), refreshed.mask),
                         jax.tree.map(lambda m: m.astype(jnp.float32), initial.mask))


# random_mask(resample=True): the random control on Fisher's schedule.

def test_random_mask_resamples_at_each_refresh_only():
  params, batch = init_params(), synthetic_batch()
  grads, grad_fn = grads_and_grad_fn(params, batch)
  opt = ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.random_mask(seed=3, resample=True),
                      mask_update_every=2)
  fixed = ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.random_mask(seed=3))
  state = opt.init(params)
  assert isinstance(state.mask_state, ssam_jax.RandomMaskState)
  assert fixed.init(params).mask_state == optax.EmptyState()
  # The same first mask as the fixed one with that seed.
  chex.assert_trees_all_equal(state.mask, fixed.init(params).mask)
  update = jax.jit(functools.partial(opt.update, grad_fn=grad_fn))
  masks = [np.concatenate([np.ravel(m) for m in jax.tree.leaves(state.mask)])]
  for _ in range(5):
    _, state = update(grads, state, params)
    masks.append(np.concatenate([np.ravel(m) for m in jax.tree.leaves(state.mask)]))
  k = masks[0].sum()
  assert all(m.sum() == k for m in masks)
  # Updates 0, 2 and 4 refresh (masks[1], [3], [5]); the others keep the mask.
  for after in (1, 3, 5):
    assert (masks[after] != masks[after - 1]).any()
  for after in (2, 4):
    np.testing.assert_array_equal(masks[after], masks[after - 1])
  # The same seed draws the same sequence.
  _, again = update(grads, opt.init(params), params)
  np.testing.assert_array_equal(
      np.concatenate([np.ravel(m) for m in jax.tree.leaves(again.mask)]), masks[1])


def test_random_mask_resample_must_be_a_bool():
  with pytest.raises(TypeError, match="resample"):
    ssam_jax.random_mask(resample=1)


# Defect 3: the fast path's preconditions were checked by the trainer only.

def tensorwise(mask, **kwargs):
  options = dict(pattern="tensorwise", normalize="masked", mask=mask,
                 mask_update_every="manual")
  options.update(kwargs)
  return ssam_jax.ssam(optax.sgd(0.1), 0.2, 0.5, **options)


def partial_update(opt, params, batch, wrt, **kwargs):
  grads = ssam_jax.value_and_partial_grad(loss, wrt)(params, batch)[1]
  return opt.update(grads, opt.init(params), params, grads_wrt=wrt,
                    grad_fn=lambda p: jax.grad(loss)(p, batch), **kwargs)


def test_declared_partial_gradient_gives_the_full_gradient_update():
  params, batch = init_params(), synthetic_batch()
  opt = tensorwise(ssam_jax.random_mask(seed=2), mask_update_every=None)
  wrt = ssam_jax.perturbed_tensors(opt.init(params))
  assert 0 < sum(wrt) < len(wrt)
  expected, _ = opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
                           grad_fn=lambda p: jax.grad(loss)(p, batch))
  actual, _ = partial_update(opt, params, batch, wrt)
  numerics.assert_trees_close(actual, expected)


@pytest.mark.parametrize("make,update_kwargs,match", [
    (lambda: tensorwise(ssam_jax.random_mask(), mask_update_every=None, normalize="full"),
     {}, "normalize='masked'"),
    (lambda: tensorwise(ssam_jax.fisher_mask(accumulate=True)), {"refresh": False},
     r"accumulate=True"),
    (lambda: tensorwise(ssam_jax.dynamic_mask(10), mask_update_every=3), {},
     "mask_update_every='manual' and refresh=False"),
], ids=["full-normalisation", "accumulator", "library-schedule"])
def test_fast_path_preconditions_are_checked_by_ssam(make, update_kwargs, match):
  params, batch = init_params(), synthetic_batch()
  with pytest.raises(ValueError, match="grads_wrt") as error:
    partial_update(make(), params, batch, (True, True, False, False), **update_kwargs)
  assert error.match(match)


def test_fast_path_refuses_a_refresh_step():
  params, batch = init_params(), synthetic_batch()
  opt = tensorwise(ssam_jax.dynamic_mask(10))
  with pytest.raises(ValueError, match="reselects the mask, from the full gradient"):
    partial_update(opt, params, batch, (True, True, False, False), refresh=True)
  partial_update(opt, params, batch, (True, True, False, False), refresh=False)


def test_sam_fast_path_covers_the_perturbable_leaves():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.sam(optax.sgd(0.1), 0.2, perturbed_leaves=ssam_jax.kernels_only)
  wrt = tuple(jax.tree.leaves(ssam_jax.kernels_only(params)))
  expected, _ = opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
                           grad_fn=lambda p: jax.grad(loss)(p, batch))
  actual, _ = partial_update(opt, params, batch, wrt)
  numerics.assert_trees_close(actual, expected)
  with pytest.raises(ValueError, match="grads_wrt leaves out 'dense2/kernel'"):
    partial_update(opt, params, batch, (True, True, True, False))


def test_fast_path_with_rho_zero_needs_every_leaf():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.sam(optax.sgd(0.1), 0.0)
  with pytest.raises(ValueError, match="base optimizer consumes"):
    partial_update(opt, params, batch, (True, True, True, False))


@pytest.mark.parametrize("wrt,error", [((True, False), ValueError),
                                       ([1, 0, 1, 0], TypeError),
                                       (np.array([True] * 4), TypeError)])
def test_bad_grads_wrt_is_named(wrt, error):
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.sam(optax.sgd(0.1), 0.2)
  with pytest.raises(error, match="grads_wrt"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params, grads_wrt=wrt,
               grad_fn=lambda p: jax.grad(loss)(p, batch))
