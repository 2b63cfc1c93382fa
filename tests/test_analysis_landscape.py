"""Filter normalisation and the batched loss-surface evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numerics
from ssam_jax.analysis import landscape


def _params():
  keys = jax.random.split(jax.random.key(0), 3)
  return {"conv": {"kernel": jax.random.normal(keys[0], (3, 3, 2, 4))},
          "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
          "dense": {"kernel": jax.random.normal(keys[1], (5, 3)),
                    "bias": jax.random.normal(keys[2], (3,))}}


def test_filters_are_output_channels_with_the_weights_norms():
  params = _params()
  d = landscape.random_direction(jax.random.key(1), params)
  conv_d, conv_w = np.asarray(d["conv"]["kernel"]), np.asarray(params["conv"]["kernel"])
  for o in range(4):  # a conv filter is the slice [..., o]
    numerics.assert_trees_close(np.linalg.norm(conv_d[..., o]),
                                np.linalg.norm(conv_w[..., o]))
  dense_d, dense_w = np.asarray(d["dense"]["kernel"]), np.asarray(params["dense"]["kernel"])
  numerics.assert_trees_close(np.linalg.norm(dense_d, axis=0),
                              np.linalg.norm(dense_w, axis=0))
  # The direction is not just the weights: it is random within each filter.
  assert not np.allclose(dense_d, dense_w) and not np.allclose(dense_d, -dense_w)
  for leaf in (d["bn"]["scale"], d["bn"]["bias"], d["dense"]["bias"]):
    np.testing.assert_array_equal(leaf, 0.0)


def test_filter_normalize_keeps_each_filters_direction_and_zero_filters():
  weights = {"kernel": jnp.array([[3.0, 0.0, 1.0], [4.0, 0.0, 1.0]])}
  direction = {"kernel": jnp.array([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0]])}
  out = np.asarray(landscape.filter_normalize(direction, weights)["kernel"])
  # Column 0 rescaled to norm 5; column 1: zero weights; column 2: zero direction.
  numerics.assert_trees_close(out[:, 0], np.full(2, 5 / np.sqrt(2)))
  np.testing.assert_array_equal(out[:, 1:], 0.0)


def test_surface_layout_and_values_match_direct_evaluation():
  params = _params()
  loss = lambda p: (jnp.sum(jnp.tanh(p["conv"]["kernel"]) ** 2)
                    + jnp.sum(p["dense"]["kernel"] ** 3) + jnp.sum(p["bn"]["scale"]))
  k1, k2 = jax.random.split(jax.random.key(4))
  dirs = (landscape.random_direction(k1, params),
          landscape.random_direction(k2, params))
  # 7 x 7 = 49 points in chunks of 10: the last chunk is partial.
  surface = landscape.loss_surface(loss, params, None, num_points=7,
                                   chunk_size=10, directions=dirs)
  assert surface.loss.shape == (7, 7)
  numerics.assert_trees_close(surface.x, np.linspace(-1, 1, 7))
  for i, j in [(0, 0), (1, 5), (6, 2), (3, 3)]:
    point = jax.tree.map(lambda w, u, v: w + surface.x[j] * u + surface.y[i] * v,
                         params, *dirs)
    # Batched over points and chunked against one direct evaluation.
    numerics.assert_trees_close(surface.loss[i, j], loss(point))
  numerics.assert_trees_close(surface.loss[3, 3], loss(params))


def test_random_directions_give_the_default_50_by_50_grid():
  params = {"kernel": jnp.eye(3), "bias": jnp.zeros(3)}
  loss = lambda p: jnp.sum((p["kernel"] - jnp.eye(3)) ** 2)
  surface = landscape.loss_surface(loss, params, jax.random.key(0))
  assert surface.loss.shape == (50, 50)
  assert float(surface.x[0]) == -1.0 and float(surface.x[-1]) == 1.0
  assert float(jnp.min(surface.loss)) >= 0.0
  assert float(surface.loss[0, 0]) > float(surface.loss[24, 24])
