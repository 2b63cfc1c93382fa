"""Mask patterns: how a score per parameter becomes a mask.

Each pattern turns a list of score arrays (one per perturbable leaf) and a
``keep_fraction`` (the fraction of parameters to perturb, ``1 - sparsity``)
into boolean masks:

* ``"unstructured"``: the ``floor(keep_fraction * d)`` highest scores across
  all leaves, exactly (see :func:`ssam_jax.topk_mask`).
* ``"tensorwise"``: whole leaves within a budget of
  ``floor(keep_fraction * d)`` parameters, taken greedily in decreasing order
  of their mean score; a leaf that would overflow the budget is skipped and
  smaller ones after it may still fit. The fraction kept is therefore at most
  ``keep_fraction``: the sparsity the caller asked for is a guarantee, not an
  average.
* ``"N:M"`` (for example ``"2:4"``, :class:`NOutOfM`): in every group of
  ``M`` consecutive weights along the input dimension of a kernel (axis
  ``-2``: ``in`` of a Dense ``(in, out)`` kernel, ``in`` of a Conv
  ``(..., in, out)`` kernel), keep the ``round(keep_fraction * M)`` best.
  Leaves with fewer than two dimensions stay fully perturbed.
"""

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Protocol, Union

import jax
import jax.numpy as jnp
import numpy as np

from ssam_jax import topk


class Pattern(Protocol):
  """Selects a mask keeping a fraction of the parameters, by their scores."""

  def select(self, scores: Sequence[jax.Array],
             keep_fraction) -> list[jax.Array]:
    """Returns one boolean array per score array."""


def num_kept(keep_fraction, size: int):
  """``floor(keep_fraction * size)``, exact in Python when it is static."""
  if isinstance(keep_fraction, (int, float)):
    return math.floor(keep_fraction * size)
  return jnp.floor(jnp.asarray(keep_fraction, jnp.float32) * size).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Unstructured:
  """Element-wise mask with exactly ``floor(keep_fraction * d)`` ones."""

  def select(self, scores, keep_fraction):
    size = sum(int(s.size) for s in scores)
    return topk.topk_mask_leaves(scores, num_kept(keep_fraction, size))


@dataclasses.dataclass(frozen=True)
class Tensorwise:
  """Whole leaves by decreasing mean score, within a parameter budget.

  The budget is ``floor(keep_fraction * d)`` parameters. Stopping at the first leaf
  that overflows it would let one large tensor decide everything (a conv with
  78% of a small CNN's weights either takes the whole budget at s = 0.5 or,
  under a "cover the fraction" rule, forces a fraction of 1); skipping it and
  going on with smaller leaves keeps the budget and the ranking both honoured.
  """

  def select(self, scores, keep_fraction):
    if not scores:
      return []
    mean_scores = topk.sanitize_scores(
        jnp.stack([jnp.mean(topk.sanitize_scores(s)) for s in scores]))
    total_size = sum(int(s.size) for s in scores)
    if total_size >= 2**31:
      raise ValueError(
          "pattern='tensorwise' counts parameters in int32; got "
          f"{total_size} perturbable parameters.")
    budget = jnp.asarray(num_kept(keep_fraction, total_size), jnp.int32)
    sizes = jnp.asarray([s.size for s in scores], jnp.int32)
    # A stable sort of a vector with one entry per leaf: cheap, and ties go
    # to the earlier leaf.
    order = jnp.argsort(-mean_scores, stable=True)

    def take_if_it_fits(used, size):
      fits = used + size <= budget
      return used + jnp.where(fits, size, 0), fits

    # A scan over scalars, one step per leaf: negligible next to the scores.
    _, taken = jax.lax.scan(take_if_it_fits, jnp.zeros((), jnp.int32), sizes[order])
    chosen = jnp.zeros(len(scores), bool).at[order].set(taken)
    return [jnp.broadcast_to(chosen[i], s.shape) for i, s in enumerate(scores)]


