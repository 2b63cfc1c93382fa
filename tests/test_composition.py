"""SAM and SSAM inside Optax wrappers, flax.nnx.Optimizer, scan and jit."""

import math

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import numerics
import ssam_jax
from experiments.tiny_mlp import (example_loss, flat, init_params, loss,
                                  synthetic_batch)

STRATEGIES = {
    "fisher": lambda: ssam_jax.fisher_mask(accumulate=True),
    "dynamic": lambda: ssam_jax.dynamic_mask(total_steps=12),
    "random": lambda: ssam_jax.random_mask(),
}


def one_update(opt, state, params, batch, **kwargs):
  return opt.update(jax.grad(loss)(params, batch), state, params,
                    grad_fn=lambda p: jax.grad(loss)(p, batch), **kwargs)


def num_ones(mask):
  return sum(int(m.sum()) for m in jax.tree.leaves(mask))


def test_inside_chain_and_mask_is_found_by_tree_get():
  params, batch = init_params(), synthetic_batch()
  alone = ssam_jax.ssam(optax.sgd(0.1), 0.1, 0.5, mask=STRATEGIES["fisher"](),
                        mask_update_every=5)
  chained = optax.chain(optax.clip_by_global_norm(1e6), alone)
  expected, _ = one_update(alone, alone.init(params), params, batch)
  actual, state = one_update(chained, chained.init(params), params, batch)
  chex.assert_trees_all_equal(actual, expected)
  mask = optax.tree.get(state, "mask")
  chex.assert_trees_all_equal_shapes(mask, params)
  assert num_ones(mask) == math.floor(0.5 * flat(params).size)


def test_inject_hyperparams_rho_and_sparsity():
  params, batch = init_params(), synthetic_batch()
  static = ssam_jax.ssam(optax.sgd(0.1), rho=0.1, sparsity=0.5, mask_update_every=2,
                         mask=STRATEGIES["fisher"]())
  injected = optax.inject_hyperparams(ssam_jax.ssam, static_args=("mask_update_every",))(
      base_optimizer=optax.sgd(0.1), rho=0.1, sparsity=0.5, mask_update_every=2,
      mask=STRATEGIES["fisher"]())
  expected, _ = one_update(static, static.init(params), params, batch)
  state = injected.init(params)
  actual, state = one_update(injected, state, params, batch)
  numerics.assert_trees_close(actual, expected)  # injected: the general path

  state.hyperparams["sparsity"] = jnp.asarray(0.9)
  _, state = one_update(injected, state, params, batch)  # step 1: no refresh
  assert num_ones(optax.tree.get(state, "mask")) == math.floor(0.5 * flat(params).size)
  _, state = one_update(injected, state, params, batch)  # step 2: refresh
  assert num_ones(optax.tree.get(state, "mask")) == math.floor(0.1 * flat(params).size)

  state.hyperparams["rho"] = jnp.asarray(0.0)
  with_rho_zero, _ = one_update(injected, state, params, batch)
  sgd = optax.sgd(0.1)
  sgd_updates, _ = sgd.update(jax.grad(loss)(params, batch), sgd.init(params), params)
  numerics.assert_trees_close(with_rho_zero, sgd_updates)


def test_multisteps_accumulates_the_first_gradient():
  params = init_params()
  batch1, batch2 = synthetic_batch(seed=1), synthetic_batch(seed=2)
  inner = ssam_jax.sam(optax.sgd(0.1), 0.2)
  multi = optax.MultiSteps(inner, every_k_schedule=2)
  state = multi.init(params)
  first, state = one_update(multi, state, params, batch1)
  chex.assert_trees_all_equal(first, jax.tree.map(jnp.zeros_like, params))
  actual, state = one_update(multi, state, params, batch2)

  mean_grads = jax.tree.map(lambda a, b: (a + b) / 2, jax.grad(loss)(params, batch1),
                            jax.grad(loss)(params, batch2))
  expected, _ = inner.update(mean_grads, inner.init(params), params,
                             grad_fn=lambda p: jax.grad(loss)(p, batch2))
  numerics.assert_trees_close(actual, expected)


