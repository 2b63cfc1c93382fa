"""ssam_jax.msam: the ascent along the momentum, one gradient per update.

The reference follows the official PyTorch code (MarlonBecker/MSAM,
optimizer/msam.py): the gradient is taken at ``w - rho * v / ||v||``, with
``v`` SGD's momentum buffer after the last update (zero at first), then
``v <- mu v + g`` and ``w <- w - lr v``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
import ssam_jax
from efficient_cases import (MOMENTUM, RHO, Reference, base_optimizer, batches, loss,
                             params64)
from experiments.tiny_mlp import example_loss, flat, init_params

SGD = optax.sgd(0.1, momentum=0.9)


def train(opt, params, data, **update_kwargs):
  """Jitted MSAM updates: one gradient, at ``opt.perturbed_params``."""
  state = opt.init(params)

  @jax.jit
  def step(params, state, batch):
    grads = jax.grad(loss)(opt.perturbed_params(state, params), batch)
    updates, state = opt.update(grads, state, params, **update_kwargs)
    return optax.apply_updates(params, updates), state

  for batch in data:
    params, state = step(params, state, batch)
  return params, state


def train_base(params, data):
  """The base optimizer alone, jitted as in ``train``."""
  base = base_optimizer()
  state = base.init(params)

  @jax.jit
  def step(params, state, batch):
    updates, state = base.update(jax.grad(loss)(params, batch), state, params)
    return optax.apply_updates(params, updates), state

  for batch in data:
    params, state = step(params, state, batch)
  return params


@pytest.mark.parametrize("make,error,name", [
    (lambda: ssam_jax.msam(SGD), TypeError, "inner"),
    (lambda: ssam_jax.msam(ssam_jax.sam(SGD, 0.1, transparent=True)), TypeError,
     "transparent=False"),
    (lambda: ssam_jax.msam(ssam_jax.sam(SGD, 0.1, sync_period=3)), ValueError, "sync_period"),
    (lambda: ssam_jax.msam(ssam_jax.sam(SGD, 0.1, axis_name="d", m_sharpness=True)),
     ValueError, "m_sharpness"),
    (lambda: ssam_jax.msam(ssam_jax.sam(SGD, 0.1), momentum="trace"), TypeError, "momentum"),
])
def test_construction_errors_name_the_argument(make, error, name):
  with pytest.raises(error, match=name):
    make()


@pytest.mark.parametrize("base,momentum,match", [
    (optax.sgd(0.1), None, "no field 'trace' or 'mu'"),
    (optax.chain(optax.trace(0.9), optax.adam(0.1)), None, "both a 'trace' and a 'mu'"),
    (optax.chain(optax.trace(0.9), optax.trace(0.5)), None, "several fields 'trace'"),
    (SGD, lambda state: {"w": 1.0}, "momentum must be shaped like params"),
])
def test_a_base_without_a_momentum_is_refused_at_init(base, momentum, match):
  opt = ssam_jax.msam(ssam_jax.sam(base, 0.1), momentum=momentum)
  with pytest.raises(ValueError, match=match):
    opt.init(init_params())


def test_update_errors_name_the_argument():
  opt = ssam_jax.msam(ssam_jax.sam(SGD, 0.1))
  params = init_params()
  grads, state = jax.grad(loss)(params, batches(1)[0]), opt.init(params)
  with pytest.raises(TypeError, match="grad_fn"):
    opt.update(grads, state, params, grad_fn=jax.grad(loss))
  with pytest.raises(ValueError, match="params"):
    opt.update(grads, state)
  with pytest.raises(ValueError, match="grads_wrt leaves out 'dense1/kernel'"):
    opt.update(grads, state, params, grads_wrt=(True, False, True, True))
  with pytest.raises(ValueError, match="exactly one MSAMState"):
    opt.perturbed_params((state, state), params)
  with pytest.raises(ValueError, match="exactly one MSAMState"):
    opt.perturbed_params(ssam_jax.sam(SGD, 0.1).init(params), params)


MASKS = {"dense": None, "random": ssam_jax.random_mask(seed=3)}


def inner_optimizer(mask, rho=RHO, base=None):
  base = base_optimizer() if base is None else base
  if mask is None:
    return ssam_jax.sam(base, rho)
  return ssam_jax.ssam(base, rho, 0.5, mask=mask)


@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_updates_match_the_official_algorithm(mask):
  with jax.enable_x64(True):
    params, data = params64(), batches(4)
    actual, state = train(ssam_jax.msam(inner_optimizer(mask)), params, data)
    mask_state = optax.tree.get(state, "mask")
    m = 1.0 if mask_state is None else flat(mask_state)
    reference = Reference(params)
    for batch in data:
      v = reference.trace
      norm = np.linalg.norm(v)
      eps = -RHO * v / norm * m if norm > 0 else 0.0
      reference.descend(reference.grad(reference.w + eps, batch))
    numerics.assert_trees_close(actual, reference.params())
    numerics.assert_trees_close(flat(optax.tree.get(state, "trace")), reference.trace)


def test_eps_points_against_the_momentum_with_radius_rho():
  """After one update v = g_0, so the next gradient is taken at w - rho g_0 / ||g_0||."""
  params, batch = init_params(), batches(1)[0]
  opt = ssam_jax.msam(ssam_jax.sam(optax.sgd(0.1, momentum=MOMENTUM), RHO))
  state = opt.init(params)
  chex.assert_trees_all_equal(opt.perturbed_params(state, params), params)  # v = 0
  g0 = jax.grad(loss)(params, batch)
  updates, state = opt.update(g0, state, params)
  params = optax.apply_updates(params, updates)
  eps = flat(opt.perturbed_params(state, params)) - flat(params)
  numerics.assert_trees_close(eps, -RHO * flat(g0) / np.linalg.norm(flat(g0)),
                              scale=np.abs(flat(params)).max())


def test_adam_first_moment_is_the_default_direction():
  params, data = init_params(), batches(3)
  opt = ssam_jax.msam(ssam_jax.sam(optax.adamw(1e-2), RHO))
  _, state = train(opt, params, data)
  mu = flat(optax.tree.get(state, "mu"))
  eps = flat(opt.perturbed_params(state, params)) - flat(params)
  numerics.assert_trees_close(eps, -RHO * mu / np.linalg.norm(mu),
                              scale=np.abs(flat(params)).max())


def test_sparse_eps_is_zero_outside_the_mask():
  params, data = init_params(), batches(3)
  opt = ssam_jax.msam(ssam_jax.ssam(base_optimizer(), RHO, 0.5,
                                    mask=ssam_jax.random_mask(), normalize="masked"))
  _, state = train(opt, params, data)
  eps = flat(opt.perturbed_params(state, params)) - flat(params)
  mask = flat(state.inner.mask).astype(bool)
  assert mask.sum() == mask.size // 2
  np.testing.assert_array_equal(eps[~mask], 0.0)
  numerics.assert_trees_close(np.linalg.norm(eps), RHO, scale=np.abs(flat(params)).max())


def test_rho_zero_reproduces_base_optimizer_exactly():
  params, data = init_params(), batches(5)
  expected = train_base(params, data)
  for inner in (ssam_jax.sam(base_optimizer(), 0.0),
                ssam_jax.ssam(base_optimizer(), 0.0, 0.5, mask=ssam_jax.random_mask())):
    opt = ssam_jax.msam(inner)
    actual, state = train(opt, params, data)
    chex.assert_trees_all_equal(actual, expected)
    assert opt.perturbed_params(state, params) is params


def test_a_positive_rho_changes_the_updates():
  """The control of the test above: with rho > 0 the train loop perturbs."""
  params, data = init_params(), batches(5)
  expected = train_base(params, data)
  actual, _ = train(ssam_jax.msam(ssam_jax.sam(base_optimizer(), RHO)), params, data)
  numerics.assert_differ(actual, expected)


@pytest.mark.parametrize("strategy", [ssam_jax.fisher_mask(), ssam_jax.dynamic_mask(total_steps=6),
                                      ssam_jax.random_mask(resample=True)],
                         ids=["fisher", "dynamic", "random"])
def test_no_retracing_across_updates_and_refreshes(strategy):
  opt = ssam_jax.msam(ssam_jax.ssam(base_optimizer(), RHO, 0.5, mask=strategy,
                                    mask_update_every=2))
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, batch):
    grads = jax.grad(loss)(opt.perturbed_params(state, params), batch)
    updates, state = opt.update(
        grads, state, params,
        fisher_fn=ssam_jax.empirical_fisher(example_loss, batch, num_samples=8))
    return optax.apply_updates(params, updates), state

  params = init_params()
  state = opt.init(params)
  for batch in batches(6):
    params, state = step(params, state, batch)
  assert int(state.inner.count) == 6
  assert int(jnp.sum(flat(state.inner.mask))) == flat(state.inner.mask).size // 2
  chex.assert_tree_all_finite(params)


def test_composes_with_optax_chain():
  params, data = init_params(), batches(4)
  opt = ssam_jax.msam(ssam_jax.sam(base_optimizer(), RHO))
  expected, _ = train(opt, params, data)
  chained = optax.chain(optax.identity(), opt)

  @jax.jit
  def step(params, state, batch):
    grads = jax.grad(loss)(opt.perturbed_params(state, params), batch)
    updates, state = chained.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  actual, state = params, chained.init(params)
  for batch in data:
    actual, state = step(actual, state, batch)
  chex.assert_trees_all_equal(actual, expected)
