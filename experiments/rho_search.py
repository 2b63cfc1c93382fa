"""An arm's own rho, chosen on validation from a grid that brackets it.

Sparse masks change the radius that works best (``experiments.radius``), so
an arm judged at another arm's rho is not judged. An arm with a grid of its
own (``sweep_arms.Arm.rho_grid``) trains once per grid value at the sweep's
rho seed; the value with the best final validation accuracy is chosen, but
only once it is bracketed: while the best value sits at an end of the grid,
the grid grows by the next value of :data:`LADDER` beyond that end. The
search is a pure function of the recorded validation accuracies, so a killed
sweep resumes where it stopped and the summary can show how each value was
chosen. A variant with a knob (``sweep_arms.VARIANT_FAMILIES``: every k
steps, with probability p, ...) tries each knob value at its own rho; the
value whose chosen rho validates best is the family's (:func:`knob_chosen`).
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Optional

# The values a grid may take, roughly evenly spaced in log rho. It reaches
# 50 because with the paper's normalisation a random mask at 1 % density
# perturbs with a radius of about rho / 10.
LADDER = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


@dataclasses.dataclass(frozen=True)
class Search:
  """Where an arm's rho search stands.

  Attributes:
    grid: the values the search needs, ascending: the start grid and the
      values added to bracket the best one.
    pending: the values of ``grid`` not yet measured.
    selected: the chosen rho (best validation accuracy, the smaller on a
      tie) once every value of ``grid`` is measured, else ``None``.
    bracketed: ``selected`` has a measured neighbour on both sides; False
      only where it sits at an end of :data:`LADDER`.
  """

  grid: tuple[float, ...]
  pending: tuple[float, ...]
  selected: Optional[float]
  bracketed: bool


def check_start(start: tuple[float, ...], what: str = "rho_grid") -> None:
  """Raises a ValueError unless ``start`` is at least two consecutive values
  of :data:`LADDER`, ascending."""
  if len(start) < 2 or any(rho not in LADDER for rho in start):
    raise ValueError(f"{what}={start!r}: expected two or more consecutive "
                     f"values of {LADDER}.")
  first = LADDER.index(start[0])
  if tuple(start) != LADDER[first:first + len(start)]:
    raise ValueError(f"{what}={start!r}: expected consecutive ascending "
                     f"values of {LADDER}.")


def search(start: tuple[float, ...],
           validation: Mapping[float, float]) -> Search:
  """The search from grid ``start`` given the measured ``validation``
  accuracy at each rho (values off the grid are ignored).

  Args:
    start: the first grid (see :func:`check_start`).
    validation: final validation accuracy by rho, of the runs recorded so
      far.

  Returns:
    A :class:`Search`: the values still to train, or the selected rho.
  """
  check_start(start)
  low, high = LADDER.index(start[0]), LADDER.index(start[-1])
  while True:
    grid = LADDER[low:high + 1]
    pending = tuple(rho for rho in grid if rho not in validation)
    if pending:
      return Search(grid, pending, None, False)
    best = max(grid, key=lambda rho: (validation[rho], -rho))
    if best == grid[0] and low > 0:
      low -= 1
    elif best == grid[-1] and high < len(LADDER) - 1:
      high += 1
    else:
      return Search(grid, (), best, grid[0] < best < grid[-1])


Validation = Callable[[Any, float], Optional[float]]


def arm_search(arm, validation: Validation) -> Search:
  """The search of ``arm`` (a ``sweep_arms.Arm`` with ``rho_grid``), where
  ``validation(arm, rho)`` is the recorded accuracy of its run at ``rho``
  (None if not recorded)."""
  measured = {rho: value for rho in LADDER
              if (value := validation(arm, rho)) is not None}
  return search(arm.rho_grid, measured)


def knob_chosen(arm, validation: Validation,
                families: Mapping[str, tuple[str, ...]]) -> Optional[bool]:
  """Whether ``arm``'s variant is the knob its family chose: the variant
  whose own rho gives the best validation accuracy (the first listed on a
  tie). True for an arm without a family of several knobs; None until every
  knob of the family has chosen its rho.

  Args:
    arm: a ``sweep_arms.Arm``.
    validation: as for :func:`arm_search`.
    families: ``sweep_arms.VARIANT_FAMILIES``.
  """
  family = next((knobs for knobs in families.values()
                 if arm.variant in knobs), ())
  if len(family) < 2:
    return True
  scores = []
  for knob in family:
    other = dataclasses.replace(arm, variant=knob)
    selected = arm_search(other, validation).selected
    if selected is None:
      return None
    scores.append((validation(other, selected), -family.index(knob), knob))
  return max(scores)[2] == arm.variant
