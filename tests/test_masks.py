"""Mask selection: exact cardinality, tie-breaking, patterns, refresh schedule."""

import functools
import math

import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

import numerics
import ssam_jax
from ssam_jax import patterns
from experiments.tiny_mlp import example_loss, init_params, loss, synthetic_batch

# Each example compiles anew; five per property keep the suite within CI's time.
SETTINGS = settings(max_examples=5, deadline=None)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
# Few distinct values so that ties are common; NaN and infinities included.
values = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, np.inf, -np.inf, np.nan, 1e-30])


@st.composite
def score_trees(draw):
  leaves = draw(st.lists(shapes, min_size=1, max_size=4))
  return [draw(hnp.arrays(np.float32, shape, elements=values)) for shape in leaves]


def reference_topk(leaves, k):
  """Stable descending sort of the concatenation; NaN just above -inf."""
  flat = np.concatenate([leaf.ravel() for leaf in leaves]).astype(np.float64)
  flat = np.where(np.isnan(flat), -np.finfo(np.float64).max, flat)
  order = np.argsort(-flat, kind="stable")
  chosen = np.zeros(flat.size, bool)
  chosen[order[:k]] = True
  out, start = [], 0
  for leaf in leaves:
    out.append(chosen[start:start + leaf.size].reshape(leaf.shape))
    start += leaf.size
  return out


@SETTINGS
@given(score_trees(), st.floats(0, 1))
def test_topk_mask_equals_stable_sort_reference(leaves, fraction):
  k = math.floor(fraction * sum(leaf.size for leaf in leaves))
  actual = ssam_jax.topk_mask([jnp.asarray(leaf) for leaf in leaves], k)
  for a, e in zip(actual, reference_topk(leaves, k)):
    np.testing.assert_array_equal(np.asarray(a), e)


@SETTINGS
@given(score_trees(), st.floats(0, 1))
def test_unstructured_mask_has_exactly_floor_density_times_d_ones(leaves, sparsity):
  d = sum(leaf.size for leaf in leaves)
  masks = patterns.Unstructured().select([jnp.asarray(x) for x in leaves], 1 - sparsity)
  assert sum(int(m.sum()) for m in masks) == math.floor((1 - sparsity) * d)


@SETTINGS
@given(st.integers(1, 4).flatmap(lambda m: st.tuples(st.integers(0, m), st.just(m))),
       hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=9), st.integers(0, 2**31 - 1))
def test_n_of_m_keeps_n_per_group_along_input_axis(n_m, shape, seed):
  n, m = n_m
  scores = jax.random.normal(jax.random.key(seed), shape)
  mask = np.asarray(patterns.NOutOfM(n, m).select([scores], n / m)[0])
  in_features = shape[-2]
  grouped = np.moveaxis(mask, -2, -1)
  scores_grouped = np.moveaxis(np.asarray(scores), -2, -1)
  for start in range(0, in_features, m):
    group = grouped[..., start:start + m]
    group_scores = scores_grouped[..., start:start + m]
    np.testing.assert_array_equal(group.sum(-1), min(n, group.shape[-1]))
    # Every kept score beats every dropped one within its group.
    kept_min = np.where(group, group_scores, np.inf).min(-1)
    dropped_max = np.where(group, -np.inf, group_scores).max(-1)
    assert np.all(kept_min >= dropped_max)


def test_n_of_m_leaves_one_dimensional_leaves_fully_perturbed():
  mask = patterns.NOutOfM(2, 4).select([jnp.arange(6.0)], 0.5)[0]
  assert bool(mask.all())


@SETTINGS
@given(st.lists(hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), min_size=1, max_size=6),
       st.floats(0, 1), st.integers(0, 1000))
def test_tensorwise_takes_whole_leaves_by_mean_within_budget(shapes_list, density, seed):
  keys = jax.random.split(jax.random.key(seed), len(shapes_list))
  scores = [jax.random.uniform(k, s) for k, s in zip(keys, shapes_list)]
  masks = patterns.Tensorwise().select(scores, density)
  sizes = [int(np.prod(s)) for s in shapes_list]
  means = [float(s.mean()) for s in scores]
  chosen = [bool(m.all()) for m in masks]
  assert all(bool(m.all()) or not bool(m.any()) for m in masks)
  # Reference: a plain Python greedy knapsack over leaves sorted by mean.
  budget = math.floor(density * sum(sizes))
  expected, used = [False] * len(sizes), 0
  for leaf in sorted(range(len(sizes)), key=lambda i: -means[i]):
    if used + sizes[leaf] <= budget:
      expected[leaf], used = True, used + sizes[leaf]
  assert chosen == expected
  assert sum(size for size, c in zip(sizes, chosen) if c) <= budget


