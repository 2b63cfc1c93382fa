"""The tensorwise fast path: same updates as the general path, fewer FLOPs."""

import functools

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import numerics
import ssam_jax

WIDTHS = (32, 64, 64, 64, 10)


def deep_mlp_params(seed=0):
  keys = jax.random.split(jax.random.key(seed), len(WIDTHS) - 1)
  return [{"kernel": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "bias": jnp.zeros(b)}
          for k, a, b in zip(keys, WIDTHS[:-1], WIDTHS[1:])]


def mlp_loss(params, batch):
  h = batch["x"]
  for layer in params[:-1]:
    h = jax.nn.relu(h @ layer["kernel"] + layer["bias"])
  logits = h @ params[-1]["kernel"] + params[-1]["bias"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def batch_for(step, size=64):
  kx, ky = jax.random.split(jax.random.key(100 + step))
  return {"x": jax.random.normal(kx, (size, WIDTHS[0])),
          "y": jax.random.randint(ky, (size,), 0, WIDTHS[-1])}


def make_optimizer(mask):
  return ssam_jax.ssam(optax.sgd(0.05, momentum=0.9), rho=0.1, sparsity=0.6, mask=mask,
                       pattern="tensorwise", normalize="masked", mask_update_every="manual")


@functools.partial(jax.jit, static_argnames=("opt", "active", "refresh"))
def train_step(params, state, batch, opt, active, refresh):
  grad = (jax.value_and_grad(mlp_loss) if active is None
          else ssam_jax.value_and_partial_grad(mlp_loss, active))
  loss, grads = grad(params, batch)
  updates, state = opt.update(grads, state, params, refresh=refresh, grads_wrt=active,
                              grad_fn=lambda p: jax.grad(mlp_loss)(p, batch))
  return optax.apply_updates(params, updates), state


@pytest.mark.parametrize("mask", [  # the reselecting mask with -m slow
    pytest.param(ssam_jax.dynamic_mask(total_steps=10), marks=pytest.mark.slow),
    ssam_jax.random_mask(seed=3)])
def test_fast_path_matches_general_path_over_refreshes(mask):
  opt = make_optimizer(mask)
  general = fast = deep_mlp_params()
  general_state = fast_state = opt.init(general)
  active = None
  seen_sets = set()
  for step in range(10):
    batch = batch_for(step)
    refresh = step % 3 == 0
    general, general_state = train_step(general, general_state, batch, opt, None, refresh)
    fast, fast_state = train_step(fast, fast_state, batch, opt, None if refresh else active,
                                  refresh)
    if refresh:
      active = ssam_jax.perturbed_tensors(fast_state)
      seen_sets.add(active)
      assert 0 < sum(active) < len(active)
  # Ten steps apart from rounding: the partial gradient's graph differs.
  numerics.assert_trees_close(fast, general, eps_multiple=256)
  chex.assert_trees_all_equal(fast_state.mask, general_state.mask)


def test_partial_gradient_equals_full_gradient_on_active_leaves():
  params, batch = deep_mlp_params(), batch_for(0)
  active = (False, False, True, False, False, False, True, True)
  value, partial = ssam_jax.value_and_partial_grad(mlp_loss, active)(params, batch)
  full_value, full = jax.value_and_grad(mlp_loss)(params, batch)
  numerics.assert_trees_close(value, full_value)
  for use, p, f in zip(active, jax.tree.leaves(partial), jax.tree.leaves(full)):
    if use:
      numerics.assert_trees_close(p, f)
    else:
      chex.assert_trees_all_equal(p, jnp.zeros_like(f))


def flops(fn, *args):
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return cost["flops"]


def test_compiled_first_pass_omits_unperturbed_weight_gradients():
  params, batch = deep_mlp_params(), batch_for(0, size=256)
  # Only the last layer is perturbed: no backward pass below it is needed.
  last_only = (False,) * 6 + (True, True)
  # Only the first layer: activation gradients flow down, but the weight
  # gradients of the three upper layers are skipped.
  first_only = (True, True) + (False,) * 6
  full = flops(jax.value_and_grad(mlp_loss), params, batch)
  forward = flops(mlp_loss, params, batch)
  last = flops(ssam_jax.value_and_partial_grad(mlp_loss, last_only), params, batch)
  first = flops(ssam_jax.value_and_partial_grad(mlp_loss, first_only), params, batch)
  assert last < 1.2 * forward < full
  assert first < 0.85 * full


def test_perturbed_tensors_reads_the_mask_inside_a_chain():
  params = deep_mlp_params()
  opt = optax.chain(optax.clip_by_global_norm(1.0), make_optimizer(ssam_jax.random_mask()))
  active = ssam_jax.perturbed_tensors(opt.init(params))
  assert len(active) == len(jax.tree.leaves(params)) and any(active)
  with pytest.raises(ValueError, match="mask"):
    ssam_jax.perturbed_tensors(optax.sgd(0.1).init(params))
