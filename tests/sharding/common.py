"""What the sharding cases share: optimizers, the train step, the reference.

Imported by :func:`sharding.runner.load_cases`, after the device count is
set. Every case trains the tiny MLP (``experiments.tiny_mlp``) with the
training program's own step (``experiments.steps``) and compares the result
with the single-device one.
"""

import functools

import jax
import numpy as np
import optax

from experiments import steps
from experiments import tiny_mlp
import ssam_jax

STEPS = 3  # With MASK_UPDATE_EVERY = 2, the mask is refreshed on steps 0 and 2.
MASK_UPDATE_EVERY = 2
BATCH = 32


def make_optimizer(name, axis_name=None, m_sharpness=False):
  """``sam``, or SSAM with a Fisher (``ssam_f``), dynamic or random mask."""
  base = optax.sgd(0.1, momentum=0.9)
  if name == "sam":
    return ssam_jax.sam(base, rho=0.1, axis_name=axis_name,
                        m_sharpness=m_sharpness)
  strategy = {"ssam_f": ssam_jax.fisher_mask(accumulate=True),
              "ssam_d": ssam_jax.dynamic_mask(total_steps=STEPS),
              "ssam_r": ssam_jax.random_mask(seed=3)}[name]
  return ssam_jax.ssam(base, rho=0.1, sparsity=0.6, mask=strategy,
                       mask_update_every=MASK_UPDATE_EVERY,
                       axis_name=axis_name, m_sharpness=m_sharpness)


def train_step(opt, name, batch_size, loss=tiny_mlp.loss,
               example_loss=tiny_mlp.example_loss):
  """``(params, opt_state, batch) -> (params, opt_state)`` of the program's step.

  ``loss`` sees the batch it is given, local or global; ``batch_size`` is
  that batch's size, all of whose examples the Fisher of ``ssam_f`` uses.
  """
  step = steps.make_train_step(
      steps.stateless_loss_fns(loss, example_loss), opt,
      num_fisher_samples=batch_size if name == "ssam_f" else 0,
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
  opt = make_optimizer(name)
  params = tiny_mlp.init_params()
  return run_steps(jax.jit(train_step(opt, name, BATCH)), params,
                   opt.init(params), global_batch())


def assert_trees_close(actual, expected, what, atol=2e-6):
  """Same structure; booleans and integers equal, floats within ``atol``."""
  a_leaves, a_def = jax.tree.flatten(actual)
  e_leaves, e_def = jax.tree.flatten(expected)
  assert a_def == e_def, f"{what}: {a_def} != {e_def}"
  for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
    a, e = np.asarray(a), np.asarray(e)
    assert a.shape == e.shape and a.dtype == e.dtype, (what, i, a.shape, e.shape)
    if np.issubdtype(a.dtype, np.floating):
      np.testing.assert_allclose(a, e, rtol=0, atol=atol, err_msg=f"{what} leaf {i}")
    else:
      np.testing.assert_array_equal(a, e, err_msg=f"{what} leaf {i}")


def assert_state_refreshed(state, name):
  """Guards against a vacuous comparison: the mask really changed."""
  if name == "sam":
    return
  initial = make_optimizer(name).init(tiny_mlp.init_params()).mask
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
