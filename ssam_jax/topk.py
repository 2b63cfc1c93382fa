"""Exact global top-k over the leaves of a pytree, without sorting.

Selecting the k largest scores across all parameters of a network is the core
of every mask refresh. ``jax.lax.top_k`` would need the scores concatenated
into one vector and is slow on large inputs, so instead we find the k-th
largest score by bisection on its bit pattern: at most 32 passes that each only
compare and count, leaf by leaf. Ties at the threshold are broken by position
(earlier leaves in tree order first, then row-major order within a leaf), so
the result holds exactly k ones and is deterministic.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

_KEY_BITS = 32


def sanitize_scores(scores: jax.Array) -> jax.Array:
  """Returns float32 scores where NaN ranks below every number but ``-inf``.

  A NaN in a gradient must not make the mask arbitrary: it is ranked as the
  lowest finite value, so it loses to every real score but still beats
  entries that a strategy excludes on purpose with ``-inf``.
  """
  scores = jnp.asarray(scores, jnp.float32)
  return jnp.where(jnp.isnan(scores), jnp.finfo(jnp.float32).min, scores)


def _order_preserving_key(scores: jax.Array) -> jax.Array:
  """Maps float32 to uint32 so that unsigned order equals float order."""
  # Adding 0.0 turns -0.0 into +0.0, so the two zeros tie as they compare.
  bits = jax.lax.bitcast_convert_type(sanitize_scores(scores) + 0.0, jnp.uint32)
  negative = (bits >> (_KEY_BITS - 1)) == 1
  return jnp.where(negative, ~bits, bits | jnp.uint32(1 << (_KEY_BITS - 1)))


def _count_at_least(keys: Sequence[jax.Array], threshold: jax.Array):
  return sum(jnp.sum(key >= threshold, dtype=jnp.int32) for key in keys)


def _kth_largest_key(keys: Sequence[jax.Array], k: jax.Array) -> jax.Array:
  """Largest t with at least k keys >= t, by bisection over [0, 2**32).

  Stops early at a t with exactly k keys >= t: ``key >= t`` is then the
  answer already, and with distinct scores that happens several halvings
  before the interval closes.
  """

  def unresolved(state):
    low, high, exact = state
    return (low < high) & ~exact

  def halve(state):
    low, high, _ = state
    # Upper midpoint, written so that high - low + 1 cannot overflow uint32.
    width = high - low
    middle = low + width // 2 + width % 2
    count = _count_at_least(keys, middle)
    enough = count >= k
    return (jnp.where(enough, middle, low),
            jnp.where(enough, high, middle - 1), count == k)

  state = (jnp.uint32(0), jnp.uint32(2**_KEY_BITS - 1), jnp.bool_(False))
  low, _, _ = jax.lax.while_loop(unresolved, halve, state)
  return low


def _positions(keys):
  """Each entry's index in the concatenation of the flattened keys.

  Built from iotas, so a sharded leaf gets sharded positions.
  """
  positions, offset = [], 0
  for key in keys:
    index = jnp.full(key.shape, offset, jnp.int32)
    stride = 1
    for axis in reversed(range(key.ndim)):
      index = index + stride * jax.lax.broadcasted_iota(jnp.int32, key.shape, axis)
      stride *= key.shape[axis]
    positions.append(index)
    offset += key.size
  return positions


def _break_ties(keys, threshold, num_needed):
  """Selects the first ``num_needed`` keys equal to the threshold.

  The position cutting off the first ``num_needed`` ties is found by
  bisection, counting leaf by leaf: unlike a cumulative sum over a flattened
  leaf, this never gathers a sharded leaf onto one device.
  """
  total = sum(key.size for key in keys)

  def count_before(limit):
    return sum(jnp.sum((key == threshold) & (position < limit), dtype=jnp.int32)
               for key, position in zip(keys, _positions(keys)))

  def halve(_, bounds):
    # Smallest limit in [low, high] with count_before(limit) >= num_needed.
    low, high = bounds
    middle = low + (high - low) // 2
    enough = count_before(middle) >= num_needed
    return jnp.where(enough, low, middle + 1), jnp.where(enough, middle, high)

  bounds = (jnp.int32(0), jnp.int32(total))
  _, limit = jax.lax.fori_loop(0, max(total, 1).bit_length(), halve, bounds)
  return [(key > threshold) | ((key == threshold) & (position < limit))
          for key, position in zip(keys, _positions(keys))]


def topk_mask_leaves(scores: Sequence[jax.Array], k) -> list[jax.Array]:
  """Boolean masks marking exactly the ``k`` largest entries of ``scores``.

  Args:
    scores: arrays of any shapes; ranked jointly as if concatenated.
    k: number of entries to select (Python or traced integer). Clipped to
      ``[0, total size]``.

  Returns:
    One boolean array per input, with ``min(max(k, 0), total)`` True entries
    in all.
  """
  if not scores:
    return []
  total = sum(int(s.size) for s in scores)
  k = jnp.clip(jnp.asarray(k, jnp.int32), 0, total)
  keys = [_order_preserving_key(s) for s in scores]
  threshold = _kth_largest_key(keys, k)
  num_above = sum(jnp.sum(key > threshold, dtype=jnp.int32) for key in keys)
  num_at = sum(jnp.sum(key == threshold, dtype=jnp.int32) for key in keys)
  num_needed = k - num_above
  # Ranking the ties costs about log2(total) more counting passes (see
  # _break_ties); skip them in the common case where every tie is needed.
  return jax.lax.cond(
      num_at == num_needed,
      lambda: [key >= threshold for key in keys],
      lambda: _break_ties(keys, threshold, num_needed),
  )


def topk_mask(scores, k):
  """Exact global top-k of a pytree of scores, as a boolean pytree.

  Ranks every entry of every leaf jointly and marks the ``k`` largest. Ties
  are broken by position: leaves earlier in ``jax.tree.leaves`` order first,
  then row-major order within a leaf. NaN ranks below every other value
  except ``-inf``. Neither concatenates the leaves nor sorts them: the k-th
  largest value is found by at most 32 counting passes over the leaves.

  Args:
    scores: a pytree of arrays.
    k: how many entries to mark (Python or traced integer).

  Returns:
    A pytree of boolean arrays shaped like ``scores``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import ssam_jax
    >>> scores = {'a': jnp.array([3., 1.]), 'b': jnp.array([[2., 5.]])}
    >>> mask = ssam_jax.topk_mask(scores, 2)
    >>> mask['a'].tolist(), mask['b'].tolist()
    ([True, False], [[False, True]])
  """
  leaves, treedef = jax.tree.flatten(scores)
  return jax.tree.unflatten(treedef, topk_mask_leaves(leaves, k))
