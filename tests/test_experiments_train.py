"""Training: configs, optimizer wiring, BN handling, short real runs."""

import functools
import json
import os

import jax
import numpy as np
import optax
import pytest

import ssam_jax
from experiments import models
from experiments import optimizer_table
from experiments import optimizers
import experiment_helpers as testing
import numerics
from experiments import steps
from experiments import train
from experiments.configs import cifar10
from experiments.configs import cifar100
from experiments.configs import fashion_mnist
from experiments.configs import fashion_mnist_small
from experiments.configs import imagenet2012


def test_configs_follow_the_paper():
  c10, c100, imnet = (m.get_config() for m in (cifar10, cifar100, imagenet2012))
  assert (c10.batch_size, c10.learning_rate, c10.momentum, c10.num_epochs,
          c10.rho, c10.weight_decay_sgd, c10.weight_decay_sam) == (
              128, 0.05, 0.9, 200, 0.1, 5e-4, 1e-3)
  assert c10.augment.crop_padding == 4 and c10.augment.cutout_size == 16
  assert c100.rho == 0.2 and c100.dataset == "cifar100"
  assert (imnet.batch_size, imnet.learning_rate, imnet.weight_decay_sam,
          imnet.rho, imnet.model) == (256, 0.1, 1e-4, 0.07, "resnet50")
  for module in (fashion_mnist, fashion_mnist_small):
    config = module.get_config()
    assert config.dataset == "fashion_mnist" and config.model == "small_cnn"


def test_weight_decay_depends_on_the_optimizer():
  config = cifar10.get_config()
  config.optimizer = "sgd"
  assert optimizers.hyperparams(config, steps_per_epoch=10).weight_decay == 5e-4
  config.optimizer = "ssam-d"
  assert optimizers.hyperparams(config, steps_per_epoch=10).weight_decay == 1e-3


def _synthetic_setup(**overrides):
  config = testing.tiny_config(**overrides)
  model = models.create_model("small_cnn", 10, width=4)
  built = optimizers.create_optimizer(config, steps_per_epoch=10)
  state = train.create_train_state(0, model, built.optimizer, (28, 28, 1))
  key_images, key_labels = jax.random.split(jax.random.PRNGKey(3))
  synthetic_batch = {
      "image": jax.random.normal(key_images, (16, 28, 28, 1)),
      "label": jax.random.randint(key_labels, (16,), 0, 10)}
  step_fn = steps.make_train_step(
      steps.flax_loss_fns(model), built.optimizer,
      num_fisher_samples=built.num_fisher_samples(8))
  plan = steps.RefreshPlan(built.host_refresh_every)
  step = jax.jit(functools.partial(train.train_step, step_fn=step_fn,
                                   **plan.step_kwargs(0)))
  return model, state, synthetic_batch, step


def _batch_stats_after_forward(model, state, params, batch):
  _, mutated = jax.jit(functools.partial(
      model.apply, train=True, mutable=["batch_stats"]))(
          {"params": params, "batch_stats": state.batch_stats}, batch["image"])
  return mutated["batch_stats"]


def test_batch_stats_come_from_the_unperturbed_pass_only():
  rho = 0.5
  model, state, batch, step = _synthetic_setup(optimizer="sam", rho=rho)
  new_stats = step(state, batch)[0].batch_stats

  def loss(params):
    return steps.cross_entropy(model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["image"],
        train=True, mutable=["batch_stats"])[0], batch["label"]).mean()

  grads = jax.jit(jax.grad(loss))(state.params)
  scale = rho / optax.tree.norm(grads)
  perturbed = jax.tree.map(lambda p, g: p + scale * g, state.params, grads)
  unperturbed_stats = _batch_stats_after_forward(model, state, state.params,
                                                 batch)
  perturbed_stats = _batch_stats_after_forward(model, state, perturbed, batch)
  numerics.assert_trees_close(new_stats, unperturbed_stats)
  numerics.assert_differ(new_stats, perturbed_stats)


@pytest.mark.slow  # the pattern itself: test_masks
def test_two_four_pattern_reaches_the_mask():
  # The first conv has one input channel: no group of four to keep two of.
  _, state, batch, step = _synthetic_setup(optimizer="ssam-random", pattern="2:4",
                                           perturbed_leaves="^(Conv_[12]|Dense_0)/")
  state, metrics = step(state, batch)
  assert np.isfinite(metrics["loss"])
  kernel = optax.tree.get(state.opt_state, "mask")["Dense_0"]["kernel"]
  groups = np.moveaxis(np.asarray(kernel), -2, -1).reshape(-1, 4)  # (in, out)
  np.testing.assert_array_equal(groups.sum(axis=1), 2)


