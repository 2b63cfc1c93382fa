"""ssam_jax.scheduled_ascent: SAM's ascent every k updates or with probability p."""

import chex
import jax
import jax.numpy as jnp
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
    (lambda: ssam_jax.scheduled_ascent(SGD, every=2), TypeError, "inner"),
    (lambda: ssam_jax.scheduled_ascent(ssam_jax.sam(SGD, 0.1, transparent=True), every=2),
     TypeError, "transparent=False"),
    (lambda: ssam_jax.scheduled_ascent(SAM), ValueError, "exactly one of every"),
    (lambda: ssam_jax.scheduled_ascent(SAM, every=2, probability=0.5), ValueError,
     "exactly one of every"),
    (lambda: ssam_jax.scheduled_ascent(SAM, every=0), ValueError, "every"),
    (lambda: ssam_jax.scheduled_ascent(SAM, every=2.5), TypeError, "every"),
    (lambda: ssam_jax.scheduled_ascent(SAM, every="sometimes"), ValueError, "every"),
    (lambda: ssam_jax.scheduled_ascent(SAM, probability=1.5), ValueError, "probability"),
    (lambda: ssam_jax.scheduled_ascent(SAM, probability="half"), TypeError, "probability"),
    (lambda: ssam_jax.scheduled_ascent(SAM, probability=0.5, seed=1.5), TypeError, "seed"),
])
def test_construction_errors_name_the_argument(make, error, name):
  with pytest.raises(error, match=name):
    make()


def update_once(opt, **kwargs):
  params = init_params()
  batch = batches(1)[0]
  return opt.update(jax.grad(loss)(params, batch), opt.init(params), **kwargs)


@pytest.mark.parametrize("opt,kwargs,error,name", [
    (ssam_jax.scheduled_ascent(SAM, every="manual"), {}, TypeError, "ascend"),
    (ssam_jax.scheduled_ascent(SAM, every="manual"), {"ascend": 1}, TypeError, "ascend"),
    (ssam_jax.scheduled_ascent(SAM, every=2), {"ascend": True}, ValueError, "ascend"),
    (ssam_jax.scheduled_ascent(SAM, probability=0.5), {"ascend": True}, ValueError, "ascend"),
    (ssam_jax.scheduled_ascent(SAM, every=2), {}, TypeError, "grad_fn"),
    (ssam_jax.scheduled_ascent(SAM, every="manual"), {"ascend": True}, TypeError, "grad_fn"),
])
def test_update_errors_name_the_argument(opt, kwargs, error, name):
  with pytest.raises(error, match=name):
    update_once(opt, params=init_params(), **kwargs)


def test_missing_params_is_named():
  with pytest.raises(ValueError, match="params"):
    update_once(ssam_jax.scheduled_ascent(SAM, every=2), grad_fn=jax.grad(loss))


def test_partial_grads_wrt_is_refused_where_an_update_may_skip_the_ascent():
  """The fast path's partial first gradient serves only updates that ascend."""
  params, batch = init_params(), batches(1)[0]
  wrt = tuple(i == 0 for i in range(len(jax.tree.leaves(params))))
  inner = lambda: ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.random_mask(),
                                pattern="tensorwise", normalize="masked")
  grads, grad_fn = jax.grad(loss)(params, batch), lambda p: jax.grad(loss)(p, batch)
  for opt, kwargs in ((ssam_jax.scheduled_ascent(inner(), every=2), {}),
                      (ssam_jax.scheduled_ascent(inner(), every="manual"), {"ascend": False})):
    with pytest.raises(ValueError, match="without the ascent"):
      opt.update(grads, opt.init(params), params, grads_wrt=wrt, grad_fn=grad_fn, **kwargs)
  opt = ssam_jax.scheduled_ascent(inner(), every="manual")
  opt.update(grads, opt.init(params), params, grads_wrt=wrt, grad_fn=grad_fn, ascend=True)


MASKS = {"dense": None, "random": ssam_jax.random_mask(seed=3)}


def inner_optimizer(mask):
  if mask is None:
    return ssam_jax.sam(base_optimizer(), RHO)
  return ssam_jax.ssam(base_optimizer(), RHO, 0.5, mask=mask)


