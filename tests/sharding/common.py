"""What the sharding cases share: optimizers, the train step, the reference.

Imported by :func:`sharding.runner.load_cases`, after the device count is
set. Every case trains the tiny MLP (``experiments.tiny_mlp``) with the
training program's own step (``experiments.steps``) and compares the result
with the single-device one.
"""

import functools

import jax
import numpy as np

import numerics
from experiments import optimizer_table
from experiments import optimizers
from experiments import steps
from experiments import tiny_mlp

STEPS = 3  # With MASK_UPDATE_EVERY = 2, the mask is refreshed on steps 0 and 2.
MASK_UPDATE_EVERY = 2
BATCH = 32


def make_optimizer(name, axis_name=None, m_sharpness=False) -> optimizer_table.Built:
  """``name`` of ``experiments.optimizer_table`` with the configs' rho, on
  plain SGD with momentum, at sparsity 0.6, the mask refreshed on its own
  (traced) schedule."""
  return optimizer_table.build(name, optimizers.default_hyperparams(
      name, total_steps=STEPS, mask_update_every=MASK_UPDATE_EVERY,
      learning_rate=0.1, weight_decay=0.0, sparsity=0.6,
      seed=3 if name == "ssam-random" else 0, axis_name=axis_name,
      m_sharpness=m_sharpness))


def train_step(built, batch_size, loss=tiny_mlp.loss,
               example_loss=tiny_mlp.example_loss):
  """``(params, opt_state, batch) -> (params, opt_state)`` of the program's step.

  ``loss`` sees the batch it is given, local or global; ``batch_size`` is
  that batch's size, all of whose examples a Fisher uses.
  """
  step = steps.make_train_step(
      steps.stateless_loss_fns(loss, example_loss), built.optimizer,
      num_fisher_samples=built.num_fisher_samples(batch_size),
      fisher_chunk_size=8)

  def params_and_state(params, opt_state, batch):
    out = step(params, opt_state, None, batch)
    return out.params, out.opt_state

  return params_and_state


def run_steps(step, params, state, batch):
  for _ in range(STEPS):
    params, state = step(params, state, batch)
  return params, state


def global_batch():
  return tiny_mlp.synthetic_batch(seed=1, size=BATCH)


@functools.lru_cache(maxsize=None)
def reference(name):
  """The single-device result: plain arrays, no mesh, no axis name."""
  built = make_optimizer(name)
  params = tiny_mlp.init_params()
  return run_steps(jax.jit(train_step(built, BATCH)), params,
                   built.optimizer.init(params), global_batch())


def assert_trees_close(actual, expected, what,
                       eps_multiple=numerics.DEFAULT_EPS_MULTIPLE):
  """Same structure and dtypes, equal to rounding (``numerics``' rule).

  Sharded runs reduce over devices in another order than one device does.
  """
  for i, (a, e) in enumerate(zip(jax.tree.leaves(actual), jax.tree.leaves(expected))):
    assert np.asarray(a).dtype == np.asarray(e).dtype, (what, i)
  numerics.assert_trees_close(actual, expected, eps_multiple=eps_multiple, what=what)


def assert_state_refreshed(state, name):
  """Guards against a vacuous comparison: the mask really changed."""
  built = make_optimizer(name)
  if not built.entry.reselects:
    return
  initial = built.optimizer.init(tiny_mlp.init_params()).mask
  changed = any(bool(np.any(np.asarray(a) != np.asarray(b)))
                for a, b in zip(jax.tree.leaves(state.mask),
                                jax.tree.leaves(initial)))
  assert changed, f"{name}: the mask was never refreshed"


def assert_matches_reference(params, state, name):
  """Params and optimizer state equal the single-device run's, mask refreshed."""
  ref_params, ref_state = reference(name)
  assert_trees_close(params, ref_params, f"{name} params")
  assert_trees_close(state, ref_state, f"{name} state")
  assert_state_refreshed(state, name)