def test_apply_if_finite_skips_non_finite_steps_and_keeps_state():
  params, batch = init_params(), synthetic_batch()
  opt = optax.apply_if_finite(ssam_jax.ssam(optax.sgd(0.1), 0.1, 0.5,
                                            mask=ssam_jax.dynamic_mask(total_steps=10),
                                            mask_update_every=5), 3)
  state = opt.init(params)
  _, state = one_update(opt, state, params, batch)
  nan_grads = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), params)
  updates, skipped = opt.update(nan_grads, state, params, grad_fn=lambda p: nan_grads)
  chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
  chex.assert_trees_all_equal(skipped.inner_state, state.inner_state)
  assert int(skipped.notfinite_count) == 1
  updates, state = one_update(opt, skipped, params, batch)
  chex.assert_tree_all_finite(updates)
  assert num_ones(optax.tree.get(state, "mask")) == math.floor(0.5 * flat(params).size)


@pytest.mark.parametrize("wrapper", ["masked", "multi_transform"])
def test_frozen_leaves_with_masked_and_multi_transform(wrapper):
  params, batch = init_params(), synthetic_batch()
  trainable = {"dense1": {"kernel": True, "bias": True},
               "dense2": {"kernel": False, "bias": False}}
  inner = ssam_jax.sam(optax.sgd(0.1), 0.3)
  if wrapper == "masked":
    opt = optax.masked(inner, trainable)
  else:
    labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
    opt = optax.multi_transform({"train": inner, "frozen": optax.set_to_zero()}, labels)
  grads = jax.grad(loss)(params, batch)
  updates, _ = opt.update(
      grads, opt.init(params), params,
      grad_fn=lambda p: jax.grad(loss)(ssam_jax.fill_masked(p, params), batch))
  new_params = optax.apply_updates(params, updates)

  if wrapper == "multi_transform":
    chex.assert_trees_all_equal(new_params["dense2"], params["dense2"])
  # Reference: perturb only dense1, normalised by dense1's gradient alone.
  g1 = grads["dense1"]
  norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(g1)))
  perturbed = {"dense1": jax.tree.map(lambda p, g: p + 0.3 * g / norm, params["dense1"], g1),
               "dense2": params["dense2"]}
  expected = jax.tree.map(lambda p, g: p - 0.1 * g, params["dense1"],
                          jax.grad(loss)(perturbed, batch)["dense1"])
  numerics.assert_trees_close(new_params["dense1"], expected)


def test_flax_nnx_optimizer_forwards_grad_fn():
  batch = synthetic_batch()
  model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)

  def loss_of_params(p):
    out = nnx.merge(graphdef, p)(batch["x"])
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), batch["y"][:, None], 1))

  tx = ssam_jax.ssam(optax.sgd(0.1), rho=0.2, sparsity=0.5, mask=STRATEGIES["fisher"](),
                     mask_update_every=5)
  expected_updates, _ = tx.update(jax.grad(loss_of_params)(params), tx.init(params), params,
                                  grad_fn=jax.grad(loss_of_params))
  expected = optax.apply_updates(params, expected_updates)

  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer):
    grads = nnx.grad(lambda m: loss_of_params(nnx.state(m, nnx.Param)))(model)
    optimizer.update(model, grads, grad_fn=jax.grad(loss_of_params))

  train_step(model, optimizer)
  # Jitted by nnx.jit against eager: equal to rounding.
  numerics.assert_trees_close(jax.tree.leaves(nnx.state(model, nnx.Param)),
                              jax.tree.leaves(expected))
  mask = optax.tree.get(optimizer.opt_state, "mask")
  assert num_ones(mask) == math.floor(0.5 * (4 * 3 + 3))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_state_keeps_shapes_and_dtypes_under_scan(name):
  params = init_params()
  batches = jax.tree.map(lambda *b: jnp.stack(b), *[synthetic_batch(seed=i) for i in range(6)])
  opt = ssam_jax.ssam(optax.sgd(0.05, momentum=0.9), 0.1, 0.5, mask=STRATEGIES[name](),
                      mask_update_every=2)
  initial = opt.init(params)

  def step(carry, batch):
    params, state = carry
    updates, state = one_update(opt, state, params, batch)
    return (optax.apply_updates(params, updates), state), None

  (_, final), _ = jax.lax.scan(step, (params, initial), batches)
  chex.assert_trees_all_equal_shapes_and_dtypes(final, initial)
  assert int(final.count) == 6


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_init_on_shape_dtype_structs(name):
  params = init_params()
  structs = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  opt = ssam_jax.ssam(optax.sgd(0.1, momentum=0.9), 0.1, 0.5, mask=STRATEGIES[name](),
                      mask_update_every=5)
  concrete = opt.init(params)
  chex.assert_trees_all_equal_shapes_and_dtypes(jax.eval_shape(opt.init, structs), concrete)
  chex.assert_trees_all_equal_shapes_and_dtypes(opt.init(structs), concrete)


