"""Mask patterns: how a score per parameter becomes a mask of a given density.

Each pattern turns a list of score arrays (one per perturbable leaf) and a
density (the fraction of parameters to keep, ``1 - sparsity``) into boolean
masks:

* ``"unstructured"``: the ``floor(density * d)`` highest scores across all
  leaves, exactly (see :func:`ssam_jax.topk_mask`).
* ``"tensorwise"``: whole leaves within a budget of ``floor(density * d)``
  parameters, taken greedily in decreasing order of their mean score; a leaf
  that would overflow the budget is skipped and smaller ones after it may
  still fit. The mask density is therefore at most ``density``: the sparsity
  the caller asked for is a guarantee, not an average.
* ``"N:M"`` (for example ``"2:4"``): in every group of ``M`` consecutive
  weights along the input dimension of a kernel (axis ``-2``: ``in`` of a
  Dense ``(in, out)`` kernel, ``in`` of a Conv ``(..., in, out)`` kernel),
  keep the ``round(density * M)`` best. Leaves with fewer than two dimensions
  stay fully perturbed.
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
  """Selects a mask of a given density from per-parameter scores."""

  def select(self, scores: Sequence[jax.Array], density) -> list[jax.Array]:
    """Returns one boolean array per score array."""


def num_kept(density, size: int):
  """``floor(density * size)``, exact in Python when density is static."""
  if isinstance(density, (int, float)):
    return math.floor(density * size)
  return jnp.floor(jnp.asarray(density, jnp.float32) * size).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Unstructured:
  """Element-wise mask with exactly ``floor(density * d)`` ones."""

  def select(self, scores, density):
    size = sum(int(s.size) for s in scores)
    return topk.topk_mask_leaves(scores, num_kept(density, size))


@dataclasses.dataclass(frozen=True)
class Tensorwise:
  """Whole leaves by decreasing mean score, within a parameter budget.

  The budget is ``floor(density * d)`` parameters. Stopping at the first leaf
  that overflows it would let one large tensor decide everything (a conv with
  78% of a small CNN's weights either takes the whole budget at s = 0.5 or,
  under a "cover the density" rule, forces a density of 1); skipping it and
  going on with smaller leaves keeps the budget and the ranking both honoured.
  """

  def select(self, scores, density):
    if not scores:
      return []
    mean_scores = topk.sanitize_scores(
        jnp.stack([jnp.mean(topk.sanitize_scores(s)) for s in scores]))
    total_size = sum(int(s.size) for s in scores)
    if total_size >= 2**31:
      raise ValueError(
          "pattern='tensorwise' counts parameters in int32; got "
          f"{total_size} perturbable parameters.")
    budget = jnp.asarray(num_kept(density, total_size), jnp.int32)
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
class NOfM:
  """N:M structured mask along the input dimension of each kernel."""

  n: int
  m: int

  def __post_init__(self):
    if self.m < 1:
      raise ValueError(f"pattern N:M needs M >= 1, got M={self.m}.")
    if not 0 <= self.n <= self.m:
      raise ValueError(
          f"pattern N:M needs 0 <= N <= M, got N={self.n}, M={self.m}.")

  @property
  def density(self) -> float:
    return self.n / self.m

  def select(self, scores, density):
    if isinstance(density, (int, float)):
      keep = round(density * self.m)
    else:
      keep = jnp.round(jnp.asarray(density, jnp.float32) * self.m)
    return [self._select_leaf(s, keep) for s in scores]

  def _select_leaf(self, scores, keep):
    if scores.ndim < 2:
      return jnp.ones(scores.shape, bool)
    grouped_axis_last = jnp.moveaxis(topk.sanitize_scores(scores), -2, -1)
    in_features = grouped_axis_last.shape[-1]
    padding = (-in_features) % self.m
    # Padding ranks below every real score (ties go to the lower index), so a
    # partial last group keeps its real entries first.
    padded = jnp.pad(grouped_axis_last,
                     [(0, 0)] * (scores.ndim - 1) + [(0, padding)],
                     constant_values=-jnp.inf)
    groups = padded.reshape(padded.shape[:-1] + (-1, self.m))
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
_N_OF_M = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


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
  match = _N_OF_M.match(name)
  if match:
    return NOfM(int(match.group(1)), int(match.group(2)))
  raise ValueError(
      "pattern must be 'unstructured', 'tensorwise' or 'N:M' (e.g. '2:4'); "
      f"got {pattern!r}.")
