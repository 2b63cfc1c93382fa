"""Transparent mode and several ascent steps, ported from Optax's SAM tests.

``test_transparent_and_multistep_optimization`` ports
``optax/contrib/_sam_test.py``'s ``test_optimization``: a parabola, SGD as the
outer optimizer, ``sync_period`` calls per SAM step (Optax's transparent
mode) or ``sync_period - 1`` ascent steps in one call (Optax's opaque mode,
here the mode with ``grad_fn``), 25000 SAM steps, the same tolerance. The
ascent is SAM's normalised gradient step of radius ``rho``: Optax's
``chain(normalize(), sgd(1e-5))`` adversary. The other tests check the
modes against each other and against a float64 reference.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
import ssam_jax
from experiments.tiny_mlp import flat, init_params, loss, synthetic_batch, unflat

TARGET = jnp.array([1.0, -1.0, 1.0])
STRATEGIES = {
    "fisher-accumulated": lambda: ssam_jax.fisher_mask(accumulate=True),
    "dynamic": lambda: ssam_jax.dynamic_mask(total_steps=1000),
    "random": ssam_jax.random_mask,
    "random-resampled": lambda: ssam_jax.random_mask(resample=True),
}


def parabola_grad(params):
  return jax.grad(lambda p: jnp.sum(jnp.abs(p - TARGET) ** 2))(params)


def make(name, rho, **kwargs):
  base = optax.sgd(1e-3)
  if name == "sam":
    return ssam_jax.sam(base, rho, **kwargs)
  return ssam_jax.ssam(base, rho, 0.5, mask=STRATEGIES[name](), mask_update_every=10,
                       **kwargs)


@pytest.mark.parametrize("name", ["sam"] + sorted(STRATEGIES))
# Optax tests 2 and 3 ascent steps alike; 3 and 4 run with -m slow.
@pytest.mark.parametrize("sync_period", [2, pytest.param(3, marks=pytest.mark.slow),
                                         pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("transparent", [True, False], ids=["transparent", "grad_fn"])
def test_transparent_and_multistep_optimization(name, sync_period, transparent):
  opt = make(name, 1e-5, sync_period=sync_period, transparent=transparent)
  update_kwargs = {} if transparent else {"grad_fn": parabola_grad}
  calls_per_sam_step = sync_period if transparent else 1

  def step(_, carry):
    params, state = carry
    updates, state = opt.update(parabola_grad(params), state, params, **update_kwargs)
    return optax.apply_updates(params, updates), state

  params = jnp.array([-1.0, 10.0, 1.0])
  state = opt.init(params)
  # A no-op change, to verify that tree map works.
  state = optax.tree.map_params(opt, lambda v: v, state)
  params, state = jax.jit(lambda c: jax.lax.fori_loop(
      0, 25000 * calls_per_sam_step, step, c))((params, state))
  chex.assert_trees_all_close(params, TARGET, rtol=3e-2, atol=3e-2)
  inner = state.inner if transparent else state
  assert int(inner.count) == 25000


def same_batch_runs(opt_grad_fn, opt_transparent, sam_steps, batch):
  """Both modes from the same start, with every gradient on ``batch``."""
  grad = lambda p: jax.grad(loss)(p, batch)
  one_call = jax.jit(lambda p, s: opt_grad_fn.update(grad(p), s, p, grad_fn=grad))
  each_call = jax.jit(lambda p, s: opt_transparent.update(grad(p), s, p))
  params = transparent_params = init_params()
  state, transparent_state = opt_grad_fn.init(params), opt_transparent.init(params)
  history = []
  for _ in range(sam_steps):
    updates, state = one_call(params, state)
    params = optax.apply_updates(params, updates)
    while True:
      updates, transparent_state = each_call(transparent_params, transparent_state)
      transparent_params = optax.apply_updates(transparent_params, updates)
      if int(transparent_state.steps_since_sync) == 0:
        break
    history.append((params, state, transparent_params, transparent_state))
  return history


@pytest.mark.parametrize("name", ["sam", "sam-adaptive"] + sorted(STRATEGIES))
@pytest.mark.parametrize("sync_period", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_transparent_mode_matches_the_grad_fn_mode_on_one_batch(name, sync_period):
  def build(transparent):
    base = optax.sgd(0.1, momentum=0.9)
    kwargs = dict(sync_period=sync_period, transparent=transparent)
    if name.startswith("sam"):
      return ssam_jax.sam(base, 0.2, adaptive_eta=0.01 if name == "sam-adaptive" else None,
                          **kwargs)
    return ssam_jax.ssam(base, 0.2, 0.5, mask=STRATEGIES[name](), mask_update_every=2,
                         **kwargs)

  history = same_batch_runs(build(False), build(True), 5, synthetic_batch())
  for params, state, transparent_params, transparent_state in history:
    # (w + eps) - eps + u against w + u: equal to rounding of |w|.
    numerics.assert_trees_close(transparent_params, params,
                                scale=float(np.max(np.abs(flat(params)))))
    inner = transparent_state.inner
    assert int(inner.count) == int(state.count)
    if not name.startswith("sam"):
      chex.assert_trees_all_equal(inner.mask, state.mask)


def test_ascent_calls_move_to_the_perturbed_point_and_the_descent_back():
  params, batch = init_params(), synthetic_batch()
  rho, lr = 0.3, 0.1
  opt = ssam_jax.sam(optax.sgd(lr), rho, transparent=True)
  grad = lambda p: jax.grad(loss)(p, batch)
  state = opt.init(params)
  ascent, state = opt.update(grad(params), state, params)
  g = flat(grad(params))
  numerics.assert_trees_close(flat(ascent), rho * g / np.linalg.norm(g))
  chex.assert_trees_all_equal(state.cache, params)
  assert int(state.steps_since_sync) == 1 and int(state.inner.count) == 0
  perturbed = optax.apply_updates(params, ascent)
  descent, state = opt.update(grad(perturbed), state, perturbed)
  expected = flat(params) - lr * flat(grad(perturbed))
  numerics.assert_trees_close(flat(optax.apply_updates(perturbed, descent)), expected,
                              scale=float(np.max(np.abs(expected))))
  assert int(state.steps_since_sync) == 0 and int(state.inner.count) == 1


def test_several_ascent_steps_match_a_float64_reference():
  """``sync_period=3``: two normalised ascent steps, then the descent."""
  params, batch = init_params(), synthetic_batch()
  rho, lr = 0.2, 0.1

  def grad64(w):
    return flat(jax.grad(loss)(unflat(w, params), batch))

  w = flat(params)
  point = w
  for _ in range(2):
    g = grad64(point)
    point = point + rho * g / np.linalg.norm(g)
  expected = w - lr * grad64(point)
  opt = ssam_jax.sam(optax.sgd(lr), rho, sync_period=3)
  calls = []

  def grad_fn(p):
    calls.append(1)
    return jax.grad(loss)(p, batch)

  updates, _ = opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
                          grad_fn=grad_fn)
  assert len(calls) == 2
  numerics.assert_trees_close(flat(optax.apply_updates(params, updates)), expected,
                              scale=float(np.max(np.abs(expected))))


def test_transparent_mask_refreshes_on_first_calls_of_scheduled_sam_steps():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(optax.sgd(0.1), 0.2, 0.5, mask=ssam_jax.fisher_mask(accumulate=True),
                      mask_update_every=2, transparent=True)
  update = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p, batch), s, p))
  state = opt.init(params)
  accumulated = []
  for _ in range(8):  # SAM steps 0..3, two calls each
    updates, state = update(params, state)
    params = optax.apply_updates(params, updates)
    accumulated.append(int(state.inner.mask_state.num_accumulated))
  # Only first calls (at w) accumulate; SAM steps 0 and 2 refresh and reset.
  assert accumulated == [0, 0, 1, 1, 0, 0, 1, 1]


def test_transparent_state_and_rho_schedule_count_sam_steps():
  params, batch = init_params(), synthetic_batch()
  seen_rho = []

  def rho(count):
    seen_rho.append(count)
    return 0.1 * (count + 1)

  opt = ssam_jax.sam(optax.sgd(0.1), rho, sync_period=3, transparent=True)
  state = opt.init(params)
  assert isinstance(state, ssam_jax.TransparentState)
  norms = []
  for _ in range(6):
    updates, state = opt.update(jax.grad(loss)(params, batch), state, params)
    if int(state.steps_since_sync) != 0:
      norms.append(float(np.linalg.norm(flat(updates))))
    params = optax.apply_updates(params, updates)
  assert int(state.inner.count) == 2
  # Two ascent calls per SAM step, each of norm rho(SAM step).
  numerics.assert_trees_close(np.array(norms), np.array([0.1, 0.1, 0.2, 0.2]), scale=1.0)


@pytest.mark.parametrize("make_opt,kwargs,error,match", [
    (lambda: ssam_jax.sam(optax.sgd(0.1), 0.1, transparent=True),
     {"grad_fn": lambda p: p}, TypeError, "takes no grad_fn"),
    (lambda: ssam_jax.sam(optax.sgd(0.1), 0.1, transparent=True),
     {"grads_wrt": (True,) * 4}, TypeError, "takes no grads_wrt"),
])
def test_transparent_update_errors_are_named(make_opt, kwargs, error, match):
  params = init_params()
  opt = make_opt()
  with pytest.raises(error, match=match):
    opt.update(params, opt.init(params), params, **kwargs)


@pytest.mark.parametrize("make_opt,error,match", [
    (lambda: ssam_jax.sam(optax.sgd(0.1), 0.1, sync_period=1), ValueError, "sync_period"),
    (lambda: ssam_jax.sam(optax.sgd(0.1), 0.1, sync_period=jnp.asarray(3)), TypeError,
     "static_args"),
    (lambda: ssam_jax.sam(optax.sgd(0.1), 0.1, transparent=1), TypeError, "transparent"),
    (lambda: ssam_jax.sam(optax.sgd(0.1), 0.1, axis_name="d", m_sharpness=True,
                          transparent=True), ValueError, "m_sharpness"),
    (lambda: ssam_jax.ssam(optax.sgd(0.1), 0.1, 0.5, mask=ssam_jax.dynamic_mask(10),
                           mask_update_every="manual", transparent=True), ValueError,
     "'manual'"),
])
def test_transparent_construction_errors_are_named(make_opt, error, match):
  with pytest.raises(error, match=match):
    make_opt()


def test_transparent_init_copies_the_params():
  # A buffer of its own, so that a loop may donate both params and state.
  params = init_params()
  state = ssam_jax.sam(optax.sgd(0.1), 0.1, transparent=True).init(params)
  chex.assert_trees_all_equal(state.cache, params)
  for cached, p in zip(jax.tree.leaves(state.cache), jax.tree.leaves(params)):
    assert cached is not p
