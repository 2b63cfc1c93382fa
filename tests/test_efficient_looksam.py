"""ssam_jax.looksam: SAM every k updates, g_v reused in between (Liu et al.)."""

import chex
import jax
import numpy as np
import optax
import pytest

import numerics
import ssam_jax
from efficient_cases import (RHO, Reference, base_optimizer, batches, loss,
                             params64, train)
from experiments.tiny_mlp import example_loss, flat, init_params

SGD = optax.sgd(0.1)
SAM = ssam_jax.sam(SGD, 0.1)


@pytest.mark.parametrize("make,error,name", [
    (lambda: ssam_jax.looksam(optax.adam(0.1), every=5, alpha=0.5), TypeError, "inner"),
    (lambda: ssam_jax.looksam(ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.random_mask(),
                                            transparent=True), 5, 0.5),
     TypeError, "transparent=False"),
    (lambda: ssam_jax.looksam(SAM, every=0, alpha=0.5), ValueError, "every"),
    (lambda: ssam_jax.looksam(SAM, every=2.0, alpha=0.5), TypeError, "every"),
    (lambda: ssam_jax.looksam(SAM, every="often", alpha=0.5), ValueError, "every"),
    (lambda: ssam_jax.looksam(SAM, every=5, alpha=-0.1), ValueError, "alpha"),
    (lambda: ssam_jax.looksam(SAM, every=5, alpha="big"), TypeError, "alpha"),
    (lambda: ssam_jax.looksam(SAM, every=5, alpha=float("inf")), ValueError, "alpha"),
])
def test_construction_errors_name_the_argument(make, error, name):
  with pytest.raises(error, match=name):
    make()


@pytest.mark.parametrize("opt,kwargs,error,name", [
    (ssam_jax.looksam(SAM, "manual", 0.5), {}, TypeError, "ascend"),
    (ssam_jax.looksam(SAM, "manual", 0.5), {"ascend": "yes"}, TypeError, "ascend"),
    (ssam_jax.looksam(SAM, 3, 0.5), {"ascend": False}, ValueError, "ascend"),
    (ssam_jax.looksam(SAM, 3, 0.5), {}, TypeError, "grad_fn"),
    (ssam_jax.looksam(SAM, 1, 0.5), {}, TypeError, "grad_fn"),
    (ssam_jax.looksam(SAM, 3, 0.5),
     {"grads_wrt": (True, False, True, True), "grad_fn": jax.grad(loss)}, ValueError,
     "grads_wrt leaves out 'dense1/kernel'.*looksam reads"),
])
def test_update_errors_name_the_argument(opt, kwargs, error, name):
  params = init_params()
  grads = jax.grad(loss)(params, batches(1)[0])
  with pytest.raises(error, match=name):
    opt.update(grads, opt.init(params), params, **kwargs)


def test_missing_params_is_named():
  opt = ssam_jax.looksam(SAM, 3, 0.5)
  params = init_params()
  with pytest.raises(ValueError, match="params"):
    opt.update(jax.grad(loss)(params, batches(1)[0]), opt.init(params), grad_fn=jax.grad(loss))


MASKS = {"dense": None, "random": ssam_jax.random_mask(seed=3)}


def inner_optimizer(mask, rho=RHO):
  if mask is None:
    return ssam_jax.sam(base_optimizer(), rho)
  return ssam_jax.ssam(base_optimizer(), rho, 0.5, mask=mask)


@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_update_matches_reference(mask):
  """k = 3, alpha = 0.7: SAM on updates 0 and 3, g + alpha ||g||/||g_v|| g_v between."""
  k, alpha = 3, 0.7
  with jax.enable_x64(True):
    params, data = params64(), batches(6)
    actual, state, _ = train(ssam_jax.looksam(inner_optimizer(mask), k, alpha), params, data)
    mask_state = optax.tree.get(state, "mask")
    m = 1.0 if mask_state is None else flat(mask_state)
    reference = Reference(params)
    for i, batch in enumerate(data):
      g, g_s = reference.sam_grads(batch, m)
      if i % k == 0:
        g_v = g_s - (g @ g_s) / (g @ g) * g
        reference.descend(g_s)
      else:
        reference.descend(g + alpha * np.linalg.norm(g) / np.linalg.norm(g_v) * g_v)
    numerics.assert_trees_close(actual, reference.params())
    # The stored g_v is that of update 3, orthogonal to that update's g.
    numerics.assert_trees_close(flat(state.orthogonal), g_v, scale=np.abs(g_s).max())


STRATEGIES = {
    "fisher": lambda: ssam_jax.fisher_mask(),
    "dynamic": lambda: ssam_jax.dynamic_mask(total_steps=6),
    "random": lambda: ssam_jax.random_mask(resample=True),
}
INNERS = {"sam": lambda rho=RHO: ssam_jax.sam(base_optimizer(), rho)}
INNERS.update({
    f"ssam-{name}": lambda rho=RHO, strategy=strategy: ssam_jax.ssam(
        base_optimizer(), rho, 0.5, mask=strategy(), mask_update_every=2)
    for name, strategy in STRATEGIES.items()})