@dataclasses.dataclass(frozen=True)
class NOutOfM:
  """``keep`` of every ``group_size`` weights along a kernel's input axis.

  The pattern written ``"keep:group_size"``, e.g. ``"2:4"``. Groups run
  along axis ``-2`` (the input dimension of Dense and Conv kernels). Leaves
  with fewer than two dimensions stay fully perturbed.

  Attributes:
    keep: weights perturbed in each group (``N``), ``0 <= keep <= group_size``.
    group_size: weights per group (``M``), >= 1.
  """

  keep: int
  group_size: int

  def __post_init__(self):
    if self.group_size < 1:
      raise ValueError(
          f"pattern N:M needs M >= 1, got M={self.group_size}.")
    if not 0 <= self.keep <= self.group_size:
      raise ValueError(f"pattern N:M needs 0 <= N <= M, got N={self.keep}, "
                       f"M={self.group_size}.")

  @property
  def keep_fraction(self) -> float:
    return self.keep / self.group_size

  def check_fits(self, shapes: Sequence[tuple], paths: Sequence[str]) -> None:
    """Raises a ValueError unless every kernel's input axis splits into groups.

    A partial last group would keep more than ``keep / group_size`` of its
    weights, so the mask would not have the sparsity asked for.
    """
    for shape, path in zip(shapes, paths):
      if len(shape) >= 2 and shape[-2] % self.group_size:
        raise ValueError(
            f"pattern '{self.keep}:{self.group_size}' needs the input axis "
            f"(-2) of every perturbed kernel to be a multiple of "
            f"{self.group_size}: leaf {path!r} has shape {tuple(shape)}. "
            "Leave it out with perturbed_leaves, or choose another pattern.")

  def select(self, scores, keep_fraction):
    if isinstance(keep_fraction, (int, float)):
      keep = round(keep_fraction * self.group_size)
    else:
      keep = jnp.round(jnp.asarray(keep_fraction, jnp.float32) * self.group_size)
    return [self._select_leaf(s, keep) for s in scores]

  def _select_leaf(self, scores, keep):
    if scores.ndim < 2:
      return jnp.ones(scores.shape, bool)
    grouped_axis_last = jnp.moveaxis(topk.sanitize_scores(scores), -2, -1)
    in_features = grouped_axis_last.shape[-1]
    padding = (-in_features) % self.group_size
    # Padding ranks below every real score (ties go to the lower index), so a
    # partial last group keeps its real entries first.
    padded = jnp.pad(grouped_axis_last,
                     [(0, 0)] * (scores.ndim - 1) + [(0, padding)],
                     constant_values=-jnp.inf)
    groups = padded.reshape(padded.shape[:-1] + (
        padded.shape[-1] // self.group_size, self.group_size))
    kept = _rank_within_group(groups) < keep
    kept = kept.reshape(padded.shape)[..., :in_features]
    return jnp.moveaxis(kept, -1, -2)


def _rank_within_group(groups: jax.Array) -> jax.Array:
  """Rank of each entry in its group (0 = best), ties broken by position.

  Groups are small (M entries), so comparing all pairs is cheaper than a
  sort and needs no tie-breaking care from the sorting algorithm.
  """
  mine = groups[..., :, None]
  other = groups[..., None, :]
  index = np.arange(groups.shape[-1])
  earlier = index[None, :] < index[:, None]
  beats_me = (other > mine) | ((other == mine) & earlier)
  return jnp.sum(beats_me, axis=-1)


PatternLike = Union[str, Pattern]
_N_OUT_OF_M = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def resolve_pattern(pattern: PatternLike) -> Pattern:
  """Parses ``"unstructured"``, ``"tensorwise"`` or ``"N:M"``."""
  if not isinstance(pattern, str):
    if callable(getattr(pattern, "select", None)):
      return pattern
    raise TypeError(
        "pattern must be 'unstructured', 'tensorwise', an 'N:M' string such "
        f"as '2:4', or an object with a select method; got {pattern!r}.")
  name = pattern.strip().lower()
  if name == "unstructured":
    return Unstructured()
  if name in ("tensorwise", "tensor-wise", "tensor"):
    return Tensorwise()
  match = _N_OUT_OF_M.match(name)
  if match:
    return NOutOfM(int(match.group(1)), int(match.group(2)))
  raise ValueError(
      "pattern must be 'unstructured', 'tensorwise' or 'N:M' (e.g. '2:4'); "
      f"got {pattern!r}.")
