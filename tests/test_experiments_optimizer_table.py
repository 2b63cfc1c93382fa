"""The optimizer table: every name builds and steps, and every program builds
its optimizers through it."""

import functools
import math

import jax
import numpy as np
import optax
import pytest

import experiment_helpers as testing
import numerics
from benchmarks import harness
from experiments import optimizer_table
from experiments import optimizers
from experiments import steps
from experiments import tiny_mlp
from experiments.analysis import demo
from experiments.configs import common as configs_common
from experiments.convergence import rates
from sharding import common as sharding_common

LEARNING_RATE = 0.1
RESELECTING = [name for name, entry in optimizer_table.OPTIMIZERS.items()
               if entry.reselects]


def _hyperparams(name, **overrides):
  return optimizers.default_hyperparams(
      name, total_steps=4, mask_update_every=2, learning_rate=LEARNING_RATE,
      weight_decay=0.0, **overrides)


def _one_step(built):
  """One jitted train step of the tiny MLP; the params before and after,
  the gradient at them and the optimizer state after."""
  batch = tiny_mlp.synthetic_batch(seed=1, size=16)
  step = steps.make_train_step(
      steps.stateless_loss_fns(tiny_mlp.loss, tiny_mlp.example_loss),
      built.optimizer, num_fisher_samples=built.num_fisher_samples(8),
      fisher_chunk_size=8)
  kwargs = steps.RefreshPlan(built.host_refresh_every).step_kwargs(0)
  params = tiny_mlp.init_params()
  out = jax.jit(functools.partial(step, **kwargs))(
      params, built.optimizer.init(params), None, batch)
  return params, out, batch


def _expected_params(built, params, mask, batch):
  """``w - lr * grad(w + rho * g / ||g|| * m)`` on the first step (momentum
  has nothing to add yet), written out from the paper's equations."""
  grad = jax.grad(tiny_mlp.loss)
  g = tiny_mlp.flat(grad(params, batch))
  if built.entry.sharpness_aware:
    m = np.ones_like(g) if mask is None else tiny_mlp.flat(mask)
    eps = built.hyperparams.rho * g / np.linalg.norm(g) * m
    w = tiny_mlp.unflat(tiny_mlp.flat(params) + eps, params)
    g = tiny_mlp.flat(grad(w, batch))
  return tiny_mlp.unflat(tiny_mlp.flat(params) - LEARNING_RATE * g, params)


@pytest.mark.parametrize("name, static_refresh", [
    *((name, False) for name in optimizer_table.OPTIMIZERS),
    *((name, True) for name in RESELECTING)])
def test_every_optimizer_takes_the_papers_first_step(name, static_refresh):
  built = optimizer_table.build(name, _hyperparams(name,
                                                   static_refresh=static_refresh))
  params, out, batch = _one_step(built)
  mask = None
  if built.entry.has_mask:
    mask = out.opt_state.mask
    num_params = tiny_mlp.flat(params).size
    sparsity = configs_common.get_base_config().sparsity
    assert int(tiny_mlp.flat(mask).sum()) == math.floor((1 - sparsity) * num_params)
  assert np.isfinite(float(out.loss))
  numerics.assert_trees_close(out.params,
                              _expected_params(built, params, mask, batch))


EXPECTED_FACTS = {  # uses_fisher_fn, has_mask, reselects
    "sgd": (False, False, False),
    "sam": (False, False, False),
    "optax-sam": (False, False, False),
    "ssam-f": (True, True, True),
    "ssam-f-accumulated": (False, True, True),
    "ssam-d": (False, True, True),
    "ssam-random": (False, True, False),
    "ssam-random-resampled": (False, True, True),
}


def test_the_table_says_what_each_step_needs():
  assert set(EXPECTED_FACTS) == set(optimizer_table.OPTIMIZERS)
  for name, facts in EXPECTED_FACTS.items():
    entry = optimizer_table.get(name)
    assert (entry.uses_fisher_fn, entry.has_mask, entry.reselects) == facts, name
    assert entry.sharpness_aware == (name != "sgd"), name


def test_an_ssam_f_step_without_fisher_fn_fails():
  """What ``uses_fisher_fn`` guards against: the Fisher mask needs it."""
  built = optimizer_table.build("ssam-f", _hyperparams("ssam-f"))
  step = steps.make_train_step(steps.stateless_loss_fns(tiny_mlp.loss),
                               built.optimizer)
  params = tiny_mlp.init_params()
  with pytest.raises(TypeError, match="fisher_fn"):
    step(params, built.optimizer.init(params), None,
         tiny_mlp.synthetic_batch(seed=1, size=16))