def test_tensorwise_skips_a_leaf_too_large_for_the_budget():
  # The best-scored leaf holds 80% of the parameters: at density 0.5 it is
  # skipped and the two smaller ones are taken.
  scores = [jnp.full((80,), 3.0), jnp.full((10,), 2.0), jnp.full((10,), 1.0)]
  masks = patterns.Tensorwise().select(scores, 0.5)
  assert [bool(m.all()) for m in masks] == [False, True, True]
  traced = jax.jit(patterns.Tensorwise().select)(scores, jnp.float32(0.5))
  assert [bool(m.all()) for m in traced] == [False, True, True]


# Every strategy with the unstructured pattern and the Fisher mask with every
# pattern; the other pairs with -m slow.
@pytest.mark.parametrize("strategy,pattern,sparsity", [
    (strategy, pattern, sparsity)
    if strategy == "fisher" or pattern == "unstructured"
    else pytest.param(strategy, pattern, sparsity, marks=pytest.mark.slow)
    for strategy in ("fisher", "dynamic", "random")
    for pattern, sparsity in (("unstructured", 0.7), ("tensorwise", 0.5), ("2:4", 0.5))])
def test_every_strategy_supports_every_pattern(strategy, pattern, sparsity):
  mask = {"fisher": ssam_jax.fisher_mask(accumulate=True),
          "dynamic": ssam_jax.dynamic_mask(total_steps=10),
          "random": ssam_jax.random_mask()}[strategy]
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(optax.sgd(0.1), 0.1, sparsity, mask=mask, pattern=pattern,
                      mask_update_every=1)
  state = opt.init(params)
  for _ in range(3):
    _, state = opt.update(jax.grad(loss)(params, batch), state, params,
                          grad_fn=lambda p: jax.grad(loss)(p, batch))
  kernel = np.asarray(state.mask["dense1"]["kernel"])
  if pattern == "unstructured":
    d = sum(p.size for p in jax.tree.leaves(params))
    assert sum(int(m.sum()) for m in jax.tree.leaves(state.mask)) == math.floor(0.3 * d)
  elif pattern == "tensorwise":
    assert all(bool(m.all()) or not bool(m.any()) for m in jax.tree.leaves(state.mask))
  else:
    np.testing.assert_array_equal(kernel.reshape(-1, 4, kernel.shape[-1]).sum(axis=1), 2)
    assert bool(state.mask["dense1"]["bias"].all())


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
@pytest.mark.parametrize("mask", [ssam_jax.fisher_mask(accumulate=True),
                                  ssam_jax.dynamic_mask(total_steps=5)])
def test_non_finite_gradients_keep_exactly_k_ones(mask, bad_value):
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(optax.sgd(0.1), 0.1, 0.6, mask=mask, mask_update_every=1)
  state = opt.init(params)
  grads = jax.tree.map(lambda g: g.at[..., 0].set(bad_value), jax.grad(loss)(params, batch))
  _, state = opt.update(grads, state, params, grad_fn=lambda p: grads)
  d = sum(p.size for p in jax.tree.leaves(params))
  assert sum(int(m.sum()) for m in jax.tree.leaves(state.mask)) == math.floor(0.4 * d)


def test_dynamic_refresh_keeps_count_and_follows_cosine_decay():
  params = init_params()
  d = sum(p.size for p in jax.tree.leaves(params))
  k = math.floor(0.5 * d)
  total_steps = 20
  opt = ssam_jax.ssam(optax.sgd(0.0), 0.1, 0.5, mask=ssam_jax.dynamic_mask(total_steps, drop_rate=0.6),
                      mask_update_every=5)
  state = opt.init(params)
  batch = synthetic_batch()
  update = jax.jit(lambda state: opt.update(jax.grad(loss)(params, batch), state, params,
                                            grad_fn=lambda p: jax.grad(loss)(p, batch))[1])
  previous = np.concatenate([np.ravel(m) for m in jax.tree.leaves(state.mask)])
  for step in range(total_steps + 1):
    state = update(state)
    current = np.concatenate([np.ravel(m) for m in jax.tree.leaves(state.mask)])
    assert current.sum() == k
    changed = int((previous & ~current).sum())
    if step % 5:
      assert changed == 0
    else:
      # At most N_drop = k - floor(k * (1 - f(t))) entries leave the mask.
      f = 0.6 / 2 * (1 + math.cos(math.pi * step / total_steps))
      assert changed <= k - math.floor(0.5 * (1 - f) * d) + 1
      if step == 0:
        assert changed > 0
    previous = current
  # At t = T the drop rate has decayed to zero: nothing moves.
  assert changed == 0