def mask_vector(state):
  mask = optax.tree.get(state, "mask")
  return 1.0 if mask is None else flat(mask)


@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_every_k_matches_reference(mask):
  """SAM on updates 0 and 3, the base optimizer's step from g otherwise."""
  with jax.enable_x64(True):
    params, data = params64(), batches(5)
    opt = ssam_jax.scheduled_ascent(inner_optimizer(mask), every=3)
    actual, state, _ = train(opt, params, data)
    reference = Reference(params)
    m = mask_vector(state)
    for i, batch in enumerate(data):
      g, g_s = reference.sam_grads(batch, m)
      reference.descend(g_s if i % 3 == 0 else g)
    numerics.assert_trees_close(actual, reference.params())
    assert int(state.ascents) == 2


@pytest.mark.parametrize("mask", MASKS.values(), ids=MASKS.keys())
def test_probability_matches_reference(mask):
  """Update t ascends when ``uniform(split(key_t)[1]) < p`` (the documented draw)."""
  p = 0.5
  with jax.enable_x64(True):
    params, data = params64(), batches(6)
    opt = ssam_jax.scheduled_ascent(inner_optimizer(mask), probability=p, seed=4)
    actual, state, states = train(opt, params, data)
    draws = [float(jax.random.uniform(jax.random.split(s.key)[1])) for s in states]
    ascends = [u < p for u in draws]
    assert 0 < sum(ascends) < len(ascends)  # both kinds of update are tested
    reference = Reference(params)
    m = mask_vector(state)
    for batch, ascend in zip(data, ascends):
      g, g_s = reference.sam_grads(batch, m)
      reference.descend(g_s if ascend else g)
    numerics.assert_trees_close(actual, reference.params())
    assert int(state.ascents) == sum(ascends)


STRATEGIES = {
    "fisher": lambda: ssam_jax.fisher_mask(),
    "dynamic": lambda: ssam_jax.dynamic_mask(total_steps=6),
    "random": lambda: ssam_jax.random_mask(resample=True),
}


def inners():
  yield "sam", lambda: ssam_jax.sam(base_optimizer(), RHO)
  for name, strategy in STRATEGIES.items():
    yield f"ssam-{name}", lambda strategy=strategy: ssam_jax.ssam(
        base_optimizer(), RHO, 0.5, mask=strategy(), mask_update_every=2)


INNERS = dict(inners())
# The dynamic and random masks repeat the Fisher mask's path through the
# wrapper: they run with the slow tests.
INNER_PARAMS = [pytest.param(name, marks=pytest.mark.slow)
                if name in ("ssam-dynamic", "ssam-random") else name for name in INNERS]


def fisher_kwargs(batch):
  return {"fisher_fn": ssam_jax.empirical_fisher(example_loss, batch, num_samples=8)}


def train_with_fisher(opt, steps=6):
  params = init_params()
  state = opt.init(params)

  @jax.jit
  def step(params, state, batch):
    kwargs = fisher_kwargs(batch)
    updates, state = opt.update(jax.grad(loss)(params, batch), state, params,
                                grad_fn=lambda p: jax.grad(loss)(p, batch), **kwargs)
    return optax.apply_updates(params, updates), state

  for batch in batches(steps):
    params, state = step(params, state, batch)
  return params, state


@pytest.mark.parametrize("name", INNER_PARAMS)
@pytest.mark.parametrize("schedule", [{"every": 1}, {"probability": 1.0}],
                         ids=["every=1", "probability=1"])
def test_always_ascending_reproduces_inner_exactly(name, schedule):
  expected, expected_state = train_with_fisher(INNERS[name]())
  actual, state = train_with_fisher(ssam_jax.scheduled_ascent(INNERS[name](), **schedule))
  chex.assert_trees_all_equal(actual, expected)
  chex.assert_trees_all_equal(state.inner, expected_state)
  assert int(state.ascents) == 6


@pytest.mark.parametrize("schedule", [{"every": 3}, {"probability": 0.5}],
                         ids=["every=3", "probability=0.5"])
