"""The cheaper ascents in the training program: config keys, optimizer table,
the one train step and its host-side plan (``experiments.ascents``).

The library's own tests of the variants are test_efficient_*.py; these check
that the program builds them from a config and that its step feeds them what
docs/efficient.md says: one gradient for MSAM, a sub-batch first gradient,
and no second gradient on the steps that do not ascend.
"""

import dataclasses
import functools

import jax
import numpy as np
import optax
import pytest

import experiment_helpers as testing
import numerics
from experiments import ascents
from experiments import config_validation
from experiments import models
from experiments import optimizer_table
from experiments import optimizers
from experiments import radius
from experiments import steps
from experiments import tiny_mlp
from experiments import train

LEARNING_RATE, RHO, WEIGHT_DECAY = 0.1, 0.2, 1e-3
STATIC = ("perturbed", "refresh", "ascend")
VARIANTS = {
    "every 2": dict(ascent="scheduled", ascent_every=2),
    "p=0.5": dict(ascent="scheduled", ascent_probability=0.5),
    "looksam 2": dict(ascent="looksam", ascent_every=2),
    "msam": dict(ascent="msam"),
    "1/2 batch": dict(ascent_batch_fraction=0.5),
    "every 2, 1/2 batch": dict(ascent="scheduled", ascent_every=2,
                               ascent_batch_fraction=0.5),
}
SHARPNESS_AWARE = [name for name, entry in optimizer_table.OPTIMIZERS.items()
                   if entry.sharpness_aware and name != "optax-sam"]


def _counting_loss_fns(counter: list):
  """The tiny MLP's losses; every trace of the batch loss appends to counter."""

  def loss(params, batch):
    counter.append(len(batch["y"]))
    return tiny_mlp.loss(params, batch)

  return steps.stateless_loss_fns(loss, tiny_mlp.example_loss)


def _hyperparams(name="sam", **overrides):
  """The trainer's choices (host-side refresh and ascent) at a constant rate."""
  values = dict(learning_rate=LEARNING_RATE, rho=RHO,
                weight_decay=WEIGHT_DECAY, static_refresh=True,
                static_ascent=True)
  return optimizers.default_hyperparams(
      name, total_steps=12, mask_update_every=4, **{**values, **overrides})


def _train(built, batches, loss_fns=None, traces=None):
  """The program's step, jitted as the trainer does, over ``batches``.

  Returns the final params and state, the jitted step and the static
  arguments of every step; each trace of the step appends its static
  arguments to ``traces``.
  """
  loss_fns = loss_fns or steps.stateless_loss_fns(tiny_mlp.loss,
                                                  tiny_mlp.example_loss)
  train_step = steps.make_train_step(loss_fns, built.optimizer,
                                     **built.step_options(8),
                                     fisher_chunk_size=8)

  def traced(*args, **static):
    if traces is not None:
      traces.append(static)
    return train_step(*args, **static)

  step = jax.jit(traced, static_argnames=STATIC)
  plan = steps.RefreshPlan(built.host_refresh_every, False, built.host_ascent)
  params = tiny_mlp.init_params()
  opt_state, seen = built.optimizer.init(params), []
  for count, batch in enumerate(batches):
    kwargs = plan.step_kwargs(count)
    out = step(params, opt_state, None, batch, **kwargs)
    params, opt_state = out.params, out.opt_state
    plan.after_step(opt_state, kwargs)
    seen.append(kwargs)
  return params, opt_state, step, seen


@pytest.mark.parametrize("name, variant", [("sam", v) for v in VARIANTS] + [
    ("ssam-f", v) if v == "every 2, 1/2 batch"  # the others with -m slow
    else pytest.param("ssam-f", v, marks=pytest.mark.slow) for v in VARIANTS])
def test_each_variant_trains_from_its_config_with_one_compilation_per_variant(
    name, variant):
  config = testing.tiny_config(optimizer=name, rho=RHO, **VARIANTS[variant])
  config_validation.validate(config)
  built = optimizers.create_optimizer(config, steps_per_epoch=4)
  batch = tiny_mlp.synthetic_batch(seed=1, size=32)
  traces = []
  params, opt_state, _, seen = _train(built, [batch] * 12, traces=traces)
  before = tiny_mlp.loss(tiny_mlp.init_params(), batch)
  assert float(tiny_mlp.loss(params, batch)) < float(before) - 0.05
  # One trace per set of static arguments, none retraced.
  distinct = lambda calls: {tuple(sorted(kwargs.items())) for kwargs in calls}
  assert len(traces) == len(distinct(traces)) == len(distinct(seen))
  ascended = [kwargs.get("ascend", True) for kwargs in seen]
  if "every 2" in variant or "looksam" in variant:
    assert ascended == [True, False] * 6
  if variant == "p=0.5":
    assert 0 < sum(ascended) < 12
  if built.hyperparams.ascent == "scheduled":
    assert int(optax.tree.get(opt_state, "ascents")) == sum(ascended)


