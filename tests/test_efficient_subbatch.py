"""The ascent on a sub-batch: ``sam``/``ssam`` take any first gradient.

``update``'s first argument only builds ``eps`` (and feeds SSAM's mask
stage); the base optimizer consumes ``grad_fn(w + eps)``. Passing the
gradient of a fraction of the batch there and ``grad_fn`` of the whole
batch is the recipe of docs/efficient.md, at ``1 + f`` gradients per update.
"""

import jax
import optax
import pytest

import numerics
import ssam_jax
from efficient_cases import RHO, Reference, base_optimizer, batches, loss, params64
from experiments.tiny_mlp import flat

FRACTION = 0.25


def sub_batch(batch, fraction=FRACTION):
  size = int(fraction * len(batch["y"]))
  return jax.tree.map(lambda a: a[:size], batch)


@pytest.mark.parametrize("mask", [None, ssam_jax.random_mask(seed=2)], ids=["sam", "ssam"])
def test_sub_batch_ascent_matches_the_ascent_taken_by_hand(mask):
  with jax.enable_x64(True):
    params, data = params64(), batches(3, size=32)
    opt = (ssam_jax.sam(base_optimizer(), RHO) if mask is None
           else ssam_jax.ssam(base_optimizer(), RHO, 0.5, mask=mask))
    state = opt.init(params)

    @jax.jit
    def step(params, state, batch):
      ascent_grads = jax.grad(loss)(params, sub_batch(batch))
      updates, state = opt.update(ascent_grads, state, params,
                                  grad_fn=lambda p: jax.grad(loss)(p, batch))
      return optax.apply_updates(params, updates), state

    actual = params
    for batch in data:
      actual, state = step(actual, state, batch)

    m = 1.0 if mask is None else flat(state.mask)
    reference = Reference(params)
    for batch in data:
      g_sub = reference.grad(reference.w, sub_batch(batch))
      eps = RHO * g_sub / (g_sub @ g_sub) ** 0.5 * m
      reference.descend(reference.grad(reference.w + eps, batch))
    numerics.assert_trees_close(actual, reference.params())
    # The control: the ascent from the whole batch gives other parameters.
    full = Reference(params)
    for batch in data:
      full.descend(full.sam_grads(batch, m)[1])
    numerics.assert_differ(actual, full.params())