def test_rho_zero_reproduces_base_optimizer_exactly(schedule):
  params, data = init_params(), batches(6)
  expected, _, _ = train(optax.with_extra_args_support(base_optimizer()), params, data)
  for inner in (ssam_jax.sam(base_optimizer(), 0.0),
                ssam_jax.ssam(base_optimizer(), 0.0, 0.5, mask=ssam_jax.random_mask())):
    actual, state, _ = train(ssam_jax.scheduled_ascent(inner, **schedule), params, data)
    chex.assert_trees_all_equal(actual, expected)
    assert int(state.ascents) == 0


def test_plain_updates_do_not_call_grad_fn():
  """With a static schedule, an update without the ascent never calls grad_fn."""
  params, batch = init_params(), batches(1)[0]

  def must_not_run(p):
    raise AssertionError("grad_fn called on an update without the ascent")

  for opt, kwargs in ((ssam_jax.scheduled_ascent(SAM, every="manual"), {"ascend": False}),
                      (ssam_jax.scheduled_ascent(SAM, probability=0), {})):
    updates, state = opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
                                grad_fn=must_not_run, **kwargs)
    expected, _ = SGD.update(jax.grad(loss)(params, batch), SGD.init(params), params)
    chex.assert_trees_all_equal(updates, expected)
    assert int(state.ascents) == 0 and int(state.inner.count) == 1


def test_manual_schedule_matches_the_traced_one():
  params, data = init_params(), batches(6)
  traced, traced_state, _ = train(ssam_jax.scheduled_ascent(INNERS["sam"](), every=3),
                                  params, data)
  manual, manual_state, _ = train(ssam_jax.scheduled_ascent(INNERS["sam"](), every="manual"),
                                  params, data, ascend=[i % 3 == 0 for i in range(6)])
  numerics.assert_trees_close(manual, traced)
  assert int(manual_state.ascents) == int(traced_state.ascents) == 2


@pytest.mark.parametrize("schedule", [{"every": 3}, {"probability": 0.5, "seed": 1},
                                      {"probability": optax.linear_schedule(0.0, 1.0, 8),
                                       "seed": 1}],
                         ids=["every", "probability", "schedule"])
def test_no_retracing_across_updates(schedule):
  opt = ssam_jax.scheduled_ascent(
      ssam_jax.ssam(base_optimizer(), RHO, 0.5, mask=ssam_jax.fisher_mask(),
                    mask_update_every=3), **schedule)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, batch):
    updates, state = opt.update(jax.grad(loss)(params, batch), state, params,
                                grad_fn=lambda p: jax.grad(loss)(p, batch),
                                **fisher_kwargs(batch))
    return optax.apply_updates(params, updates), state

  params = init_params()
  state = opt.init(params)
  for batch in batches(8):
    params, state = step(params, state, batch)
  assert int(state.inner.count) == 8
  assert 0 < int(state.ascents) < 8
  assert int(jnp.sum(flat(state.inner.mask))) == flat(state.inner.mask).size // 2


def test_probability_sets_the_fraction_of_ascents():
  """Bernoulli(p) draws: 400 updates at p = 0.25 ascend 100 +- 5 sigma times."""
  opt = ssam_jax.scheduled_ascent(ssam_jax.sam(SGD, 0.1), probability=0.25, seed=1)
  params = {"w": jnp.ones(3)}

  @jax.jit
  def step(state):
    return opt.update(params, state, params, grad_fn=lambda p: p)[1]

  state = opt.init(params)
  for _ in range(400):
    state = step(state)
  sigma = np.sqrt(400 * 0.25 * 0.75)
  assert abs(int(state.ascents) - 100) < 5 * sigma


def test_composes_with_optax_chain():
  params, data = init_params(), batches(4)
  make = lambda: ssam_jax.scheduled_ascent(INNERS["sam"](), every=2)
  expected, _, _ = train(make(), params, data)
  actual, state, _ = train(optax.chain(optax.identity(), make()), params, data)
  chex.assert_trees_all_equal(actual, expected)
  assert int(optax.tree.get(state, "ascents")) == 2
