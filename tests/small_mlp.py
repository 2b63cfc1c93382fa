"""A two-layer MLP and a synthetic classification batch for unit tests."""

import jax
import jax.numpy as jnp
import numpy as np

NUM_FEATURES, NUM_HIDDEN, NUM_CLASSES = 4, 8, 3


def init_params(seed: int = 0, dtype=jnp.float32):
  k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
  return {
      "dense1": {"kernel": jax.random.normal(k1, (NUM_FEATURES, NUM_HIDDEN), dtype) * 0.5,
                 "bias": jax.random.normal(k2, (NUM_HIDDEN,), dtype) * 0.1},
      "dense2": {"kernel": jax.random.normal(k3, (NUM_HIDDEN, NUM_CLASSES), dtype) * 0.5,
                 "bias": jax.random.normal(k4, (NUM_CLASSES,), dtype) * 0.1},
  }


def synthetic_batch(seed: int = 1, size: int = 16):
  """Random inputs and labels: synthetic data, for unit tests only."""
  kx, ky = jax.random.split(jax.random.key(seed))
  return {"x": jax.random.normal(kx, (size, NUM_FEATURES)),
          "y": jax.random.randint(ky, (size,), 0, NUM_CLASSES)}


def logits(params, x):
  h = jnp.tanh(x @ params["dense1"]["kernel"] + params["dense1"]["bias"])
  return h @ params["dense2"]["kernel"] + params["dense2"]["bias"]


def loss(params, batch):
  log_probs = jax.nn.log_softmax(logits(params, batch["x"]).astype(jnp.float32))
  return -jnp.mean(jnp.take_along_axis(log_probs, batch["y"][:, None], axis=1))


def example_loss(params, example):
  return loss(params, jax.tree.map(lambda a: a[None], example))


def flat(tree) -> np.ndarray:
  """All leaves as one float64 NumPy vector, in tree order."""
  return np.concatenate([np.asarray(x, np.float64).ravel()
                         for x in jax.tree.leaves(tree)])


def unflat(vector, like):
  leaves, treedef = jax.tree.flatten(like)
  out, start = [], 0
  for leaf in leaves:
    out.append(jnp.asarray(vector[start:start + leaf.size].reshape(leaf.shape), leaf.dtype))
    start += leaf.size
  return jax.tree.unflatten(treedef, out)