def test_fisher_fn_runs_only_on_refresh_steps_and_no_retracing():
  params = init_params()
  opt = ssam_jax.ssam(optax.sgd(0.05), 0.1, 0.5, mask=ssam_jax.fisher_mask(accumulate=False),
                      mask_update_every=4)
  calls = []

  def counted_fisher_fn(batch):
    fisher_fn = ssam_jax.empirical_fisher(example_loss, batch, num_samples=8)

    def run(p):
      jax.debug.callback(lambda: calls.append(1))
      return fisher_fn(p)
    return run

  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, batch):
    updates, state = opt.update(jax.grad(loss)(params, batch), state, params,
                                grad_fn=lambda p: jax.grad(loss)(p, batch),
                                fisher_fn=counted_fisher_fn(batch))
    return optax.apply_updates(params, updates), state

  state = opt.init(params)
  masks = []
  for i in range(10):
    params, state = step(params, state, synthetic_batch(seed=i))
    masks.append(jax.tree.map(np.asarray, state.mask))
  jax.effects_barrier()
  assert len(calls) == 3  # steps 0, 4 and 8
  for i in (1, 2, 3, 5, 6, 7, 9):
    jax.tree.map(np.testing.assert_array_equal, masks[i], masks[i - 1])


@pytest.mark.parametrize("mask, fisher_calls", [
    (ssam_jax.fisher_mask(accumulate=False), 6),  # steps 0, 3, 6 of both runs
    (ssam_jax.dynamic_mask(total_steps=10), 0)], ids=["fisher", "dynamic"])
def test_static_refresh_follows_a_host_schedule_like_the_traced_one(mask, fisher_calls):
  """``refresh=step % every == 0`` (static) == the lax.cond schedule."""
  optimizers = {every: ssam_jax.ssam(optax.sgd(0.05, momentum=0.9), 0.1, 0.5, mask=mask,
                                     mask_update_every=every) for every in (3, "manual")}
  calls = []

  def step(params, state, batch, refresh):
    opt = optimizers[3 if refresh is None else "manual"]
    fisher_fn = ssam_jax.empirical_fisher(example_loss, batch, num_samples=8)

    def counted_fisher_fn(p):
      jax.debug.callback(lambda: calls.append(1))
      return fisher_fn(p)

    updates, state = opt.update(jax.grad(loss)(params, batch), state, params,
                                grad_fn=lambda p: jax.grad(loss)(p, batch),
                                fisher_fn=counted_fisher_fn,
                                **({} if refresh is None else {"refresh": refresh}))
    return optax.apply_updates(params, updates), state

  traced = jax.jit(functools.partial(step, refresh=None))
  static = jax.jit(step, static_argnames="refresh")
  results = {}
  for name in ("traced", "static"):
    params, state = init_params(), optimizers[3].init(init_params())
    for i in range(7):
      batch = synthetic_batch(seed=i)
      params, state = (traced(params, state, batch) if name == "traced" else
                       static(params, state, batch, refresh=i % 3 == 0))
    results[name] = (params, state)
  jax.effects_barrier()
  assert len(calls) == fisher_calls
  # With and without the schedule's cond: XLA may fuse the two differently.
  numerics.assert_trees_close(results["static"], results["traced"])
  args = (init_params(), optimizers[3].init(init_params()), synthetic_batch(seed=0))
  conds = {refresh: str(jax.make_jaxpr(functools.partial(step, refresh=refresh))(*args)
                       ).count(" cond[") for refresh in (None, True, False)}
  # The schedule's cond is gone; what is left belongs to the refresh itself.
  assert conds[None] == conds[True] + 1 and conds[False] == 0, conds


def test_refresh_must_be_static():
  opt = ssam_jax.ssam(optax.sgd(0.05), 0.1, 0.5, mask=ssam_jax.random_mask(),
                      mask_update_every="manual")
  params = init_params()
  with pytest.raises(TypeError, match="refresh must be a Python bool"):
    opt.update(params, opt.init(params), params, grad_fn=lambda p: p,
               refresh=jnp.array(True))
