"""Bad input raises an error that names the argument."""

import jax
import jax.numpy as jnp
import optax
import pytest

import ssam_jax
from small_mlp import example_loss, init_params, loss, synthetic_batch

SGD = optax.sgd(0.1)


@pytest.mark.parametrize("make,error,name", [
    (lambda: ssam_jax.sam(SGD, rho=-0.1), ValueError, "rho"),
    (lambda: ssam_jax.ssam(SGD, rho=-1.0), ValueError, "rho"),
    (lambda: ssam_jax.sam(SGD, rho="big"), TypeError, "rho"),
    (lambda: ssam_jax.ssam(SGD, 0.1, sparsity=1.5), ValueError, "sparsity"),
    (lambda: ssam_jax.ssam(SGD, 0.1, sparsity=-0.1), ValueError, "sparsity"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, mask_update_every=0), ValueError, "mask_update_every"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, mask_update_every=2.5), TypeError, "mask_update_every"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, pattern="5:4"), ValueError, "N:M"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, pattern="1:0"), ValueError, "M >= 1"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, pattern="diagonal"), ValueError, "pattern"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.9, pattern="2:4"), ValueError, "sparsity"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, normalize="l1"), ValueError, "normalize"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, mask="fisher"), TypeError, "mask"),
    (lambda: ssam_jax.sam(SGD, 0.1, perturbed_leaves={"a": 1}), TypeError, "perturbed_leaves"),
    (lambda: ssam_jax.leaves_matching(3), TypeError, "pattern"),
    (lambda: ssam_jax.dynamic_mask(drop_rate=2.0), ValueError, "drop_rate"),
    (lambda: ssam_jax.dynamic_mask(total_steps=0), ValueError, "total_steps"),
    (lambda: ssam_jax.dynamic_mask(drop_criterion="hessian"), ValueError, "drop_criterion"),
    (lambda: ssam_jax.dynamic_mask(growth_criterion="x"), ValueError, "growth_criterion"),
    (lambda: ssam_jax.random_mask(seed=1.5), TypeError, "seed"),
    (lambda: ssam_jax.empirical_fisher(example_loss, synthetic_batch(), 0), ValueError,
     "num_samples"),
    (lambda: ssam_jax.empirical_fisher(example_loss, synthetic_batch(size=4), 8), ValueError,
     "num_samples"),
    (lambda: ssam_jax.empirical_fisher(example_loss, synthetic_batch(), 4, chunk_size=0),
     ValueError, "chunk_size"),
    (lambda: ssam_jax.empirical_fisher(example_loss, synthetic_batch(), 4, unroll=0),
     ValueError, "unroll"),
])
def test_construction_errors_name_the_argument(make, error, name):
  with pytest.raises(error, match=name):
    make()


@pytest.mark.parametrize("opt", [ssam_jax.sam(SGD, 0.1), ssam_jax.ssam(SGD, 0.1, 0.5)])
def test_missing_grad_fn_is_named(opt):
  params, batch = init_params(), synthetic_batch()
  with pytest.raises(TypeError, match="grad_fn"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params)


@pytest.mark.parametrize("opt", [ssam_jax.sam(SGD, 0.1), ssam_jax.ssam(SGD, 0.1, 0.5)])
def test_missing_params_is_named(opt):
  params, batch = init_params(), synthetic_batch()
  with pytest.raises(ValueError, match="params"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), grad_fn=jax.grad(loss))


@pytest.mark.parametrize("opt", [ssam_jax.sam(SGD, 0.1), ssam_jax.ssam(SGD, 0.1, 0.5)])
def test_grad_fn_with_wrong_structure_is_named(opt):
  params, batch = init_params(), synthetic_batch()
  with pytest.raises(TypeError, match="grad_fn"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
               grad_fn=lambda p: jax.grad(loss)(p, batch)["dense1"])
  with pytest.raises(ValueError, match="grad_fn"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
               grad_fn=lambda p: jax.tree.map(lambda g: g[..., :1], jax.grad(loss)(p, batch)))


def test_fisher_mask_without_accumulator_needs_fisher_fn():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.fisher_mask(accumulate=False))
  with pytest.raises(TypeError, match="fisher_fn"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
               grad_fn=lambda p: jax.grad(loss)(p, batch))


def test_fisher_fn_with_wrong_structure_is_named():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(SGD, 0.1, 0.5)
  with pytest.raises(TypeError, match="fisher_fn"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
               grad_fn=lambda p: jax.grad(loss)(p, batch), fisher_fn=lambda p: [jnp.ones(3)])