@pytest.mark.parametrize("name", SHARPNESS_AWARE)
def test_every_sharpness_aware_row_composes_with_every_variant(name):
  # Traced, not compiled: the first two steps of each (with and without the
  # ascent, the refresh), shapes and dtypes unchanged.
  batch = tiny_mlp.synthetic_batch(seed=1, size=16)
  params = tiny_mlp.init_params()
  for variant, overrides in VARIANTS.items():
    built = optimizer_table.build(name, _hyperparams(name, sparsity=0.5,
                                                     **overrides))
    step = steps.make_train_step(
        steps.stateless_loss_fns(tiny_mlp.loss, tiny_mlp.example_loss),
        built.optimizer, **built.step_options(8), fisher_chunk_size=8)
    plan = steps.RefreshPlan(built.host_refresh_every, False, built.host_ascent)
    opt_state = jax.eval_shape(built.optimizer.init, params)
    for count in range(2):
      out = jax.eval_shape(functools.partial(step, **plan.step_kwargs(count)),
                           params, opt_state, None, batch)
      assert (jax.tree.map(lambda x: (x.shape, x.dtype), out.params)
              == jax.tree.map(lambda x: (x.shape, x.dtype), params)), variant
      assert (jax.tree.structure(out.opt_state)
              == jax.tree.structure(opt_state)), variant


def test_msam_step_takes_one_gradient_at_the_momentum_point():
  built = optimizer_table.build("sam", _hyperparams(ascent="msam"))
  batches = [tiny_mlp.synthetic_batch(seed=i, size=16) for i in range(3)]
  counter = []
  params, opt_state, step, _ = _train(built, batches[:2],
                                      _counting_loss_fns(counter))
  assert counter == [16]  # one trace, of one gradient
  out = step(params, opt_state, None, batches[2])
  assert counter == [16]  # not traced again

  velocity = optax.tree.get(opt_state, "trace")  # sgd's momentum, v
  v = tiny_mlp.flat(velocity)
  w = tiny_mlp.flat(params)
  eps = -RHO * v / np.linalg.norm(v)
  point = tiny_mlp.unflat(w + eps, params)
  g = tiny_mlp.flat(jax.grad(tiny_mlp.loss)(point, batches[2]))
  new_v = 0.9 * v + g + WEIGHT_DECAY * w  # add_decayed_weights, then sgd
  numerics.assert_trees_close(out.params, tiny_mlp.unflat(
      w - LEARNING_RATE * new_v, params))
  numerics.assert_trees_close(out.grads, tiny_mlp.unflat(eps, params),
                              scale=np.max(np.abs(w)))  # (w + eps) - w
  numerics.assert_trees_close(out.loss, tiny_mlp.loss(point, batches[2]))
  config = testing.tiny_config(optimizer="sam", ascent="msam", rho=RHO)
  numerics.assert_trees_close(radius.for_config(config)(out.grads, None), RHO,
                              scale=np.max(np.abs(w)))


@pytest.mark.parametrize("name", ["sam", "ssam-random"])
def test_sub_batch_ascent_equals_the_ascent_taken_by_hand(name):
  hp = _hyperparams(name, sparsity=0.5, ascent_batch_fraction=0.5)
  built = optimizer_table.build(name, hp)
  batch = tiny_mlp.synthetic_batch(seed=1, size=16)
  counter = []
  step = steps.make_train_step(_counting_loss_fns(counter), built.optimizer,
                               ascent_batch_fraction=0.5)
  params = tiny_mlp.init_params()
  opt_state = built.optimizer.init(params)
  out = jax.jit(step)(params, opt_state, None, batch)
  assert counter == [8, 16]  # the first gradient on half the batch

  half = jax.tree.map(lambda x: x[:8], batch)
  w = tiny_mlp.flat(params)
  g = tiny_mlp.flat(jax.grad(tiny_mlp.loss)(params, half))
  mask = optax.tree.get(out.opt_state, "mask")
  m = 1.0 if mask is None else tiny_mlp.flat(mask)
  eps = RHO * g / np.linalg.norm(g) * m
  g_sam = tiny_mlp.flat(jax.grad(tiny_mlp.loss)(
      tiny_mlp.unflat(w + eps, params), batch))
  expected = tiny_mlp.unflat(w - LEARNING_RATE * (g_sam + WEIGHT_DECAY * w),
                             params)
  numerics.assert_trees_close(out.params, expected)
  numerics.assert_trees_close(out.loss, tiny_mlp.loss(params, half))
  numerics.assert_trees_close(out.grads, tiny_mlp.unflat(g, params))
  # The control: the ascent from the whole batch moves elsewhere.
  whole = jax.jit(steps.make_train_step(
      steps.stateless_loss_fns(tiny_mlp.loss), built.optimizer))(
          params, opt_state, None, batch)
  numerics.assert_differ(out.params, whole.params)