@pytest.mark.parametrize("make_opt", [
    lambda: ssam_jax.sam(optax.sgd(0.1, momentum=0.9), 0.1),
    lambda: ssam_jax.ssam(optax.sgd(0.1, momentum=0.9), 0.1, 0.5, mask=STRATEGIES["fisher"](),
                          mask_update_every=2),
    lambda: ssam_jax.ssam(optax.adam(1e-2), 0.1, 0.5, mask=ssam_jax.dynamic_mask(total_steps=5),
                          mask_update_every=2, adaptive_eta=0.01),
])
def test_bfloat16_params_keep_their_dtype(make_opt):
  params = init_params(dtype=jnp.bfloat16)
  batch = synthetic_batch()
  opt = make_opt()
  state = opt.init(params)
  for _ in range(3):
    updates, state = one_update(opt, state, params, batch)
    params = optax.apply_updates(params, updates)
  chex.assert_trees_all_equal_dtypes(params, init_params(dtype=jnp.bfloat16))
  chex.assert_tree_all_finite(params)
  assert all(m.dtype == jnp.bool_ for m in jax.tree.leaves(optax.tree.get(state, "mask")))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_no_retracing_across_steps_including_refreshes(name):
  # fisher_fn for every strategy: the ones that do not read it ignore it.
  strategy = ssam_jax.fisher_mask() if name == "fisher" else STRATEGIES[name]()
  opt = ssam_jax.ssam(optax.sgd(0.05), 0.1, 0.5, mask=strategy, mask_update_every=3)
  chex.clear_trace_counter()  # The counter is keyed by code, shared by parametrisations.

  @jax.jit
  @chex.assert_max_traces(n=1)
  def train_step(params, state, batch):
    updates, state = opt.update(
        jax.grad(loss)(params, batch), state, params,
        grad_fn=lambda p: jax.grad(loss)(p, batch),
        fisher_fn=ssam_jax.empirical_fisher(example_loss, batch, num_samples=8))
    return optax.apply_updates(params, updates), state

  params = init_params()
  state = opt.init(params)
  for i in range(12):
    params, state = train_step(params, state, synthetic_batch(seed=i))
  assert int(state.count) == 12


def test_ssam_trains_the_mlp():
  params = init_params()
  opt = ssam_jax.ssam(optax.sgd(0.3, momentum=0.9), 0.05, 0.5, mask_update_every=5,
                      mask=STRATEGIES["fisher"]())
  state = opt.init(params)
  batch = synthetic_batch(size=64)
  step = jax.jit(lambda p, s: one_update(opt, s, p, batch))
  before = float(loss(params, batch))
  for _ in range(60):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
  assert float(loss(params, batch)) < 0.7 * before
