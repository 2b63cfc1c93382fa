"""The relative difference between SAM and SGD gradients (Fig. 1 of Mi et al.).

For every parameter ``j``,

  r_j = log |(g_SAM_j - g_SGD_j) / g_SGD_j|,

where ``g_SGD = grad f(w)`` and ``g_SAM = grad f(w + rho * g_SGD / ||g_SGD||)``
(the global L2 norm over all leaves, exactly as :func:`ssam_jax.sam` perturbs).
``r_j < 0`` means SAM changes that coordinate's gradient by less than its own
magnitude; Mi et al. find this holds for most parameters. The logarithm is
natural (the sign of ``r``, and so the fraction below zero, is the same in any
base).

Entries with ``g_SGD_j == 0`` have no ratio: they are **excluded** (``r`` is
NaN there) and their number is reported as ``num_excluded``. Entries where
SAM leaves the gradient unchanged (``g_SAM_j == g_SGD_j != 0``) have
``r = -inf``; they count as ``r < 0`` and fall in the lowest histogram bin.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ssam_jax import leaf_filters
from ssam_jax import perturbation

PyTree = Any


class RatioStatistics(NamedTuple):
  """Summary of ``r`` over all parameters.

  Attributes:
    counts: histogram counts, ``len(bin_edges) - 1`` integers. Values outside
      the edges (``-inf`` included) are clipped into the first/last bin, so
      the counts sum to ``num_valid``.
    bin_edges: the histogram's bin edges.
    fraction_below_zero: fraction of the ``num_valid`` parameters with
      ``r < 0``.
    num_valid: parameters with ``g_SGD != 0``.
    num_excluded: parameters with ``g_SGD == 0`` (no ratio defined).
  """

  counts: np.ndarray
  bin_edges: np.ndarray
  fraction_below_zero: float
  num_valid: int
  num_excluded: int


def sam_and_sgd_gradients(
    loss_fn: Callable[[PyTree], jax.Array], params: PyTree, rho: float
) -> tuple[PyTree, PyTree]:
  """The SAM gradient and the plain gradient of ``loss_fn`` at ``params``.

  The perturbation is :func:`ssam_jax.sam`'s own: a zero or non-finite
  gradient, or a non-finite ``rho``, gives ``eps = 0`` (``g_SAM = g_SGD``).

  >>> import jax.numpy as jnp
  >>> loss = lambda p: jnp.sum(p ** 4) / 4       # gradient p ** 3
  >>> g_sam, g_sgd = sam_and_sgd_gradients(loss, jnp.array([1.0, 0.0]), 1.0)
  >>> g_sgd.tolist(), g_sam.tolist()             # w + eps = [2, 0]
  ([1.0, 0.0], [8.0, 0.0])

  Args:
    loss_fn: ``loss_fn(params)`` returns a scalar (close over the batch).
    params: the point ``w``, any pytree of float arrays.
    rho: the SAM radius.

  Returns:
    ``(g_sam, g_sgd)``, two pytrees shaped like ``params``.
  """
  grad_fn = jax.grad(loss_fn)
  g_sgd = grad_fn(params)
  every_leaf = leaf_filters.resolve_leaf_filter(None, params)
  g_sam = perturbation.sharpness_aware_gradient(g_sgd, params, rho, grad_fn,
                                                every_leaf)
  return g_sam, g_sgd


def log_ratio(g_sam: PyTree, g_sgd: PyTree) -> PyTree:
  """``r = log|(g_sam - g_sgd) / g_sgd|`` elementwise; NaN where ``g_sgd == 0``.

  >>> import jax.numpy as jnp
  >>> r = log_ratio(jnp.array([3.0, 1.5, 2.0, 5.0]),
  ...               jnp.array([1.0, 1.0, 2.0, 0.0]))
  >>> [round(float(x), 4) for x in r]            # log 2, log 0.5, log 0, excluded
  [0.6931, -0.6931, -inf, nan]

  Args:
    g_sam: gradient at the perturbed point.
    g_sgd: gradient at ``w``, same structure.

  Returns:
    A float32 pytree of ``r`` shaped like the gradients.
  """

  def leaf_ratio(a, b):
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    safe_b = jnp.where(b == 0, 1.0, b)
    return jnp.where(b == 0, jnp.nan, jnp.log(jnp.abs((a - b) / safe_b)))

  return jax.tree.map(leaf_ratio, g_sam, g_sgd)


def summarize(ratios: PyTree, bin_edges=np.linspace(-12.0, 6.0, 73)
              ) -> RatioStatistics:
  """Histogram and fraction below zero of a pytree of ``r`` values.

  >>> import numpy as np
  >>> stats = summarize(np.array([-np.inf, -1.0, 0.5, np.nan]),
  ...                   bin_edges=np.array([-2.0, 0.0, 2.0]))
  >>> stats.counts.tolist(), stats.fraction_below_zero, stats.num_excluded
  ([2, 1], 0.6666666666666666, 1)

  Args:
    ratios: a pytree of arrays from :func:`log_ratio` (NaN = excluded).
    bin_edges: increasing histogram edges.

  Returns:
    A :class:`RatioStatistics`.
  """
  values = np.concatenate([np.asarray(x, np.float64).ravel()
                           for x in jax.tree.leaves(ratios)])
  excluded = np.isnan(values)
  valid = values[~excluded]
  edges = np.asarray(bin_edges, np.float64)
  clipped = np.clip(valid, edges[0], edges[-1])
  counts, _ = np.histogram(clipped, bins=edges)
  return RatioStatistics(
      counts=counts, bin_edges=edges,
      fraction_below_zero=float(np.mean(valid < 0)) if valid.size else float("nan"),
      num_valid=int(valid.size), num_excluded=int(excluded.sum()))


def gradient_ratio_statistics(
    loss_fn: Callable[[PyTree], jax.Array], params: PyTree, rho: float,
    bin_edges=np.linspace(-12.0, 6.0, 73)) -> RatioStatistics:
  """Fig. 1 of Mi et al. in one call: ``r`` of every parameter, summarized.

  >>> import jax.numpy as jnp
  >>> loss = lambda p: jnp.sum(p ** 4) / 4
  >>> stats = gradient_ratio_statistics(loss, jnp.array([1.0, 2.0, 0.0]), 0.01)
  >>> stats.num_valid, stats.num_excluded, stats.fraction_below_zero
  (2, 1, 1.0)

  Args:
    loss_fn: ``loss_fn(params)`` returns a scalar (close over the batch).
    params: the point ``w``.
    rho: the SAM radius.
    bin_edges: histogram edges (see :func:`summarize`).

  Returns:
    A :class:`RatioStatistics`.
  """
  g_sam, g_sgd = jax.jit(sam_and_sgd_gradients, static_argnums=0)(
      loss_fn, params, rho)
  return summarize(log_ratio(g_sam, g_sgd), bin_edges)
