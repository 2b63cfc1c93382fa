"""Shared set-up of the efficient variants' tests (test_efficient_*.py).

A loss that keeps the params' dtype (``tiny_mlp.loss`` computes in
float32), so that under ``jax.enable_x64`` the gradients are float64, and
a float64 NumPy reference of ``optax.sgd`` with momentum, fed by those
gradients. The optimizers compute ``eps`` in float32 whatever the params'
dtype, so results are compared at float32 precision.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.tiny_mlp import flat, init_params, logits, synthetic_batch, unflat

LEARNING_RATE, MOMENTUM, RHO = 0.1, 0.9, 0.3
NUM_CLASSES = 3


def loss(params, batch):
  """Squared error of the tiny MLP's logits, in the params' dtype."""
  dtype = jax.tree.leaves(params)[0].dtype
  targets = jax.nn.one_hot(batch["y"], NUM_CLASSES, dtype=dtype)
  return jnp.mean((logits(params, batch["x"]).astype(dtype) - targets) ** 2)


def base_optimizer():
  return optax.sgd(LEARNING_RATE, momentum=MOMENTUM)


def batches(num: int, size: int = 16) -> list:
  return [synthetic_batch(seed=i, size=size) for i in range(num)]


def params64():
  return init_params(dtype=jnp.float64)


def train(opt, params, data, *, ascend=None, **update_kwargs):
  """Jitted updates with ``grad_fn``, one per batch.

  ``ascend``: None, or one Python bool per batch passed as ``ascend``.
  Returns the final params and state, and the state before each update.
  """
  state = opt.init(params)

  def step(params, state, batch, ascend):
    grads = jax.grad(loss)(params, batch)
    kwargs = dict(update_kwargs)
    if ascend is not None:
      kwargs["ascend"] = ascend
    updates, state = opt.update(grads, state, params,
                                grad_fn=lambda p: jax.grad(loss)(p, batch),
                                **kwargs)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step, static_argnames="ascend")
  states = []
  for i, batch in enumerate(data):
    states.append(state)
    params, state = step(params, state, batch,
                         None if ascend is None else ascend[i])
  return params, state, states


class Reference:
  """``optax.sgd(LEARNING_RATE, momentum=MOMENTUM)`` in float64 NumPy.

  Works on the flat parameter vector; gradients come from ``jax.grad`` of
  :func:`loss` (float64 under ``jax.enable_x64``).
  """

  def __init__(self, params):
    self.like = params
    self.w = flat(params)
    self.trace = np.zeros_like(self.w)

  def grad(self, w, batch) -> np.ndarray:
    return flat(jax.grad(loss)(unflat(w, self.like), batch))

  def sam_grads(self, batch, mask=1.0, rho=RHO):
    """``(g, g_s)``: the gradient at ``w`` and at ``w + rho g/||g|| * mask``."""
    g = self.grad(self.w, batch)
    eps = rho * g / np.linalg.norm(g) * mask
    return g, self.grad(self.w + eps, batch)

  def descend(self, g) -> None:
    self.trace = g + MOMENTUM * self.trace
    self.w = self.w - LEARNING_RATE * self.trace

  def params(self):
    return unflat(self.w, self.like)