def test_a_step_without_the_ascent_is_sgds():
  hp = _hyperparams(ascent="scheduled", ascent_every=3)
  built = optimizer_table.build("sam", hp)
  batches = [tiny_mlp.synthetic_batch(seed=i, size=16) for i in range(2)]
  counter = []
  params, opt_state, _, seen = _train(built, batches[:1],
                                      _counting_loss_fns(counter))
  assert seen == [{"ascend": True}] and counter == [16, 16]
  step = jax.jit(steps.make_train_step(_counting_loss_fns(counter),
                                       built.optimizer),
                 static_argnames=STATIC)
  counter.clear()
  plain = step(params, opt_state, None, batches[1], ascend=False)
  assert counter == [16]  # no gradient at w + eps

  sgd = optimizer_table.build("sgd", dataclasses.replace(
      hp, ascent="always", ascent_every=1)).optimizer
  grads = jax.grad(tiny_mlp.loss)(params, batches[1])
  updates, _ = sgd.update(grads, opt_state.inner.base_state, params)
  numerics.assert_trees_close(plain.params,
                              optax.apply_updates(params, updates))
  # The control: the same step with the ascent is not SGD's.
  ascent = step(params, opt_state, None, batches[1], ascend=True)
  numerics.assert_differ(ascent.params, plain.params)


def _small_cnn_step(config, batch_size=16):
  """The trainer's jitted step on the small CNN and a synthetic batch."""
  model = models.create_model("small_cnn", 10, width=4)
  built = optimizers.create_optimizer(config, steps_per_epoch=10)
  state = jax.jit(functools.partial(  # jitted, as the trainer does
      train.create_train_state, 0, model, built.optimizer, (28, 28, 1)))()
  keys = jax.random.split(jax.random.PRNGKey(3))
  batch = {"image": jax.random.normal(keys[0], (batch_size, 28, 28, 1)),
           "label": jax.random.randint(keys[1], (batch_size,), 0, 10)}
  step = jax.jit(functools.partial(
      train.train_step, step_fn=steps.make_train_step(
          steps.flax_loss_fns(model), built.optimizer, **built.step_options(8)),
      radius_fn=radius.for_config(config)), static_argnames=STATIC)
  return model, state, batch, step


def _forward_stats(model, state, params, images):
  _, mutated = jax.jit(functools.partial(
      model.apply, train=True, mutable=["batch_stats"]))(
          {"params": params, "batch_stats": state.batch_stats}, images)
  return mutated["batch_stats"]


@pytest.mark.parametrize("ascent, fraction", [  # msam with -m slow
    ("always", 0.5), pytest.param("msam", 1.0, marks=pytest.mark.slow)])
def test_batch_statistics_and_metrics_come_from_the_steps_first_pass(
    ascent, fraction):
  config = testing.tiny_config(optimizer="sam", ascent=ascent, rho=RHO,
                               ascent_batch_fraction=fraction)
  model, state, batch, step = _small_cnn_step(config)
  new_state, metrics = step(state, batch)
  if ascent == "msam":  # no momentum before the first update: w itself
    state = new_state
    new_state, metrics = step(state, batch)
    point = optimizers.create_optimizer(
        config, steps_per_epoch=10).optimizer.perturbed_params(
            state.opt_state, state.params)
    numerics.assert_differ(point, state.params)
    images = batch["image"]
  else:
    point, images = state.params, batch["image"][:8]
  numerics.assert_trees_close(new_state.batch_stats,
                              _forward_stats(model, state, point, images))
  counted = int(new_state.epoch_metrics["count"]) - int(
      state.epoch_metrics["count"])
  assert counted == len(images)
  assert np.isfinite(float(metrics["loss"]))


def test_host_ascent_follows_the_librarys_rule_and_a_seeded_draw():
  every = ascents.HostAscent(every=3, probability=0.0, seed=0)
  assert [every(t) for t in range(7)] == [t % 3 == 0 for t in range(7)]
  draw = ascents.HostAscent(every=1, probability=0.2, seed=5)
  drawn = [draw(t) for t in range(4000)]
  assert drawn == [ascents.HostAscent(1, 0.2, 5)(t) for t in range(4000)]
  assert abs(np.mean(drawn) - 0.2) < 0.03
  assert drawn != [ascents.HostAscent(1, 0.2, 6)(t) for t in range(4000)]


