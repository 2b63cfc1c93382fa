"""A one-hidden-layer tanh MLP and synthetic data, for the tests and the demo.

The parameters are ``{"dense1": {"kernel", "bias"}, "dense2": {...}}`` for
``sizes = (features, hidden, classes)``. The defaults are the unit tests'
(4 -> 8 -> 3, random labels); the analysis demo passes its own sizes, a
fan-in initialisation and labels from a teacher network, which a model can
learn. Needs JAX only (no TensorFlow).
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
SIZES = (4, 8, 3)  # features, hidden units, classes


def _key(seed_or_key) -> jax.Array:
  if isinstance(seed_or_key, (int, np.integer)):
    return jax.random.key(seed_or_key)
  return seed_or_key


def init_params(seed_or_key=0, dtype=jnp.float32, *,
                sizes: tuple[int, int, int] = SIZES,
                kernel_scale: Optional[float] = 0.5,
                bias_scale: float = 0.1) -> PyTree:
  """Gaussian kernels and biases.

  Args:
    seed_or_key: an int seed or a PRNG key.
    dtype: of every leaf.
    sizes: ``(features, hidden, classes)``.
    kernel_scale: standard deviation of the kernels; ``None`` is
      ``1 / sqrt(fan_in)``.
    bias_scale: standard deviation of the biases (0: zero biases).
  """
  keys = jax.random.split(_key(seed_or_key), 4)
  params = {}
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    scale = fan_in ** -0.5 if kernel_scale is None else kernel_scale
    params[f"dense{i + 1}"] = {
        "kernel": jax.random.normal(keys[2 * i], (fan_in, fan_out), dtype) * scale,
        "bias": jax.random.normal(keys[2 * i + 1], (fan_out,), dtype) * bias_scale,
    }
  return params


def synthetic_batch(seed: int = 1, size: int = 16, *,
                    sizes: tuple[int, int, int] = SIZES,
                    teacher_width: Optional[int] = None) -> dict:
  """Gaussian inputs ``x`` and integer labels ``y``: synthetic data.

  Args:
    seed: PRNG seed.
    size: number of examples.
    sizes: the model's ``(features, hidden, classes)``; the hidden size is
      not used.
    teacher_width: ``None`` draws uniformly random labels (nothing to learn,
      enough for unit tests); a width labels each input by a random tanh
      teacher MLP of that width, with Gumbel noise.
  """
  num_features, num_classes = sizes[0], sizes[-1]
  if teacher_width is None:
    kx, ky = jax.random.split(jax.random.key(seed))
    return {"x": jax.random.normal(kx, (size, num_features)),
            "y": jax.random.randint(ky, (size,), 0, num_classes)}
  k_x, k_t1, k_t2, k_noise = jax.random.split(jax.random.key(seed), 4)
  x = jax.random.normal(k_x, (size, num_features))
  teacher = jnp.tanh(x @ jax.random.normal(k_t1, (num_features, teacher_width)))
  logits_ = 2.0 * teacher @ jax.random.normal(k_t2, (teacher_width, num_classes))
  y = jnp.argmax(logits_ + jax.random.gumbel(k_noise, logits_.shape), axis=1)
  return {"x": x, "y": y}


def logits(params: PyTree, x: jax.Array) -> jax.Array:
  h = jnp.tanh(x @ params["dense1"]["kernel"] + params["dense1"]["bias"])
  return h @ params["dense2"]["kernel"] + params["dense2"]["bias"]


def loss(params: PyTree, batch: dict) -> jax.Array:
  """Mean softmax cross-entropy, in float32 whatever the params' dtype."""
  log_probs = jax.nn.log_softmax(logits(params, batch["x"]).astype(jnp.float32))
  return -jnp.mean(jnp.take_along_axis(log_probs, batch["y"][:, None], axis=1))


def example_loss(params: PyTree, example: dict) -> jax.Array:
  """The loss of one example (no batch axis), for the empirical Fisher."""
  return loss(params, jax.tree.map(lambda a: a[None], example))


def accuracy(params: PyTree, batch: dict) -> jax.Array:
  return jnp.mean(jnp.argmax(logits(params, batch["x"]), -1) == batch["y"])


def flat(tree) -> np.ndarray:
  """All leaves as one float64 NumPy vector, in tree order (for references)."""
  return np.concatenate([np.asarray(x, np.float64).ravel()
                         for x in jax.tree.leaves(tree)])


def unflat(vector, like):
  """The inverse of :func:`flat`, with the leaf shapes and dtypes of ``like``."""
  leaves, treedef = jax.tree.flatten(like)
  out, start = [], 0
  for leaf in leaves:
    out.append(jnp.asarray(vector[start:start + leaf.size].reshape(leaf.shape), leaf.dtype))
    start += leaf.size
  return jax.tree.unflatten(treedef, out)