@testing.requires_fashion_mnist
@pytest.mark.slow  # real runs: the TensorFlow-free run is on every run
@pytest.mark.parametrize("optimizer", optimizer_table.OPTIMIZERS)
def test_short_real_run_reduces_the_loss(tmp_path, optimizer):
  config = testing.tiny_config(optimizer=optimizer)
  final = train.train_and_evaluate(config, str(tmp_path))
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["epoch"] for r in records] == [1, 2, 3]
  assert records[-1]["train_loss"] < records[0]["train_loss"]
  assert final["test_loss"] < np.log(10)  # better than chance
  assert final["test_accuracy"] > 0.2  # chance is 0.1
  if optimizer_table.get(optimizer).has_mask:
    assert records[-1]["mask_density"] == pytest.approx(0.5, abs=0.01)
  else:
    assert "mask_density" not in records[-1]


@pytest.mark.slow
@testing.requires_fashion_mnist
def test_fast_path_trains_like_the_general_path(tmp_path):
  """Tensorwise SSAM-F with the partial first gradient reaches the general
  path's masks and parameters (up to float reordering) through refreshes."""
  overrides = dict(optimizer="ssam-f", pattern="tensorwise", normalize="masked",
                   sparsity=0.9, num_epochs=2, mask_update_epochs=0.375)  # every 3 of 8 steps
  states = {}
  for fast_path in (False, True):
    workdir = str(tmp_path / f"fast_path_{fast_path}")
    train.train_and_evaluate(testing.tiny_config(fast_path=fast_path, **overrides),
                             workdir)
    states[fast_path] = testing.final_checkpoint(workdir)[1]
  general, fast = states[False], states[True]
  masks = jax.tree.leaves(general["opt_state"]["mask"])
  assert 0 < sum(bool(m.any()) for m in masks) < len(masks)  # some tensors idle
  for a, b in zip(jax.tree.leaves(fast["opt_state"]["mask"]), masks):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(fast["params"]), jax.tree.leaves(general["params"])):
    # Sixteen steps of training amplify the rounding of the partial gradient.
    numerics.assert_trees_close(a, b, eps_multiple=1024)


@pytest.mark.slow  # a real run; tests/test_partial_grad.py checks the fast path's updates
@testing.requires_fashion_mnist
def test_fast_path_takes_full_gradients_exactly_on_refresh_steps(tmp_path):
  config = testing.tiny_config(optimizer="ssam-d", pattern="tensorwise",
                               normalize="masked", sparsity=0.9, fast_path=True,
                               mask_update_epochs=0.375)  # every 3 of 8 steps
  trainer = train.Trainer(config, str(tmp_path))
  calls, compiled_step = [], trainer.train_step

  def recording_step(state, batch, perturbed=None, refresh=None):
    state, metrics = compiled_step(state, batch, perturbed=perturbed, refresh=refresh)
    calls.append((perturbed, ssam_jax.perturbed_tensors(state.opt_state), refresh))
    return state, metrics

  trainer.train_step = recording_step
  with jax.set_mesh(trainer.data_parallel.mesh):
    trainer.train_epoch(trainer.initial_state(), epoch=0)
  assert len(calls) == trainer.steps_per_epoch == 8
  for step, (perturbed, _, refresh) in enumerate(calls):
    assert refresh is (step % 3 == 0), step  # the optimizer's schedule, static
    if step % 3 == 0:
      assert perturbed is None, step  # refresh: the new set is not known yet
    else:  # the set the last refresh chose
      assert perturbed == calls[step - step % 3][1], step


@pytest.mark.parametrize("overrides, message", [
    (dict(optimizer="sam"), "sparse optimizer"),
    (dict(optimizer="ssam-f", pattern="unstructured", normalize="masked"), "tensorwise"),
    (dict(optimizer="ssam-f", pattern="tensorwise", normalize="full"), "normalize='full'"),
])
def test_fast_path_rejects_configs_it_would_change(overrides, message):
  with pytest.raises(ValueError, match=message):
    optimizers.create_optimizer(testing.tiny_config(fast_path=True, **overrides),
                                steps_per_epoch=10)
