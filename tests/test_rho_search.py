"""experiments.rho_search: a grid grows until it brackets its best value."""

import pytest

from experiments import rho_search


def _accuracy_peaking_at(peak):
  """A validation curve, unimodal in log rho, with its maximum at ``peak``."""
  index = rho_search.LADDER.index(peak)
  return {rho: 90.0 - abs(i - index) for i, rho in enumerate(rho_search.LADDER)}


def _run_search(start, curve):
  """Trains (looks up) every pending value until the search selects one."""
  measured, trained = {}, []
  while (state := rho_search.search(start, measured)).pending:
    for rho in state.pending:
      measured[rho] = curve[rho]
      trained.append(rho)
  return state, trained


def test_an_unmeasured_grid_is_all_pending():
  state = rho_search.search((0.1, 0.2, 0.5), {0.2: 80.0})
  assert state.pending == (0.1, 0.5)
  assert state.selected is None


def test_an_interior_best_is_selected_without_growing_the_grid():
  state, trained = _run_search((0.1, 0.2, 0.5), _accuracy_peaking_at(0.2))
  assert (state.selected, state.bracketed) == (0.2, True)
  assert trained == [0.1, 0.2, 0.5]


@pytest.mark.parametrize("peak, extra", [(1.0, [1.0, 2.0]), (0.02, [0.05, 0.02, 0.01])])
def test_a_best_value_at_an_end_grows_the_grid_until_it_is_bracketed(peak, extra):
  state, trained = _run_search((0.1, 0.2, 0.5), _accuracy_peaking_at(peak))
  assert state.selected == peak and state.bracketed
  assert trained == [0.1, 0.2, 0.5] + extra
  assert state.grid[0] < peak < state.grid[-1]


def test_the_end_of_the_ladder_is_selected_but_not_bracketed():
  top = rho_search.LADDER[-1]
  state, _ = _run_search(rho_search.LADDER[-2:], _accuracy_peaking_at(top))
  assert (state.selected, state.bracketed) == (top, False)


def test_a_tie_selects_the_smaller_rho():
  state = rho_search.search((0.1, 0.2, 0.5), {0.1: 80.0, 0.2: 85.0, 0.5: 85.0})
  assert state.selected == 0.2


@pytest.mark.parametrize("start", [(0.2,), (0.1, 0.5), (0.2, 0.1), (0.3, 0.5)])
def test_a_start_grid_off_the_ladder_is_refused(start):
  with pytest.raises(ValueError, match="rho_grid"):
    rho_search.search(start, {})


def test_the_knob_whose_own_rho_validates_best_is_chosen():
  from experiments import sweep_arms  # pylint: disable=g-import-not-at-top
  every_10, every_5 = (sweep_arms.Arm("sam", variant=v, rho_grid=(0.1, 0.2, 0.5))
                       for v in ("every 10", "every 5"))
  assert sweep_arms.VARIANT_FAMILIES["every k"] == ("every 10", "every 5")
  # every 10 peaks at rho 0.2 with 84; every 5 at rho 0.5 with 85.
  curves = {"every 10": {0.1: 80.0, 0.2: 84.0, 0.5: 83.0},
            "every 5": {0.1: 79.0, 0.2: 84.5, 0.5: 85.0, 1.0: 82.0}}
  measured = {"every 10": dict(curves["every 10"]), "every 5": {}}
  validation = lambda arm, rho: measured[arm.variant].get(rho)
  families = sweep_arms.VARIANT_FAMILIES
  assert rho_search.knob_chosen(every_10, validation, families) is None
  measured["every 5"] = dict(curves["every 5"])
  assert rho_search.arm_search(every_5, validation).selected == 0.5
  assert rho_search.knob_chosen(every_5, validation, families) is True
  assert rho_search.knob_chosen(every_10, validation, families) is False
  msam = sweep_arms.Arm("sam", variant="msam", rho_grid=(0.1, 0.2, 0.5))
  assert rho_search.knob_chosen(msam, validation, families) is True  # no knob
