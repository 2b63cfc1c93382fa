"""The diagonal empirical Fisher of Eq. 5 of Mi et al., in bounded memory."""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ssam_jax import validation
from ssam_jax import workarounds


PyTree = Any


def _leading_size(batch: PyTree) -> int:
  leaves = jax.tree.leaves(batch)
  if not leaves:
    raise ValueError("empirical_fisher needs a batch with at least one array.")
  sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(
        "every leaf of batch must share one leading (example) axis; got "
        f"leading sizes {sorted(map(str, sizes))}.")
  return sizes.pop()


def _chunked_examples(batch, num_samples, chunk_size):
  """The first ``num_samples`` examples as ``(num_chunks, chunk_size, ...)``.

  The last chunk is padded with copies of the first examples, whose weight
  is zero, so that every chunk has the same shape inside ``lax.scan``.
  """
  num_chunks = math.ceil(num_samples / chunk_size)
  padding = num_chunks * chunk_size - num_samples

  def chunk(x):
    x = workarounds.replicated(jnp.asarray(x))[:num_samples]
    x = jnp.concatenate([x, x[:padding]]) if padding else x
    return x.reshape((num_chunks, chunk_size) + x.shape[1:])

  weights = jnp.concatenate([jnp.ones(num_samples, jnp.float32),
                             jnp.zeros(padding, jnp.float32)])
  return jax.tree.map(chunk, batch), weights.reshape(num_chunks, chunk_size)


def empirical_fisher(
    example_loss_fn: Callable[[PyTree, PyTree], jax.Array],
    batch: PyTree,
    num_samples: int,
    chunk_size: int = 32,
    unroll: int | bool = 1,
) -> Callable[[PyTree], PyTree]:
  """Builds a ``fisher_fn`` computing the diagonal empirical Fisher.

  ``F = (1 / N_F) sum_i (grad_w l(w, x_i, y_i))^2`` over the first
  ``num_samples`` examples of ``batch``, where ``l`` is the per-example
  negative log-likelihood (Eq. 5 of Mi et al.). This is the mean of
  per-example squared gradients, not the square of the batch gradient.

  Per-example gradients are formed ``chunk_size`` at a time (``jax.vmap``
  over a chunk, ``jax.lax.scan`` over chunks), so memory grows with
  ``chunk_size`` times the number of parameters, not with ``num_samples``.
  The result is float32.

  ``unroll`` trades that memory bound for speed on CPU, where convolutions
  run slowly inside a loop (see :mod:`ssam_jax.workarounds`): unrolled, XLA
  keeps several chunks of per-example gradients alive at once. Keep the
  default on accelerators. On CPU, also prefer several small chunks to one
  large one: XLA:CPU can take much longer for one chunk of 32 per-example
  convolution gradients than for four of 8 (``python -m
  benchmarks.fisher_chunks`` measures it).

  Sharded batches: trace the step under ``jax.set_mesh(mesh)`` (or use
  explicit sharding), so that the ``N_F`` examples are replicated before the
  per-example gradients (see :mod:`ssam_jax.workarounds`).

  Args:
    example_loss_fn: ``example_loss_fn(params, example)`` returns the scalar
      loss of one example; ``example`` is one slice along the leading axis of
      every leaf of ``batch``.
    batch: a pytree of arrays sharing a leading example axis, of size at
      least ``num_samples``.
    num_samples: ``N_F``, how many leading examples to use (>= 1).
    chunk_size: how many per-example gradients to hold at once (>= 1).
    unroll: chunks per loop iteration, as ``unroll`` of ``jax.lax.scan``
      (an int >= 1, or True for a fully unrolled loop).

  Returns:
    ``fisher_fn(params)``, returning a float32 pytree shaped like params.
    Pass it to ``update(..., fisher_fn=...)``; it is only evaluated on
    mask refresh steps.

  Examples:
    >>> import jax.numpy as jnp, ssam_jax
    >>> example_loss = lambda p, ex: (p['w'] * ex['x'] - ex['y']) ** 2
    >>> batch = {'x': jnp.array([1.0, 2.0]), 'y': jnp.array([0.0, 0.0])}
    >>> fisher_fn = ssam_jax.empirical_fisher(example_loss, batch, num_samples=2)
    >>> float(fisher_fn({'w': jnp.array(1.0)})['w'])  # ((2*1)^2 + (2*4)^2) / 2
    34.0

  References:
    Mi et al., `Make Sharpness-Aware Minimization Stronger: A Sparsified
    Perturbation Approach <https://arxiv.org/abs/2210.05177>`_, 2022
  """
  if not isinstance(unroll, bool):
    validation.check_int("unroll", unroll, minimum=1)
  validation.check_int("num_samples", num_samples, minimum=1)
  validation.check_int("chunk_size", chunk_size, minimum=1)
  if not callable(example_loss_fn):
    raise TypeError("example_loss_fn must be callable.")
  available = _leading_size(batch)
  if available < num_samples:
    raise ValueError(
        f"num_samples={num_samples} exceeds the {available} examples in batch.")
  chunk_size = min(chunk_size, num_samples)
  per_example_grad = jax.vmap(jax.grad(example_loss_fn), in_axes=(None, 0))

  def fisher_fn(params):
    chunks, weights = _chunked_examples(batch, num_samples, chunk_size)

    def accumulate(total, chunk_and_weights):
      examples, example_weights = chunk_and_weights
      grads = per_example_grad(params, examples)
      squared = jax.tree.map(
          lambda g: jnp.tensordot(example_weights,
                                  jnp.square(g.astype(jnp.float32)), axes=1),
          grads)
      return jax.tree.map(jnp.add, total, squared), None

    zeros = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params)
    total, _ = jax.lax.scan(accumulate, zeros, (chunks, weights), unroll=unroll)
    return jax.tree.map(lambda t: t / num_samples, total)

  return fisher_fn
