"""Models: output shapes, parameter counts, BatchNorm statistics handling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import models


def _abstract_variables(model, input_shape):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                           jnp.zeros(input_shape), train=False))


def _num_params(variables) -> int:
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("name, num_classes, input_shape, expected", [
    # The PyTorch counts of the paper's models (CIFAR stems, torchvision R-50).
    ("resnet18", 10, (1, 32, 32, 3), 11_173_962),
    ("resnet18", 100, (1, 32, 32, 3), 11_220_132),
    ("wrn28_10", 10, (1, 32, 32, 3), 36_479_194),
    ("resnet50", 1000, (1, 224, 224, 3), 25_557_032),
])
def test_parameter_counts(name, num_classes, input_shape, expected):
  model = models.create_model(name, num_classes)
  assert _num_params(_abstract_variables(model, input_shape)) == expected


@pytest.mark.parametrize("name, input_shape", [
    ("resnet18", (2, 32, 32, 3)), ("wrn28_10", (2, 32, 32, 3)),
    ("resnet50", (2, 224, 224, 3))])
def test_large_model_output_shapes(name, input_shape):
  model = models.create_model(name, 7)
  variables = _abstract_variables(model, input_shape)
  logits = jax.eval_shape(
      lambda v: model.apply(v, jnp.zeros(input_shape), train=False), variables)
  assert logits.shape == (2, 7)


def test_small_cnn_is_small():
  variables = _abstract_variables(models.create_model("small_cnn", 10),
                                  (1, 28, 28, 1))
  assert _num_params(variables) < 100_000


def test_forward_pass_and_batch_norm_modes():
  input_shape = (4, 28, 28, 1)
  model = models.create_model("small_cnn", 10)
  synthetic_images = jax.random.normal(jax.random.PRNGKey(1), input_shape)
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), synthetic_images)
  logits, mutated = jax.jit(functools.partial(
      model.apply, train=True, mutable=["batch_stats"]))(variables,
                                                         synthetic_images)
  assert logits.shape == (input_shape[0], 10)
  assert np.all(np.isfinite(logits))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                         variables["batch_stats"], mutated["batch_stats"])
  assert all(jax.tree.leaves(changed))  # train mode updates every BN layer
  eval_logits = jax.jit(functools.partial(model.apply, train=False))(
      variables, synthetic_images)
  assert eval_logits.shape == (input_shape[0], 10)


def test_unknown_model_is_an_error():
  with pytest.raises(ValueError, match="Unknown model"):
    models.create_model("vgg", 10)