def test_only_a_static_refresh_is_counted_on_the_host():
  for name in optimizer_table.OPTIMIZERS:
    for static_refresh in (False, True):
      built = optimizer_table.build(
          name, _hyperparams(name, static_refresh=static_refresh))
      expected = 2 if static_refresh and name in RESELECTING else None
      assert built.host_refresh_every == expected, (name, static_refresh)


@pytest.mark.parametrize("name, overrides, message", [
    ("sam", {}, "sparse optimizer"),
    ("ssam-f", dict(pattern="unstructured", normalize="masked"), "tensorwise"),
    ("ssam-f", dict(pattern="tensorwise", normalize="full"), "normalize='full'"),
    ("ssam-d", dict(pattern="tensorwise", normalize="masked"), "static_refresh"),
])
def test_fast_path_preconditions(name, overrides, message):
  with pytest.raises(ValueError, match=message):
    optimizer_table.check_fast_path(name, _hyperparams(name, **overrides))
  optimizer_table.check_fast_path("ssam-random", _hyperparams(
      "ssam-random", pattern="tensorwise", normalize="masked"))  # fixed mask


def test_refresh_plan_reads_a_fixed_mask_once_and_a_reselected_one_per_refresh(
    monkeypatch):
  monkeypatch.setattr(steps.ssam_jax, "perturbed_tensors", lambda state: (state,))
  fixed = steps.RefreshPlan(None, fast_path=True)
  scheduled = steps.RefreshPlan(3, fast_path=True)
  fixed_perturbed, scheduled_kwargs = [], []
  for step in range(7):
    kwargs = fixed.step_kwargs(step)
    assert "refresh" not in kwargs
    fixed_perturbed.append(kwargs["perturbed"])
    fixed.after_step(f"fixed{step}", kwargs)
    kwargs = scheduled.step_kwargs(step)
    scheduled_kwargs.append((kwargs["refresh"], kwargs["perturbed"]))
    scheduled.after_step(f"scheduled{step}", kwargs)
  assert fixed_perturbed == [None] + [("fixed0",)] * 6
  assert scheduled_kwargs == [(True, None), (False, ("scheduled0",)),
                              (False, ("scheduled0",)), (True, None),
                              (False, ("scheduled3",)), (False, ("scheduled3",)),
                              (True, None)]
  assert steps.RefreshPlan(None).step_kwargs(5) == {}
  assert steps.RefreshPlan(2).step_kwargs(4) == {"refresh": True}


# Each program's way of building an optimizer by name.
CONSUMERS = {
    "trainer": lambda name: optimizers.create_optimizer(
        testing.tiny_config(optimizer=name), steps_per_epoch=10).optimizer,
    "benchmark harness": lambda name: harness.OptimizerSpec(
        "row", name).build().optimizer,
    "analysis demo": lambda name: demo.demo_optimizer(
        name, sparsity=0.5, total_steps=8, steps_per_epoch=4).optimizer,
    "convergence study": lambda name: rates.make_optimizer(name, 1.0, 0.1),
    "sharding tests": lambda name: sharding_common.make_optimizer(name).optimizer,
}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_every_program_builds_through_the_table(consumer, monkeypatch):
  built_from = []
  sentinel = optax.with_extra_args_support(optax.sgd(0.1))

  def probe(hyperparams):
    built_from.append(hyperparams)
    return sentinel

  monkeypatch.setitem(optimizer_table.OPTIMIZERS, "probe",
                      optimizer_table.OptimizerEntry(probe, sharpness_aware=True))
  assert CONSUMERS[consumer]("probe") is sentinel
  assert len(built_from) == 1
  assert isinstance(built_from[0], optimizer_table.Hyperparams)
  with pytest.raises(optimizer_table.UnknownOptimizerError, match="'adam'"):
    CONSUMERS[consumer]("adam")


def test_defaults_come_from_the_configs():
  config = configs_common.get_base_config()
  hyperparams = optimizers.default_hyperparams("ssam-d", total_steps=1,
                                               mask_update_every=1)
  assert (hyperparams.rho, hyperparams.sparsity, hyperparams.drop_rate,
          hyperparams.momentum, hyperparams.weight_decay) == (
              config.rho, config.sparsity, config.drop_rate, config.momentum,
              config.weight_decay_sam)
  trainer = optimizers.hyperparams(testing.tiny_config(optimizer="sgd"),
                                   steps_per_epoch=8)
  assert trainer.static_refresh and trainer.weight_decay == config.weight_decay_sgd
  assert trainer.total_steps == 8 * testing.TINY_OVERRIDES["num_epochs"]
  assert float(trainer.learning_rate(trainer.total_steps)) == 0.0  # cosine


def test_optax_sam_rejects_options_it_lacks():
  with pytest.raises(ValueError, match="perturbed_leaves"):
    optimizer_table.build("optax-sam", _hyperparams(
        "optax-sam", perturbed_leaves="^dense1/"))
