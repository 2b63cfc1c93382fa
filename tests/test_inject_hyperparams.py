"""``optax.inject_hyperparams(f)(**hp)`` behaves as ``f(**hp)``.

Ports ``test_optimizers_can_be_wrapped_in_inject_hyperparams`` of
``optax/contrib/_common_test.py``: the same parameters and gradients, one
jitted update of each optimizer, then equal updates and equal inner states
(structure and values). Here for :func:`ssam_jax.sam` and
:func:`ssam_jax.ssam` with every mask strategy and a sparsity of 0, 0.5 and
1 (the injected sparsity is traced where the static one lets the plan skip
the mask), in both modes, over a few updates so that refresh and
non-refresh steps are both compared.
"""

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

import numerics
import ssam_jax

PARAMS = [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]
GRADS = [jnp.ones((2, 3)), jnp.negative(jnp.ones((2, 5, 2)))]
# A quadratic whose gradient at PARAMS is GRADS: grad_fn for the mode that needs one.
TARGET = jax.tree.map(jnp.subtract, PARAMS, GRADS)
STRATEGIES = {
    "fisher": ssam_jax.fisher_mask,
    "fisher-accumulated": lambda: ssam_jax.fisher_mask(accumulate=True),
    "dynamic": lambda: ssam_jax.dynamic_mask(total_steps=10),
    "random": ssam_jax.random_mask,
    "random-resampled": lambda: ssam_jax.random_mask(resample=True),
}


def grad_fn(params):
  return jax.grad(lambda p: sum(jnp.sum(jnp.square(a - t)) / 2
                                for a, t in zip(p, TARGET)))(params)


def fisher_fn(params):
  return jax.tree.map(jnp.square, grad_fn(params))


def check_injected_matches_static(factory, hparams, update_kwargs, steps=3):
  opt = factory(**hparams)
  opt_inject = optax.inject_hyperparams(factory)(**hparams)
  update_fn = jax.jit(functools.partial(opt.update, **update_kwargs))
  inject_update_fn = jax.jit(functools.partial(opt_inject.update, **update_kwargs))
  params, state = PARAMS, jax.jit(opt.init)(PARAMS)
  state_inject = jax.jit(opt_inject.init)(PARAMS)
  for step in range(steps):
    updates, state = update_fn(grad_fn(params), state, params)
    updates_inject, state_inject = inject_update_fn(grad_fn(params), state_inject, params)
    what = f"step {step}"
    numerics.assert_trees_close(updates_inject, updates, what=f"{what}: updates")
    numerics.assert_trees_close(state_inject.inner_state, state, what=f"{what}: state")
    params = optax.apply_updates(params, updates)


@pytest.mark.parametrize("transparent", [False, True], ids=["grad_fn", "transparent"])
def test_sam_can_be_wrapped_in_inject_hyperparams(transparent):
  factory = functools.partial(ssam_jax.sam, optax.sgd(0.1))
  check_injected_matches_static(
      factory, dict(rho=0.1, transparent=transparent),
      {} if transparent else {"grad_fn": grad_fn})


# Every strategy at 0.5 and the Fisher mask at the sparsities that skip the
# mask, with grad_fn; with -m slow, the other strategies at those sparsities,
# and transparent mode: every strategy at 0.5 and one at 0 and 1.
CASES = ([(strategy, sparsity, False) if strategy == "fisher" or sparsity == 0.5
          else pytest.param(strategy, sparsity, False, marks=pytest.mark.slow)
          for strategy in sorted(STRATEGIES) for sparsity in (0.0, 0.5, 1.0)]
         + [pytest.param(strategy, 0.5, True, marks=pytest.mark.slow)
            for strategy in sorted(STRATEGIES)]
         + [pytest.param("dynamic", p, True, marks=pytest.mark.slow) for p in (0.0, 1.0)])


@pytest.mark.parametrize("strategy,sparsity,transparent", CASES, ids=[
    f"{s}-{p}-{'transparent' if t else 'grad_fn'}" for s, p, t in (
        getattr(case, "values", case) for case in CASES)])
def test_ssam_can_be_wrapped_in_inject_hyperparams(strategy, sparsity, transparent):
  factory = functools.partial(ssam_jax.ssam, optax.sgd(0.1, momentum=0.9))
  hparams = dict(rho=0.1, sparsity=sparsity, mask=STRATEGIES[strategy](),
                 mask_update_every=2, transparent=transparent)
  update_kwargs = {} if transparent else {"grad_fn": grad_fn}
  if strategy == "fisher":
    update_kwargs["fisher_fn"] = fisher_fn
  check_injected_matches_static(factory, hparams, update_kwargs)


def test_static_sync_period_with_inject_hyperparams():
  factory = functools.partial(ssam_jax.sam, optax.sgd(0.1))
  with pytest.raises(TypeError, match="static_args"):
    optax.inject_hyperparams(factory)(rho=0.1, sync_period=3).init(PARAMS)
  opt = optax.inject_hyperparams(factory, static_args="sync_period")(rho=0.1, sync_period=3)
  opt.update(GRADS, opt.init(PARAMS), PARAMS, grad_fn=grad_fn)
