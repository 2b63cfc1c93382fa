"""Loss landscapes along random filter-normalised directions (Li et al. 2018).

The surface is ``f(w + a * d1 + b * d2)`` on a grid of ``(a, b)`` around a
solution ``w``, as in Fig. 4 of Mi et al. (50 x 50 points in [-1, 1]).

Filter normalisation makes directions comparable across networks whose
weights have different scales. A *filter* of a leaf with two or more
dimensions is one slice along its **last** (output) axis: ``[..., o]``, i.e.
one output channel ``(kh, kw, in)`` of a Flax conv kernel ``(kh, kw, in,
out)`` and one column of a Dense kernel ``(in, out)``. Each filter of the
random Gaussian direction is rescaled to the L2 norm of the same filter of
the weights. Leaves with fewer than two dimensions (biases, BatchNorm scales
and offsets) are set to zero in the direction, as Li et al. do by default
(``ignore='biasbn'``). A filter of the direction with zero norm stays zero.

The grid is evaluated in one jitted computation: ``jax.lax.map`` over the
flattened grid with ``batch_size=chunk_size``, i.e. a scan over chunks, each
chunk ``jax.vmap``-ed. Memory grows with ``chunk_size`` times one forward
pass.
"""

from collections.abc import Callable
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


class LossSurface(NamedTuple):
  """Loss on a grid.

  Attributes:
    x: the ``num_points`` coordinates along the first direction.
    y: the ``num_points`` coordinates along the second direction.
    loss: ``loss[i, j] = f(w + x[j] * d1 + y[i] * d2)``, shape
      ``(num_points, num_points)`` (rows follow ``y``, as ``plt.contour``).
  """

  x: jax.Array
  y: jax.Array
  loss: jax.Array


def _filter_norms(leaf: jax.Array) -> jax.Array:
  """L2 norm of every filter (slice along the last axis), shape ``(out,)``."""
  axes = tuple(range(leaf.ndim - 1))
  return jnp.sqrt(jnp.sum(jnp.square(leaf.astype(jnp.float32)), axis=axes))


def filter_normalize(direction: PyTree, params: PyTree) -> PyTree:
  """Rescales each filter of ``direction`` to the norm of that of ``params``.

  >>> import jax.numpy as jnp, numpy as np
  >>> params = {'kernel': jnp.array([[3.0, 0.0], [4.0, 2.0]]),
  ...           'bias': jnp.ones(2)}
  >>> d = filter_normalize({'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)},
  ...                      params)
  >>> np.round(np.float64(d['kernel']), 4).tolist(), d['bias'].tolist()  # column norms 5, 2
  ([[3.5355, 1.4142], [3.5355, 1.4142]], [0.0, 0.0])

  Args:
    direction: a pytree shaped like ``params``.
    params: the weights ``w`` whose filter norms are matched.

  Returns:
    The filter-normalised direction, with leaves of fewer than two
    dimensions zeroed; same dtypes as ``params``.
  """

  def leaf(d, w):
    if w.ndim < 2:
      return jnp.zeros_like(w)
    d_norms, w_norms = _filter_norms(d), _filter_norms(w)
    scale = jnp.where(d_norms > 0, w_norms / jnp.where(d_norms > 0, d_norms, 1),
                      0.0)
    return (d.astype(jnp.float32) * scale).astype(w.dtype)

  return jax.tree.map(leaf, direction, params)


def random_direction(key: jax.Array, params: PyTree) -> PyTree:
  """A Gaussian direction, filter-normalised to ``params``.

  >>> import jax, jax.numpy as jnp, numpy as np
  >>> params = {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)}
  >>> d = random_direction(jax.random.key(0), params)
  >>> np.round(np.linalg.norm(np.float64(d['kernel']), axis=0), 4).tolist(), d['bias'].tolist()
  ([1.7321, 1.7321], [0.0, 0.0])

  Args:
    key: a PRNG key.
    params: the weights ``w``.

  Returns:
    A pytree shaped like ``params`` (see :func:`filter_normalize`).
  """
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  gaussian = jax.tree.unflatten(treedef, [
      jax.random.normal(k, w.shape, jnp.float32) for k, w in zip(keys, leaves)])
  return filter_normalize(gaussian, params)


def grid_coordinates(num_points: int = 50, span: tuple[float, float] = (-1.0, 1.0)
                     ) -> jax.Array:
  """``num_points`` evenly spaced coordinates covering ``span`` inclusive."""
  return jnp.linspace(span[0], span[1], num_points)


@functools.partial(jax.jit, static_argnames=("loss_fn", "chunk_size"))
def _surface(loss_fn, params, d1, d2, x, y, chunk_size):
  a, b = jnp.meshgrid(x, y)  # a varies along columns, b along rows

  def loss_at(coords):
    alpha, beta = coords
    point = jax.tree.map(
        lambda w, u, v: w + (alpha * u + beta * v).astype(w.dtype),
        params, d1, d2)
    return loss_fn(point)

  coords = jnp.stack([a.ravel(), b.ravel()], axis=1)
  losses = jax.lax.map(loss_at, coords, batch_size=chunk_size)
  return losses.reshape(a.shape)


def loss_surface(
    loss_fn: Callable[[PyTree], jax.Array], params: PyTree, key: jax.Array,
    num_points: int = 50, span: tuple[float, float] = (-1.0, 1.0),
    chunk_size: int = 50, directions: tuple[PyTree, PyTree] | None = None,
) -> LossSurface:
  """The loss on a 2-D grid around ``params`` (Fig. 4 of Mi et al.).

  >>> import jax, jax.numpy as jnp
  >>> params = {'kernel': jnp.eye(2), 'bias': jnp.zeros(2)}
  >>> loss = lambda p: jnp.sum(jnp.square(p['kernel'] - jnp.eye(2)))
  >>> s = loss_surface(loss, params, jax.random.key(0), num_points=5)
  >>> s.loss.shape, float(s.loss[2, 2])          # the centre is w itself
  ((5, 5), 0.0)

  Args:
    loss_fn: ``loss_fn(params)`` returns a scalar (close over the data and
      BatchNorm statistics). It is traced under ``jax.vmap``.
    params: the solution ``w`` at the centre of the grid.
    key: PRNG key for the two random directions (ignored if ``directions``
      is given).
    num_points: grid points per axis (50 in the paper).
    span: the range of both coordinates ([-1, 1] in the paper).
    chunk_size: how many grid points are evaluated at once under ``vmap``.
    directions: optional ``(d1, d2)`` to use instead of random ones; they
      are used as given (not normalised again).

  Returns:
    A :class:`LossSurface`.
  """
  if num_points < 1 or chunk_size < 1:
    raise ValueError("num_points and chunk_size must be >= 1.")
  if directions is None:
    k1, k2 = jax.random.split(key)
    directions = (random_direction(k1, params), random_direction(k2, params))
  x = y = grid_coordinates(num_points, span)
  losses = _surface(loss_fn, params, directions[0], directions[1], x, y,
                    min(chunk_size, num_points * num_points))
  return LossSurface(x=x, y=y, loss=losses)