# The dynamic and random masks repeat the Fisher mask's path through the
# wrapper: they run with the slow tests.
INNER_PARAMS = [pytest.param(name, marks=pytest.mark.slow)
                if name in ("ssam-dynamic", "ssam-random") else name for name in INNERS]


def train_with_fisher(opt, params=None, steps=6, ascend=None):
  params = init_params() if params is None else params
  state = opt.init(params)

  @jax.jit
  def step(params, state, batch):
    kwargs = {} if ascend is None else {"ascend": ascend}
    updates, state = opt.update(
        jax.grad(loss)(params, batch), state, params,
        grad_fn=lambda p: jax.grad(loss)(p, batch),
        fisher_fn=ssam_jax.empirical_fisher(example_loss, batch, num_samples=8), **kwargs)
    return optax.apply_updates(params, updates), state

  for batch in batches(steps):
    params, state = step(params, state, batch)
  return params, state


@pytest.mark.parametrize("name", INNER_PARAMS)
def test_every_one_reproduces_inner_exactly(name):
  expected, expected_state = train_with_fisher(INNERS[name]())
  actual, state = train_with_fisher(ssam_jax.looksam(INNERS[name](), every=1, alpha=0.7))
  chex.assert_trees_all_equal(actual, expected)
  chex.assert_trees_all_equal(state.inner, expected_state)


@pytest.mark.parametrize("name", ["sam", "ssam-random"])
def test_rho_zero_reproduces_base_optimizer_exactly(name):
  expected, _ = train_with_fisher(optax.with_extra_args_support(base_optimizer()))
  actual, state = train_with_fisher(ssam_jax.looksam(INNERS[name](0.0), every=3, alpha=0.7))
  chex.assert_trees_all_equal(actual, expected)


@pytest.mark.parametrize("name", INNER_PARAMS)
def test_alpha_zero_is_the_ascent_every_k_updates(name):
  expected, expected_state = train_with_fisher(
      ssam_jax.scheduled_ascent(INNERS[name](), every=3))
  actual, state = train_with_fisher(ssam_jax.looksam(INNERS[name](), every=3, alpha=0.0))
  numerics.assert_trees_close(actual, expected)
  mask = optax.tree.get(state, "mask")
  if mask is not None:
    chex.assert_trees_all_equal(mask, optax.tree.get(expected_state, "mask"))


def test_before_the_first_ascent_g_v_is_zero_and_adds_nothing():
  expected, _ = train_with_fisher(optax.with_extra_args_support(base_optimizer()), steps=2)
  actual, state = train_with_fisher(ssam_jax.looksam(INNERS["sam"](), "manual", 0.7),
                                    steps=2, ascend=False)
  numerics.assert_trees_close(actual, expected)
  assert not any(bool(v.any()) for v in jax.tree.leaves(state.orthogonal))


def test_manual_schedule_matches_the_traced_one():
  params, data = init_params(), batches(6)
  traced, _, _ = train(ssam_jax.looksam(INNERS["sam"](), 3, 0.7), params, data)
  manual, _, _ = train(ssam_jax.looksam(INNERS["sam"](), "manual", 0.7), params, data,
                       ascend=[i % 3 == 0 for i in range(6)])
  numerics.assert_trees_close(manual, traced)


def test_no_retracing_across_updates():
  opt = ssam_jax.looksam(INNERS["ssam-fisher"](), every=3, alpha=0.7)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, batch):
    updates, state = opt.update(
        jax.grad(loss)(params, batch), state, params,
        grad_fn=lambda p: jax.grad(loss)(p, batch),
        fisher_fn=ssam_jax.empirical_fisher(example_loss, batch, num_samples=8))
    return optax.apply_updates(params, updates), state

  params = init_params()
  state = opt.init(params)
  for batch in batches(7):
    params, state = step(params, state, batch)
  assert int(state.inner.count) == 7
  chex.assert_tree_all_finite((params, state.orthogonal))


def test_composes_with_optax_chain_and_injected_alpha():
  params, data = init_params(), batches(4)
  expected, _, _ = train(ssam_jax.looksam(INNERS["sam"](), 2, 0.5), params, data)
  chained, _, _ = train(optax.chain(optax.identity(),
                                    ssam_jax.looksam(INNERS["sam"](), 2, 0.5)), params, data)
  chex.assert_trees_all_equal(chained, expected)
  injected = optax.inject_hyperparams(ssam_jax.looksam, static_args=("every",))(
      INNERS["sam"](), every=2, alpha=0.5)
  actual, state, _ = train(injected, params, data)
  numerics.assert_trees_close(actual, expected)
  assert float(state.hyperparams["alpha"]) == 0.5
