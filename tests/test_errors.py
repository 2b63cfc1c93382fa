"""Bad input raises an error that names the argument."""

import jax
import jax.numpy as jnp
import optax
import pytest

import ssam_jax
from experiments.tiny_mlp import example_loss, init_params, loss, synthetic_batch

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
    (lambda: ssam_jax.leaves_matching(3), TypeError, "regex"),
    (lambda: ssam_jax.dynamic_mask(10, drop_rate=2.0), ValueError, "drop_rate"),
    (lambda: ssam_jax.dynamic_mask(total_steps=0), ValueError, "total_steps"),
    (lambda: ssam_jax.dynamic_mask(10, drop_criterion="hessian"), ValueError, "drop_criterion"),
    (lambda: ssam_jax.dynamic_mask(10, growth_criterion="x"), ValueError, "growth_criterion"),
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


@pytest.mark.parametrize("opt", [ssam_jax.sam(SGD, 0.1),
                                 ssam_jax.ssam(SGD, 0.1, 0.5, mask_update_every=1)])
def test_missing_grad_fn_is_named(opt):
  params, batch = init_params(), synthetic_batch()
  with pytest.raises(TypeError, match="grad_fn"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params)


@pytest.mark.parametrize("opt", [ssam_jax.sam(SGD, 0.1),
                                 ssam_jax.ssam(SGD, 0.1, 0.5, mask_update_every=1)])
def test_missing_params_is_named(opt):
  params, batch = init_params(), synthetic_batch()
  with pytest.raises(ValueError, match="params"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), grad_fn=jax.grad(loss))


@pytest.mark.parametrize("opt", [ssam_jax.sam(SGD, 0.1),
                                 ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.random_mask())])
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
  opt = ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.fisher_mask(accumulate=False),
                      mask_update_every=1)
  with pytest.raises(TypeError, match="fisher_fn"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
               grad_fn=lambda p: jax.grad(loss)(p, batch))


def test_fisher_fn_with_wrong_structure_is_named():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(SGD, 0.1, 0.5, mask_update_every=1)
  with pytest.raises(TypeError, match="fisher_fn"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
               grad_fn=lambda p: jax.grad(loss)(p, batch), fisher_fn=lambda p: [jnp.ones(3)])


def test_fisher_mask_by_default_needs_fisher_fn_and_says_how_to_pass_it():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.fisher_mask(), mask_update_every=1)
  with pytest.raises(TypeError, match=r"fisher_fn=ssam_jax\.empirical_fisher\(.*accumulate=True"):
    opt.update(jax.grad(loss)(params, batch), opt.init(params), params,
               grad_fn=lambda p: jax.grad(loss)(p, batch))


@pytest.mark.parametrize("make,error,name", [
    (lambda: ssam_jax.sam(SGD, 0.1, adaptive_eta=-1.0), ValueError, "adaptive_eta"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, adaptive_eta="x"), TypeError, "adaptive_eta"),
    (lambda: ssam_jax.sam(SGD, float("nan")), ValueError, "rho"),
    (lambda: ssam_jax.ssam(SGD, 0.1, "half"), TypeError, "sparsity"),
    (lambda: ssam_jax.ssam(SGD, 0.1, 0.5, pattern="1:4"), ValueError, "sparsity=0.75 or None"),
    (lambda: ssam_jax.fisher_mask(accumulate=1), TypeError, "accumulate"),
    (lambda: ssam_jax.dynamic_mask(10, drop_rate="x"), TypeError, "drop_rate"),
    (lambda: ssam_jax.empirical_fisher(example_loss, synthetic_batch(), 4, unroll="x"),
     TypeError, "unroll"),
])
def test_more_construction_errors_name_the_argument(make, error, name):
  with pytest.raises(error, match=name):
    make()


SAM_AND_SSAM = [lambda **kw: ssam_jax.sam(SGD, 0.1, **kw),
                lambda **kw: ssam_jax.ssam(SGD, 0.1, 0.5, mask=ssam_jax.random_mask(), **kw)]


@pytest.mark.parametrize("make", SAM_AND_SSAM, ids=["sam", "ssam"])
def test_integer_params_are_refused_at_init(make):
  params = {"w": jnp.ones(4), "steps": jnp.zeros(2, jnp.int32)}
  with pytest.raises(TypeError, match="'steps' has dtype int32"):
    make().init(params)
  make(perturbed_leaves={"w": True, "steps": False}).init(params)  # excluded: fine


@pytest.mark.parametrize("make", SAM_AND_SSAM, ids=["sam", "ssam"])
def test_grads_unlike_params_are_named(make):
  opt = make()
  params, batch = init_params(), synthetic_batch()
  grads = jax.grad(loss)(params, batch)
  update = lambda g: opt.update(g, opt.init(params), params, grad_fn=lambda p: grads)
  with pytest.raises(TypeError, match="missing 'dense2/bias'"):
    update({"dense1": grads["dense1"], "dense2": {"kernel": grads["dense2"]["kernel"]}})
  with pytest.raises(TypeError, match="unexpected 'extra'"):
    update({**grads, "extra": jnp.ones(2)})
  with pytest.raises(ValueError, match=r"'dense1/kernel' has shape \(1, 8\), not \(4, 8\)"):
    update({**grads, "dense1": {**grads["dense1"], "kernel": grads["dense1"]["kernel"][:1]}})


@pytest.mark.parametrize("shape", [(5, 2), (5, 0)])
def test_n_out_of_m_kernel_that_cannot_hold_the_pattern_is_refused(shape):
  params = {"kernel": jnp.ones(shape), "bias": jnp.ones(2)}
  opt = ssam_jax.ssam(SGD, 0.1, pattern="1:4", mask=ssam_jax.random_mask())
  with pytest.raises(ValueError, match=r"'kernel' has shape \(5, \d\)"):
    opt.init(params)
  with pytest.raises(ValueError, match="multiple of 4"):
    ssam_jax.ssam(SGD, 0.1, 0.5, pattern="2:4", mask=ssam_jax.random_mask()).init(params)
  opt = ssam_jax.ssam(SGD, 0.1, pattern="1:4", mask=ssam_jax.random_mask(),
                      perturbed_leaves={"kernel": False, "bias": True})
  opt.init(params)  # the kernel is not perturbed: fine


@pytest.mark.parametrize("leaf_filter", [ssam_jax.leaves_matching("^dense3/"),
                                         lambda p: jax.tree.map(lambda _: False, p)])
def test_leaf_filter_matching_nothing_is_refused(leaf_filter):
  for opt in (ssam_jax.sam(SGD, 0.1, perturbed_leaves=leaf_filter),
              ssam_jax.ssam(SGD, 0.1, 0.5, perturbed_leaves=leaf_filter,
                            mask_update_every=1)):
    with pytest.raises(ValueError, match="perturbed_leaves selects none of the 4 leaves"):
      opt.init(init_params())