def test_refresh_plan_takes_full_gradients_on_steps_without_the_ascent(
    monkeypatch):
  monkeypatch.setattr(steps.ssam_jax, "perturbed_tensors", lambda state: (state,))
  plan = steps.RefreshPlan(4, fast_path=True, ascends=lambda t: t % 2 == 0)
  seen = []
  for count in range(6):
    kwargs = plan.step_kwargs(count)
    seen.append((kwargs["refresh"], kwargs["ascend"], kwargs["perturbed"]))
    plan.after_step(f"state{count}", kwargs)
  assert seen == [(True, True, None), (False, False, None),
                  (False, True, ("state0",)), (False, False, None),
                  (True, True, None), (False, False, None)]


def test_without_static_ascent_the_optimizer_keeps_its_own_schedule():
  for overrides in (dict(ascent_every=2), dict(ascent_probability=0.5)):
    built = optimizer_table.build("sam", _hyperparams(
        ascent="scheduled", static_ascent=False, **overrides))
    assert built.host_ascent is None
    params = tiny_mlp.init_params()
    state = built.optimizer.init(params)
    assert (state.key is None) == ("ascent_every" in overrides)
    _, state, _, seen = _train(built, [tiny_mlp.synthetic_batch(size=8)] * 4)
    assert seen == [{}] * 4  # no static ascend: decided under lax.cond
    expected = 2 if "ascent_every" in overrides else int(state.ascents)
    assert int(state.ascents) == expected and int(state.inner.count) == 4


def test_a_traced_schedule_refuses_the_sub_batch_ascent():
  with pytest.raises(ValueError, match="^ascent_batch_fraction=0.5: .*"
                     "static_ascent=True"):
    optimizer_table.build("sam", _hyperparams(
        ascent="scheduled", ascent_every=2, ascent_batch_fraction=0.5,
        static_ascent=False))
  traced = optimizer_table.build("sam", _hyperparams(
      ascent="scheduled", ascent_every=2, static_ascent=False)).optimizer
  step = steps.make_train_step(steps.stateless_loss_fns(tiny_mlp.loss), traced,
                               ascent_batch_fraction=0.5)
  params = tiny_mlp.init_params()
  with pytest.raises(ValueError, match="ascent_batch_fraction < 1"):
    step(params, traced.init(params), None, tiny_mlp.synthetic_batch(size=8))


@pytest.mark.parametrize("overrides, key", [
    (dict(ascent="sometimes"), "ascent"),
    (dict(optimizer="sgd", ascent="msam"), "ascent"),
    (dict(optimizer="optax-sam", ascent="scheduled", ascent_every=2), "ascent"),
    (dict(optimizer="sgd", ascent_batch_fraction=0.5), "ascent_batch_fraction"),
    (dict(ascent="scheduled", ascent_every=0), "ascent_every"),
    (dict(ascent_every=2), "ascent_every"),
    (dict(ascent="scheduled", ascent_probability=1.0), "ascent_probability"),
    (dict(ascent="scheduled", ascent_probability=-0.1), "ascent_probability"),
    (dict(ascent="scheduled", ascent_every=2, ascent_probability=0.2),
     "ascent_probability"),
    (dict(ascent="looksam", ascent_every=2, ascent_probability=0.2),
     "ascent_probability"),
    (dict(ascent="looksam", ascent_every=2, looksam_alpha=-1.0),
     "looksam_alpha"),
    (dict(ascent_batch_fraction=0.0), "ascent_batch_fraction"),
    (dict(ascent_batch_fraction=1.5), "ascent_batch_fraction"),
    (dict(ascent_batch_fraction=0.001), "ascent_batch_fraction"),
    (dict(ascent="msam", ascent_batch_fraction=0.5), "ascent_batch_fraction"),
    (dict(ascent="looksam", ascent_every=2, ascent_batch_fraction=0.5),
     "ascent_batch_fraction"),
    (dict(optimizer="ssam-random", pattern="tensorwise", normalize="masked",
          fast_path=True, ascent="msam"), "fast_path"),
    (dict(optimizer="ssam-random", pattern="tensorwise", normalize="masked",
          fast_path=True, ascent="looksam", ascent_every=2), "fast_path"),
])
def test_config_errors_name_the_key(overrides, key):
  with pytest.raises(config_validation.ConfigError,
                     match=rf"^config\.{key}[= ]"):
    config_validation.validate(testing.tiny_config(**overrides))
